"""The run folder: every path and file of a training run or a saved model, and their atomic I/O.

Layout::

    model.json                 the model (type and config)
    run.json                   the data and its split: {data, data_bits, val_size, seed, fingerprint[, image_size, crop]}
    .lock                      present while a ``train`` command works on the run
    curves.png                 training curves
    evaluation.json, samples.png, super_resolution.png    written by ``waveletflow demo``
    level_XX/                  one per level
        weights.safetensors    the level's weights
        state.json             {step, elapsed_s, unit, train_bpd, val_bpd[, unit_val_bpd]}
        checkpoint.pt          {step, elapsed_s, model, optimizer, rng} of the level trained on its own
        metrics.csv, tensorboard/
    joint_A-B-C/               levels A, B, C trained together: checkpoint.pt, metrics.csv, tensorboard/

A folder written by ``model.save`` holds ``model.json`` and the ``weights.safetensors`` only. Every file is
written to a temporary file and renamed over the old one, so a crash never leaves half a file (and the next
``train`` removes a temporary file that a kill left behind). While a ``train`` command works on a run it holds
the run's lock (``.lock``, an advisory ``flock`` that the system releases when the process ends, however it
ends), so a second trainer is refused and a killed one never leaves the run locked.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from waveletflow.errors import UserInputError
from waveletflow.files import TMP_SUFFIX, atomic_write, read_json, write_failure, write_files, write_json_atomic
from waveletflow.runlock import RunLock

__all__ = ["RunDir", "RunLock", "atomic_write", "write_failure", "write_files", "write_json_atomic"]

MODEL_FILE = "model.json"
RUN_FILE = "run.json"
CURVES_FILE = "curves.png"
EVALUATION_FILE = "evaluation.json"
SAMPLES_FILE = "samples.png"
SUPER_RESOLUTION_FILE = "super_resolution.png"
WEIGHTS_FILE = "weights.safetensors"
STATE_FILE = "state.json"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
LEVEL_PREFIX = "level_"
JOINT_PREFIX = "joint_"
LOCK_FILE = ".lock"


#: the types of ``state.json``'s fields (numbers are never negative)
_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "step": (int,), "elapsed_s": (int, float), "unit": (str,), "train_bpd": (int, float, type(None)),
    "val_bpd": (int, float, type(None)), "best_step": (int, type(None)), "last_val_bpd": (int, float, type(None)),
    "unit_val_bpd": (int, float, type(None)),
}


class RunDir:
    """The files of one run folder (or saved model folder) at ``path``.

    A *unit* is what one optimiser trains: one level (its files in ``level_XX/``) or several levels trained
    together (``joint_A-B-C/``). Methods taking ``levels`` accept one level or a sequence of them.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    # ----- paths -----------------------------------------------------------------------------------
    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def curves_file(self) -> Path:
        return self.path / CURVES_FILE

    @property
    def evaluation_file(self) -> Path:
        """The demo's test bits/dim (``BitsPerDim.to_dict`` as JSON)."""
        return self.path / EVALUATION_FILE

    @property
    def samples_file(self) -> Path:
        return self.path / SAMPLES_FILE

    @property
    def super_resolution_file(self) -> Path:
        return self.path / SUPER_RESOLUTION_FILE

    def level_dir(self, level: int) -> Path:
        """``level_XX/``: the weights and state of one level."""
        return self.path / f"{LEVEL_PREFIX}{int(level):02d}"

    @staticmethod
    def unit_name(levels: int | Sequence[int]) -> str:
        """``level_XX`` for one level, ``joint_A-B-C`` for levels trained together.

        >>> RunDir.unit_name(3), RunDir.unit_name([2, 0, 1])
        ('level_03', 'joint_0-1-2')
        """
        levels = _levels(levels)
        if len(levels) == 1:
            return f"{LEVEL_PREFIX}{levels[0]:02d}"
        return JOINT_PREFIX + "-".join(str(v) for v in levels)

    @staticmethod
    def unit_levels(name: str) -> list[int] | None:
        """The levels of the unit folder ``name`` (None when it names no unit).

        >>> RunDir.unit_levels("joint_0-1-2"), RunDir.unit_levels("level_03"), RunDir.unit_levels("notes")
        ([0, 1, 2], [3], None)
        """
        for prefix, sep in ((LEVEL_PREFIX, None), (JOINT_PREFIX, "-")):
            if name.startswith(prefix):
                try:
                    return [int(v) for v in name[len(prefix):].split(sep)]
                except ValueError:
                    return None
        return None

    def unit_dir(self, levels: int | Sequence[int]) -> Path:
        """Where one unit keeps its checkpoint and metrics."""
        return self.path / self.unit_name(levels)

    def weights_file(self, level: int) -> Path:
        return self.level_dir(level) / WEIGHTS_FILE

    def state_file(self, level: int) -> Path:
        return self.level_dir(level) / STATE_FILE

    def checkpoint_file(self, levels: int | Sequence[int]) -> Path:
        return self.unit_dir(levels) / CHECKPOINT_FILE

    def metrics_file(self, levels: int | Sequence[int]) -> Path:
        return self.unit_dir(levels) / METRICS_FILE

    def tensorboard_dir(self, levels: int | Sequence[int]) -> Path:
        return self.unit_dir(levels) / TENSORBOARD_DIR

    # ----- the folder ------------------------------------------------------------------------------
    def is_model(self) -> bool:
        """Whether the folder holds a model (``model.json``)."""
        return self.model_file.is_file()

    def is_empty(self) -> bool:
        """Whether the folder is absent or holds nothing (but a trainer's lock)."""
        return not self.path.exists() or not any(p.name != LOCK_FILE for p in self.path.iterdir())

    def read_model_json(self) -> dict[str, Any]:
        """The raw content of ``model.json`` (a dict); UserInputError when absent or unreadable."""
        if not self.path.is_dir():
            raise UserInputError(f"no run or model at {self.path}")
        if not self.model_file.is_file():
            raise UserInputError(f"{self.path} is not a waveletflow run or model ({MODEL_FILE} is missing)")
        meta = read_json(self.model_file)
        if not isinstance(meta, dict):
            raise UserInputError(f"corrupt {self.model_file} (not a JSON object)")
        return meta

    def write_model_json(self, meta: dict[str, Any]) -> None:
        write_json_atomic(self.model_file, meta)

    def read_run(self) -> dict[str, Any]:
        """``run.json``: the data spec, its bit depth, the validation size, the seed (and how the images were
        prepared: ``image_size``, ``crop``)."""
        try:
            info = read_json(self.run_file)
        except UserInputError:
            info = None
        if not isinstance(info, dict):
            raise UserInputError(f"{self.run_file} is missing or corrupt")
        return info

    def write_run(self, data: str, data_bits: int, val_size: int, seed: int, image_size: int | None = None,
                  crop: int | None = None, fingerprint: str | None = None,
                  capacity: dict[str, Any] | None = None) -> None:
        """``run.json``; ``image_size`` and ``crop`` (when given) are how the data's images were prepared, the
        defaults of later commands on this run; ``fingerprint`` tells the data apart from other data
        (:meth:`~waveletflow.data.ImageDataset.fingerprint`); ``capacity`` is the width a time budget chose for
        the model (:mod:`waveletflow.models.capacity`)."""
        info: dict[str, Any] = {"data": data, "data_bits": data_bits, "val_size": val_size, "seed": seed}
        info.update({k: v for k, v in (("image_size", image_size), ("crop", crop), ("fingerprint", fingerprint),
                                       ("capacity", capacity)) if v is not None})
        write_json_atomic(self.run_file, info)

    def record_training(self, training: dict[str, Any]) -> None:
        """Keep in ``run.json`` how the last ``train`` command trained (workers, threads, precision, batch,
        compile), for ``info`` and for the record."""
        info = self.read_run()
        info["training"] = training
        write_json_atomic(self.run_file, info)

    def data_options(self) -> dict[str, int]:
        """``image_size`` and ``crop`` of the run's data (only those it was made with), from ``run.json``."""
        if not self.run_file.is_file():
            return {}
        info = self.read_run()
        return {k: int(info[k]) for k in ("image_size", "crop") if info.get(k) is not None}

    # ----- level weights and state -----------------------------------------------------------------
    def has_weights(self, level: int) -> bool:
        return self.weights_file(level).is_file()

    def save_weights(self, level: int, state_dict: dict[str, torch.Tensor]) -> None:
        """Write one level's state dict as safetensors (on the CPU, contiguous)."""
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
        atomic_write(self.weights_file(level), lambda tmp: save_file(state, tmp))

    def load_weights(self, level: int) -> dict[str, torch.Tensor]:
        """One level's state dict; UserInputError when the level was never trained or the file is corrupt."""
        from safetensors.torch import load_file

        path = self.weights_file(level)
        if not path.is_file():
            raise UserInputError(
                f"level {level} was never trained ({path} is missing); train it with "
                f"'waveletflow train ... --level {level}' or copy its folder into the run"
            )
        try:
            return load_file(str(path))
        except Exception as exc:
            raise UserInputError(f"corrupt weights for level {level} in {path} ({type(exc).__name__})") from None

    def read_state(self, level: int) -> dict[str, Any] | None:
        """A level's ``state.json`` (None when absent); UserInputError when corrupt."""
        state = read_json(self.state_file(level))
        if state is None:
            return None
        if not isinstance(state, dict):
            raise UserInputError(f"corrupt {self.state_file(level)} (not a JSON object)")
        for key, kinds in _STATE_TYPES.items():
            value = state.get(key)
            if key in state and not (isinstance(value, kinds) and not isinstance(value, bool)
                                     and (not isinstance(value, (int, float)) or value >= 0)):
                raise UserInputError(f"corrupt {self.state_file(level)} ({key} is {json.dumps(value)[:40]})")
        return state

    def write_state(self, level: int, state: dict[str, Any]) -> None:
        write_json_atomic(self.state_file(level), state)

    # ----- unit checkpoints and metrics ------------------------------------------------------------
    def has_checkpoint(self, levels: int | Sequence[int]) -> bool:
        return self.checkpoint_file(levels).is_file()

    def save_checkpoint(self, levels: int | Sequence[int], checkpoint: dict[str, Any]) -> None:
        atomic_write(self.checkpoint_file(levels), lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, levels: int | Sequence[int]) -> dict[str, Any]:
        """A unit's checkpoint (tensors on the CPU); UserInputError when it cannot be read."""
        path = self.checkpoint_file(levels)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserInputError(
                f"corrupt checkpoint {path} ({type(exc).__name__}); move it away to go on from the saved level "
                f"weights with a new optimiser, or move {path.parent} away to restart"
            ) from None

    def units_with_metrics(self) -> list[list[int]]:
        """The units that wrote a ``metrics.csv``, joint units first, then levels in order."""
        if not self.path.is_dir():
            return []
        names = sorted(p.name for p in self.path.iterdir() if (p / METRICS_FILE).is_file())
        return [levels for levels in map(self.unit_levels, names) if levels is not None]

    def read_metrics(self, levels: int | Sequence[int]) -> list[dict[str, str]]:
        """A unit's ``metrics.csv`` rows (empty when absent)."""
        path = self.metrics_file(levels)
        if not path.is_file():
            return []
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))

    def metrics_columns(self, levels: int | Sequence[int]) -> list[str] | None:
        """The header of a unit's ``metrics.csv`` (None when absent or empty)."""
        path = self.metrics_file(levels)
        if not path.is_file():
            return None
        with open(path, newline="") as fh:
            return next(csv.reader(fh), None) or None


    # ----- safety ----------------------------------------------------------------------------------
    def lock(self) -> RunLock:
        """The run's trainer lock (a context manager; see :class:`RunLock`)."""
        return RunLock(self.path, LOCK_FILE)

    def unit_dirs(self) -> list[Path]:
        """The level and joint folders present in the run."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if self.unit_levels(p.name) is not None)

    def check_layout(self) -> None:
        """Refuse a run whose level folders (or the files in them that training appends to or replaces) are
        symbolic links or lead outside the run: training would write there."""
        root = self.path.resolve()
        for d in self.unit_dirs():
            if d.is_symlink() or not d.resolve().is_relative_to(root):
                raise UserInputError(f"{d} is a link to {d.resolve()}; training writes into level folders, so they "
                                     f"must be real folders inside the run (copy it in instead)")
            for name in (WEIGHTS_FILE, STATE_FILE, CHECKPOINT_FILE, METRICS_FILE):
                if (d / name).is_symlink():
                    raise UserInputError(f"{d / name} is a link; training rewrites it, so it must be a real file")

    def remove_temporaries(self) -> list[Path]:
        """Remove the temporary files that a process killed while saving left in the run (only the lock holder
        may call this); returns them."""
        known = (MODEL_FILE, RUN_FILE, CURVES_FILE, EVALUATION_FILE, SAMPLES_FILE, SUPER_RESOLUTION_FILE,
                 WEIGHTS_FILE, STATE_FILE, CHECKPOINT_FILE, METRICS_FILE)
        removed = []
        for d in [self.path, *self.unit_dirs()]:
            for p in d.iterdir() if d.is_dir() else []:
                if p.is_file() and p.name.endswith(TMP_SUFFIX) and any(p.name.startswith(f".{k}.") for k in known):
                    p.unlink()
                    removed.append(p)
        return removed

    def truncate_metrics(self, levels: int | Sequence[int], step: int) -> None:
        """Cut a unit's ``metrics.csv`` back to the rows of steps up to ``step`` (the checkpoint it resumes from):
        rows written after that checkpoint by a process that was stopped would otherwise appear twice."""
        path = self.metrics_file(levels)
        if not path.is_file():
            return
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
        header = rows[0] if rows and "step" in rows[0] else None
        keep = []
        if header is not None:
            i = header.index("step")
            for row in rows[1:]:
                try:
                    ok = len(row) == len(header) and int(row[i]) <= step
                except ValueError:
                    ok = False
                if ok:
                    keep.append(row)
        if header is not None and len(keep) == len(rows) - 1:
            return  # nothing to cut

        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as fh:
                if header is not None:
                    csv.writer(fh).writerows([header, *keep])

        atomic_write(path, write)


def _levels(levels: int | Sequence[int]) -> list[int]:
    return [int(levels)] if isinstance(levels, int) else sorted(int(v) for v in levels)
