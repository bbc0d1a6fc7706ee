"""Setting up a run: the run folder, the train/validation split, the levels asked for and their time shares."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from waveletflow.data import Crops, ImageDataset
from waveletflow.errors import UserInputError
from waveletflow.models import DEFAULT_MODEL_TYPE, FlowModel, build_model, default_config
from waveletflow.models.io import read_model_meta, write_model_meta
from waveletflow.rundir import RunDir

log = logging.getLogger("waveletflow")


def prepare_run(run_dir: str | Path, data: ImageDataset, data_spec: str, model_type: str | None = None,
                overrides: dict[str, Any] | None = None, n_bits: int | None = None, seed: int = 0,
                level_spec: str = "all", preset: str | None = None, image_size: int | None = None,
                crop: int | None = None) -> tuple[str, Any]:
    """Create the run folder (``model.json``, ``run.json``), or check that an existing one fits the data.

    Args:
        model_type: the model type of a new run (default ``waveletflow``); for an existing run, the type it
            must hold (None: any).
        overrides, preset: the model config of a new run on top of the defaults for the data (ignored, with a
            note, for an existing run).
        n_bits: the model's bit depth (default: the data's).
        seed: stored in ``run.json``; it seeds the initial weights of every later command.
        level_spec: the levels asked for, checked against the model before anything is written.
        image_size, crop: how ``data`` was prepared (see :func:`~waveletflow.data.load_dataset`), kept in
            ``run.json`` as the defaults of later commands.
    Returns:
        The model type and config of the run.
    """
    run = RunDir(run_dir)
    if run.is_model():
        name, config = read_model_meta(run.path)
        if model_type is not None and name != model_type:
            raise UserInputError(f"{run} holds a {name} model, not {model_type}; use another --out")
        if tuple(config.image_shape) != data.image_shape:
            raise UserInputError(f"{run} was made for images of shape {tuple(config.image_shape)} (C, H, W), "
                                 f"but {data_spec} has {data.image_shape}")
        if overrides or preset:
            log.info("%s exists; its saved model config is used and --config / --preset are ignored", run)
        return name, config
    if not run.is_empty():
        raise UserInputError(f"{run} exists and is not a waveletflow run; choose a new --out")
    bits = n_bits or data.n_bits
    if bits > data.n_bits:
        raise UserInputError(f"--n-bits {bits} is more than the data's {data.n_bits} bits")
    name = model_type or DEFAULT_MODEL_TYPE
    config = default_config(name, data.image_shape, bits, overrides, preset)
    if config.display_max is None:
        config = replace(config, display_max=data.max_value if config.n_bits == data.n_bits else 2**config.n_bits - 1)
    # validate the config and the levels asked for before anything is written
    parse_levels(level_spec, len(build_model(name, config).levels))
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_run(data_spec, data.n_bits, val_size=min(1000, max(1, len(data.x_train) // 10)), seed=seed,
                  image_size=image_size, crop=crop)
    write_model_meta(run.path, name, config)
    return name, config


def new_model(model_type: str, config: Any, seed: int) -> FlowModel:
    """The model with its deterministic initial weights (the same in every process for one seed)."""
    torch.manual_seed(seed)
    return build_model(model_type, config)


def parse_levels(spec: str, n_levels: int) -> list[int]:
    """``all`` or level numbers separated by commas → sorted distinct levels of a model with ``n_levels``."""
    if spec == "all":
        return list(range(n_levels))
    try:
        levels = sorted({int(v) for v in spec.split(",")})
    except ValueError:
        raise UserInputError(f"--level must be 'all' or level numbers such as 2 or 0,3; got {spec!r}") from None
    bad = [v for v in levels if not 0 <= v < n_levels]
    if bad:
        raise UserInputError(f"level {bad[0]} does not exist; this model has levels 0..{n_levels - 1}")
    return levels


def split_train_val(data: ImageDataset, val_size: int):
    """The training images and the last ``val_size`` of them held out for validation (arrays, or lazy slices of
    an image folder; crops of both when the data is cropped: random ones are drawn for training)."""
    images = data.x_train.images if isinstance(data.x_train, Crops) else data.x_train
    n = len(images)
    if n - val_size < 1:
        raise UserInputError(f"{data.name} holds {n} training image{'' if n == 1 else 's'}: too few to hold out "
                             f"{val_size} for validation and train on the rest")
    if isinstance(images, np.ndarray):
        train, val = images[: n - val_size], images[n - val_size :]
    else:
        train, val = _Subset(images, 0, n - val_size), _Subset(images, n - val_size, n)
    if isinstance(data.x_train, Crops):
        return Crops(train, data.x_train.size), Crops(val, data.x_train.size)
    return train, val


class _Subset:
    """A contiguous slice of a lazily read image set that indexes like an array."""

    def __init__(self, base, start: int, stop: int):
        self.base, self.start, self.stop = base, start, stop
        self.files = base.files[start:stop] if hasattr(base, "files") else None

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def shape(self) -> tuple:
        return (len(self), *self.base.shape[1:])

    def __getitem__(self, idx):
        if np.isscalar(idx):
            return self.base[int(idx) + self.start]
        if isinstance(idx, slice):
            idx = np.arange(*idx.indices(len(self)))
        return self.base[np.asarray(idx) + self.start]
