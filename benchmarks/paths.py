"""Where the benchmarks find the repository and the shared data sets (``WAVELETFLOW_SHARED_DATA`` moves them)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WAVELETFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
#: the data sets of the defaults, capacity, throughput and reviewers' benchmarks, by name (files under :data:`SHARED`)
DATA = {"mnist": "mnist.npz", "cifar10": "cifar10_partial.npz"}
#: the time-to-quality data sets of ``benchmarks.run``: those and the photographs (a folder)
DATASETS = {**DATA, "photos": "photos/photos512"}
