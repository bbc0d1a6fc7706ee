"""``python -m benchmarks SECTION [ARGS]``: every benchmark, one subcommand each, and ``report [--check]``, which
writes the README's and documentation's tables from their result files (see :mod:`benchmarks.report`).

    python -m benchmarks defaults            # Wavelet Flow's defaults against the Glows (benchmarks/defaults.py)
    python -m benchmarks memory --report     # a section's table from its result file
    python -m benchmarks report --check      # exit 1 when a generated table differs from its result file

Each section is also ``python -m benchmarks.MODULE``; ``python -m benchmarks SECTION --help`` lists its flags.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from benchmarks import report

#: subcommand → (module, what it measures)
SECTIONS = {
    "demo": ("demo", "the main job: waveletflow demo on the embedded digits, its test bits/dim"),
    "defaults": ("defaults", "the command a user types, Wavelet Flow against both Glows, seeds and time to quality"),
    "capacity": ("capacity", "the widths that --time-budget chooses from, trained at each budget"),
    "throughput": ("throughput", "images/s of a training step: precision, memory format, compile"),
    "tuning": ("tuning", "equal tuning: the same grid for every contender, scored on validation images, 3 seeds"),
    "memory": ("memory", "peak memory of a training step: the wavelet split, patches, checkpointed Glow"),
    "highres": ("highres", "photographs at 64 and 256 px: time to quality under hard budgets, Glow at published scales"),
    "beyond": ("beyond", "the reviewers' questions: wavelets, context, noisy training and denoising"),
    "beyond-photos": ("beyond_photos", "the reviewers' questions at 256 px: patches against whole images, the wavelet"),
    "projection": ("projection", "on paper: Wavelet Flow on k level workers against Glow on k data-parallel ranks"),
    "compare": ("run", "the first comparison: time to quality, throughput, memory and sampling in one file"),
    "scaling": ("scaling", "level workers on one machine: images/s against the workers"),
    "mcmc": ("mcmc", "the NUTS sampler against Pyro's on a trained run"),
    "mrcnf-solve": ("mrcnf_solve", "MRCNF's ODE solves: function evaluations and images/s"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SECTIONS:
        return int(importlib.import_module(f"benchmarks.{SECTIONS[argv[0]][0]}").main(argv[1:]) or 0)
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="SECTION")
    r = sub.add_parser("report", help="write the generated tables of the README and the docs from the result files")
    r.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when a table differs from what its result file gives")
    for name, (_, what) in SECTIONS.items():
        sub.add_parser(name, help=what, add_help=False)
    a = p.parse_args(argv)
    if a.check:
        stale = report.check()
        for line in stale:
            print(f"differs from its result file: {line}", file=sys.stderr)
        print(f"{len(report.tables()) - len(stale)} generated tables match their result files"
              + (f", {len(stale)} do not (python -m benchmarks report writes them)" if stale else ""))
        return 1 if stale else 0
    changed = report.write()
    print(f"wrote {len(report.tables())} generated tables ({len(changed)} changed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
