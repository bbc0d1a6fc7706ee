"""What a ``train`` or ``plan`` command asks of a run, in one typed record (:class:`RunSpec`), and the rules on
how long it trains and how many processes and threads it may use, each checked in one place (:func:`check_budget`,
:func:`check_workers`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from waveletflow.errors import UserInputError
from waveletflow.rundir import RunDir


#: what ``--context`` gives every detail level of a Wavelet Flow: (cond_width when it has none, cond_attention)
CONTEXTS = {"none": None, "dilated": (32, 0), "attention": (32, 1)}


@dataclass(frozen=True)
class ModelOptions:
    """Choices of a new model applied after its capacity is fitted to the budget (the fitted width is kept), each
    None where not given: the wavelet (``haar``, ``cdf53``, ``cdf97``; with a lifted wavelet, a config whose levels
    train on crops gets the periodic boundary they need), the Gaussian noise of the images it is of
    (``noise_std``) and what its detail levels see of the low-pass image (``context``: ``none``, ``dilated``,
    ``attention``; see :attr:`~waveletflow.models.config.GlowLevelConfig.context`).

    >>> from waveletflow.models import waveletflow_config
    >>> cfg = ModelOptions(wavelet="cdf53", context="attention").apply("waveletflow", waveletflow_config((1, 8, 8)))
    >>> cfg.wavelet, [lv.context for lv in cfg.levels]
    ('cdf53', ['none', 'attention', 'attention', 'attention'])
    """

    wavelet: str | None = None
    noise_std: float | None = None
    context: str | None = None

    def apply(self, name: str, config: Any) -> Any:
        """``config`` (of a model of type ``name``) with the options given; one line for one it does not take."""
        if self.wavelet is not None:
            if not hasattr(config, "wavelet"):
                raise UserInputError(f"--wavelet is for the wavelet models (waveletflow, mrcnf); a {name} model has "
                                     "none")
            changes: dict[str, Any] = {"wavelet": self.wavelet}
            if (self.wavelet != "haar" and hasattr(config, "boundary")
                    and any(getattr(lv, "crop", None) for lv in config.levels)):
                changes["boundary"] = "periodic"  # what crops of a lifted wavelet need
            config = replace(config, **changes)
        if self.noise_std is not None:
            if not (isinstance(self.noise_std, (int, float)) and math.isfinite(self.noise_std) and self.noise_std >= 0):
                raise UserInputError(f"--noise-std must be at least 0, got {self.noise_std}")
            config = replace(config, noise_std=float(self.noise_std))
        if self.context is not None:
            if self.context not in CONTEXTS:
                raise UserInputError(f"unknown context {self.context!r}; choose one of {', '.join(CONTEXTS)}")
            levels = getattr(config, "levels", ())
            if not levels or not hasattr(levels[0], "cond_attention"):
                raise UserInputError(f"--context is for Wavelet Flow's detail levels; a {name} model has none")
            width, attention = CONTEXTS[self.context] or (0, 0)
            details = [replace(lv, cond_width=(lv.cond_width or width) if width else 0,
                               cond_attention=(lv.cond_attention or attention) if attention else 0)
                       for lv in levels[1:]]
            config = replace(config, levels=(levels[0], *details))
        return config

    def check_held(self, run: RunDir, name: str, config: Any) -> None:
        """An existing run's model must be what the options given ask for (one line otherwise)."""
        if self.wavelet is not None and getattr(config, "wavelet", None) != self.wavelet:
            held = f"the {config.wavelet} wavelet" if hasattr(config, "wavelet") else "no wavelet"
            raise UserInputError(f"{run} holds a {name} model with {held}, not --wavelet {self.wavelet}; "
                                 "use another --out")
        if self.noise_std is not None and config.noise_std != self.noise_std:
            raise UserInputError(f"{run} holds a model of images with noise {config.noise_std:g}, not --noise-std "
                                 f"{self.noise_std:g}; use another --out")
        if self.context is not None:
            held = sorted({lv.context for lv in getattr(config, "levels", ())[1:] if hasattr(lv, "context")})
            if held != [self.context]:
                raise UserInputError(f"{run} holds a {name} model whose detail levels have context "
                                     f"{', '.join(held) or '(none: no detail levels)'}, not --context {self.context}; "
                                     "use another --out")


@dataclass(frozen=True)
class RunSpec:
    """The data a run trains on, the levels asked for, and the model of a new run.

    Args:
        data: the dataset (see :func:`waveletflow.data.load_dataset`).
        levels: ``all`` or level numbers (``2``, ``0,3``).
        model_type: the model type of a new run (default ``waveletflow``); for an existing run, the type it must
            hold (None: any).
        overrides: the model config's entries of a new run, on top of the defaults for the data.
        preset: the preset a new run's config starts from.
        n_bits: the bit depth of a new run's model (default: the data's).
        image_size: resize a folder's images to this side (default: the run's, else their own size).
        crop: train on random crops of this side (default: the run's, else whole images).
        allow_other_data: let an existing run go on with data other than it was made with.
        options: the wavelet, noise and context of a new model (:class:`ModelOptions`); an existing run must hold
            those given.

    >>> RunSpec("digits", levels="0,1").levels
    '0,1'
    """

    data: str
    levels: str = "all"
    model_type: str | None = None
    overrides: Mapping[str, Any] | None = None
    preset: str | None = None
    n_bits: int | None = None
    image_size: int | None = None
    crop: int | None = None
    allow_other_data: bool = False
    options: ModelOptions = field(default_factory=ModelOptions)

    def on(self, run: RunDir) -> RunSpec:
        """This spec with the image size and crop of ``run``'s ``run.json`` where not given (a resumed run keeps
        its own); a file in place of the run folder is refused."""
        if run.path.exists() and not run.path.is_dir():
            raise UserInputError(f"{run} is a file, not a folder; choose another --out")
        saved = run.data_options() if run.is_model() else {}
        return replace(self, image_size=self.image_size if self.image_size is not None else saved.get("image_size"),
                       crop=self.crop if self.crop is not None else saved.get("crop"))


def check_budget(steps: int | None, time_budget: float | None) -> None:
    """The one check that a training command has an end: a step count or a time budget.

    >>> check_budget(None, 60.0)
    """
    if steps is None and time_budget is None:
        raise UserInputError("give --steps N or --time-budget SECONDS")


def check_workers(parallel: int | str, threads: int | None, joint: bool, under_torchrun: bool = False) -> None:
    """The one check of ``--parallel`` and ``--threads`` (``train`` and ``plan`` both call it).

    >>> check_workers("auto", None, False)
    >>> check_workers(0, None, False)
    Traceback (most recent call last):
    ...
    waveletflow.errors.UserInputError: --parallel must be 'auto' or at least 1, got 0
    """
    if parallel != "auto" and (isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1):
        raise UserInputError(f"--parallel must be 'auto' or at least 1, got {parallel!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise UserInputError(f"--threads must be at least 1, got {threads!r}")
    if parallel != "auto" and parallel > 1:
        if joint:
            raise UserInputError("--joint trains its levels together in one process; drop --parallel")
        if under_torchrun:
            raise UserInputError("--parallel starts level processes of its own; under torchrun every rank is one "
                                 "already: leave --parallel out")
