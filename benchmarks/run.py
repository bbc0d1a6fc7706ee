"""Wavelet Flow against Glow and normflows' Glow, side by side on one machine.

    python -m benchmarks.run --quick               # a few minutes: every figure produced, tiny budgets
    python -m benchmarks.run --full                # the README figures (20 min per model on MNIST)
    python -m benchmarks.run --full --device cuda --datasets cifar10

Writes ``results.json``, ``results.md`` and ``time_to_quality_<dataset>.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from benchmarks.ablation import ablation
from benchmarks.ablation import markdown as ablation_markdown
from benchmarks.contenders import (
    GLOWS, NormflowsGlow, Ours, count_params, glow_scales, matched_glow_config, matched_normflows_hidden,
    waveletflow_default,
)
from benchmarks.levers import levers, step_seconds
from benchmarks.levers import markdown as levers_markdown
from benchmarks.machine import machine
from waveletflow.data import load_dataset
from waveletflow.models import build_model, default_config, waveletflow_config
from waveletflow.training import TrainOptions

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WAVELETFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
DATASETS = {"mnist": "mnist.npz", "cifar10": "cifar10_partial.npz", "photos": "photos/photos512"}


# ----- 1. time to quality --------------------------------------------------------------------------
def time_to_quality(name: str, budget: float, points: int, test_images: int, device: str, out: Path,
                    wf_parallel: int, batch_size: int, image_size: int | None = None,
                    keep_best_every: int | None = None, mrcnf: bool = False, tag: str = "",
                    sample_n: int = 64, recipe: dict | None = None, wf_config: dict | None = None,
                    against: list[str] | None = None, seed: int = 0, protocol: str = "chunks") -> dict:
    """Every contender trained for ``budget`` seconds (see ``protocol``) on dataset ``name`` (:data:`DATASETS`,
    its images resized to ``image_size`` if given), test bits/dim after each chunk, then the median seconds to
    draw ``sample_n`` samples from each trained model. With ``keep_best_every`` every model validates that often
    and is tested with its best validation's weights (early stopping, for small datasets). ``mrcnf`` adds MRCNF
    with its default configuration (not matched in parameters: its preset is the CPU one); runs go to
    ``OUT/runs/NAME{tag}``. ``recipe`` (``lr``, ``warmup``) replaces the library's defaults for every model;
    ``wf_config`` overrides Wavelet Flow's config (the Glows are matched to its parameters); ``against`` names the
    baselines to run (keys of :data:`BASELINES`; default all); ``seed`` seeds every model's training.

    ``protocol`` ``chunks`` trains each model in ``points`` resumed chunks of ``budget / points`` (each ending with
    its own decay) and tests after each; ``runs`` trains each baseline once, a fresh run of the whole budget as a
    user runs ``train --time-budget``, and Wavelet Flow in fresh runs of ``budget / 2**k`` for k = points-1 … 0
    (:func:`sweep_budgets`), each with its own single decay, so that the time Wavelet Flow needs to reach a
    baseline's final bits/dim is read off complete runs."""
    recipe = dict(recipe or {})
    options = {**recipe, **({} if not keep_best_every else {"keep_best": True, "eval_every": keep_best_every})}
    path = SHARED / DATASETS[name]
    if not path.exists():
        return {"dataset": name, "skipped": f"{path} not found"}
    data = load_dataset(str(path), image_size=image_size)
    test = data.x_test[:test_images]
    shape = data.image_shape
    wf_cfg = waveletflow_config(tuple(shape), 8, **copy.deepcopy(wf_config)) if wf_config else waveletflow_default(shape, 8)
    target = count_params(build_model("waveletflow", wf_cfg))
    glow_cfgs = {name: matched_glow_config(model_type, shape, 8, target) for name, (model_type, _, _) in GLOWS.items()}
    nf_scales, nf_steps = glow_scales(shape), glow_cfgs["Glow (residual coupling)"].n_steps
    hidden = matched_normflows_hidden(shape, nf_scales, nf_steps, target)
    runs = out / "runs" / ((name if image_size is None else f"{name}{image_size}") + tag)
    shutil.rmtree(runs, ignore_errors=True)
    contenders = [
        Ours("Wavelet Flow", "waveletflow", wf_cfg, runs / "waveletflow", data, str(path), device, batch_size,
             wf_parallel, seed=seed, options=options),
        *(Ours(name, model_type, glow_cfgs[name], runs / model_type, data, str(path), device, batch_size,
               seed=seed, options=options) for name, (model_type, _, _) in GLOWS.items() if wanted(model_type, against)),
    ]
    if mrcnf:
        contenders.append(Ours("MRCNF", "mrcnf", default_config("mrcnf", shape, 8), runs / "mrcnf", data, str(path),
                               device, batch_size, options=options))
    try:
        if wanted("normflows", against):
            contenders.append(NormflowsGlow(shape, nf_scales, nf_steps, hidden, data, device, batch_size, seed=seed,
                                            keep_best_every=keep_best_every, **recipe))
    except ImportError:
        print("note: normflows is not installed (pip install normflows); its Glow is left out", file=sys.stderr)
    if image_size is not None:
        name = f"{name}{image_size}"
    result = {"dataset": name, "budget_s": budget, "test_images": len(test), "batch": batch_size,
              "keep_best_every": keep_best_every, "seed": seed, "protocol": protocol, "models": [],
              **({"wf_config": wf_config} if wf_config else {})}
    for c in contenders:
        params = c.params()
        curve = []
        if protocol == "chunks":
            for _ in range(points):
                c.train_for(budget / points)
                curve.append(_tested(c, test, name))
        elif c is contenders[0]:  # Wavelet Flow: fresh runs of growing budgets, the whole budget last
            for b in sweep_budgets(budget, points):
                run = c if b == budget else c.fresh(c.run_dir.with_name(f"{c.run_dir.name}-{b:g}s"))
                run.train_for(b)
                curve.append({"budget_s": round(b, 1), **_tested(run, test, name)})
        else:
            c.train_for(budget)
            curve.append({"budget_s": round(budget, 1), **_tested(c, test, name)})
        sample_s = c.sample_seconds(sample_n, 3)
        print(f"[{name}] {c.name}: {sample_n} samples in {sample_s:.3f} s", flush=True)
        result["models"].append({"name": c.name, "params": params, "param_ratio": round(params / target, 3),
                                 "curve": curve, "sample_n": sample_n, "sample_s": round(sample_s, 4),
                                 **({"run": str(c.run_dir.relative_to(out))} if isinstance(c, Ours) else {})})
    wf = result["models"][0]
    for m in result["models"][1:]:
        result.setdefault("speedups", []).append(speedup(wf["curve"], m["curve"], m["name"]))
    plot_curves(result, out / f"time_to_quality_{name}{tag}.png")
    return result


def sweep_budgets(budget: float, points: int) -> list[float]:
    """The budgets of Wavelet Flow's fresh runs in the ``runs`` protocol: ``budget / 2**k``, k = points-1 … 0."""
    return [budget / 2 ** k for k in range(points - 1, -1, -1)]


def _tested(c, test, name: str) -> dict:
    """Test bits/dim of contender ``c`` as trained so far, with its training seconds."""
    bpd = c.test_bpd(test, best=True) if isinstance(c, NormflowsGlow) else c.test_bpd(test)
    print(f"[{name}] {c.name}: {c.trained_s:.0f} s, test {bpd:.4f} bits/dim", flush=True)
    return {"train_s": round(c.trained_s, 1), "test_bpd": round(bpd, 4)}


#: the baselines of the time-to-quality runs, by the key ``--against`` takes
BASELINES = ("glow", "glow-residual", "normflows")


def wanted(key: str, against: list[str] | None) -> bool:
    """Whether the baseline ``key`` (one of :data:`BASELINES`) is run: all are when ``against`` is None."""
    return against is None or key in against


def speedup(wf_curve: list[dict], other_curve: list[dict], other: str) -> dict:
    """How much sooner Wavelet Flow reaches the test bits/dim that ``other`` reaches at the end of its budget."""
    goal, t_end = other_curve[-1]["test_bpd"], other_curve[-1]["train_s"]
    prev_t, prev_b = 0.0, None
    for p in wf_curve:
        if p["test_bpd"] <= goal:
            t = p["train_s"]
            if prev_b is not None and prev_b > goal:  # interpolate between the two measured points
                t = prev_t + (prev_b - goal) / (prev_b - p["test_bpd"]) * (p["train_s"] - prev_t)
            return {"against": other, "goal_bpd": goal, "wavelet_flow_s": round(t, 1), "speedup": round(t_end / t, 2)}
        prev_t, prev_b = p["train_s"], p["test_bpd"]
    return {"against": other, "goal_bpd": goal, "wavelet_flow_s": None, "speedup": None,
            "note": f"Wavelet Flow did not reach {goal:.3f} bits/dim within its budget (ended at {wf_curve[-1]['test_bpd']:.3f})"}


def plot_curves(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for m in result["models"]:
        line = ax.plot([p["train_s"] / 60 for p in m["curve"]], [p["test_bpd"] for p in m["curve"]], "o-", ms=3,
                       label=f"{m['name']} ({m['params'] / 1e6:.2f} M)")[0]
        if len(m["curve"]) == 1:  # one run of the whole budget: its figure as a level to reach
            ax.axhline(m["curve"][0]["test_bpd"], color=line.get_color(), ls="--", lw=0.8)
    ax.set_xlabel("training time (min)")
    ax.set_ylabel("test bits/dim")
    ax.set_title(f"{result['dataset']}: {result['test_images']} test images")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def trained_level_rates(out: Path, result: dict, data_name: str, batch: int, repeats: int, device: str) -> list[dict]:
    """Per level of the trained Wavelet Flow and MRCNF of a time-to-quality ``result``: images/s of one training
    step at ``batch`` (forward, backward, Adam step; for MRCNF the loss includes its regularisers) and, for MRCNF,
    the ODE function evaluations (NFE) of that step's forward solve (training solver) and of a test pass of the
    same images (evaluation solver). NFE depend on the trained dynamics, hence measured on trained models."""
    from waveletflow import load
    from waveletflow.metrics import LN2

    data = load_dataset(str(SHARED / DATASETS[data_name]))
    images = data.x_test[:batch]
    rows = []
    for m in result["models"]:
        if m["name"] not in ("Wavelet Flow", "MRCNF"):
            continue
        model = load(out / m["run"], device)
        names = model.level_names()
        test_nfe = model.bits_per_dim(images, data_bits=data.n_bits, batch_size=batch).nfe
        for level in range(len(model.levels)):
            x = model.prepare(images, torch.Generator().manual_seed(level), data.n_bits)
            dims = model.level_dims[level]

            def loss(v, lv=level, d=dims):
                o = model.objective([lv], v)
                return o.nll / (d * LN2) + o.reg

            model.train()
            nfe = model.objective([level], x).nfe
            secs = step_seconds(model, loss, x, repeats)
            row = {"model": m["name"], "level": level, "what": names[level], "params": model.num_parameters(level),
                   "batch": batch, "images_per_s": round(batch / secs, 1), "train_nfe": nfe,
                   "test_nfe": None if test_nfe is None else test_nfe[level]}
            rows.append(row)
            print(f"[levels] {row}", flush=True)
    return rows


# ----- shared model builders for 2-4 ---------------------------------------------------------------
def models_for(size: int, contenders: list[str]) -> dict:
    shape = (3, size, size)
    wf_cfg = waveletflow_config(shape, 8)
    wf = build_model("waveletflow", wf_cfg)
    out = {"Wavelet Flow": wf}
    if "glow" in contenders:
        for name, (model_type, _, _) in GLOWS.items():
            out[name] = build_model(model_type, default_config(model_type, shape, 8))
    if "normflows" in contenders:
        try:
            from benchmarks.contenders import normflows_glow

            out["normflows Glow"] = normflows_glow(shape, glow_scales(shape), 8, 64)
        except ImportError:
            pass
    return out


# ----- 2. throughput -------------------------------------------------------------------------------
def throughput(sizes: list[int], batches: dict[int, int], repeats: int, device: str) -> list[dict]:
    rows = []
    for size in sizes:
        b = batches[size]
        x = torch.rand(b, 3, size, size, device=device)
        for name, model in models_for(size, ["glow", "normflows"]).items():
            model = model.to(device).train()
            if name == "Wavelet Flow":  # a training image passes through every level once
                total = 0.0
                for level in range(len(model.levels)):
                    crop = model.level_crop(level)
                    xl = x[:, :, :crop, :crop] if crop else x
                    total += step_seconds(model, lambda v, lv=level: model.objective([lv], v).nll, xl, repeats)
            elif name == "normflows Glow":
                total = step_seconds(model, lambda v: -model.log_prob(v, None), x, repeats)
            else:
                total = step_seconds(model, lambda v: -model.log_prob(v), x, repeats)
            rows.append({"size": size, "model": name, "batch": b, "images_per_s": round(b / total, 2)})
            print(f"[throughput] {size} px {name}: {b / total:.2f} images/s", flush=True)
    return rows


# ----- 3. memory -----------------------------------------------------------------------------------
MEMORY_PROBE = r"""
import json, os, sys, threading, time, torch
from waveletflow.models import build_model, default_config, waveletflow_config
size, what, level, crop, batch, device = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
shape = (3, size, size)
steps = 0
if what != "wf":  # glow or glow-residual, whole images
    model = build_model(what, default_config(what, shape, 8)).to(device)
    fn = lambda v: -model.log_prob(v)
else:  # crop -1: the level as the preset configures it; 0: on whole images; > 0: on crops of that side
    cfg = waveletflow_config(shape, 8)
    levels = [lc.to_dict() for lc in cfg.levels]
    if crop >= 0:
        levels[level]["crop"] = crop or None
    model = build_model("waveletflow", waveletflow_config(shape, 8, levels=levels)).to(device)
    crop = model.level_crop(level) or 0
    steps = model.input_steps([level])  # as training draws it: the low-pass the level refines
    fn = lambda v: model.objective([level], v, steps=steps).nll
side = (crop or size) >> steps
x = torch.rand(batch, 3, side, side, device=device)
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * page
peak, running = [rss()], [True]
def sample():  # the CPU allocator keeps no peak statistic: sample the resident set during the step
    while running[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.0005)
if device == "cuda":
    torch.cuda.reset_peak_memory_stats(); start = torch.cuda.memory_allocated()
else:
    base = rss(); t = threading.Thread(target=sample, daemon=True); t.start()
try:
    fn(x).mean().backward()
    if device == "cuda":
        used = torch.cuda.max_memory_allocated() - start
    else:
        running[0] = False; t.join(); used = max(peak[0], rss()) - base
    print(json.dumps({"peak_bytes": used}))
except (torch.cuda.OutOfMemoryError if device == "cuda" else MemoryError):
    print(json.dumps({"peak_bytes": None}))
"""


def _probe(size: int, what: str, level: int, crop: int, batch: int, device: str) -> int | None:
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(size), what, str(level), str(crop), str(batch), device],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        return None  # killed for memory, or failed to allocate
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]


def memory(sizes: list[int], batch: int, device: str, cap_gb: float) -> list[dict]:
    """Peak memory of one training step: the costliest Wavelet Flow level, with and without patch-wise training
    (top level on half-size crops), against a full-image Glow, for growing sizes until Glow no longer fits."""
    rows, glow_fits = [], True
    for size in sizes:
        wf = build_model("waveletflow", waveletflow_config((3, size, size), 8))
        n = len(wf.levels)
        per_level = [_probe(size, "wf", lv, 0, batch, device) for lv in range(n)]  # every level on whole images
        top_patch = _probe(size, "wf", n - 1, size // 2, batch, device)
        patched = per_level[:-1] + [top_patch]
        glow = _probe(size, "glow-residual", 0, 0, batch, device) if glow_fits else None
        if glow is None or glow > cap_gb * 2**30:
            glow_fits = False
        row = {"size": size, "batch": batch,
               "wavelet_flow_max_level_mb": _mb(_peak(per_level)),
               "wavelet_flow_patch_max_level_mb": _mb(_peak(patched)),
               "wavelet_flow_levels_mb": [_mb(p) for p in per_level],
               "glow_mb": _mb(glow) if glow_fits or glow is not None else None}
        rows.append(row)
        print(f"[memory] {size} px: Wavelet Flow max level {row['wavelet_flow_max_level_mb']} MB "
              f"(patches {row['wavelet_flow_patch_max_level_mb']} MB), Glow {row['glow_mb']} MB", flush=True)
    return rows


def highres_memory(side: int, batch: int, glow_sizes: list[int], device: str, cap_gb: float) -> dict:
    """Peak memory of one training step of every level of the ``side`` px preset as it trains (its crops, its
    input drawn at its own resolution), and of both Glows on whole images of ``glow_sizes`` at the same batch.
    A Glow whose measured peak at the previous size, times the pixel ratio, passes ``cap_gb`` is not attempted:
    its row gives that extrapolation."""
    model = build_model("waveletflow", waveletflow_config((3, side, side), 8))
    names = model.level_names()
    levels = []
    for lv in range(len(model.levels)):
        peak = _probe(side, "wf", lv, -1, batch, device)
        levels.append({"level": lv, "name": names[lv], "crop": model.level_crop(lv), "mb": _mb(peak)})
        print(f"[highres memory] {side} px level {lv}: {levels[-1]['mb']} MB", flush=True)
    glows = []
    for model_type in ("glow", "glow-residual"):
        prev = None
        for size in glow_sizes:
            row = {"model": model_type, "size": size, "mb": None, "extrapolated_mb": None}
            guess = None if prev is None else prev[1] * (size / prev[0]) ** 2
            if guess is not None and guess > cap_gb * 2**30:
                row["extrapolated_mb"] = _mb(guess)
                row["note"] = f"not attempted: {guess / 2**30:.1f} GB extrapolated from {prev[0]} px exceeds {cap_gb:g} GB"
            else:
                peak = _probe(size, model_type, 0, 0, batch, device)
                row["mb"] = _mb(peak)
                if peak is None:
                    row["note"] = "failed to allocate"
                    if guess is not None:
                        row["extrapolated_mb"] = _mb(guess)
                else:
                    prev = (size, peak)
            glows.append(row)
            print(f"[highres memory] {model_type} {size} px: {row['mb']} MB {row.get('note', '')}", flush=True)
    return {"side": side, "batch": batch, "levels": levels, "glow": glows}


def _mb(b):
    return None if b is None else round(b / 2**20, 1)


def _peak(per_level):
    """The largest peak of the levels; None when a level's probe failed (so a failure never looks like a fit)."""
    return None if any(p is None for p in per_level) else max(per_level)


# ----- 4. sampling latency -------------------------------------------------------------------------
@torch.no_grad()
def sampling_latency(cases: list[tuple[int, int]], repeats: int, device: str) -> list[dict]:
    rows = []
    for size, n in cases:
        for name, model in models_for(size, ["glow", "normflows"]).items():
            model = model.to(device).eval()
            fn = lambda: model.sample(n)  # noqa: E731 - both libraries name it sample(n)
            times = []
            for i in range(repeats + 1):
                t0 = time.perf_counter()
                fn()
                if device == "cuda":
                    torch.cuda.synchronize()
                if i:
                    times.append(time.perf_counter() - t0)
            rows.append({"size": size, "samples": n, "model": name, "seconds": round(statistics.median(times), 4)})
            print(f"[sampling] {n} × {size} px {name}: {statistics.median(times):.3f} s", flush=True)
    return rows


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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
