"""Every generated table of the README and the documentation, from its result file: written, or checked.

    python -m benchmarks report            # write every block (<!-- NAME:start --> … <!-- NAME:end -->) of the pages
    python -m benchmarks report --check    # exit 1, naming each page and block whose figures differ from their file

A block's name says which result file fills it (``defaults`` and ``defaults-summary``: ``defaults.json``;
``tuning`` and ``tuning-summary``: ``tuning.json``; ``highres`` and ``highres-summary``: ``highres.json``;
``throughput``, ``capacity``, ``beyond``, ``memory``, ``projection``: theirs; ``mcmc-pyro`` and ``mcmc-rows``:
``mcmc_vs_pyro.json`` and ``mcmc_rows.json``); a source that is a folder (``sample-quality``:
``results/quality/``) gives every JSON file in it, by stem; a result file that does not exist yet gives an empty
one, which each report says plainly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from benchmarks import (
    beyond, beyond_photos, capacity, defaults, demo, highres, memory, mrcnf_solve, projection, sampling_tables, throughput,
    tuning,
)
from benchmarks.readme import block, markers, write_block
from benchmarks.paths import REPO

#: block name → (result file, what makes the block from it)
SOURCES: dict[str, tuple[Path, Callable[[dict], str]]] = {
    **{name: (defaults.RESULTS, make) for name, make in defaults.BLOCKS.items()},
    "demo": (demo.RESULTS, demo.markdown),
    "mrcnf-solve": (mrcnf_solve.RESULTS, mrcnf_solve.markdown),
    "throughput": (throughput.RESULTS, throughput.markdown),
    "capacity": (capacity.RESULTS, capacity.markdown),
    "beyond": (beyond.RESULTS, beyond.markdown),
    "beyond-grids": (beyond.RESULTS, beyond.grids_markdown),
    "beyond-photos": (beyond_photos.RESULTS, beyond_photos.markdown),
    **{name: (memory.RESULTS, make) for name, make in memory.BLOCKS.items()},
    **{name: (highres.RESULTS, make) for name, make in highres.BLOCKS.items()},
    **{name: (tuning.RESULTS, make) for name, make in tuning.BLOCKS.items()},
    **{name: (projection.RESULTS, make) for name, make in projection.BLOCKS.items()},
    **{name: (sampling_tables.RESULTS[name], make) for name, make in sampling_tables.BLOCKS.items()},
}


def pages(root: Path = REPO) -> list[Path]:
    """The README and every documentation page."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def load(path: Path) -> dict:
    """A result file's content; a folder's: every JSON file in it, by stem; ``{"rows": []}`` where neither exists."""
    if path.is_dir():
        return {p.stem: json.loads(p.read_text()) for p in sorted(path.glob("*.json"))}
    return json.loads(path.read_text()) if path.is_file() else {"rows": []}


def tables(root: Path = REPO) -> list[tuple[Path, str, str]]:
    """(page, block name, the table its result file gives) of every generated block in the pages."""
    out = []
    for page in pages(root):
        text = page.read_text()
        for name, (path, make) in SOURCES.items():
            if markers(name)[0] in text:
                out.append((page, name, make(load(path))))
    return out


def check(root: Path = REPO) -> list[str]:
    """``page: block`` of each generated block whose content differs from what its result file gives."""
    return [f"{page.relative_to(root)}: {name}" for page, name, table in tables(root)
            if block(page.read_text(), name) != table]


def write(root: Path = REPO) -> list[str]:
    """Write every generated block; ``page: block`` of those that changed."""
    changed = check(root)
    for page, name, table in tables(root):
        write_block(page, name, table)
    return changed
