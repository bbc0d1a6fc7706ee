"""Setting up a run: the run folder, the train/validation split, the levels asked for and their time shares."""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from waveletflow.data import Crops, ImageDataset
from waveletflow.errors import UserInputError
from waveletflow.models import DEFAULT_MODEL_TYPE, FlowModel, build_model, default_config
from waveletflow.models.capacity import CapacityChoice, fit_capacity
from waveletflow.models.io import check_model_size, read_model_meta, write_model_meta
from waveletflow.rundir import LOCK_FILE, RunDir
from waveletflow.training.spec import ModelOptions, RunSpec

log = logging.getLogger("waveletflow")


def prepare_run(run_dir: str | Path, data: ImageDataset, spec: RunSpec, seed: int = 0,
                budget_s: float | None = None, device: str = "cpu") -> tuple[str, Any]:
    """Create the run folder (``model.json``, ``run.json``), or check that an existing one fits the data.

    Args:
        run_dir: the run folder.
        data: the images, loaded as ``spec`` says (``spec.image_size`` and ``spec.crop`` are kept in ``run.json``
            as the defaults of later commands).
        spec: the data, the levels asked for (checked against the model before anything is written) and the
            model of a new run (its config options are ignored, with a note, for an existing run).
        seed: stored in ``run.json``; it seeds the initial weights of every later command.
        budget_s: the time budget of the command; with ``device`` it fits the capacity of a new run's model
            (:func:`~waveletflow.models.capacity.fit_capacity`; the choice is kept in ``run.json``).
        device: the device of the command.
    Returns:
        The model type and config of the run.
    """
    data_spec, model_type, overrides, n_bits = spec.data, spec.model_type, spec.overrides, spec.n_bits
    level_spec, preset, image_size, crop = spec.levels, spec.preset, spec.image_size, spec.crop
    allow_other_data = spec.allow_other_data
    run = RunDir(run_dir)
    if run.is_model():
        name, config = read_model_meta(run.path)
        if model_type is not None and name != model_type:
            raise UserInputError(f"{run} holds a {name} model, not {model_type}; use another --out")
        if tuple(config.image_shape) != data.image_shape:
            raise UserInputError(f"{run} was made for images of shape {tuple(config.image_shape)} (C, H, W), "
                                 f"but {data_spec} has {data.image_shape}")
        run.check_layout()
        check_data(run, data, data_spec, allow_other_data)
        parse_levels(level_spec, len(check_model_size(name, config, run.model_file).levels))
        spec.options.check_held(run, name, config)
        if overrides or preset:
            log.info("%s exists; its saved model config is used and --config / --preset are ignored", run)
        return name, config
    if run.path.exists() and not run.path.is_dir():
        raise UserInputError(f"{run} is a file, not a folder; choose another --out")
    if not run.is_empty():
        raise UserInputError(f"{run} exists and is not a waveletflow run; choose a new --out")
    name, config, choice = new_config(data, model_type, overrides, n_bits, preset, budget_s, device, spec.options)
    # validate the config and the levels asked for before anything is written
    parse_levels(level_spec, len(check_model_size(name, config, "the model config").levels))
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_run(data_spec, data.n_bits, val_size=min(1000, max(1, len(data.x_train) // 10)), seed=seed,
                  image_size=image_size, crop=crop, fingerprint=data.fingerprint(),
                  capacity=None if choice is None else choice.to_dict())
    if choice is not None:
        log.info("model: %s", choice.describe())
    write_model_meta(run.path, name, config)
    return name, config


def new_config(data: ImageDataset, model_type: str | None = None, overrides: dict[str, Any] | None = None,
               n_bits: int | None = None, preset: str | None = None, budget_s: float | None = None,
               device: str = "cpu", options: ModelOptions | None = None) -> tuple[str, Any, CapacityChoice | None]:
    """The model type and config of a new run on ``data`` with these model options (see :func:`prepare_run`), and
    the capacity that the time budget chose (None where the config is the type's default as it is: with a preset
    or config overrides, without a budget, or where no capacity was measured). ``options`` (wavelet, noise,
    context) apply after the capacity is fitted: it does not depend on them."""
    if n_bits is not None and n_bits < 1:
        raise UserInputError(f"--n-bits must be at least 1, got {n_bits}")
    bits = n_bits or data.n_bits
    if bits > data.n_bits:
        raise UserInputError(f"--n-bits {bits} is more than the data's {data.n_bits} bits")
    name = model_type or DEFAULT_MODEL_TYPE
    config = default_config(name, data.image_shape, bits, overrides, preset)
    choice = None if overrides or preset else fit_capacity(name, data.image_shape, budget_s, device)
    if choice is not None:
        config = default_config(name, data.image_shape, bits, choice.apply(config))
    if config.display_max is None:
        config = replace(config, display_max=data.max_value if config.n_bits == data.n_bits else 2**config.n_bits - 1)
    if options is not None:
        config = options.apply(name, config)
    return name, config, choice


def check_joint(model: FlowModel, levels: list[int], joint: bool) -> None:
    """Joint training needs whole images: refuse it for a set of levels one of which trains on crops."""
    cropped = [v for v in levels if model.level_crop(v) is not None]
    if joint and len(levels) > 1 and cropped:
        raise UserInputError(f"level {cropped[0]} trains on crops; joint training needs whole images")


def check_data(run: RunDir, data: ImageDataset, data_spec: str, allow_other: bool = False) -> None:
    """Refuse to go on training ``run`` with data other than it was made with (its ``run.json``: the data's
    fingerprint, or for older runs its name), unless ``allow_other``; the same data under another path is fine."""
    info = run.read_run()
    saved = info.get("fingerprint")
    same = (saved == data.fingerprint()) if saved else _spec_key(str(info.get("data"))) == _spec_key(data_spec)
    same = same and info.get("data_bits", data.n_bits) == data.n_bits
    if same:
        return
    if not allow_other:
        raise UserInputError(f"{run} was trained on {info.get('data')!r}; {data_spec!r} holds other images. Give the "
                             f"same data to resume, another --out for a new run, or --allow-other-data to go on "
                             f"training this model on these images")
    log.warning("%s was made with %r; training it further on %r, as asked (--allow-other-data)", run,
                info.get("data"), data_spec)


def _spec_key(spec: str) -> str:
    """A data spec with its path made absolute (the same file named two ways is the same data)."""
    file, sep, prefix = spec.partition(".npz:")
    path = Path(file + (".npz" if sep else "")).expanduser()
    return (str(path.resolve()) + sep[4:] + prefix) if path.exists() else spec


def check_units(run: RunDir, model: FlowModel, units: list[list[int]]) -> None:
    """Before anything is trained: every unit's checkpoint and every level's saved weights in the run can be read
    and fit the model, so that a bad file is found before any level was trained further and rewritten."""
    for levels in units:
        if run.has_checkpoint(levels):
            ck = run.load_checkpoint(levels)
            module = (model.levels[levels[0]] if len(levels) == 1
                      else torch.nn.ModuleDict({str(v): model.levels[v] for v in levels}))
            missing = [k for k in ("model", "optimizer", "rng", "step", "elapsed_s") if k not in ck]
            if missing or not _fits(ck["model"], module.state_dict()):
                raise UserInputError(f"checkpoint {run.checkpoint_file(levels)} does not fit this model"
                                     + (f" (no {missing[0]!r})" if missing else "") + f"; move "
                                     f"{run.unit_dir(levels)} away to start that unit again")
    for level in range(len(model.levels)):
        if run.has_weights(level) and not _fits(run.load_weights(level), model.levels[level].state_dict()):
            raise UserInputError(f"weights of level {level} in {run} do not fit the model in its model.json")


def _fits(state: Any, reference: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict has the keys and tensor shapes of ``reference``."""
    if not isinstance(state, dict) or set(state) != set(reference):
        return False
    return all(isinstance(state[k], torch.Tensor) and state[k].shape == v.shape for k, v in reference.items())


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


def remove_new_run(run: RunDir) -> None:
    """Remove what a new run wrote before it failed, unless a checkpoint was written (its folder was empty)."""
    if any(run.has_checkpoint(levels) for levels in map(run.unit_levels, (d.name for d in run.unit_dirs()))):
        return
    for p in run.path.iterdir():
        if p.name == LOCK_FILE:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
