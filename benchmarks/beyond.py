"""Beyond the paper: the reviewers' questions (the wavelet, global context, noisy training and denoising) answered
at equal wall-clock, each variant one flag away from the default command.

    waveletflow train --data D --out RUN --time-budget 300 --seed S [VARIANT FLAGS]
    waveletflow evaluate RUN --data D --limit 2000 --json
    waveletflow quality RUN --data D --n N --json [--denoise]        # N: 2000 (MNIST), all 1017 (CIFAR-10 subset)

Variants, one factor at a time from the default: the wavelet (``--wavelet cdf53``, ``cdf97``), the detail levels'
context (``--context none``, ``dilated``, ``attention``), noisy training (``--noise-std 0.05``, ``0.1``; their
samples scored as drawn and after ``--denoise``), and the strongest Glow of the defaults benchmark
(``--model glow-residual``) at the same budget. Seeds 0, 1, 2; FD and KID in the feature classifier's space at
temperature 1: KID is the primary figure, and FD∞ (FD extrapolated to infinitely many samples) is shown beside FD,
whose bias depends on the number of samples.

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


def _run(cmd: list[str], env: dict) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed: {done.stderr[-2000:]}")
    return done.stdout


def run_one(dataset: str, variant: str, seed: int, work: Path) -> dict:
    run = work / key(dataset, variant, seed).replace("/", "_")
    shutil.rmtree(run, ignore_errors=True)  # a run killed before its row was written starts again
    cmds = commands(dataset, variant, seed, run)
    if seed == 0:
        GRIDS.mkdir(parents=True, exist_ok=True)
        cmds["quality"] += ["--out", str(GRIDS / f"{dataset}-{variant}.png")]
        if "quality_denoised" in cmds:
            cmds["quality_denoised"] += ["--out", str(GRIDS / f"{dataset}-{variant}-denoised.png")]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    print("[beyond]", " ".join(cmds["train"]), flush=True)
    t0 = time.perf_counter()
    _run(cmds["train"], env)
    wall = time.perf_counter() - t0
    res = json.loads(_run(cmds["evaluate"], env))
    scores = {}
    for name in ("quality", "quality_denoised"):
        if name in cmds:
            q = json.loads(_run(cmds[name], env))["scores"]["samples"]
            scores[name] = {"fd": round(q["fd"], 4), "fd_inf": round(q["fd_inf"], 4), "kid": round(q["kid"], 6)}
    meta = json.loads((run / "model.json").read_text())
    shown = [{str(run): "RUN"}.get(c, c).replace(str(SHARED), "DATA") for c in cmds["train"]]
    return {"key": key(dataset, variant, seed), "dataset": dataset, "variant": variant, "seed": seed,
            "budget_s": BUDGET, "test_bpd": round(res["bits_per_dim"], 5), "noise_std": res.get("noise_std", 0.0),
            "wall_s": round(wall, 1), "model_type": meta["model_type"], "scores": scores, "command": " ".join(shown)}


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
    lines = [f"Machine: {result.get('machine', '?')}  ",
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
    if len(seeds) < len(SEEDS):
        lines += ["", f"(Partial: {len(seeds)} of {len(SEEDS)} seeds so far; `python -m benchmarks.beyond` continues.)"]
    return "\n".join(lines) + "\n"


BLOCKS = {"beyond": markdown}


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
