"""Result files made of keyed rows, one per run: read, and a row added atomically.

A benchmark that is killed resumes from its file: the rows already there are not run again.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def load(path: Path) -> dict:
    """The result file at ``path``, or an empty one (``{"rows": []}``)."""
    return json.loads(path.read_text()) if path.is_file() else {"rows": []}


def add(path: Path, row: dict, machine: str) -> None:
    """Put ``row`` into the file (replacing a row of the same ``key``); the row records the machine it ran on
    (``cpu``, unless it says already), the file the machine it first ran on."""
    result = load(path)
    result.setdefault("machine", machine)
    row = {**row, "cpu": row.get("cpu", machine)}
    result["rows"] = [r for r in result["rows"] if r["key"] != row["key"]] + [row]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(path)


def cell(values: list[float], digits: int = 3) -> str:
    """A figure over seeds for a table: ``mean (lowest–highest)``, the one value with ``(1 seed)``, or ``–``.

    >>> cell([1.5, 1.25, 1.0])
    '1.250 (1.000–1.500)'
    """
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (1 seed)"
    return f"{statistics.mean(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"
