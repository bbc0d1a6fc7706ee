"""Saving and loading models: ``model.json`` plus one safetensors file per level, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from waveletflow.errors import UserInputError
from waveletflow.models.base import MODEL_FILE, WEIGHTS_FILE, FlowModel, level_dir


def atomic_write(path: Path, write) -> None:
    """Write through ``write(tmp_path)`` into a temporary file next to ``path``, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json_atomic(path: Path, obj: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2)
            fh.write("\n")

    atomic_write(path, write)


def save_level_weights(model: FlowModel, level: int, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.levels[level].state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, tmp))


def load_level_weights(model: FlowModel, level: int, path: Path) -> None:
    from safetensors.torch import load_file

    if not path.is_file():
        raise UserInputError(
            f"level {level} was never trained ({path} is missing); train it with "
            f"'waveletflow train ... --level {level}' or copy its folder into the run"
        )
    try:
        state = load_file(str(path))
        model.levels[level].load_state_dict(state)
    except Exception as exc:
        raise UserInputError(f"corrupt weights for level {level} in {path} ({type(exc).__name__})") from None


def model_types() -> dict[str, type[FlowModel]]:
    from waveletflow.models.glow import Glow
    from waveletflow.models.waveletflow import WaveletFlow

    from waveletflow.models.mrcnf import MRCNF

    return {"waveletflow": WaveletFlow, "glow": Glow, "mrcnf": MRCNF}


def build_model(model_type: str, config: dict[str, Any]) -> FlowModel:
    types = model_types()
    if model_type not in types:
        raise UserInputError(f"unknown model type {model_type!r}; choose one of {', '.join(types)}")
    return types[model_type](config)


def read_model_file(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / MODEL_FILE
    if not directory.is_dir():
        raise UserInputError(f"no run or model at {directory}")
    if not path.is_file():
        raise UserInputError(f"{directory} is not a waveletflow run or model ({MODEL_FILE} is missing)")
    try:
        with open(path) as fh:
            meta = json.load(fh)
        meta["model_type"], meta["config"]  # noqa: B018 - presence check
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserInputError(f"corrupt {path} ({type(exc).__name__})") from None
    return meta


def load(directory: str | Path, device: str | torch.device = "cpu", allow_untrained: bool = False) -> FlowModel:
    """Load a trained model from a run folder or a folder written by ``model.save``.

    Raises :class:`~waveletflow.errors.UserInputError` (a ``ValueError``) for a missing or corrupt run, or a
    level that was never trained (unless ``allow_untrained``).
    """
    meta = read_model_file(directory)
    model = build_model(meta["model_type"], meta["config"])
    for i in range(len(model.levels)):
        path = level_dir(directory, i) / WEIGHTS_FILE
        if allow_untrained and not path.exists():
            continue
        load_level_weights(model, i, path)
    return model.to(device).eval()
