"""What a ``train`` or ``plan`` command asks of a run, in one typed record (:class:`RunSpec`), and the rules on
how long it trains and how many processes and threads it may use, each checked in one place (:func:`check_budget`,
:func:`check_workers`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from waveletflow.errors import UserInputError
from waveletflow.rundir import RunDir


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
        wavelet: the wavelet of a new wavelet model (:data:`waveletflow.wavelets.WAVELETS`; default: the config's,
            ``haar``); an existing run must hold this wavelet.

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
    wavelet: str | None = None

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
