"""High resolution under hard budgets: time to quality on the photographs at 64 and 256 px, fresh runs, Glow at the
published number of scales, 3 seeds.

Each (size, seed) is one row: Wavelet Flow's default preset trained in fresh runs of B/4, B/2 and B seconds (its
levels in parallel processes, as ``train``'s ``--parallel auto`` trains them), each
Glow (as published, with residual coupling, normflows') once for B seconds, all at matched parameters and with
Glow's published number of scales (log2(side) − 2: 4 at 64 px, 6 at 256 px), every model validating every
:data:`KEEP_BEST_EVERY` steps and tested with its best validation's weights (a few hundred training photographs
overfit). A budget is hard: it holds start-up, validation and checkpoints, and each row records how long every run
took, so an overrun shows in the table.

    python -m benchmarks highres                    # every row not yet in the file (resumable)
    python -m benchmarks highres --sizes 64 --seeds 0
    python -m benchmarks highres --report           # the table, from the result file

A run that diverges (the loss non-finite step after step) is run again, fresh, at half the learning rate, whichever
contender it is; the row records it. A stopped row keeps the contenders it had finished (their entries in the
work folder) and trains only the others when the command is run again.

Writes ``benchmarks/results/highres.json``; the runs go to ``--work`` (default ``runs/highres``).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from benchmarks import rows as rowfile
from benchmarks.machine import machine
from benchmarks.memory import glow_scales as published_scales
from benchmarks.paths import REPO, level_steps
from benchmarks.rows import cell

RESULTS = REPO / "benchmarks" / "results" / "highres.json"
#: side → (budget in seconds, batch): the sizes and batches of the earlier high-resolution comparison; 300 s at 64 px
#: (it had 240 s), its 420 s at 256 px, both now hard
SIZES = {64: (300.0, 64), 256: (420.0, 16)}
SEEDS = (0, 1, 2)
#: fresh runs of Wavelet Flow per row: B/4, B/2, B
POINTS = 3
KEEP_BEST_EVERY = 100


def key(size: int, seed: int) -> str:
    return f"photos{size}/seed{seed}"


def plan(sizes=tuple(SIZES), seeds=SEEDS) -> list[tuple[int, int]]:
    """(size, seed) of every row, a seed at a time (a partial file holds whole seeds first)."""
    return [(size, seed) for seed in seeds for size in sizes]


def run_one(size: int, seed: int, work: Path, budget: float | None = None, batch: int | None = None,
            test_images: int = 10**9) -> dict:
    """One row: the time-to-quality runs of every contender at ``size`` px with ``seed``."""
    from benchmarks.timetoquality import time_to_quality

    b, bs = SIZES.get(size, (budget, batch))
    budget, batch = budget or b, batch or bs
    ttq = time_to_quality("photos", budget, POINTS, test_images, "cpu", work / f"seed{seed}", "auto", batch,
                          image_size=size, keep_best_every=KEEP_BEST_EVERY, seed=seed, protocol="runs",
                          glow_n_scales=published_scales(size), resume=True)
    if "skipped" in ttq:
        raise SystemExit(f"photos not found: {ttq['skipped']}")
    longest = max(p["train_s"] / p["budget_s"] for m in ttq["models"] for p in m["curve"])
    return {"key": key(size, seed), "size": size, "seed": seed, "budget_s": budget, "batch": batch,
            "test_images": ttq["test_images"], "glow_n_scales": ttq["glow_n_scales"], "longest_over_budget": round(longest, 3),
            "models": [{k: m[k] for k in ("name", "params", "param_ratio", "curve", "sample_n", "sample_s")}
                       for m in ttq["models"]],
            "speedups": ttq.get("speedups", [])}


def fill_steps(row: dict, work: Path) -> bool:
    """Give each point of ``row`` that lacks them the steps its run made, from the run's folder under ``work`` (for
    rows kept from before the points recorded steps); whether any were added. normflows' Glow has no folder."""
    from benchmarks.timetoquality import MODEL_TYPES, run_folder, sweep_budgets

    runs = work / f"seed{row['seed']}" / "runs" / f"photos{row['size']}"
    added = False
    for m in row["models"]:  # the points' budgets unrounded: B/4, B/2, B for Wavelet Flow, B for a Glow
        for p, b in zip(m["curve"], sweep_budgets(row["budget_s"], len(m["curve"]))):
            if "steps" in p or m["name"] not in MODEL_TYPES:
                continue
            steps = level_steps(run_folder(runs, MODEL_TYPES[m["name"]], b, row["budget_s"]))
            if steps:
                p["steps"], added = steps, True
    return added


def run_all(todo, work: Path, **kw) -> None:
    for row in rowfile.load(RESULTS)["rows"]:
        if fill_steps(row, work):
            rowfile.add(RESULTS, row, row["cpu"])
    done = {r["key"] for r in rowfile.load(RESULTS)["rows"]}
    for size, seed in todo:
        if key(size, seed) in done:
            continue
        row = run_one(size, seed, work, **kw)
        rowfile.add(RESULTS, row, machine())
        print(f"[highres] {row['key']}: " + ", ".join(f"{m['name']} {m['curve'][-1]['test_bpd']:.4f}"
                                                   for m in row["models"]), flush=True)


# ----- the report --------------------------------------------------------------------------------
def mean_curve(curves: list[list[dict]]) -> list[dict]:
    """The seeds' mean curve: point by point (the same budgets in every seed), mean seconds and mean bits/dim.

    >>> mean_curve([[{"train_s": 10.0, "test_bpd": 3.0}], [{"train_s": 12.0, "test_bpd": 2.0}]])
    [{'train_s': 11.0, 'test_bpd': 2.5}]
    """
    return [{"train_s": statistics.mean(p["train_s"] for p in pts), "test_bpd": statistics.mean(p["test_bpd"] for p in pts)}
            for pts in zip(*curves)]


def ratios(rows: list[dict]) -> list[dict]:
    """Per Glow: the time-to-quality ratio read off the seeds' mean curves, each seed's, and in how many seeds Wavelet
    Flow reached the Glow's final figure within its budget."""
    from benchmarks.timetoquality import speedup

    names = [m["name"] for m in rows[0]["models"][1:]]
    out = []
    for name in names:
        pairs = [(r["models"][0]["curve"], next(m["curve"] for m in r["models"] if m["name"] == name)) for r in rows]
        wf_mean, glow_mean = mean_curve([wf for wf, _ in pairs]), mean_curve([g for _, g in pairs])
        mean = speedup(wf_mean, glow_mean, name)
        each = [speedup(wf, g, name)["speedup"] for wf, g in pairs]
        out.append({"against": name, "mean_curves": mean["speedup"], "goal_bpd": mean["goal_bpd"],
                    "seeds": each, "reached": sum(s is not None for s in each),
                    # reached at Wavelet Flow's first point: the ratio is only a lower bound
                    "lower_bound": wf_mean[0]["test_bpd"] <= glow_mean[-1]["test_bpd"],
                    "seeds_lower_bound": [wf[0]["test_bpd"] <= g[-1]["test_bpd"] for wf, g in pairs]})
    return out


def markdown(result: dict) -> str:
    rows = result.get("rows", [])
    if not rows:
        return ("Not measured yet: `python -m benchmarks highres` runs every size and seed (about 4 hours on two CPU "
                "cores, resumable), and this table is then generated from `benchmarks/results/highres.json`.\n")
    cpus = sorted({r.get("cpu", result.get("machine", "?")) for r in rows})
    lines = [f"Machine: {'; '.join(cpus)}  ",
             "Command: `python -m benchmarks highres` (the photographs of `photos512` at each size; Wavelet Flow in fresh "
             f"runs of B/4, B/2 and B, every Glow one run of B, all at matched parameters; Glow at the published number "
             f"of scales; best validation every {KEEP_BEST_EVERY} steps kept; mean (lowest–highest) over seeds). The "
             "ratio is how much sooner Wavelet Flow reaches the Glow's final test bits/dim, read off the seeds' mean "
             "curves (beside it, each seed's; – where Wavelet Flow did not reach it within B, a ratio of at most 1). "
             "≥: reached at Wavelet Flow's first point (B/4), so only a lower bound.", ""]
    for size in sorted({r["size"] for r in rows}):
        sel = sorted((r for r in rows if r["size"] == size), key=lambda r: r["seed"])
        first = sel[0]
        lines += [f"**{size} px**, B = {first['budget_s']:g} s, batch {first['batch']}, Glow with "
                  f"{first['glow_n_scales']} scales, seeds {', '.join(str(r['seed']) for r in sel)}; "
                  f"the longest run took {max(r['longest_over_budget'] for r in sel):.2f}× its budget.", "",
                  "| model | parameters | test bits/dim at B | ratio, mean curves | ratio per seed | reached |",
                  "| --- | --- | --- | --- | --- | --- |"]
        speed = {s["against"]: s for s in ratios(sel)}
        for i, m in enumerate(first["models"]):
            bpd = cell([r["models"][i]["curve"][-1]["test_bpd"] for r in sel])
            if i == 0:
                lines.append(f"| {m['name']} | {m['params'] / 1e6:.2f} M | {bpd} | – | – | – |")
                continue
            s = speed[m["name"]]
            shown = "–" if s["mean_curves"] is None else ("≥ " if s["lower_bound"] else "") + f"{s['mean_curves']:.2f}×"
            each = ", ".join("–" if v is None else ("≥ " if low else "") + f"{v:.2f}×"
                             for v, low in zip(s["seeds"], s["seeds_lower_bound"]))
            lines.append(f"| {m['name']} | {m['params'] / 1e6:.2f} M | {bpd} | {shown} | {each} | "
                         f"{s['reached']} of {len(sel)} |")
        retried = [f"{m['name']}, seed {r['seed']}" + (f" (B/{round(r['budget_s'] / p['budget_s']):d})"
                                                          if p["budget_s"] != r["budget_s"] else "")
                   + f": {' → '.join(f'{v:g}' for v in [*p['diverged_lr'], p['lr']])}"
                   for r in sel for m in r["models"] for p in m["curve"] if p.get("diverged_lr")]
        lines += ["", steps_line(sel)]
        if retried:
            lines += ["", "Diverged (the loss non-finite step after step) and run again, fresh, at half the learning "
                      "rate, the rule for every contender; the figures are the runs that trained: "
                      + "; ".join(retried) + "."]
        lines.append("")
    if len({r["seed"] for r in rows}) < len(SEEDS):
        lines.append(f"(Partial: {len({r['seed'] for r in rows})} of {len(SEEDS)} seeds so far; "
                     "`python -m benchmarks highres` continues.)")
    return "\n".join(lines).rstrip("\n") + "\n"


def steps_line(rows: list[dict]) -> str:
    """The optimiser steps each contender made in its run of B, lowest–highest over ``rows`` (Wavelet Flow's over its
    levels too: they train in parallel, each with its own count).

    >>> r = {"models": [{"name": "Wavelet Flow", "curve": [{"steps": {"level_00": 900, "level_01": 120}}]},
    ...                 {"name": "Glow", "curve": [{"steps": {"level_00": 521}}]}, {"name": "normflows Glow", "curve": [{}]}]}
    >>> print(steps_line([r]))
    Optimiser steps in the run of B: Wavelet Flow 120–900 per level (its levels in parallel); Glow 521; normflows Glow not recorded.
    """
    parts = []
    for i, m in enumerate(rows[0]["models"]):
        got = [r["models"][i]["curve"][-1].get("steps") for r in rows]
        counts = [n for s in got if s for n in s.values()]
        if not counts:
            parts.append(f"{m['name']} not recorded")
            continue
        span = f"{min(counts):,}" if min(counts) == max(counts) else f"{min(counts):,}–{max(counts):,}"
        if any(s and len(s) > 1 for s in got):
            span += " per level (its levels in parallel)"
        if not all(got):
            span += f" (recorded in {sum(map(bool, got))} of {len(got)} seeds)"
        parts.append(f"{m['name']} {span}")
    over = " (lowest–highest over seeds)" if len(rows) > 1 else ""
    return f"Optimiser steps in the run of B{over}: " + "; ".join(parts) + "."


def summary(result: dict) -> str:
    """The README's sentences: per size, Wavelet Flow's default against the strongest Glow (the lowest mean final
    bits/dim), seed by seed, and how much sooner it reaches that Glow's final figure."""
    rows = result.get("rows", [])
    parts = []
    for size in sorted(SIZES):
        sel = sorted((r for r in rows if r["size"] == size), key=lambda r: r["seed"])
        if not sel:
            parts.append(f"at {size} px, not measured yet")
            continue
        final = {m["name"]: [r["models"][i]["curve"][-1]["test_bpd"] for r in sel]
                 for i, m in enumerate(sel[0]["models"])}
        wf_name, *glows = final
        best = min(glows, key=lambda n: statistics.mean(final[n]))
        ahead = [g - w for w, g in zip(final[wf_name], final[best])]
        s = next(x for x in ratios(sel) if x["against"] == best)
        seeds = [v for v in s["seeds"] if v is not None]
        if s["mean_curves"] is None or not seeds:
            sooner = f"it reaches that figure within B in {s['reached']} of {len(sel)} seeds"
        else:
            sooner = (f"it reaches that figure {'at least ' if s['lower_bound'] else ''}{s['mean_curves']:.2f}× "
                      f"sooner (the seeds' mean curves; per seed {min(seeds):.2f}–{max(seeds):.2f}×, reached in "
                      f"{s['reached']} of {len(sel)})")
        parts.append(f"at {size} px (B = {sel[0]['budget_s']:g} s, seeds {', '.join(str(r['seed']) for r in sel)}) "
                     f"Wavelet Flow's default ends at {cell(final[wf_name])} and the strongest Glow, {best}, at "
                     f"{cell(final[best])}: Wavelet Flow {'ahead' if statistics.mean(ahead) > 0 else 'behind'} by "
                     f"{abs(statistics.mean(ahead)):.3f} bits/dim on average, ahead in {sum(a > 0 for a in ahead)} "
                     f"of {len(ahead)} seeds; {sooner}")
    return ("Plainly, on the photographs under hard budgets (`python -m benchmarks highres`, every Glow at the "
            "published number of scales, matched by parameters): " + "; ".join(parts) + ".\n")


BLOCKS = {"highres": markdown, "highres-summary": summary}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks highres", description=__doc__.splitlines()[0])
    p.add_argument("--report", action="store_true", help="only print the table of the result file")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)))
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    p.add_argument("--work", default="runs/highres")
    a = p.parse_args(argv)
    if not a.report:
        sizes = [int(s) for s in a.sizes.split(",")]
        unknown = sorted(set(sizes) - set(SIZES))
        if unknown:
            p.error(f"no budget for {unknown[0]} px; choose among {', '.join(map(str, SIZES))}")
        run_all(plan(sizes, [int(s) for s in a.seeds.split(",")]), Path(a.work))
    print(markdown(rowfile.load(RESULTS)), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
