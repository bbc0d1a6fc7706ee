"""How to train: every training option and its default, written once."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch

from waveletflow.config import Config
from waveletflow.errors import UserInputError


#: how a time budget is shared among levels trained on their own
SCHEDULES = ("dimensions", "gain")
#: the optimisers a unit can train with
OPTIMIZERS = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax}
#: the largest seed (a unit's generator is seeded with ``seed * 1009 + its levels``, which must fit in 64 bits)
MAX_SEED = 2**32 - 1
#: the precisions of the coupling and conditioning networks in training (``auto``: bf16 where it is fast)
PRECISIONS = ("auto", "fp32", "bf16")
#: levels whose images have fewer pixels (smaller than 4×4) train in float32 also with bf16: there its casts cost
#: more than its products save (the CIFAR-10 subset's 1×1, 2×2 and 4×4 levels, ``python -m benchmarks.throughput``)
BF16_MIN_PIXELS = 16
#: the batch of a training step when none is given: small on a CPU, where a step costs in proportion to its
#: images and more, noisier steps reach a given bits/dim sooner; larger on a GPU, where a small batch leaves it idle
AUTO_BATCH = {"cpu": 16, "cuda": 64}


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
    runs every ``eval_every`` steps on ``val_images`` held-out images; with ``keep_best`` (the default) each unit's
    weights file holds the (averaged) weights of its best validation so far (early stopping, kept across resumes),
    while training goes on from the current ones. ``device`` is ``auto``, ``cpu`` or
    ``cuda[:N]``. ``batch_size`` None chooses by device (:data:`AUTO_BATCH`). ``precision`` is that of the coupling
    and conditioning networks in training steps (``bf16``: autocast bfloat16, :mod:`waveletflow.layers.precision`;
    ``auto``: bf16 on a GPU that supports it and on a CPU with AMX units, float32 elsewhere; levels smaller than
    4×4 always float32, where bf16 was slower); log-dets, ActNorm,
    the 1×1 convolutions, the Haar steps, the priors, the losses, validation and every evaluation stay float32.
    ``compile`` compiles each unit's training step with ``torch.compile`` (the checkpoints hold the plain module).
    ``channels_last`` trains in the channels-last memory format (1.1–1.3× the images/s of a step on a CPU, measured
    in ``benchmarks.throughput``; the weights are saved in the usual layout).
    ``curves`` writes ``curves.png`` at the end; ``progress`` shows progress bars (at row ``progress_position``).
    """

    steps: int | None = None
    time_budget: float | None = None
    batch_size: int | None = None
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
    keep_best: bool = True
    joint: bool = False
    precision: str = "auto"
    compile: bool = False
    channels_last: bool = True
    curves: bool = True
    progress: bool = True
    progress_position: int = 0

    def __post_init__(self) -> None:
        for name in ("batch_size", "init_batch", "eval_every", "log_every", "checkpoint_every", "val_images"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserInputError(f"training option {name} must be at least 1, got {getattr(self, name)}")
        for name in ("steps", "warmup", "seed", "progress_position"):
            if (getattr(self, name) or 0) < 0:
                raise UserInputError(f"training option {name} must not be negative, got {getattr(self, name)}")
        if self.seed > MAX_SEED:
            raise UserInputError(f"training option seed must be at most {MAX_SEED}, got {self.seed}")
        if self.schedule not in SCHEDULES:
            raise UserInputError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise UserInputError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
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
        """A new optimiser of the kind asked for; Adam's fused implementation (one kernel for every parameter,
        instead of a loop over them: its step took 6–12% of a small level's training step on a CPU)."""
        params = list(params)
        if self.optimizer == "adam":
            try:
                return torch.optim.Adam(params, lr=self.lr, fused=True)
            except RuntimeError:  # a torch without the fused kernel for this device (CPU before 2.4)
                pass
        return OPTIMIZERS[self.optimizer](params, lr=self.lr, foreach=True)

    def resolved(self) -> TrainOptions:
        """These options with the device, the batch and the precision decided (``auto`` and None replaced)."""
        device = resolve_device(self.device)
        batch = self.batch_size if self.batch_size is not None else AUTO_BATCH["cuda" if device.startswith("cuda") else "cpu"]
        precision = resolve_precision(self.precision, device)
        return replace(self, device=device, batch_size=batch, precision=precision)

    def after(self, started: float) -> TrainOptions:
        """These options with the time budget less the seconds since ``started`` (on ``time.monotonic``'s clock):
        what is left of a command's budget after its start-up (loading the data, building the model).

        >>> TrainOptions(time_budget=60.0).after(time.monotonic() - 20.0).time_budget < 40.01
        True
        """
        if self.time_budget is None:
            return self
        return replace(self, time_budget=max(1e-3, self.time_budget - (time.monotonic() - started)))

    def network_dtype(self, pixels: int | None = None) -> torch.dtype | None:
        """The autocast dtype of the networks in training steps (None: float32), for a level whose images have
        ``pixels`` pixels: float32 below :data:`BF16_MIN_PIXELS`, where bfloat16 was slower."""
        if self.precision == "auto":
            raise ValueError("resolve the options first (TrainOptions.resolved)")
        small = pixels is not None and pixels < BF16_MIN_PIXELS
        return torch.bfloat16 if self.precision == "bf16" and not small else None


def bf16_is_fast(device: str) -> bool:
    """Whether bfloat16 networks train faster than float32 ones on ``device``: a CUDA GPU that supports bfloat16,
    or a CPU with AMX tile units (Intel Sapphire Rapids and later; measured in ``benchmarks.throughput``). A CPU
    with AVX-512 BF16 but no AMX is not counted: it was not measured."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # an older torch: ask the kernel
        try:
            with open("/proc/cpuinfo") as f:
                return "amx_bf16" in f.read().split()
        except OSError:
            return False


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` → ``bf16`` where :func:`bf16_is_fast`, else ``fp32``; ``bf16`` on a GPU without it is refused."""
    if precision == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    if precision == "bf16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise UserInputError("--precision bf16: this GPU does not support bfloat16; use --precision fp32")
    return precision


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is available, else ``cpu``; checks the other names."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserInputError("--device cuda was asked for but no CUDA GPU is available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise UserInputError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device
