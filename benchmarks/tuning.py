"""Equal tuning: every contender gets the same small grid, each trial a short fresh run scored on validation images
only, and the best trial of each then runs the full budget with three seeds.

    python -m benchmarks tuning                    # a data set at a time: its trials, then its final runs (resumable)
    python -m benchmarks tuning --check            # each contender's best two trials again, for the full budget
    python -m benchmarks tuning --report           # the tables, from the result file

The grid, the same for every contender (Wavelet Flow, Glow, Glow with residual coupling, normflows' Glow): learning rate
{0.001, 0.002, 0.004} × depth {half, as is, twice} the flow steps of the default model for the budget (each
level's, for Wavelet Flow), the width re-solved so that the parameters stay those of the default, × batch
{16, 32}: 18 trials of ``TRIAL_S`` seconds per contender and data set, seed 0. A trial is

    waveletflow train --model M --data D --out RUN --time-budget 75 --config SHAPE.json --lr LR --batch-size B
    waveletflow evaluate RUN --data D --split val --json     # the training images the run held out

so no trial sees a test image. normflows' Glow has no command line: it trains in this process with the library's
recipe (Adam, warm-up, Polyak averaging, the final decay, the best validation's weights kept every
``eval_every`` steps), its budget counted from before its data is loaded, as ``train`` counts it, and it is scored on
the same held-out training images. Its model: the residual Glow's scales and steps, the hidden width matched to
Wavelet Flow's parameters (as in the defaults benchmark). The best trial's learning rate, depth and batch then
train the default model of the full budget (its capacity as ``--time-budget`` fits it, reshaped at the same
parameters), seeds 0, 1, 2,
tested on MNIST's first 2000 and the CIFAR-10 subset's 1017 test images. Every trial is in the result file
(``benchmarks/results/tuning.json``), with its wall-clock time, parameters and each level's optimiser steps: the
search is recorded, not only its winner.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import rows as rowfile
from benchmarks.rows import cell
from benchmarks.machine import machine
from benchmarks.paths import DATA, REPO, SHARED, level_steps
from waveletflow.models import build_model, default_config
from waveletflow.models.capacity import fit_capacity

RESULTS = REPO / "benchmarks" / "results" / "tuning.json"
CONTENDERS = {"waveletflow": "Wavelet Flow", "glow": "Glow", "glow-residual": "Glow (residual coupling)",
              "normflows": "normflows Glow"}
#: the contender that trains in this process (the peer library's Glow), not by the command line
NORMFLOWS = "normflows"
LRS = (0.001, 0.002, 0.004)
DEPTHS = (0.5, 1.0, 2.0)
BATCHES = (16, 32)
TRIAL_S = 75
BUDGET_S = 300
SEEDS = (0, 1, 2)
TEST_LIMIT = 2000
WIDTHS = range(4, 1025, 2)
#: the trials of each contender that ``--check`` trains again for the full budget: the best and the runner-up
CHECK_RANKS = (1, 2)
#: the images of each data set (C, H, W)
SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


# ----- the shapes: depth against width at the default's parameters ------------------------------------------
def base_config(model_type: str, shape: tuple[int, int, int], budget_s: float) -> dict:
    """The config ``train --time-budget budget_s`` gives a new model of ``model_type`` (its fitted capacity); for
    normflows' Glow, the residual Glow's scales and steps with the hidden width that matches Wavelet Flow's
    parameters."""
    if model_type == NORMFLOWS:
        from benchmarks.contenders import matched_normflows_hidden

        glow = base_config("glow-residual", shape, budget_s)
        target = _params("waveletflow", base_config("waveletflow", shape, budget_s))
        return {"image_shape": list(shape), "n_scales": glow["n_scales"], "n_steps": glow["n_steps"],
                "hidden": matched_normflows_hidden(shape, glow["n_scales"], glow["n_steps"], target)}
    config = default_config(model_type, shape, 8)
    choice = fit_capacity(model_type, shape, budget_s, "cpu")
    if choice is not None:
        config = default_config(model_type, shape, 8, choice.apply(config))
    return config.to_dict()


def _params(model_type: str, config: dict, level: int | None = None) -> int:
    if model_type == NORMFLOWS:
        from benchmarks.contenders import count_params, normflows_glow

        return count_params(normflows_glow(tuple(config["image_shape"]), config["n_scales"], config["n_steps"],
                                           config["hidden"]))
    model = build_model(model_type, config, device="meta")
    return model.num_parameters(level)


def _closest_width(model_type: str, config: dict, target: int, set_width, level: int | None) -> dict:
    best = None
    for width in WIDTHS:
        trial = set_width(json.loads(json.dumps(config)), width)
        p = _params(model_type, trial, level)
        if best is None or abs(p - target) < abs(best[1] - target):
            best = (trial, p)
        if p > target:
            break
    return best[0]


def reshaped(model_type: str, config: dict, depth: float) -> dict:
    """``config`` with ``depth`` × its flow steps (at least one) and the width that keeps its parameters closest
    to the original's: per level for Wavelet Flow, the coupling networks' width for a Glow."""
    if depth == 1.0:
        return config
    config = json.loads(json.dumps(config))
    if model_type == NORMFLOWS:
        from benchmarks.contenders import matched_normflows_hidden

        target = _params(model_type, config)
        config["n_steps"] = max(1, round(config["n_steps"] * depth))
        config["hidden"] = matched_normflows_hidden(tuple(config["image_shape"]), config["n_scales"], config["n_steps"],
                                                    target)
        return config
    if model_type == "waveletflow":
        for i in range(len(config["levels"])):
            target = _params(model_type, config, i)
            config["levels"][i]["n_steps"] = max(1, round(config["levels"][i]["n_steps"] * depth))

            def set_width(c, w, i=i):
                c["levels"][i]["width"] = w
                return c

            config = _closest_width(model_type, config, target, set_width, i)
        return config
    target = _params(model_type, config)
    config["n_steps"] = max(1, round(config["n_steps"] * depth))

    def set_glow_width(c, w):
        c["width"] = w
        return c

    return _closest_width(model_type, config, target, set_glow_width, None)


@functools.lru_cache(maxsize=None)
def _shape(model_type: str, shape: tuple[int, int, int], budget_s: float, depth: float) -> str:
    """:func:`reshaped` of :func:`base_config`, as JSON: computed once per contender, budget and depth of a run."""
    return json.dumps(reshaped(model_type, base_config(model_type, shape, budget_s), depth))


# ----- the runs --------------------------------------------------------------------------------------------
def trials() -> list[tuple[float, float, int]]:
    """(learning rate, depth, batch) of every trial: the same grid for every contender."""
    return list(itertools.product(LRS, DEPTHS, BATCHES))


def trial_key(dataset: str, model: str, lr: float, depth: float, batch: int) -> str:
    return f"trial/{dataset}/{model}/lr{lr:g}/depth{depth:g}/batch{batch}"


def final_key(dataset: str, model: str, seed: int) -> str:
    return f"final/{dataset}/{model}/seed{seed}"


def check_key(dataset: str, model: str, rank: int) -> str:
    return f"check/{dataset}/{model}/rank{rank}"


def ranked_trials(rows: list[dict], dataset: str, model: str) -> list[dict]:
    """The trials of ``model`` on ``dataset``, lowest validation bits/dim first (none before every trial ran; a
    trial that diverged before it had a figure is left out)."""
    mine = [r for r in rows if r["kind"] == "trial" and (r["dataset"], r["model"]) == (dataset, model)]
    if len(mine) < len(trials()):
        return []
    return sorted((r for r in mine if r["val_bpd"] is not None), key=lambda r: r["val_bpd"])


def best_trial(rows: list[dict], dataset: str, model: str) -> dict | None:
    """The trial of ``model`` on ``dataset`` with the lowest validation bits/dim (None before every trial ran;
    a trial that diverged before it had a figure never wins)."""
    ranked = ranked_trials(rows, dataset, model)
    return ranked[0] if ranked else None


def _env() -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


#: the errors of ``train`` that end a trial, not the benchmark: a learning rate of the grid too high for a shape
DIVERGED = ("non-finite",)


def _run(cmd: list[str], allowed: tuple[str, ...] = (), fatal: bool = True) -> tuple[str, str | None]:
    """The command's output and None; or, when it failed with an error line that holds one of ``allowed`` (any
    error line when not ``fatal``), its output and that line. Any other failure stops the benchmark."""
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    if done.returncode == 0:
        return done.stdout, None
    lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
    if not fatal or any(a in lines[-1] for a in allowed):
        return done.stdout, lines[-1]
    raise SystemExit(f"{' '.join(cmd[:3])} failed: {done.stderr[-2000:]}")


def train_and_score(dataset: str, model: str, config: dict, lr: float, batch: int, budget: int, seed: int,
                    run: Path, split: str) -> dict:
    """Train one fresh run by the command line and evaluate it on ``split`` (``val`` or ``test``); normflows' Glow
    in this process (:func:`train_normflows`)."""
    if model == NORMFLOWS:
        return train_normflows(dataset, config, lr, batch, budget, seed, split)
    shutil.rmtree(run, ignore_errors=True)  # a run killed before its row was written starts again
    run.parent.mkdir(parents=True, exist_ok=True)
    cfg = run.with_name(run.name + ".config.json")
    cfg.write_text(json.dumps({k: v for k, v in config.items() if k != "display_max"}))
    data = str(SHARED / DATA[dataset])
    train = ["waveletflow", "train", "--model", model, "--data", data, "--out", str(run), "--time-budget",
             str(budget), "--seed", str(seed), "--config", str(cfg), "--lr", f"{lr:g}", "--batch-size", str(batch),
             "--quiet", "--no-curves"]
    evaluate = ["waveletflow", "evaluate", str(run), "--data", data, "--split", split, "--json"]
    if split == "test":
        evaluate += ["--limit", str(TEST_LIMIT)]
    print("[tuning]", " ".join(train), flush=True)
    t0 = time.perf_counter()
    _, diverged = _run(train, DIVERGED)
    wall = time.perf_counter() - t0
    shown = [{str(run): "RUN", str(cfg): "SHAPE.json"}.get(c, c).replace(str(SHARED), "DATA") for c in train]
    out = {"wall_s": round(wall, 1), "params": _params(model, config), "steps": level_steps(run),
           "command": " ".join(shown)}
    if diverged:  # its last good checkpoint, if it wrote one, is what it trained
        out["diverged"] = diverged
    scored, failed = _run(evaluate, fatal=not diverged)
    if failed:  # a diverged run that wrote no checkpoint has no figure
        return {"bpd": None, "images": 0, **out}
    res = json.loads(scored)
    return {"bpd": round(res["bits_per_dim"], 5), "images": res["images"], **out}


def train_normflows(dataset: str, config: dict, lr: float, batch: int, budget: int, seed: int, split: str) -> dict:
    """normflows' Glow trained in this process for ``budget`` seconds counted from before its data is loaded, with
    the library's recipe and its best validation's weights kept, scored on ``split`` as ``evaluate`` scores ours.
    As ``train`` does, it keeps back the time of a validation (measured once, on the untrained model) so that its
    final validation ends inside the budget."""
    from benchmarks.contenders import NormflowsGlow
    from waveletflow.data import load_dataset
    from waveletflow.errors import Diverged
    from waveletflow.training import TrainOptions

    t0 = time.perf_counter()
    data = load_dataset(str(SHARED / DATA[dataset]))
    glow = NormflowsGlow(tuple(config["image_shape"]), config["n_scales"], config["n_steps"], config["hidden"], data,
                         "cpu", batch, lr=lr, seed=seed, keep_best_every=TrainOptions.eval_every)
    n = len(data.x_train)
    t_val = time.perf_counter()
    glow.test_bpd(data.x_train[n - glow.n_val:])  # the cost of a validation, kept back for the final one
    t_val = time.perf_counter() - t_val
    diverged = None
    try:
        glow.train_for(max(0.0, budget - (time.perf_counter() - t0) - t_val))
    except Diverged as exc:  # as a trial of ours that diverged: scored by its best validation's weights, if any
        diverged = str(exc)
    wall = time.perf_counter() - t0
    images = data.x_train[n - glow.n_val:] if split == "val" else data.x_test[:TEST_LIMIT]
    bpd = glow.test_bpd(images, best=True)
    return {"bpd": round(bpd, 5) if math.isfinite(bpd) else None, "images": len(images), "wall_s": round(wall, 1),
            **({"diverged": diverged} if diverged else {}),
            "params": glow.params(), "steps": {"level_00": glow.step},
            "command": f"NormflowsGlow(n_scales={config['n_scales']}, n_steps={config['n_steps']}, "
            f"hidden={config['hidden']}, lr={lr:g}, batch_size={batch}, seed={seed})"
            f".train_for({budget}) in this process"}


def schedule(datasets: list[str], models: list[str]) -> list[tuple[str, str, str, object]]:
    """The order of the runs, ``(kind, dataset, model, trial or seed)``: a data set at a time, its trials and then
    its final runs, the contenders taking turns (trial 1 of each, then trial 2 of each, ...; seed 0 of each, then
    seed 1 ...). A benchmark that stops part-way has then run the contenders of a data set equally far, and runs
    resumed on another machine fall on every contender alike.

    >>> [(k, m, t) for k, _, m, t in schedule(["mnist"], ["a", "b"])][:3]
    [('trial', 'a', (0.001, 0.5, 16)), ('trial', 'b', (0.001, 0.5, 16)), ('trial', 'a', (0.001, 0.5, 32))]
    """
    out: list[tuple[str, str, str, object]] = []
    for dataset in datasets:
        out += [("trial", dataset, m, t) for t in trials() for m in models]
        out += [("final", dataset, m, s) for s in SEEDS for m in models]
    return out


def train_full_budget(dataset: str, model: str, trial: dict, seed: int, run: Path, split: str) -> dict:
    """A trial's settings (learning rate, depth, batch) on the full budget's model, trained for ``BUDGET_S``
    seconds and scored on ``split`` (:func:`train_and_score`)."""
    config = json.loads(_shape(model, SHAPES[dataset], BUDGET_S, trial["depth"]))
    return train_and_score(dataset, model, config, trial["lr"], trial["batch"], BUDGET_S, seed, run, split)


def run_all(datasets: list[str], models: list[str], work: Path) -> None:
    """Every run of :func:`schedule`, skipping the rows the result file holds."""
    for kind, dataset, model, what in schedule(datasets, models):
        shape = SHAPES[dataset]
        done = {r["key"] for r in rowfile.load(RESULTS)["rows"]}
        if kind == "trial":
            lr, depth, batch = what
            k = trial_key(dataset, model, lr, depth, batch)
            if k in done:
                continue
            got = train_and_score(dataset, model, json.loads(_shape(model, shape, TRIAL_S, depth)), lr,
                                  batch, TRIAL_S, 0, work / k.replace("/", "_"), "val")
            row = {"key": k, "kind": "trial", "dataset": dataset, "model": model, "lr": lr, "depth": depth,
                   "batch": batch, "budget_s": TRIAL_S, "seed": 0, "val_bpd": got.pop("bpd"), **got}
            rowfile.add(RESULTS, row, machine())
            print(f"[tuning] {k}: validation " + (f"{row['val_bpd']:.4f} bits/dim" if row["val_bpd"] is not None
                                                   else "none (diverged)"), flush=True)
            continue
        seed = what
        k = final_key(dataset, model, seed)
        if k in done:
            continue
        best = best_trial(rowfile.load(RESULTS)["rows"], dataset, model)
        if best is None:
            raise SystemExit(f"error: every trial of {model} on {dataset} diverged; no setting to train")
        got = train_full_budget(dataset, model, best, seed, work / k.replace("/", "_"), "test")
        row = {"key": k, "kind": "final", "dataset": dataset, "model": model, "budget_s": BUDGET_S,
               "seed": seed, "tuning": {"lr": best["lr"], "depth": best["depth"], "batch": best["batch"],
                                        "val_bpd": best["val_bpd"], "trial": best["key"]},
               "bits_per_dim": got.pop("bpd"), **got}
        rowfile.add(RESULTS, row, machine())
        print(f"[tuning] {k}: test {row['bits_per_dim']:.4f} bits/dim", flush=True)


def run_checks(datasets: list[str], models: list[str], work: Path) -> None:
    """Whether a trial's ranking holds for the full budget: the best :data:`CHECK_RANKS` trials of each contender
    trained again for ``BUDGET_S`` seconds (the full budget's shape at the trial's depth, seed 0) and scored on the
    same validation images, the tuning's own criterion; a data set at a time, the contenders in turn, skipping
    the rows the result file holds."""
    for dataset in datasets:
        for rank in CHECK_RANKS:
            for model in models:
                k = check_key(dataset, model, rank)
                rows = rowfile.load(RESULTS)["rows"]
                if k in {r["key"] for r in rows}:
                    continue
                ranked = ranked_trials(rows, dataset, model)
                if len(ranked) < rank:
                    raise SystemExit(f"error: {model} on {dataset} has no trial of rank {rank} to check; "
                                     "run `python -m benchmarks tuning` first")
                t = ranked[rank - 1]
                got = train_full_budget(dataset, model, t, 0, work / k.replace("/", "_"), "val")
                row = {"key": k, "kind": "check", "dataset": dataset, "model": model, "rank": rank,
                       "trial": t["key"], "lr": t["lr"], "depth": t["depth"], "batch": t["batch"],
                       "trial_val_bpd": t["val_bpd"], "budget_s": BUDGET_S, "seed": 0, "val_bpd": got.pop("bpd"),
                       **got}
                rowfile.add(RESULTS, row, machine())
                print(f"[tuning] {k}: validation at {BUDGET_S} s " + (f"{row['val_bpd']:.4f} bits/dim"
                      if row["val_bpd"] is not None else "none (diverged)"), flush=True)


def machines(rows: list[dict], dataset: str) -> str:
    """Which machine ran a data set's trials and its final runs (each with its count where there were several:
    at equal wall-clock a faster machine trains more steps, so such runs are not alike)."""
    parts = []
    for kind, name in (("trial", "trials"), ("final", "final runs")):
        cpus = [r.get("cpu", "?") for r in rows if (r["kind"], r["dataset"]) == (kind, dataset)]
        if cpus:
            names = sorted(set(cpus), key=cpus.index)
            parts.append(f"{name}: " + ("; ".join(f"{c} ({cpus.count(c)} runs)" for c in names)
                                        if len(names) > 1 else names[0]))
    return f"{dataset}: " + ", ".join(parts)


# ----- the report ------------------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    rows = result.get("rows", [])
    if not rows:
        return ("Not measured yet: `python -m benchmarks tuning` runs the grid for every contender (about 3 hours per "
                "data set on two CPU cores; resumable), and these tables are then generated from "
                "`benchmarks/results/tuning.json`.\n")
    datasets = [d for d in DATA if any(r["dataset"] == d for r in rows)]
    lines = ["Machines: " + "; ".join(machines(rows, d) for d in datasets) + "  ",
             f"Command: `python -m benchmarks tuning`: {len(trials())} trials of {TRIAL_S} s per contender "
             f"(learning rate × depth at the same parameters × batch), scored on the validation images; the best "
             f"trial's settings then train for {BUDGET_S} s, seeds {', '.join(map(str, SEEDS))}, tested on the test "
             "images (mean, lowest–highest).", "",
             "| data | model | trials run | best trial: lr, depth, batch | its validation bits/dim | "
             "validation bits/dim of the trials (best–worst) | test bits/dim, tuned |", "| --- " * 7 + "|"]
    for d in datasets:
        for m, name in CONTENDERS.items():
            mine = [r for r in rows if r["kind"] == "trial" and (r["dataset"], r["model"]) == (d, m)]
            if not mine:
                continue
            scored = [r["val_bpd"] for r in mine if r["val_bpd"] is not None]
            diverged = sum(1 for r in mine if r.get("diverged") or r["val_bpd"] is None)
            if not scored:
                lines.append(f"| {d} | {name} | {len(mine)} of {len(trials())} (all diverged) | – | – | – | – |")
                continue
            best = min((r for r in mine if r["val_bpd"] is not None), key=lambda r: r["val_bpd"])
            worst = max(scored)
            finals = [r["bits_per_dim"] for r in sorted(rows, key=lambda r: r.get("seed", 0))
                      if r["kind"] == "final" and (r["dataset"], r["model"]) == (d, m)
                      and r["bits_per_dim"] is not None]
            ran = f"{len(mine)} of {len(trials())}" + (f" ({diverged} diverged)" if diverged else "")
            lines.append(f"| {d} | {name} | {ran} | {best['lr']:g}, ×{best['depth']:g}, "
                         f"{best['batch']} | {best['val_bpd']:.3f} | {best['val_bpd']:.3f}–{worst:.3f} | "
                         f"{cell(finals)} |")
    finals = [r for r in rows if r["kind"] == "final" and r["seed"] == SEEDS[0]]
    if finals:
        lines += ["", f"The final runs of seed {SEEDS[0]}: parameters and optimiser steps in {BUDGET_S} s (per level "
                  "for Wavelet Flow; the machine decides them, so they say how far each model got):", "",
                  "| data | model | parameters | optimiser steps |", "| --- " * 4 + "|"]
        for r in sorted(finals, key=lambda r: (list(DATA).index(r["dataset"]), list(CONTENDERS).index(r["model"]))):
            steps = ", ".join(str(n) for n in r.get("steps", {}).values()) or "–"
            lines.append(f"| {r['dataset']} | {CONTENDERS[r['model']]} | {r['params'] / 1e6:.2f} M | {steps} |")
    checked = check_table(rows)
    if checked:
        lines += ["", checked.rstrip("\n")]
    for d in datasets:
        ran = sum(1 for r in rows if r["kind"] == "trial" and r["dataset"] == d)
        whole = len(trials()) * len(CONTENDERS)
        if ran < whole:
            lines += ["", f"Partial on {d}: {ran} of {whole} trials have run (the contenders in turn), so each "
                      "best trial is the best so far; the final runs start when every trial has run."]
        edges = grid_edges(rows, d)
        if edges:
            lines += ["", edges]
        said = verdict(rows, d)
        if said:
            lines += ["", said]
    return "\n".join(lines) + "\n"


def check_table(rows: list[dict]) -> str:
    """The check of :func:`run_checks`: per contender, its best two trials' validation bits/dim after the trial and
    after the full budget, and in how many the best trial stayed ahead (empty before a check ran)."""
    checks = {(r["dataset"], r["model"], r["rank"]): r for r in rows if r["kind"] == "check"}
    if not checks:
        return ""
    lines = [f"Does a trial's ranking hold for the full budget? (`python -m benchmarks tuning --check`: each "
             f"contender's best two trials trained again for {BUDGET_S} s, seed 0, scored on the same validation "
             f"images; validation bits/dim after {TRIAL_S} s → after {BUDGET_S} s.)", "",
             "| data | model | best trial: lr, depth, batch | its validation | runner-up: lr, depth, batch | "
             "its validation | best still ahead |", "| --- " * 7 + "|"]
    held = []
    for d in DATA:
        for m, name in CONTENDERS.items():
            pair = [checks.get((d, m, rank)) for rank in CHECK_RANKS]
            if not any(pair):
                continue
            cells = []
            for r in pair:
                if r is None:
                    cells += ["–", "not run yet"]
                    continue
                after = "none (diverged)" if r["val_bpd"] is None else f"{r['val_bpd']:.3f}"
                cells += [f"{r['lr']:g}, ×{r['depth']:g}, {r['batch']}", f"{r['trial_val_bpd']:.3f} → {after}"]
            held_cell = "–"
            if all(r is not None for r in pair):
                a, b = (r["val_bpd"] for r in pair)
                ahead = b is None or (a is not None and a <= b)
                held.append(ahead)
                held_cell = ("yes" if ahead else "no") + ("" if a is None or b is None else f" ({b - a:+.3f})")
            lines.append(f"| {d} | {name} | " + " | ".join(cells) + f" | {held_cell} |")
    if held:
        lines += ["", f"The best trial stayed ahead of the runner-up at {BUDGET_S} s for {sum(held)} of {len(held)} "
                  "contenders checked (in brackets, the runner-up's figure minus the best's: above 0, the tuning's "
                  "choice was right)."]
    return "\n".join(lines) + "\n"


def grid_edges(rows: list[dict], dataset: str) -> str:
    """Which contenders' best trial lies on the grid's edge in learning rate or depth: there a wider grid might
    have found better, for whichever contender it is (empty while no contender has run every trial)."""
    bests = {name: best_trial(rows, dataset, m) for m, name in CONTENDERS.items()}
    bests = {name: best for name, best in bests.items() if best is not None}
    if not bests:
        return ""
    edges: dict[str, list[str]] = {}
    for name, best in bests.items():
        for label, grid, value in ((f"learning rate {best['lr']:g}", LRS, best["lr"]),
                                   (f"depth ×{best['depth']:g}", DEPTHS, best["depth"])):
            if value in (min(grid), max(grid)):
                edges.setdefault(label, []).append(name)
    if not edges:
        return f"On {dataset} every best trial lies inside the grid in learning rate and depth."
    said = "; ".join(f"{k} for {', '.join(v)}" for k, v in edges.items())
    return (f"On {dataset} some best trials lie on the grid's edge (a wider grid might do better there): {said}.")


def verdict(rows: list[dict], dataset: str) -> str:
    """Tuned Wavelet Flow against the strongest tuned Glow on ``dataset``, seed by seed, at the same budget; empty
    until Wavelet Flow and a Glow both have every seed's final run."""
    finals = {(r["model"], r["seed"]): r["bits_per_dim"] for r in rows
              if r["kind"] == "final" and r["dataset"] == dataset and r["bits_per_dim"] is not None}
    complete = [m for m in CONTENDERS if all((m, s) in finals for s in SEEDS)]
    glows = [m for m in complete if m != "waveletflow"]
    if "waveletflow" not in complete or not glows:
        return ""
    mean = {m: sum(finals[m, s] for s in SEEDS) / len(SEEDS) for m in complete}
    strongest = min(glows, key=mean.get)
    diffs = [finals[strongest, s] - finals["waveletflow", s] for s in SEEDS]
    ahead = sum(d > 0 for d in diffs)
    gap = mean[strongest] - mean["waveletflow"]
    return (f"Plainly, on {dataset} after equal tuning ({BUDGET_S} s, seeds {', '.join(map(str, SEEDS))}): the "
            f"strongest tuned Glow is {CONTENDERS[strongest]} ({mean[strongest]:.3f}); Wavelet Flow "
            f"({mean['waveletflow']:.3f}) is {'ahead of' if gap > 0 else 'behind'} it by {abs(gap):.3f} bits/dim "
            f"on average, ahead in {ahead} of {len(SEEDS)} seeds (seed by seed, the Glow's figure minus Wavelet "
            f"Flow's: {', '.join(f'{d:+.3f}' for d in diffs)}; above 0, Wavelet Flow is ahead).")


def summary(result: dict) -> str:
    """The README's lines: each data set's verdict after equal tuning, or how far its tuning has run."""
    rows = result.get("rows", [])
    lines = []
    for d in DATA:
        said = verdict(rows, d)
        if said:
            said = f"{said[:-1]}; {machines(rows, d)}."
        else:
            ran = sum(1 for r in rows if r["kind"] == "trial" and r["dataset"] == d)
            finals = sum(1 for r in rows if r["kind"] == "final" and r["dataset"] == d)
            said = (f"On {d}, equal tuning has not finished: {ran} of {len(trials()) * len(CONTENDERS)} trials and "
                    f"{finals} of {len(SEEDS) * len(CONTENDERS)} final runs are in `benchmarks/results/tuning.json`.")
        lines.append(said)
    return "\n\n".join(lines) + "\n"


BLOCKS = {"tuning": markdown, "tuning-summary": summary}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks tuning", description=__doc__.splitlines()[0])
    p.add_argument("--report", action="store_true", help="only print the tables of the result file")
    p.add_argument("--datasets", default=",".join(DATA))
    p.add_argument("--models", default=",".join(CONTENDERS))
    p.add_argument("--check", action="store_true",
                   help="train each contender's best two trials again for the full budget (after the grid)")
    p.add_argument("--work", default="runs/tuning")
    a = p.parse_args(argv)
    for given, known in ((a.datasets, DATA), (a.models, CONTENDERS)):
        unknown = sorted(set(given.split(",")) - set(known))
        if unknown:
            p.error(f"unknown {unknown[0]!r}; choose among {', '.join(known)}")
    if a.check:
        run_checks(a.datasets.split(","), a.models.split(","), Path(a.work))
    elif not a.report:
        run_all(a.datasets.split(","), a.models.split(","), Path(a.work))
    print(markdown(rowfile.load(RESULTS)), end="")  # python -m benchmarks report writes it into the pages
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
