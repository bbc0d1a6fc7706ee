"""``python -m benchmarks report [--check]``: the README's and documentation's tables from their result files (see
:mod:`benchmarks.report`); each benchmark itself runs as ``python -m benchmarks.NAME``."""

from __future__ import annotations

import argparse
import sys

from benchmarks import report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("report", help="write the generated tables of the README and the docs from the result files")
    r.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when a table differs from what its result file gives")
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
