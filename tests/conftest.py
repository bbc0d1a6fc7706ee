"""Shared fixtures: where the real datasets are, and tiny model configs that train in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("WAVELETFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))

if os.environ.get("PYTEST_XDIST_WORKER"):  # ``pytest -n N``: N test processes share the cores, one thread each
    torch.set_num_threads(1)


def shared_file(name: str) -> Path:
    """A file of the shared datasets folder; the test is skipped when it is absent."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{name} not available (shared data folder absent)")
    return path


# levels[0] is the base flow, levels[l] the detail flow of level l
TINY_WF = {
    "levels": [{"n_steps": 2, "width": 8, "n_blocks": 1, "n_scales": 1},
               {"n_steps": 2, "width": 8}, {"n_steps": 2, "width": 8}, {"n_steps": 2, "width": 8}],
}


def train_tiny(run: Path, *flags: str, steps: int = 3, batch: int = 16) -> dict:
    """Train a :data:`TINY_WF` Wavelet Flow on digits into ``run`` from the command line (one process, quiet) with
    ``flags``; the config of its ``model.json``."""
    import json

    from waveletflow.cli import main

    cfg = run.parent / f"{run.name}.tiny.json"
    cfg.write_text(json.dumps(TINY_WF))
    assert main(["train", "--data", "digits", "--out", str(run), "--steps", str(steps), "--batch-size", str(batch),
                 "--config", str(cfg), "--quiet", "--no-curves", "--parallel", "1", *flags]) == 0
    return json.loads((run / "model.json").read_text())["config"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
