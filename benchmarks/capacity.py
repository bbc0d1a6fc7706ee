"""The capacity that a time budget buys: short training runs of each model at a few widths and budgets.

Each trial is a fresh ``waveletflow train`` command, as a user types it, with the defaults of this release
(precision, batch, averaging, the best validation kept) and one thread; two trials run at a time on a 2-core
machine, as Wavelet Flow's finest level trains beside its other levels under the default ``--parallel auto``.
Wavelet Flow's trials train its finest level alone (``--level L``: the levels are independent, and the finest
holds most of the dimensions); the Glows' trials train the whole model. Every trial is scored on validation
images only (the ``val_bpd`` of the kept weights in ``state.json``), never on test images. The widths that win
become the budget tiers of :data:`waveletflow.models.capacity.CAPACITY`.

    python -m benchmarks.capacity                  # every trial (resumable: rows in the result file are kept)
    python -m benchmarks.capacity --report         # the table and each budget's best width, from the file

Writes ``benchmarks/results/capacity.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.machine import machine
from benchmarks import rows as rowfile
from benchmarks.readme import write_block
from benchmarks.paths import DATA, REPO, SHARED
from waveletflow.models.config import PRESETS

RESULTS = REPO / "benchmarks" / "results" / "capacity.json"
#: the preset each dataset's Wavelet Flow is made from (its finest level's width is the one tried)
PRESET = {"mnist": "28x28", "cifar10": "32x32"}
#: widths tried at each budget (s): Wavelet Flow's finest level, and each Glow's coupling networks
WIDTHS = {
    "waveletflow": {150: (32, 48, 64), 600: (48, 64, 96)},
    "glow": {150: (32, 64, 128), 600: (32, 64, 128)},
    "glow-residual": {150: (32, 64, 128), 600: (32, 64, 128)},
}


@dataclass(frozen=True)
class Trial:
    dataset: str
    model: str
    width: int
    budget_s: int
    seed: int = 0

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.model}/w{self.width}/{self.budget_s}s/seed{self.seed}"

    def config(self) -> dict:
        """The model config of the trial (``--config``)."""
        if self.model != "waveletflow":
            return {"width": self.width}
        levels = copy.deepcopy(PRESETS[PRESET[self.dataset]]["levels"])
        levels[-1]["width"] = self.width
        return {"levels": levels}

    def level(self) -> int | None:
        return len(PRESETS[PRESET[self.dataset]]["levels"]) - 1 if self.model == "waveletflow" else None

    def command(self, out: Path, config: Path) -> list[str]:
        cmd = ["waveletflow", "train", "--data", str(SHARED / DATA[self.dataset]), "--out", str(out),
               "--model", self.model, "--time-budget", str(self.budget_s), "--config", str(config), "--threads", "1",
               "--seed", str(self.seed), "--quiet", "--no-curves"]
        if self.level() is not None:
            cmd += ["--level", str(self.level())]
        return cmd


def trials(datasets=tuple(DATA), models=tuple(WIDTHS)) -> list[Trial]:
    """Every trial, the longest budgets first (two trials of one budget run side by side)."""
    out = [Trial(d, m, w, b) for d in datasets for m in models for b, ws in WIDTHS[m].items() for w in ws]
    return sorted(out, key=lambda t: (-t.budget_s, t.dataset, t.model, t.width))




def _score(trial: Trial, run: Path) -> dict:
    level = trial.level() or 0
    state = json.loads((run / f"level_{level:02d}" / "state.json").read_text())
    model = json.loads((run / "model.json").read_text())
    from waveletflow.models import build_model

    m = build_model(model["model_type"], model["config"], device="meta")
    return {"steps": state["step"], "val_bpd": round(state["val_bpd"], 5), "best_step": state.get("best_step"),
            "params": m.num_parameters(level)}


def run_trials(todo: list[Trial], work: Path, at_once: int = 2) -> None:
    """Run the trials not yet in the result file, ``at_once`` at a time, each row saved as it ends."""
    done = {r["key"] for r in rowfile.load(RESULTS)["rows"]}
    todo = [t for t in todo if t.key not in done]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    bin_dir = Path(sys.executable).parent
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    for i in range(0, len(todo), at_once):
        batch, procs = todo[i : i + at_once], []
        for t in batch:
            run = work / t.key.replace("/", "_")
            config = work / f"{t.key.replace('/', '_')}.json"
            subprocess.run(["rm", "-rf", str(run)], check=True)
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(json.dumps(t.config()))
            cmd = t.command(run, config)
            print("[capacity]", " ".join(cmd), flush=True)
            procs.append((t, run, config, cmd, time.perf_counter(),
                          subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
        for t, run, config, cmd, t0, proc in procs:
            _, err = proc.communicate()
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"trial {t.key} failed: {err.decode()[-2000:]}")
            shown = [{str(run): "RUN", str(config): "CONFIG.json"}.get(c, c) for c in cmd]
            row = {"key": t.key, "dataset": t.dataset, "model": t.model, "width": t.width, "budget_s": t.budget_s,
                   "seed": t.seed, "wall_s": round(wall, 1), **_score(t, run), "config": t.config(),
                   "command": " ".join(shown).replace(str(SHARED), "DATA")}
            rowfile.add(RESULTS, row, machine(threads=1))
            print(f"[capacity] {t.key}: {row['steps']} steps, validation {row['val_bpd']}", flush=True)


def best_widths(rows: list[dict]) -> dict[tuple[str, str, int], int]:
    """(dataset, model, budget) → the width with the lowest validation bits/dim."""
    best: dict[tuple[str, str, int], dict] = {}
    for r in rows:
        k = (r["dataset"], r["model"], r["budget_s"])
        if k not in best or r["val_bpd"] < best[k]["val_bpd"]:
            best[k] = r
    return {k: r["width"] for k, r in best.items()}


def markdown(result: dict) -> str:
    rows = sorted(result["rows"], key=lambda r: (r["dataset"], r["model"], r["budget_s"], r["width"]))
    best = best_widths(rows)
    lines = [f"Machine: {result.get('machine', '?')}", "",
             "| data | model | budget | width | parameters | steps | validation bits/dim |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        mark = "**" if best[(r["dataset"], r["model"], r["budget_s"])] == r["width"] else ""
        what = "finest level" if r["model"] == "waveletflow" else "whole model"
        lines.append(f"| {r['dataset']} | {r['model']} ({what}) | {r['budget_s']} s | {r['width']} | "
                     f"{r['params'] / 1e6:.2f} M | {r['steps']} | {mark}{r['val_bpd']:.3f}{mark} |")
    budgets = sorted({b for _, _, b in best})
    edge = math.sqrt(budgets[0] * budgets[-1]) if len(budgets) > 1 else None
    lines += ["", f"The widths `--time-budget` chooses (up to {edge:g} s: the {budgets[0]} s winner; longer, and "
                  f"without a budget: the {budgets[-1]} s winner):" if edge else "The widths chosen:", ""]
    for dataset, model in sorted({(d, m) for d, m, _ in best}):
        widths = " → ".join(str(best[(dataset, model, b)]) for b in budgets if (dataset, model, b) in best)
        lines.append(f"- {dataset}, {model}: {widths}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks capacity", description=__doc__.splitlines()[0])
    p.add_argument("--report", action="store_true", help="print the table from the result file")
    p.add_argument("--datasets", default=",".join(DATA))
    p.add_argument("--models", default=",".join(WIDTHS))
    p.add_argument("--work", default="runs/capacity", help="folder of the trials' run folders")
    p.add_argument("--readme", nargs="+", metavar="FILE",
                   help="also write the table into these Markdown files, between their capacity markers")
    a = p.parse_args(argv)
    if not a.report:
        run_trials(trials(a.datasets.split(","), a.models.split(",")), Path(a.work))
    text = markdown(rowfile.load(RESULTS))
    for page in a.readme or []:
        write_block(page, "capacity", text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
