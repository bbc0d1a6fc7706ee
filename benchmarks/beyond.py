"""Beyond the paper: the reviewers' questions (the wavelet, global context, noisy training and denoising) answered
at equal wall-clock, each variant one flag away from the default command.

    waveletflow train --data D --out RUN --time-budget 300 --seed S [VARIANT FLAGS]
    waveletflow evaluate RUN --data D --limit 2000 --json
    waveletflow quality RUN --data D --n N --json [--denoise]        # N: 2000 (MNIST), all 1017 (CIFAR-10 subset)

Variants, one factor at a time from the default: the wavelet (``--wavelet cdf53``, ``cdf97``), the detail levels'
context (``--context none``, ``dilated``, ``attention``), noisy training (``--noise-std 0.05``, ``0.1``; their
samples scored as drawn and after ``--denoise``), and both Glows of the defaults benchmark at the same budget:
the strongest, with residual coupling (``--model glow-residual``), and Glow as published (``--model glow``).
Seeds 0, 1, 2; FD and KID in the feature classifier's space at temperature 1: KID is the primary figure, and FD∞
(FD extrapolated to infinitely many samples) is shown beside FD, whose bias depends on the number of samples.

    python -m benchmarks.beyond                    # every run (resumable: rows in the result file are kept)
    python -m benchmarks.beyond --report           # the tables, from the result file
    python -m benchmarks.beyond --report --readme docs/results/beyond.md

Writes ``benchmarks/results/beyond.json``; the run folders go to ``--work`` (default ``runs/beyond``); seed 0's
first 64 samples of each variant go to ``docs/results/beyond/`` (PNG grids).
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

from benchmarks import rows as rowfile
from benchmarks.rows import cell
from benchmarks.machine import machine
from benchmarks.readme import markers, write_block
from benchmarks.paths import DATA, REPO, SHARED

RESULTS = REPO / "benchmarks" / "results" / "beyond.json"
GRIDS = REPO / "docs" / "results" / "beyond"
#: quality samples per data set: 2000 for MNIST, every test image of the CIFAR-10 subset
QUALITY_N = {"mnist": 2000, "cifar10": 1017}
TEST_LIMIT = 2000
BUDGET = 300
SEEDS = (0, 1, 2)
#: variant → (its flags, the question it answers)
VARIANTS: dict[str, tuple[list[str], str]] = {
    "default": ([], "the default (Haar, the preset's context, no noise)"),
    "cdf53": (["--wavelet", "cdf53"], "wavelet"),
    "cdf97": (["--wavelet", "cdf97"], "wavelet"),
    "context-none": (["--context", "none"], "context"),
    "context-dilated": (["--context", "dilated"], "context"),
    "context-attention": (["--context", "attention"], "context"),
    "noise-0.05": (["--noise-std", "0.05"], "noise"),
    "noise-0.1": (["--noise-std", "0.1"], "noise"),
    "glow-residual": (["--model", "glow-residual"], "the strongest Glow"),
    "glow": (["--model", "glow"], "Glow as published"),
}


#: the context of each data set's default model (its preset's): that context variant is the default run itself
DEFAULT_CONTEXT = {"mnist": "dilated", "cifar10": "none"}


def key(dataset: str, variant: str, seed: int) -> str:
    return f"{dataset}/{variant}/seed{seed}"


def same_as_default(dataset: str, variant: str) -> bool:
    """Whether ``variant`` trains the default model of ``dataset`` again (not run; the table says so)."""
    return variant == f"context-{DEFAULT_CONTEXT[dataset]}"


def plan(datasets=tuple(DATA), seeds=SEEDS, variants=tuple(VARIANTS)) -> list[tuple[str, str, int]]:
    """(dataset, variant, seed) of every run, a seed at a time (a partial file holds whole seeds first); a variant
    that is the default model again is left out."""
    return [(d, v, s) for s in seeds for d in datasets for v in variants if not same_as_default(d, v)]


def commands(dataset: str, variant: str, seed: int, run: Path) -> dict[str, list[str]]:
    """The commands of one run, as a user types them: train, evaluate, and quality (and quality --denoise for a
    noisy variant)."""
    data = str(SHARED / DATA[dataset])
    out = {"train": ["waveletflow", "train", "--data", data, "--out", str(run), "--time-budget", str(BUDGET),
                     "--seed", str(seed), *VARIANTS[variant][0]],
           "evaluate": ["waveletflow", "evaluate", str(run), "--data", data, "--limit", str(TEST_LIMIT), "--json"],
           "quality": ["waveletflow", "quality", str(run), "--data", data, "--n", str(QUALITY_N[dataset]),
                       "--seed", str(seed), "--json"]}
    if variant.startswith("noise"):
        out["quality_denoised"] = [*out["quality"], "--denoise"]
    return out


def run_command(cmd: list[str], env: dict) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed: {done.stderr[-2000:]}")
    return done.stdout


def train_and_evaluate(cmds: dict[str, list[str]], tag: str) -> tuple[dict, float, dict]:
    """Run ``cmds["train"]`` (timed) and ``cmds["evaluate"]`` with this interpreter's commands first on the path:
    (the environment, the training's wall-clock seconds, the evaluation's JSON)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    print(tag, " ".join(cmds["train"]), flush=True)
    t0 = time.perf_counter()
    run_command(cmds["train"], env)
    wall = time.perf_counter() - t0
    return env, wall, json.loads(run_command(cmds["evaluate"], env))


def steps_trained(run: Path) -> dict[str, int]:
    """The optimiser steps each unit of ``run`` made (its ``metrics.csv``'s last step): at equal wall-clock, how fast
    the machine was."""
    import csv

    out = {}
    for path in sorted(run.glob("*/metrics.csv")):
        with open(path, newline="") as f:
            last = None
            for last in csv.DictReader(f):
                pass
        if last and last.get("step"):
            out[path.parent.name] = int(float(last["step"]))
    return out


def run_one(dataset: str, variant: str, seed: int, work: Path) -> dict:
    run = work / key(dataset, variant, seed).replace("/", "_")
    shutil.rmtree(run, ignore_errors=True)  # a run killed before its row was written starts again
    cmds = commands(dataset, variant, seed, run)
    if seed == 0:
        GRIDS.mkdir(parents=True, exist_ok=True)
        cmds["quality"] += ["--out", str(GRIDS / f"{dataset}-{variant}.png")]
        if "quality_denoised" in cmds:
            cmds["quality_denoised"] += ["--out", str(GRIDS / f"{dataset}-{variant}-denoised.png")]
    env, wall, res = train_and_evaluate(cmds, "[beyond]")
    scores = {}
    for name in ("quality", "quality_denoised"):
        if name in cmds:
            q = json.loads(run_command(cmds[name], env))["scores"]["samples"]
            scores[name] = {"fd": round(q["fd"], 4), "fd_inf": round(q["fd_inf"], 4), "kid": round(q["kid"], 6)}
    meta = json.loads((run / "model.json").read_text())
    shown = [{str(run): "RUN"}.get(c, c).replace(str(SHARED), "DATA") for c in cmds["train"]]
    return {"key": key(dataset, variant, seed), "dataset": dataset, "variant": variant, "seed": seed,
            "budget_s": BUDGET, "test_bpd": round(res["bits_per_dim"], 5), "noise_std": res.get("noise_std", 0.0),
            "wall_s": round(wall, 1), "steps": steps_trained(run), "model_type": meta["model_type"], "scores": scores,
            "command": " ".join(shown)}


def run_all(todo, work: Path) -> None:
    done = {r["key"] for r in rowfile.load(RESULTS)["rows"]}
    for dataset, variant, seed in todo:
        if key(dataset, variant, seed) in done:
            continue
        row = run_one(dataset, variant, seed, work)
        rowfile.add(RESULTS, row, machine())
        print(f"[beyond] {row['key']}: {row['test_bpd']:.4f} bits/dim, KID {row['scores']['quality']['kid']:.4f}",
              flush=True)


# ----- the report --------------------------------------------------------------------------------
def values(rows: list[dict], dataset: str, variant: str, pick) -> list[float]:
    return [pick(r) for r in sorted(rows, key=lambda r: r["seed"]) if (r["dataset"], r["variant"]) == (dataset, variant)]


def markdown(result: dict) -> str:
    rows = result.get("rows", [])
    if not rows:
        return ("Not measured yet: `python -m benchmarks.beyond` runs the variants (about 5 hours on two CPU "
                "cores), and this table is then generated from `benchmarks/results/beyond.json`.\n")
    seeds = sorted({r["seed"] for r in rows})
    lines = [f"Machine: {machines(result)}  ",
             f"Command: `python -m benchmarks.beyond` ({BUDGET} s per run, seeds {', '.join(map(str, seeds))}; mean "
             "(lowest–highest) over seeds). Bits/dim on the test images (MNIST's first 2000, the CIFAR-10 subset's "
             "1017); for a noisy variant they are those of the noisy images and not comparable. KID, FD∞ (FD "
             "extrapolated to infinitely many samples) and FD of samples at temperature 1 against as many test images, "
             "in the feature classifier's space; lower is better.", "",
             "| data | variant | flags | test bits/dim | KID | FD∞ | FD | KID denoised | FD∞ denoised |",
             "| --- " * 9 + "|"]
    for d in [d for d in DATA if any(r["dataset"] == d for r in rows)]:
        for v, (flags, _) in VARIANTS.items():
            if same_as_default(d, v) and values(rows, d, "default", lambda r: r["test_bpd"]):
                lines.append(f"| {d} | {v} | `{' '.join(flags)}` | the default's (its preset's context) | | | | | |")
                continue
            if not values(rows, d, v, lambda r: r["test_bpd"]):
                continue

            def score(name, what, v=v):
                return values(rows, d, v, lambda r: r["scores"].get(name, {}).get(what, float("nan")))

            noisy = v.startswith("noise")
            bpd = cell(values(rows, d, v, lambda r: r["test_bpd"])) + (" (noisy)" if noisy else "")
            den = [cell(score("quality_denoised", "kid"), 4), cell(score("quality_denoised", "fd_inf"), 2)] if noisy \
                else ["–", "–"]
            lines.append(f"| {d} | {v} | `{' '.join(flags) or '(none)'}` | {bpd} | {cell(score('quality', 'kid'), 4)} "
                         f"| {cell(score('quality', 'fd_inf'), 2)} | {cell(score('quality', 'fd'), 2)} | "
                         f"{' | '.join(den)} |")
    present = [d for d in DATA if any(r["dataset"] == d for r in rows)]
    lines += ["", *(f"- {verdict(rows, d)}" for d in present), "", *(a for d in present for a in answers(rows, d))]
    if len(seeds) < len(SEEDS):
        lines += ["", f"(Partial: {len(seeds)} of {len(SEEDS)} seeds so far; `python -m benchmarks.beyond` continues.)"]
    return "\n".join(lines) + "\n"


def machines(result: dict) -> str:
    """The machine of each seed's rows (a row without ``cpu`` ran on the file's machine): at equal wall-clock a faster
    machine trains more steps, so seeds from different machines differ by that too."""
    by_cpu: dict[str, set[int]] = {}
    for r in result.get("rows", []):
        by_cpu.setdefault(r.get("cpu", result.get("machine", "?")), set()).add(r["seed"])
    if len(by_cpu) == 1:
        return next(iter(by_cpu))
    return "; ".join(f"seed{'s' if len(s) > 1 else ''} {', '.join(map(str, sorted(s)))}: {cpu}"
                     for cpu, s in sorted(by_cpu.items(), key=lambda kv: min(kv[1])))


GLOW_VARIANTS = ("glow-residual", "glow")
#: the reviewers' questions → the variants that answer each (the default stands for the data set's own context)
QUESTIONS = {"the wavelet": ("default", "cdf53", "cdf97"),
             "the detail levels' context": ("context-none", "context-dilated", "context-attention"),
             "noisy training (KID after --denoise)": ("default", "noise-0.05", "noise-0.1")}


def answers(rows: list[dict], dataset: str) -> list[str]:
    """One generated line per question: each variant's mean KID (a noisy one's after denoising) and bits/dim over the
    seeds every variant of the question ran, the lowest of each, and in how many of those seeds the lowest KID was
    lowest."""
    out = []
    for question, variants in QUESTIONS.items():
        kids: dict[str, dict[int, float]] = {}
        bpds: dict[str, dict[int, float]] = {}
        for v in variants:
            source = "default" if same_as_default(dataset, v) else v
            k = kid_by_seed(rows, dataset, source)
            if k:
                kids[v] = k
                if not v.startswith("noise"):
                    bpds[v] = {r["seed"]: r["test_bpd"] for r in rows if (r["dataset"], r["variant"]) == (dataset, source)}
        if len(kids) < 2:
            continue
        seeds = sorted(set.intersection(*(set(k) for k in kids.values())))
        if not seeds:
            continue
        mean = {v: statistics.mean(k[s] for s in seeds) for v, k in kids.items()}
        bpd = {v: statistics.mean(b[s] for s in seeds) for v, b in bpds.items()}
        best = min(mean, key=mean.get)
        wins = sum(all(kids[best][s] <= kids[v][s] for v in kids) for s in seeds)
        line = (f"- {dataset}, {question} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}): KID "
                + ", ".join(f"{v} {m:.4f}" for v, m in mean.items())
                + f"; lowest {best} (lowest in {wins} of {len(seeds)} seeds)")
        if len(bpd) > 1:
            line += f"; bits/dim lowest {min(bpd, key=bpd.get)} ({min(bpd.values()):.3f})"
        if question.startswith("noisy"):
            drawn = {v: {r["seed"]: r["scores"]["quality"]["kid"] for r in rows
                         if (r["dataset"], r["variant"]) == (dataset, v)} for v in variants[1:]}
            pairs = [(drawn[v][s], kids[v][s]) for v in kids if v in drawn for s in kids[v] if s in drawn[v]]
            if pairs:
                line += f"; denoising lowered KID in {sum(b < a for a, b in pairs)} of {len(pairs)} runs"
        out.append(line + ".")
    return out


def kid_by_seed(rows: list[dict], dataset: str, variant: str) -> dict[int, float]:
    """KID of each seed's samples: a noisy variant's after ``--denoise`` (how its samples are meant to be drawn)."""
    name = "quality_denoised" if variant.startswith("noise") else "quality"
    return {r["seed"]: r["scores"][name]["kid"] for r in rows
            if (r["dataset"], r["variant"]) == (dataset, variant) and name in r["scores"]}


def verdict(rows: list[dict], dataset: str) -> str:
    """One generated sentence: the default's test bits/dim against both Glows', and which Wavelet Flow variants'
    samples score better (KID) than the strongest Glow's at the same budget, seed by seed, said as plainly when none
    does."""
    glows = {v: kid_by_seed(rows, dataset, v) for v in GLOW_VARIANTS}
    glows = {v: k for v, k in glows.items() if k}
    if not glows:
        return f"{dataset}: no Glow scored yet."
    strongest = min(glows, key=lambda v: statistics.mean(glows[v].values()))
    ref = glows[strongest]
    ahead, behind = [], []
    for v in VARIANTS:
        if v in GLOW_VARIANTS:
            continue
        mine = kid_by_seed(rows, dataset, v)
        paired = [s for s in mine if s in ref]
        if not paired:
            continue
        wins = sum(mine[s] < ref[s] for s in paired)
        text = f"{v} {statistics.mean(mine[s] for s in paired):.4f} ({wins} of {len(paired)} seeds)"
        (ahead if statistics.mean(mine[s] for s in paired) < statistics.mean(ref[s] for s in paired) else
         behind).append(text)
    head = f"Plainly, {dataset}: "
    bpd = {v: {r["seed"]: r["test_bpd"] for r in rows if (r["dataset"], r["variant"]) == (dataset, v)}
           for v in ("default", *GLOW_VARIANTS)}
    seeds = sorted(set.intersection(*(set(b) for b in bpd.values())))
    if seeds:
        below = sum(bpd["default"][s] < min(bpd[v][s] for v in GLOW_VARIANTS) for s in seeds)
        head += (f"test bits/dim at the same budget, the default {cell([bpd['default'][s] for s in seeds])}, "
                 + ", ".join(f"{v} {cell([bpd[v][s] for s in seeds])}" for v in GLOW_VARIANTS)
                 + f" (the default below both Glows in {below} of {len(seeds)} seeds). ")
    head += f"The strongest Glow by KID is {strongest} ({statistics.mean(ref.values()):.4f}). "
    if not ahead:
        return head + "No Wavelet Flow variant's samples score better at the same budget" + (
            f" (behind: {'; '.join(behind)})." if behind else ".")
    return (head + f"Better by KID (lower; seeds in which lower): {'; '.join(ahead)}. "
            + (f"Behind: {'; '.join(behind)}." if behind else "Every variant is ahead."))


def grids_markdown(result: dict) -> str:
    """The seed-0 sample grids of every variant in the result file, one row per variant, one column per data set
    (a noisy variant's denoised grid)."""
    rows = [r for r in result.get("rows", []) if r["seed"] == 0]
    present = [d for d in DATA if any(r["dataset"] == d for r in rows)]
    if not present:
        return "Not measured yet: `python -m benchmarks beyond` writes the grids of seed 0.\n"
    names = {"mnist": "MNIST", "cifar10": "CIFAR-10 subset"}
    lines = ["| variant | " + " | ".join(names.get(d, d) for d in present) + " |",
             "| --- | " + " | ".join("---" for _ in present) + " |"]
    for v, (flags, _) in VARIANTS.items():
        cells = []
        for d in present:
            if same_as_default(d, v):
                cells.append("the default's")
            elif any((r["dataset"], r["variant"]) == (d, v) for r in rows):
                stem = f"{d}-{v}" + ("-denoised" if v.startswith("noise") else "")
                cells.append(f"![{d} {v}](beyond/{stem}.png)")
            else:
                cells.append("–")
        if any(c.startswith("!") for c in cells):
            lines.append(f"| {v} (`{' '.join(flags) or 'no flags'}`) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


BLOCKS = {"beyond": markdown, "beyond-grids": grids_markdown}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks beyond", description=__doc__.splitlines()[0])
    p.add_argument("--report", action="store_true", help="only print the tables of the result file")
    p.add_argument("--readme", nargs="+", metavar="FILE", help="also write the table into these Markdown files")
    p.add_argument("--datasets", default=",".join(DATA))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    p.add_argument("--work", default="runs/beyond")
    a = p.parse_args(argv)
    if not a.report:
        unknown = sorted(set(a.variants.split(",")) - set(VARIANTS))
        if unknown:
            p.error(f"unknown variant {unknown[0]!r}; choose among {', '.join(VARIANTS)}")
        run_all(plan(a.datasets.split(","), [int(s) for s in a.seeds.split(",")], a.variants.split(",")),
                Path(a.work))
    result = rowfile.load(RESULTS)
    for page in a.readme or []:
        if markers("beyond")[0] in Path(page).read_text():
            write_block(page, "beyond", markdown(result))
    print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
