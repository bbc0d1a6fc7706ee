"""The main job's figure: ``waveletflow demo`` (150 s of training on the embedded digits), its test bits/dim and
each level's share, as the README and the results page quote it.

    python -m benchmarks demo                # runs the demo into --work, writes benchmarks/results/demo.json
    python -m benchmarks demo --report       # the sentence, from the result file

The figure is the run's own ``evaluation.json`` (the demo evaluates the kept best weights on the 297 test digits).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.paths import REPO

RESULTS = REPO / "benchmarks" / "results" / "demo.json"
COMMAND = "waveletflow demo --out runs/digits"


def run(work: Path) -> dict:
    """Run the demo as a user types it (into ``work``) and read its evaluation."""
    from benchmarks.machine import machine

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["waveletflow", "demo", "--out", str(work)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"waveletflow demo failed: {done.stderr[-2000:]}")
    from waveletflow.cli.parser import build_parser

    budget = build_parser().parse_args(["demo", "--out", str(work)]).time_budget  # the demo's own default
    return {"command": COMMAND, "file": "runs/digits/evaluation.json", "machine": machine(), "time_budget_s": budget,
            "evaluation": json.loads((work / "evaluation.json").read_text())}


def markdown(result: dict) -> str:
    """One sentence: the test bits/dim, the levels' shares that sum to it, the images, the machine.

    >>> print(markdown({"evaluation": {"bits_per_dim": 2.2339, "images": 297, "levels": [
    ...     {"bits_per_dim": 0.5}, {"bits_per_dim": 1.7339}]}, "machine": "M", "time_budget_s": 150}), end="")
    `waveletflow demo --out runs/digits` (150 s of training, the defaults of `train`) gives **2.234 bits/dim** (levels 0.500 + 1.734) on the 297 test digits (`benchmarks/results/demo.json`, from the run's `evaluation.json`; M).
    """
    ev = result.get("evaluation")
    if not ev:
        return "Not measured yet: `python -m benchmarks demo` runs the demo and writes `benchmarks/results/demo.json`.\n"
    levels = " + ".join(f"{lv['bits_per_dim']:.3f}" for lv in ev.get("levels", []))
    return (f"`{COMMAND}` ({result.get('time_budget_s', 150):g} s of training, the defaults of `train`) gives "
            f"**{ev['bits_per_dim']:.3f} bits/dim** (levels {levels}) on the {ev['images']} test digits "
            f"(`benchmarks/results/demo.json`, from the run's `evaluation.json`; {result.get('machine', '?')}).\n")


BLOCKS = {"demo": markdown}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks demo", description=__doc__.splitlines()[0])
    p.add_argument("--report", action="store_true", help="only print the sentence of the result file")
    p.add_argument("--work", type=Path, default=Path("runs/digits"))
    a = p.parse_args(argv)
    if not a.report:
        if a.work.exists():
            p.error(f"{a.work} exists: the demo writes a fresh run (choose another --work or remove it)")
        RESULTS.write_text(json.dumps(run(a.work), indent=1) + "\n")
    print(markdown(json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
