"""Defaults against defaults: each model trained by the command a user types, on an otherwise idle machine.

    waveletflow train --data D --out RUN --time-budget T --seed S [--model glow | --model glow-residual]
    waveletflow evaluate RUN --data D --limit 2000 --json

for MNIST and the CIFAR-10 subset, budgets of 300 and 600 s and seeds 0, 1, 2; Wavelet Flow also with budgets of
75 and 150 s, fresh runs, so that the time it needs to reach each Glow's figure can be read off its complete
runs (time to quality, the fresh-runs protocol of ``benchmarks.run``). No flag but data, out, budget and seed:
every other choice (processes, threads, precision, batch, capacity, the kept weights) is the default's.

    python -m benchmarks.defaults                       # every run (resumable: rows in the result file are kept)
    python -m benchmarks.defaults --report              # the tables, from the result file
    python -m benchmarks.defaults --report --readme README.md docs/results/performance.md   # and into those pages

Writes ``benchmarks/results/defaults.json``; the run folders go to ``--work`` (default ``runs/defaults``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.machine import machine
from benchmarks import rows as rowfile
from benchmarks.rows import cell
from benchmarks.readme import markers, write_block
from benchmarks.paths import DATA, REPO, SHARED, level_states

RESULTS = REPO / "benchmarks" / "results" / "defaults.json"
NAMES = {"waveletflow": "Wavelet Flow", "glow": "Glow", "glow-residual": "Glow (residual coupling)"}
BUDGETS = (300, 600)
#: Wavelet Flow's further budgets, for its time-to-quality curve
SWEEP = (75, 150)
SEEDS = (0, 1, 2)
TEST_LIMIT = 2000


def plan(datasets=tuple(DATA), seeds=SEEDS) -> list[tuple[str, str, int, int]]:
    """(dataset, model, budget, seed) of every run, a seed at a time (a partial file holds whole seeds)."""
    out = []
    for seed in seeds:
        for dataset in datasets:
            for budget in (*SWEEP, *BUDGETS):
                for model in NAMES:
                    if budget in BUDGETS or model == "waveletflow":
                        out.append((dataset, model, budget, seed))
    return out


def key(dataset: str, model: str, budget: int, seed: int) -> str:
    return f"{dataset}/{model}/{budget}s/seed{seed}"




def commands(dataset: str, model: str, budget: int, seed: int, run: Path) -> tuple[list[str], list[str]]:
    """The train and evaluate commands of one run, as a user types them."""
    data = str(SHARED / DATA[dataset])
    train = ["waveletflow", "train", "--data", data, "--out", str(run), "--time-budget", str(budget),
             "--seed", str(seed)]
    if model != "waveletflow":
        train += ["--model", model]
    evaluate = ["waveletflow", "evaluate", str(run), "--data", data, "--limit", str(TEST_LIMIT), "--json"]
    return train, evaluate


def run_one(dataset: str, model: str, budget: int, seed: int, work: Path) -> dict:
    run = work / key(dataset, model, budget, seed).replace("/", "_")
    shutil.rmtree(run, ignore_errors=True)  # a run killed before its row was written starts again
    train, evaluate = commands(dataset, model, budget, seed, run)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    print("[defaults]", " ".join(train), flush=True)
    t0 = time.perf_counter()
    done = subprocess.run(train, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{key(dataset, model, budget, seed)} failed: {done.stderr[-2000:]}")
    res = json.loads(subprocess.run(evaluate, env=env, capture_output=True, text=True, check=True).stdout)
    info = json.loads((run / "run.json").read_text())
    meta = json.loads((run / "model.json").read_text())
    from waveletflow.models import build_model

    m = build_model(meta["model_type"], meta["config"], device="meta")
    steps = {name: {"step": state["step"], "best_step": state.get("best_step"), "val_bpd": state.get("val_bpd")}
             for name, state in level_states(run).items()}
    shown = [{str(run): "RUN"}.get(c, c).replace(str(SHARED), "DATA") for c in train]
    return {"key": key(dataset, model, budget, seed), "dataset": dataset, "model": model, "budget_s": budget,
            "seed": seed, "test_bpd": round(res["bits_per_dim"], 5), "test_images": res["images"],
            "levels_bpd": [round(r["bits_per_dim"], 5) for r in res["levels"]], "params": m.num_parameters(),
            "wall_s": round(wall, 1), "training": info.get("training"), "capacity": info.get("capacity"),
            "steps": steps, "command": " ".join(shown)}


def run_all(todo, work: Path) -> None:
    done = {r["key"] for r in rowfile.load(RESULTS)["rows"]}
    for dataset, model, budget, seed in todo:
        if key(dataset, model, budget, seed) in done:
            continue
        row = run_one(dataset, model, budget, seed, work)
        rowfile.add(RESULTS, row, machine())
        print(f"[defaults] {row['key']}: {row['test_bpd']:.4f} bits/dim ({row['wall_s']:.0f} s)", flush=True)


# ----- the report --------------------------------------------------------------------------------
def figures(rows: list[dict], dataset: str, model: str, budget: int) -> list[float]:
    return [r["test_bpd"] for r in sorted(rows, key=lambda r: r["seed"])
            if (r["dataset"], r["model"], r["budget_s"]) == (dataset, model, budget)]


def reach_time(curve: list[tuple[float, float]], goal: float) -> float | None:
    """The budget at which a curve of (budget, bits/dim) of fresh runs first reaches ``goal``, interpolated
    between two complete runs; None when it never does."""
    prev = None
    for t, b in curve:
        if b <= goal:
            if prev is None or prev[1] <= goal:
                return t
            return prev[0] + (prev[1] - goal) / (prev[1] - b) * (t - prev[0])
        prev = (t, b)
    return None


def time_to_quality(rows: list[dict], dataset: str, against: str, budget: int) -> dict:
    """How much sooner Wavelet Flow (its fresh runs by budget) reaches the figure ``against`` reaches in
    ``budget`` s: from the seeds' mean curves, and the range of the per-seed ratios."""
    budgets = sorted({r["budget_s"] for r in rows if r["dataset"] == dataset and r["model"] == "waveletflow"})
    seeds = sorted({r["seed"] for r in rows if r["dataset"] == dataset})
    wf = {b: figures(rows, dataset, "waveletflow", b) for b in budgets}
    goal = figures(rows, dataset, against, budget)
    if not goal or not all(wf.values()):
        return {}
    n = min(len(goal), *(len(v) for v in wf.values()))
    mean_curve = [(b, statistics.mean(v[:n])) for b, v in wf.items()]
    t = reach_time(mean_curve, statistics.mean(goal[:n]))
    per_seed = []
    for i in range(n):
        ti = reach_time([(b, v[i]) for b, v in wf.items()], goal[i])
        per_seed.append(None if ti is None else budget / ti)
    return {"goal": statistics.mean(goal[:n]), "wf_s": t, "ratio": None if t is None else budget / t,
            "seeds": seeds[:n], "per_seed": per_seed}


def lead(rows: list[dict], dataset: str, budget: int) -> tuple[float, str, str] | None:
    """Wavelet Flow's lead over the best Glow (by mean) of one cell: (mean lead in bits/dim, how it stands against
    the seeds' spread, that Glow); None where a contender has no run yet."""
    vals = {m: figures(rows, dataset, m, budget) for m in NAMES}
    glows = {m: v for m, v in vals.items() if m != "waveletflow" and v}
    wf = vals["waveletflow"]
    if not wf or not glows:
        return None
    best = min(glows, key=lambda m: statistics.mean(glows[m]))
    glow = glows[best]
    if min(len(wf), len(glow)) < 2:
        how = "one seed: no spread yet"
    elif max(wf) < min(glow):
        how = "ahead in every seed"
    elif min(wf) > max(glow):
        how = "behind in every seed"
    else:
        how = "within the seeds' spread"
    return statistics.mean(glow) - statistics.mean(wf), how, best


def markdown(result: dict) -> str:
    rows = result["rows"]
    datasets = [d for d in DATA if any(r["dataset"] == d for r in rows)]
    n_seeds = len({r["seed"] for r in rows})
    lines = [f"Machine: {result.get('machine', '?')}  ",
             "Command: `python -m benchmarks.defaults` (each run: `waveletflow train --data D --out RUN "
             "--time-budget T --seed S [--model M]`, then `waveletflow evaluate RUN --data D --limit 2000`)", "",
             f"Test bits/dim, mean (lowest–highest) over seeds {', '.join(map(str, sorted({r['seed'] for r in rows})))}"
             f"; MNIST on its first 2000 test images, the CIFAR-10 subset on all of its 1017.", "",
             "| data | budget | " + " | ".join(NAMES.values()) + " | Wavelet Flow ahead of the best Glow by |",
             "| --- " * (len(NAMES) + 3) + "|"]
    for d in datasets:
        for b in BUDGETS:
            vals = {m: figures(rows, d, m, b) for m in NAMES}
            if not any(vals.values()):
                continue
            said = "–"
            cell_lead = lead(rows, d, b)
            if cell_lead is not None:
                by, how, best = cell_lead
                said = f"{by:+.3f} ({how}; against {NAMES[best]})"
            lines.append(f"| {d} | {b} s | " + " | ".join(cell(vals[m]) for m in NAMES) + f" | {said} |")
    lines += ["", "Parameters and steps of the default models (seed 0):", "",
              "| data | budget | model | parameters | capacity | optimiser steps per level |", "| --- " * 6 + "|"]
    for d in datasets:
        for b in (*SWEEP, *BUDGETS):
            for m in NAMES:
                r = next((r for r in rows if (r["dataset"], r["model"], r["budget_s"], r["seed"]) == (d, m, b, 0)),
                         None)
                if r is None:
                    continue
                cap = r.get("capacity")
                capacity = "preset" if not cap else (f"width {cap['width']}" + (
                    f" (level {cap['level']})" if cap.get("level") is not None else ""))
                steps = ", ".join(str(s["step"]) for s in r["steps"].values())
                lines.append(f"| {d} | {b} s | {NAMES[m]} | {r['params'] / 1e6:.2f} M | {capacity} | {steps} |")
    lines += ["", "Time to quality: the budget Wavelet Flow needs (fresh runs of 75, 150, 300, 600 s; the seeds' mean "
              "curve, interpolated between two complete runs) to reach each Glow's mean figure, against that "
              "Glow's budget; in brackets the lowest and highest ratio of single seeds.", "",
              "| data | against | its budget | its bits/dim | Wavelet Flow needs | ratio |", "| --- " * 6 + "|"]
    for d in datasets:
        for m in [m for m in NAMES if m != "waveletflow"]:
            for b in BUDGETS:
                t = time_to_quality(rows, d, m, b)
                if not t:
                    continue
                seeds = [x for x in t["per_seed"] if x is not None]
                spread = (f" ({min(seeds):.2f}–{max(seeds):.2f})" if len(seeds) > 1 else "")
                if len(seeds) < len(t["per_seed"]):
                    spread += f"; not reached by {len(t['per_seed']) - len(seeds)} seed(s)"
                need = "not reached" if t["wf_s"] is None else f"{t['wf_s']:.0f} s"
                ratio = "–" if t["ratio"] is None else f"**{t['ratio']:.2f}×**{spread}"
                lines.append(f"| {d} | {NAMES[m]} | {b} s | {t['goal']:.3f} | {need} | {ratio} |")
    if n_seeds < len(SEEDS):
        lines += ["", f"(Partial: {n_seeds} of {len(SEEDS)} seeds so far; `python -m benchmarks.defaults` continues.)"]
    return "\n".join(lines) + "\n\n" + verdict(result)


def verdict(result: dict) -> str:
    """The plain sentence of the results: in how many cells Wavelet Flow's defaults lead the best Glow's, by more
    than the seeds' spread in how many, and how much sooner they reach the strongest Glow's figures (against the
    goal of 3×)."""
    rows = result["rows"]
    seeds = sorted({r["seed"] for r in rows})
    cells = [c for d in DATA for b in BUDGETS if (c := lead(rows, d, b)) is not None]
    if not cells:
        return "No runs yet.\n"
    ahead = sum(by > 0 for by, _, _ in cells)
    clear = sum(how == "ahead in every seed" for _, how, _ in cells)
    behind = sum(how == "behind in every seed" for _, how, _ in cells)
    ratios = []
    for d in DATA:
        for b in BUDGETS:
            cell_lead = lead(rows, d, b)
            if cell_lead is not None:
                t = time_to_quality(rows, d, cell_lead[2], b)
                ratios.append(t.get("ratio"))
    reached = [r for r in ratios if r is not None]
    spread = ("one seed, so no spread yet" if len(seeds) < 2 else
              f"by more than the seeds' spread in {clear} of them" + (f", behind in every seed in {behind}" if behind
                                                                       else ""))
    text = (f"Plainly, from seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}: with nothing but data, "
            f"out and budget, Wavelet Flow's defaults are ahead of the best Glow's in {ahead} of {len(cells)} cells "
            f"({spread}).")
    if reached:
        lo, hi = min(reached), max(reached)
        span = f"{lo:.2f}×" if len(reached) == 1 else f"{lo:.2f}–{hi:.2f}×"
        text += (f" Time to quality against the strongest Glow (its budget over the time Wavelet Flow needs to reach "
                 f"its figure, from the seeds' mean curves; above 1 is faster): {span}; the goal of 3× is "
                 f"{'met' if lo >= 3 else 'not met'}.")
    if len(reached) < len(ratios):
        text += f" In {len(ratios) - len(reached)} cell(s) Wavelet Flow does not reach it within 600 s."
    return text + "\n"


def summary(result: dict) -> str:
    """The headline of :func:`markdown`: the machine, the command, the table of test bits/dim and the plain
    sentence of :func:`verdict` (the README's front page holds this; the docs the whole report)."""
    full = markdown(result)
    head = full.split("\n\nParameters and steps", 1)[0] + "\n"
    partial = [line for line in full.splitlines() if line.startswith("(Partial:")]
    return head + ("\n" + partial[0] + "\n" if partial else "") + "\n" + verdict(result)


#: the blocks a page may hold, and what fills each
BLOCKS = {"defaults": markdown, "defaults-summary": summary}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks defaults", description=__doc__.splitlines()[0])
    p.add_argument("--report", action="store_true", help="only print the tables of the result file")
    p.add_argument("--readme", nargs="+", metavar="FILE",
                   help="also write the tables into these Markdown files, between their defaults (the whole report) "
                        "or defaults-summary (the headline) markers")
    p.add_argument("--datasets", default=",".join(DATA))
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    p.add_argument("--work", default="runs/defaults")
    a = p.parse_args(argv)
    if not a.report:
        run_all(plan(a.datasets.split(","), [int(s) for s in a.seeds.split(",")]), Path(a.work))
    result = rowfile.load(RESULTS)
    for page in a.readme or []:
        for name, make in BLOCKS.items():
            if markers(name)[0] in Path(page).read_text():
                write_block(page, name, make(result))
    print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
