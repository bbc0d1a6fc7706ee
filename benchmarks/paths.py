"""Where the benchmarks find the repository, the shared data sets (``WAVELETFLOW_SHARED_DATA`` moves them) and what a
run of ``train`` left in its folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WAVELETFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
#: the data sets of the defaults, capacity, throughput and reviewers' benchmarks, by name (files under :data:`SHARED`)
DATA = {"mnist": "mnist.npz", "cifar10": "cifar10_partial.npz"}
#: the time-to-quality data sets of ``benchmarks.run``: those and the photographs (a folder)
DATASETS = {**DATA, "photos": "photos/photos512"}


def level_states(run: Path) -> dict[str, dict]:
    """Each level's ``state.json`` in a run folder of ``train``, by the level's folder name (``level_00`` ...); a level
    without one, or with one that is not JSON, is left out.

    >>> level_states(Path("no-such-run"))
    {}
    """
    out = {}
    for level in sorted(run.glob("level_*")):
        try:
            state = json.loads((level / "state.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(state, dict):
            out[level.name] = state
    return out


def level_steps(run: Path) -> dict[str, int]:
    """Each level's optimiser steps, from the state files a run of ``train`` leaves (none for a level without).

    >>> level_steps(Path("no-such-run"))
    {}
    """
    return {name: int(state["step"]) for name, state in level_states(run).items() if "step" in state}
