"""Saving and loading models: ``model.json`` (format version, type, config) plus one safetensors file per level."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from waveletflow.errors import UserInputError
from waveletflow.models.base import FlowModel
from waveletflow.models.format import MODEL_FORMAT, upgrade_model_meta
from waveletflow.models.registry import build_model, model_type
from waveletflow.rundir import RunDir


def write_model_meta(directory: str | Path, name: str, config: Any) -> None:
    """Write ``model.json`` of a run or saved model."""
    RunDir(directory).write_model_json({"version": MODEL_FORMAT, "model_type": name, "config": config.to_dict()})


def read_model_meta(directory: str | Path) -> tuple[str, Any]:
    """The model type and config stored in a run or saved model (a format-1 file is upgraded in memory)."""
    run = RunDir(directory)
    meta = upgrade_model_meta(run.read_model_json())
    try:
        t = model_type(meta["model_type"])
        return t.name, t.config_class.from_dict(meta["config"])
    except (KeyError, TypeError) as exc:
        raise UserInputError(f"corrupt {run.model_file} ({type(exc).__name__})") from None


def check_model_size(name: str, config: Any, where: str | Path) -> FlowModel:
    """Refuse a config whose weights alone would not fit in this machine's memory (a hand-edited or corrupt
    ``model.json``) before anything is allocated; returns the model built on the ``meta`` device."""
    meta = build_model(name, config, device="meta")
    n = sum(t.numel() for t in (*meta.parameters(), *meta.buffers()))
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: no check
        return meta
    if 4 * n > memory:
        raise UserInputError(f"{where} describes a model of {n:,} parameters ({4 * n / 2**30:,.0f} GB), more than this "
                             f"machine's memory ({memory / 2**30:,.0f} GB); is it corrupt?")
    return meta


def save_level_weights(model: FlowModel, level: int, directory: str | Path) -> None:
    """Write one level's weights into ``level_XX/`` of a run or saved model, atomically."""
    RunDir(directory).save_weights(level, model.levels[level].state_dict())


def load_level_weights(model: FlowModel, level: int, directory: str | Path) -> None:
    """Load one level's weights; a level never trained or a corrupt file is a one-line error."""
    state = RunDir(directory).load_weights(level)
    try:
        model.levels[level].load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise UserInputError(f"weights of level {level} in {directory} do not fit the model ({type(exc).__name__})") from None


def save(model: FlowModel, directory: str | Path) -> None:
    """Write ``model.json`` and one ``level_XX/weights.safetensors`` per level."""
    if model.config is None:
        raise UserInputError("only models built from a config (build_model, load) can be saved")
    write_model_meta(directory, model.model_type, model.config)
    for level in range(len(model.levels)):
        save_level_weights(model, level, directory)


def load(directory: str | Path, device: str | torch.device = "cpu", allow_untrained: bool = False) -> FlowModel:
    """Load a trained model from a run folder or a folder written by :func:`save`.

    Raises :class:`~waveletflow.errors.UserInputError` (a ``ValueError``) for a missing or corrupt run, or a
    level that was never trained (unless ``allow_untrained``).
    """
    name, config = read_model_meta(directory)
    run = RunDir(directory)
    check_model_size(name, config, run.model_file)
    model = build_model(name, config)
    for level in range(len(model.levels)):
        if allow_untrained and not run.has_weights(level):
            continue
        load_level_weights(model, level, directory)
    return model.to(device).eval()

