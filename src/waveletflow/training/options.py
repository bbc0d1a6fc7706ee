"""How to train: every training option and its default, written once."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from waveletflow.config import Config
from waveletflow.errors import UserInputError


#: how a time budget is shared among levels trained on their own
SCHEDULES = ("dimensions", "gain")
#: the optimisers a unit can train with
OPTIMIZERS = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax}


@dataclass(frozen=True)
class TrainOptions(Config):
    """How to train (the CLI's ``train`` flags take their defaults from here).

    ``steps`` counts optimiser steps per level (per unit with ``joint``: all the levels asked for, one
    optimiser on their summed NLL), resumed steps included; ``time_budget`` (s) is for the whole command.
    The learning rate warms up linearly over ``warmup`` steps; gradients are clipped to norm ``grad_clip``;
    fresh levels are initialised from ``init_batch`` images (data-dependent ActNorm, Kingma & Dhariwal 2018).
    A time budget is shared among levels trained on their own by ``schedule``: ``dimensions`` splits it up front
    in proportion to the dimensions of each level, ``gain`` hands it out in slices of ``slice_seconds`` to the
    level whose contribution to the image's bits/dim is falling fastest (:mod:`waveletflow.training.schedule`).
    ``optimizer`` is ``adam`` or ``adamax`` (Glow's and Wavelet Flow's released recipe). ``ema`` > 0 keeps a Polyak
    average of the weights (0: none; an exponential moving average with that decay; the decay ramps up as
    ``min(ema, (1 + step) / (10 + step))`` so that early averages do not remember the initial weights): it is what
    validation measures and what ``weights.safetensors`` holds, so ``evaluate``, ``sample`` and ``super-resolve``
    use it; the checkpoint keeps both. ``decay`` > 0 decays the learning rate linearly to zero over that final
    fraction of the unit's steps or time budget, whichever ends first (0: no decay). The defaults (Adam, ``ema``
    0.99, ``decay`` 0.3) won the ablation of the training recipe (``python -m benchmarks.run --ablation``).
    A checkpoint is written every ``checkpoint_every`` steps or ``checkpoint_seconds`` seconds; validation
    runs every ``eval_every`` steps on ``val_images`` held-out images; with ``keep_best`` each unit's weights file
    holds the (averaged) weights of its best validation so far (early stopping, kept across resumes), while
    training goes on from the current ones. ``device`` is ``auto``, ``cpu`` or
    ``cuda[:N]``. ``curves`` writes ``curves.png`` at the end; ``progress`` shows progress bars (at row
    ``progress_position``).
    """

    steps: int | None = None
    time_budget: float | None = None
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 50
    grad_clip: float = 50.0
    seed: int = 0
    device: str = "auto"
    init_batch: int = 64
    eval_every: int = 250
    log_every: int = 25
    checkpoint_every: int = 250
    checkpoint_seconds: float = 120.0
    val_images: int = 500
    schedule: str = "dimensions"
    slice_seconds: float = 30.0
    optimizer: str = "adam"
    ema: float = 0.99
    decay: float = 0.3
    flip: bool = False
    keep_best: bool = False
    joint: bool = False
    curves: bool = True
    progress: bool = True
    progress_position: int = 0

    def __post_init__(self) -> None:
        for name in ("batch_size", "init_batch", "eval_every", "log_every", "checkpoint_every", "val_images"):
            if getattr(self, name) < 1:
                raise UserInputError(f"training option {name} must be at least 1, got {getattr(self, name)}")
        for name in ("steps", "warmup", "seed", "progress_position"):
            if (getattr(self, name) or 0) < 0:
                raise UserInputError(f"training option {name} must not be negative, got {getattr(self, name)}")
        if self.schedule not in SCHEDULES:
            raise UserInputError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.optimizer not in OPTIMIZERS:
            raise UserInputError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        for name in ("ema", "decay"):
            if not 0 <= getattr(self, name) < 1:
                raise UserInputError(f"training option {name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("time_budget", "lr", "grad_clip", "checkpoint_seconds", "slice_seconds"):
            v = getattr(self, name)
            if v is not None and not 0 < v < math.inf:
                raise UserInputError(f"training option {name} must be a positive number, got {v}")

    def lr_at(self, step: int, progress: float = 0.0) -> float:
        """The learning rate of optimiser step ``step`` (counted from 0) at ``progress`` (0..1) through the unit's
        budget: linear warm-up, then constant, then the final linear ``decay``."""
        lr = self.lr * min(1.0, (step + 1) / max(1, self.warmup))
        if self.decay > 0:
            lr *= min(1.0, max(0.0, 1.0 - progress) / self.decay)
        return lr

    def optimizer_for(self, params) -> torch.optim.Optimizer:
        """A new optimiser of the kind asked for."""
        return OPTIMIZERS[self.optimizer](params, lr=self.lr)


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is available, else ``cpu``; checks the other names."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserInputError("--device cuda was asked for but no CUDA GPU is available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise UserInputError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device
