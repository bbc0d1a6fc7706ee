"""Beyond this machine, on paper: time to quality of Wavelet Flow with k level workers against Glow with k
data-parallel ranks, from curves and step times measured here.

Inputs, all measured: each level's validation curve (bits per dimension of the level against its optimiser
steps, best so far, as the kept best weights give) from the default runs of ``python -m benchmarks beyond``, the
residual-coupling Glow's curve from the same benchmark's ``glow-residual`` runs (the strongest Glow of the
defaults benchmark), and the seconds of one training step on one worker (one core, one thread, bf16, as ``fit``
takes it): every level of Wavelet Flow at its batch, the Glow at each per-rank batch ``16 / k``.

The model, with its assumptions stated:

* **Wavelet Flow, k workers.** The levels are grouped on k workers as ``--parallel k`` groups them
  (:func:`~waveletflow.training.schedule.group_levels` of the levels' budget shares), and a worker gives each of
  its levels its share of the wall-clock, as ``train`` does. Level l makes ``t · share_l / step_l`` steps in
  ``t`` seconds; the composed model's bits/dim is the sum of the levels' (exact: the levels are independent, no
  communication). A level's quality after n steps is read off its measured curve (the last validation at or
  before step n; beyond the curve's end, its last value: no extrapolation).
* **Glow, k ranks.** The global batch stays the default 16, split over the ranks (16 / k each), so the
  optimiser's trajectory is the single process's and its curve against steps holds unchanged. One step costs
  the per-rank step measured here at batch 16 / k plus a ring all-reduce of the float32 gradients:
  ``2 (k - 1) / k · 4 P / bandwidth + 2 (k - 1) · latency``, at two stated networks.
* Both use the same step-function reading of their curves and the same target: the worse of the two models'
  validation figures after 80% of their measured steps, which both curves pass before their end.

    python -m benchmarks projection [--runs runs/beyond] [--seeds 0,1,2]    # reads the beyond benchmark's runs
    python -m benchmarks projection --report                               # the table, from the result file

Writes ``benchmarks/results/projection.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from pathlib import Path

from benchmarks.paths import DATA, REPO, SHARED
from benchmarks.rows import cell

RESULTS = REPO / "benchmarks" / "results" / "projection.json"
GLOW = "glow-residual"
BATCH = 16
#: Glow's data-parallel ranks: the per-rank batch 16 / k stays a whole number
RANKS = (1, 2, 4, 8, 16)
#: the networks of the all-reduce: name → (bytes/s, seconds of latency per message)
NETWORKS = {"10 Gb/s Ethernet": (1.25e9, 50e-6), "100 Gb/s InfiniBand": (12.5e9, 5e-6)}

Curve = list[tuple[int, float]]


# ----- the model (pure functions of the measured inputs) -------------------------------------------------------

def read_curve(metrics_csv: Path) -> Curve:
    """(step, best validation bits/dim so far) at each validation of a level's ``metrics.csv``."""
    out: Curve = []
    best = math.inf
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("val_bpd"):
                best = min(best, float(row["val_bpd"]))
                out.append((int(row["step"]), best))
    return out


def at(curve: Curve, steps: float) -> float:
    """The curve's value after ``steps`` steps: its last validation at or before them (``inf`` before the first).

    >>> at([(100, 3.0), (200, 2.5)], 150), at([(100, 3.0)], 50)
    (3.0, inf)
    """
    value = math.inf
    for step, v in curve:
        if step > steps:
            break
        value = v
    return value


def shares(level_dims: list[int]) -> dict[int, float]:
    """The levels' shares of a worker's wall-clock, as ``train`` gives them."""
    from waveletflow.training.schedule import budget_shares

    return budget_shares(level_dims, list(range(len(level_dims))))


def level_rates(level_dims: list[int], step_s: list[float], k: int) -> list[float]:
    """Steps per second of each level when the levels are grouped on ``k`` workers as ``--parallel k`` groups
    them, each worker sharing its wall-clock among its levels by their budget shares.

    >>> [round(r, 2) for r in level_rates([1, 1], [0.1, 0.2], 2)]
    [10.0, 5.0]
    """
    from waveletflow.training.schedule import group_levels

    share = shares(level_dims)
    rates = [0.0] * len(level_dims)
    for group in group_levels(share, k):
        total = sum(share[lv] for lv in group)
        for lv in group:
            rates[lv] = share[lv] / total / step_s[lv]
    return rates


def composed(curves: list[Curve], level_dims: list[int], steps: list[float]) -> float:
    """Bits/dim of the whole image after ``steps[l]`` steps of each level: the levels' figures weighted by their
    dimensions."""
    total = sum(level_dims)
    return sum(at(c, n) * d / total for c, d, n in zip(curves, level_dims, steps))


def wavelet_flow_time(curves: list[Curve], level_dims: list[int], step_s: list[float], k: int,
                      target: float) -> float:
    """Seconds until the composed model reaches ``target`` with ``k`` level workers (``inf`` if its curves never
    do). Exact for step-function curves: only the times at which a level passes a validation point can change
    the figure."""
    rates = level_rates(level_dims, step_s, k)
    times = sorted({step / rate for c, rate in zip(curves, rates) for step, _ in c})
    for t in times:
        if composed(curves, level_dims, [rate * t * (1 + 1e-12) for rate in rates]) <= target:
            return t
    return math.inf


def allreduce_s(params: int, k: int, bandwidth: float, latency: float) -> float:
    """Seconds of a ring all-reduce of ``params`` float32 gradients over ``k`` ranks.

    >>> allreduce_s(10**6, 1, 1e9, 1e-5), round(allreduce_s(10**6, 2, 1e9, 1e-5), 6)
    (0.0, 0.00402)
    """
    return 2 * (k - 1) / k * 4 * params / bandwidth + 2 * (k - 1) * latency


def glow_time(curve: Curve, step_s: float, target: float) -> float:
    """Seconds until the Glow's curve reaches ``target`` at ``step_s`` seconds per step (``inf`` if never)."""
    for step, v in curve:
        if v <= target:
            return step * step_s
    return math.inf


#: the target is the worse of the two models' figures after this fraction of their measured steps, so that both
#: curves pass it before their last validation (a target at a curve's very end makes its time hinge on one point)
TARGET_FRACTION = 0.8


def target(wf: list[Curve], level_dims: list[int], glow: Curve, fraction: float = TARGET_FRACTION) -> float:
    """The quality both models reach before the end of their measured curves: the worse of their validation
    figures after ``fraction`` of their steps (every level's own steps for Wavelet Flow)."""
    return max(composed(wf, level_dims, [fraction * c[-1][0] for c in wf]), at(glow, fraction * glow[-1][0]))


def project(row: dict, step_s: dict) -> list[dict]:
    """One line per k of one seed's curves: Wavelet Flow's seconds to the target with k workers (k up to its
    levels), Glow's with k ranks on each network."""
    wf, dims, glow = row["waveletflow"], row["level_dims"], row[GLOW]
    q = target(wf, dims, glow)
    ks = sorted(set(range(1, len(dims) + 1)) | set(RANKS))
    out = []
    for k in ks:
        line = {"k": k, "target": q}
        if k <= len(dims):
            line["waveletflow"] = wavelet_flow_time(wf, dims, step_s["waveletflow"], k, q)
        if str(k) in step_s[GLOW]:
            for net, (bw, lat) in NETWORKS.items():
                per_step = step_s[GLOW][str(k)] + allreduce_s(row["params"][GLOW], k, bw, lat)
                line[net] = glow_time(glow, per_step, q)
        out.append(line)
    return out


# ----- the report ------------------------------------------------------------------------------------------------

def _cell(values: list[float]) -> str:
    if not values or any(math.isinf(v) for v in values):
        return "not reached"
    if len(values) == 1:
        return f"{values[0]:.0f} s"
    return f"{statistics.mean(values):.0f} s ({min(values):.0f}–{max(values):.0f})"


def markdown(result: dict) -> str:
    """The projection's table per data set, its crossing points and its assumptions, from the result file."""
    rows = result.get("rows", [])
    if not rows:
        return ("Not measured yet: `python -m benchmarks projection` (after the default and `glow-residual` runs of "
                "`python -m benchmarks beyond`) writes `benchmarks/results/projection.json`.\n")
    nets = list(NETWORKS)
    lines = ["Command: `python -m benchmarks projection` (one worker = one core; step times measured on the machine "
             "named per data set). "
             "Seconds to the quality both models reach (the worse of their validation figures after "
             f"{TARGET_FRACTION:.0%} of their measured steps), mean "
             "(lowest–highest) over the seeds' curves; Wavelet Flow with k level workers needs no communication, "
             f"Glow with k ranks at the global batch {BATCH} adds a ring all-reduce of its gradients.", ""]
    for dataset in [d for d in DATA if any(r["dataset"] == d for r in rows)]:
        mine = [r for r in rows if r["dataset"] == dataset]
        step_s = result["step_s"][dataset]
        per_seed = [project(r, step_s) for r in mine]
        seeds = ", ".join(str(r["seed"]) for r in mine)
        n_levels = len(mine[0]["level_dims"])
        lines += [f"**{dataset}** (seeds {seeds}; {n_levels} levels; target {cell([p[0]['target'] for p in per_seed])}"
                  f" bits/dim on the validation images; step times: {step_s.get('machine', result.get('machine', '?'))})",
                  "",
                  "| k | Wavelet Flow, k level workers | " + " | ".join(f"Glow, k ranks, {n}" for n in nets) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in nets) + " |"]
        for i, line in enumerate(per_seed[0]):
            k = line["k"]
            wf = [p[i]["waveletflow"] for p in per_seed if "waveletflow" in p[i]]
            cells = [_cell([p[i][n] for p in per_seed]) if n in line else "–" for n in nets]
            lines.append(f"| {k} | {_cell(wf) if wf else '–'} | " + " | ".join(cells) + " |")
        lines += ["", crossing(per_seed, n_levels, nets), ""]
    return "\n".join(lines)


def crossing(per_seed: list[list[dict]], n_levels: int, nets: list[str]) -> str:
    """Where the curves cross: the fewest Glow ranks that match Wavelet Flow with all its level workers."""
    def mean(name: str, k: int) -> float:
        values = [line[name] for p in per_seed for line in p if line["k"] == k and name in line]
        return statistics.mean(values) if values else math.inf

    best_wf = mean("waveletflow", n_levels)
    one = mean("waveletflow", 1)
    parts = [f"Wavelet Flow on {n_levels} workers: {one / best_wf:.2f}× its one-worker time."]
    for net in nets:
        glow_1 = mean(net, 1)
        ks = [k for k in RANKS if mean(net, k) <= best_wf]
        fastest = min(RANKS, key=lambda k: mean(net, k))
        if ks:
            parts.append(f"On {net}, Glow matches it with {ks[0]} ranks.")
        else:
            parts.append(f"On {net}, no rank count up to {RANKS[-1]} matches it: Glow's best is "
                         f"{mean(net, fastest):.0f} s at {fastest} ranks ({glow_1 / mean(net, fastest):.2f}× its "
                         "one-rank time).")
    return " ".join(parts)


BLOCKS = {"projection": markdown}


# ----- the measurement -------------------------------------------------------------------------------------------

def curves_of(run: Path) -> list[Curve]:
    return [read_curve(p) for p in sorted(run.glob("level_*/metrics.csv"))]


def step_seconds(dataset: str, model, model_type: str, batches: list[int], steps: int = 20) -> list[float]:
    """Seconds of one training step on one thread, as ``fit`` takes it (bf16): per level of ``model`` (a copy of it
    trains) at each of ``batches`` (one batch for Wavelet Flow's levels, the per-rank batches for the Glow)."""
    import copy
    import tempfile

    import torch

    from benchmarks.throughput import step_rate
    from waveletflow.data import load_dataset
    from waveletflow.rundir import RunDir
    from waveletflow.training import TrainOptions, split_train_val
    from waveletflow.training.unit import TrainUnit

    data = load_dataset(str(SHARED / DATA[dataset]))
    train_x, val_x = split_train_val(data, 1000)
    out = []
    for level in range(len(model.levels)):
        for b in batches:
            opts = TrainOptions(steps=10**6, batch_size=b, precision="bf16").resolved()
            with tempfile.TemporaryDirectory() as tmp:
                torch.manual_seed(0)
                unit = TrainUnit(copy.deepcopy(model), level, RunDir(tmp), opts, train_x, val_x[:64], data.n_bits).open()
                rate, _ = step_rate(unit, steps)
            out.append(b / rate)
            print(f"[projection] {dataset} {model_type} level {level} batch {b}: {b / rate * 1e3:.1f} ms", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks projection", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=REPO / "runs" / "beyond",
                   help="the run folders of python -m benchmarks beyond (its --work)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--datasets", default=",".join(DATA))
    p.add_argument("--report", action="store_true", help="only print the table of the result file")
    a = p.parse_args(argv)
    if a.report:
        print(markdown(json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}))
        return 0
    import torch

    from benchmarks.machine import machine
    from waveletflow import load

    torch.set_num_threads(1)
    # rows of seeds whose run folders are gone are kept; the step times are measured again on this machine
    result = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"rows": [], "step_s": {}}
    result.update({"command": "python -m benchmarks projection", "networks": NETWORKS})
    for dataset in a.datasets.split(","):
        runs = {s: {m: a.runs / f"{dataset}_{v}_seed{s}" for m, v in (("waveletflow", "default"), (GLOW, GLOW))}
                for s in map(int, a.seeds.split(","))}
        runs = {s: r for s, r in runs.items() if all((p / "run.json").is_file() for p in r.values())}
        if not runs:
            print(f"[projection] {dataset}: no default and glow-residual runs in {a.runs} "
                  "(python -m benchmarks beyond trains them)", flush=True)
            continue
        for seed, r in sorted(runs.items()):
            wf, glow = load(r["waveletflow"]), load(r[GLOW])
            if seed == min(runs):
                result["step_s"][dataset] = {
                    "machine": machine(1),
                    "waveletflow": step_seconds(dataset, wf, "waveletflow", [BATCH]),
                    GLOW: dict(zip(map(str, RANKS), step_seconds(dataset, glow, GLOW, [BATCH // k for k in RANKS]))),
                }
            row = {"key": f"{dataset}/seed{seed}", "dataset": dataset, "seed": seed, "level_dims": list(wf.level_dims),
                   "params": {"waveletflow": wf.num_parameters(), GLOW: glow.num_parameters()},
                   "waveletflow": curves_of(r["waveletflow"]), GLOW: curves_of(r[GLOW])[0]}
            result["rows"] = [x for x in result["rows"] if x["key"] != row["key"]] + [row]
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
