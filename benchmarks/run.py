"""Wavelet Flow against Glow and normflows' Glow, side by side on one machine: the sections of the first benchmark
(time to quality, :mod:`benchmarks.timetoquality`; throughput and sampling, :mod:`benchmarks.speed`; memory,
:mod:`benchmarks.memory`) in one command and one result file.

    python -m benchmarks.run --quick               # a few minutes: every figure produced, tiny budgets
    python -m benchmarks.run --full                # the README figures (20 min per model on MNIST)
    python -m benchmarks.run --full --device cuda --datasets cifar10

Writes ``results.json``, ``results.md`` and ``time_to_quality_<dataset>.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from benchmarks.ablation import ablation
from benchmarks.ablation import markdown as ablation_markdown
from benchmarks.levers import levers
from benchmarks.levers import markdown as levers_markdown
from benchmarks.machine import machine
from benchmarks.memory import highres_memory, memory
from benchmarks.paths import DATASETS, REPO, SHARED
from benchmarks.speed import sampling_latency, throughput
from benchmarks.timetoquality import BASELINES, time_to_quality, trained_level_rates
from waveletflow.data import load_dataset
from waveletflow.training import TrainOptions


# ----- report --------------------------------------------------------------------------------------
_RUNS_NOTE = ("Every figure is a fresh run trained with its budget as `waveletflow train --time-budget` trains it "
              "(one final decay); Wavelet Flow also in runs of half, a quarter, ... of the budget, whose wall-clock "
              "gives the time it needs to reach each baseline's figure.")


def markdown(res: dict) -> str:
    """The results as Markdown: only the sections that were run."""
    lines = [f"Machine: {res['machine']}  ", f"Command: `{res['command']}`  "]
    if "recipe" in res:
        lines.append(f"Every model: Adam, learning rate {res['recipe']['lr']:g}, warm-up {res['recipe']['warmup']} steps")
    lines.append("")
    for t in res["time_to_quality"]:
        if "skipped" in t:
            lines.append(f"{t['dataset']}: skipped ({t['skipped']})\n")
            continue
        extra = "" if not t.get("keep_best_every") else f", best validation kept (every {t['keep_best_every']} steps)"
        sample_head = f" s for {t['models'][0]['sample_n']} samples |" if "sample_s" in t["models"][0] else ""
        fresh_runs = t.get("protocol") == "runs"
        lines += [f"### Time to quality: {t['dataset']} ({t['budget_s'] / 60:.0f} min per model, batch "
                  f"{t.get('batch', 64)}, {t['test_images']} test images{extra})", "",
                  *([f"Wavelet Flow's config overrides: `{json.dumps(t['wf_config'])}`", ""] if t.get("wf_config") else []),
                  *([_RUNS_NOTE, ""] if fresh_runs else []),
                  "| model | parameters | test bits/dim at the end | "
                  + ("bits/dim of fresh runs by budget |" if fresh_runs else "bits/dim along the budget |")
                  + sample_head,
                  "| --- " * (4 + bool(sample_head)) + "|"]
        for m in t["models"]:
            along = ", ".join(f"{p['budget_s']:g} s: {p['test_bpd']:.3f}" if "budget_s" in p else f"{p['test_bpd']:.3f}"
                              for p in m["curve"])
            sample = f" {m['sample_s']:.3f} |" if sample_head else ""
            lines.append(f"| {m['name']} | {m['params'] / 1e6:.2f} M ({m['param_ratio']:.2f}×) | {m['curve'][-1]['test_bpd']:.3f} | {along} |{sample}")
        lines.append("")
        for s in t.get("speedups", []):
            if s["speedup"] is None:
                lines.append(f"- against {s['against']}: {s['note']}.")
            elif s["speedup"] < 1:
                lines.append(f"- against {s['against']}: Wavelet Flow reaches {s['goal_bpd']:.3f} bits/dim after "
                             f"{s['wavelet_flow_s']:.0f} s, later than the baseline: {s['speedup']:.2f}×.")
            else:
                lines.append(f"- against {s['against']}: Wavelet Flow reaches {s['goal_bpd']:.3f} bits/dim after "
                             f"{s['wavelet_flow_s']:.0f} s: **{s['speedup']:.2f}×** sooner.")
        lines.append("")
    if res.get("trained_levels"):
        lines += ["### Training step per level of the trained models (images/s, ODE function evaluations)", "",
                  "| model | level | parameters | images/s (batch " f"{res['trained_levels'][0]['batch']}) | NFE per training step | NFE per test pass |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for r in res["trained_levels"]:
            nfe = [("—" if r[k] is None else r[k]) for k in ("train_nfe", "test_nfe")]
            lines.append(f"| {r['model']} | {r['level']}: {r['what']} | {r['params'] / 1e3:.0f} k | {r['images_per_s']} | "
                         f"{nfe[0]} | {nfe[1]} |")
        lines.append("")
    if "ablation" in res:
        lines += ablation_markdown(res["ablation"])
    for result in res.get("levers", []):
        lines += levers_markdown(result, result["dataset"])
    if res["throughput"]:
        lines += ["### Training throughput (images/s)", "", "| size | model | batch | images/s |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {r['size']} | {r['model']} | {r['batch']} | {r['images_per_s']} |" for r in res["throughput"]]
        lines.append("")
    if res["memory"]:
        lines += [f"### Peak memory of one training step (MB, batch {res['memory'][0]['batch']})", "",
                  "| size | Wavelet Flow, costliest level | with the top level on half-size patches | Glow |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {r['size']} | {r['wavelet_flow_max_level_mb']} | {r['wavelet_flow_patch_max_level_mb']} | "
                  f"{r['glow_mb'] if r['glow_mb'] is not None else 'does not fit'} |" for r in res["memory"]]
        lines.append("")
    if res.get("highres_memory"):
        h = res["highres_memory"]
        lines += [f"### Peak memory of one training step at {h['side']} px (MB, batch {h['batch']})", "",
                  "| model | level | trains on | MB |", "| --- | --- | --- | --- |"]
        for r in h["levels"]:
            where = "whole images" if r["crop"] is None else f"{r['crop']} px crops"
            lines.append(f"| Wavelet Flow {h['side']}x{h['side']} | {r['level']}: {r['name']} | {where} | "
                         f"{r['mb'] if r['mb'] is not None else 'failed'} |")
        for r in h["glow"]:
            mb = r["mb"] if r["mb"] is not None else f"— ({r.get('note', '')}; extrapolated {r['extrapolated_mb']})"
            lines.append(f"| {'Glow' if r['model'] == 'glow' else 'Glow (residual coupling)'} | whole model | "
                         f"{r['size']} px images | {mb} |")
        lines.append("")
    if res["sampling"]:
        lines += ["### Sampling latency (s, median)", "", "| samples | model | seconds |", "| --- | --- | --- |"]
        lines += [f"| {r['samples']} × {r['size']} px | {r['model']} | {r['seconds']} |" for r in res["sampling"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks compare", description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="tiny budgets, checks that every figure is produced")
    mode.add_argument("--full", action="store_true", help="the README figures")
    p.add_argument("--datasets", default="mnist,cifar10")
    p.add_argument("--budget", type=float, help="seconds per model on MNIST (default 20 min full, 40 s quick)")
    p.add_argument("--cifar-budget", type=float, help="seconds per model on the CIFAR-10 subset")
    p.add_argument("--points", type=int, help="test evaluations along each budget")
    p.add_argument("--device", default="cpu")
    p.add_argument("--wf-parallel", type=int, default=1, help="Wavelet Flow level processes (same total cores)")
    p.add_argument("--batch", type=int, default=64, help="training batch of every model in the time-to-quality runs")
    p.add_argument("--lr", type=float, help="learning rate of every model (default: the library's)")
    p.add_argument("--warmup", type=int, help="warm-up steps of every model (default: the library's)")
    p.add_argument("--wf-config", action="append", default=[], metavar="[DATASET=]FILE",
                   help="JSON file of Wavelet Flow config overrides for the time-to-quality runs (e.g. its levels), "
                        "for every dataset or, as DATASET=FILE, for one (repeatable); the Glows are matched to its "
                        "parameters")
    p.add_argument("--protocol", choices=("runs", "chunks"),
                   help="time to quality: fresh runs of the whole budget (Wavelet Flow also of halved budgets; the "
                        "default for --datasets) or resumed chunks along one budget (the default for --highres and "
                        "--mrcnf)")
    p.add_argument("--against", help=f"comma list of the baselines to run in the time-to-quality runs: "
                                      f"{', '.join(BASELINES)} (default all; 'none': Wavelet Flow alone)")
    p.add_argument("--seed", type=int, default=0, help="seed of every model's training in the time-to-quality runs")
    p.add_argument("--skip", default="", help="comma list of sections to skip: quality,levers,throughput,memory,sampling")
    p.add_argument("--memory-cap-gb", type=float, default=12.0)
    p.add_argument("--test-images", type=int, help="held-out images per evaluation (default 2000 full, 200 quick)")
    p.add_argument("--throughput-sizes", help="comma list (default 32,64,256)")
    p.add_argument("--memory-sizes", help="comma list (default 64,128,256,512 full, 64,128 quick)")
    p.add_argument("--sampling-cases", help="comma list of SIZE:N (default 32:64,256:1)")
    p.add_argument("--ablation", action="store_true",
                   help="also the ablation of the training recipe (the first dataset; see benchmarks/ablation.py)")
    p.add_argument("--ablation-budget", type=float, help="seconds per ablation run (default 10 min full, 10 s quick)")
    p.add_argument("--ablation-variants", help="comma list of variant numbers to run (default: all)")
    p.add_argument("--seeds", type=int, help="runs per ablation variant (default 2 full, 1 quick)")
    p.add_argument("--highres", action="store_true",
                   help="only the high-resolution sections: time to quality on the photos at --highres-sizes "
                        "and the memory of every level of the 1024 px preset against Glow at 256-1024 px")
    p.add_argument("--highres-sizes", default="64,256", help="image sides for the photos' time to quality")
    p.add_argument("--highres-budget", help="comma list: seconds per model at each size (default 600,1200 full)")
    p.add_argument("--highres-batch", help="comma list: batch size at each size (default 64,16)")
    p.add_argument("--keep-best-every", type=int, default=100,
                   help="high-resolution runs: every model validates this often (steps) and is tested with its "
                        "best validation's weights (0: off)")
    p.add_argument("--mrcnf", action="store_true",
                   help="only the MRCNF section: time to quality on MNIST with MRCNF beside Wavelet Flow and the "
                        "Glows, sampling latency of the trained models, and images/s and NFE per level of the trained "
                        "Wavelet Flow and MRCNF (writes results_mrcnf.*)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)  # normflows calls a deprecated torch.lu
    full = a.full
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, a.skip.split(",")))
    budget = a.budget or (1200.0 if full else 40.0)
    cifar_budget = a.cifar_budget or (300.0 if full else 40.0)
    points = a.points or (5 if full else 2)
    res = {"machine": machine(), "command": "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:]),
           "device": a.device, "mode": "full" if full else "quick", "time_to_quality": [], "throughput": [],
           "memory": [], "sampling": []}
    recipe = {k: v for k, v in (("lr", a.lr), ("warmup", a.warmup)) if v is not None}
    against = None if a.against is None else [v for v in a.against.split(",") if v and v != "none"]
    if against is not None and set(against) - set(BASELINES):
        p.error(f"--against: unknown baseline {sorted(set(against) - set(BASELINES))[0]!r}; "
                f"choose from {', '.join(BASELINES)} or none")
    wf_configs: dict[str | None, dict] = {}  # None: every dataset
    for spec in a.wf_config:
        key, _, file = spec.rpartition("=")
        if key and key not in DATASETS:
            p.error(f"--wf-config: unknown dataset {key!r}; choose from {', '.join(DATASETS)}")
        try:
            wf_configs[key or None] = json.loads(Path(file).read_text())
        except (OSError, ValueError) as e:
            p.error(f"--wf-config: cannot read {file}: {e}")
    res["recipe"] = {"lr": TrainOptions.lr, "warmup": TrainOptions.warmup, **recipe}  # what every model trained with
    t0 = time.perf_counter()
    ints = lambda text: [int(v) for v in text.split(",")]  # noqa: E731
    if a.highres:
        sizes = ints(a.highres_sizes)
        budgets = [float(v) for v in (a.highres_budget or ("600,1200" if full else "20,20")).split(",")]
        batches = ints(a.highres_batch or "64,16")
        if "quality" not in skip:
            for size, hb, bs in zip(sizes, budgets, batches):
                res["time_to_quality"].append(time_to_quality(
                    "photos", hb, points, a.test_images or 10**9, a.device, out, a.wf_parallel, bs, image_size=size,
                    keep_best_every=a.keep_best_every, recipe=recipe, protocol=a.protocol or "chunks"))
        if "memory" not in skip:
            res["highres_memory"] = highres_memory(1024 if full else 64, 4, [256, 512, 1024] if full else [32, 64],
                                                   a.device, a.memory_cap_gb)
        skip |= {"quality", "levers", "throughput", "memory", "sampling"}
    if a.mrcnf:
        if "quality" not in skip:
            ttq = time_to_quality("mnist", budget, points, a.test_images or (2000 if full else 200), a.device, out,
                                  a.wf_parallel, 64, mrcnf=True, tag="-mrcnf", recipe=recipe,
                                  protocol=a.protocol or "chunks")
            res["time_to_quality"].append(ttq)
            if "skipped" not in ttq:
                res["trained_levels"] = trained_level_rates(out, ttq, "mnist", 64, 3 if full else 1, a.device)
        skip |= {"quality", "levers", "throughput", "memory", "sampling"}
    if "quality" not in skip:
        for name in a.datasets.split(","):
            res["time_to_quality"].append(time_to_quality(
                name, budget if name == "mnist" else cifar_budget, points, a.test_images or (2000 if full else 200),
                a.device, out, a.wf_parallel, a.batch, recipe=recipe, wf_config=wf_configs.get(name, wf_configs.get(None)),
                against=against, seed=a.seed, protocol=a.protocol or "runs"))
    if a.ablation:
        first = a.datasets.split(",")[0]
        res["ablation"] = ablation(first, SHARED / DATASETS[first], a.ablation_budget or (600.0 if full else 10.0),
                                   a.seeds or (2 if full else 1), a.test_images or (2000 if full else 200), a.device, out,
                                   only=ints(a.ablation_variants) if a.ablation_variants else None, recipe=recipe)
    if "levers" not in skip:
        res["levers"] = [{"dataset": name, **levers(tuple(load_dataset(str(SHARED / DATASETS[name])).image_shape),
                                                    3 if full else 1, a.device, (64, 256) if full else (8, 16))}
                         for name in a.datasets.split(",") if (SHARED / DATASETS[name]).is_file()]
    if "throughput" not in skip:
        sizes = ints(a.throughput_sizes or "32,64,256")
        batches = {s: (64 if s <= 32 else 16 if s <= 64 else 2) if a.device == "cpu" else (64 if s <= 64 else 8) for s in sizes}
        res["throughput"] = throughput(sizes, batches, 3 if full else 1, a.device)
    if "memory" not in skip:
        res["memory"] = memory(ints(a.memory_sizes or ("64,128,256,512" if full else "64,128")), 4, a.device, a.memory_cap_gb)
    if "sampling" not in skip:
        cases = [tuple(int(v) for v in c.split(":")) for c in (a.sampling_cases or "32:64,256:1").split(",")]
        res["sampling"] = sampling_latency(cases, 3 if full else 1, a.device)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    # the high-resolution and MRCNF sections have files of their own
    stem = "results_highres" if a.highres else "results_mrcnf" if a.mrcnf else "results"
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
