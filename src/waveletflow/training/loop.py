"""The training loop: optimiser steps on one unit until a step count or a time budget is reached."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from waveletflow.errors import Diverged
from waveletflow.metrics import LN2, bits_per_dim
from waveletflow.training.signals import requested
from waveletflow.training.sinks import MetricsSink, NullSink
from waveletflow.training.unit import TrainUnit

if TYPE_CHECKING:
    from waveletflow.training.distributed import DataParallel

log = logging.getLogger("waveletflow")

MAX_NONFINITE_LOSSES = 50


#: before the first validation is timed, it is taken to cost this fraction of a training step per batch of
#: validation images (a step is a forward and a backward pass, about three forwards; validation runs in float32)
VAL_STEP_FRACTION = 0.5


class Stop:
    """When training stops: at ``steps`` optimiser steps in total (resumed ones included) or ``budget_s``
    seconds after this object was made, whichever comes first (None: no limit of that kind). When this budget is
    a slice of a larger one, ``overall`` = (its start on ``time.perf_counter``'s clock, its seconds) measures the
    progress (for the learning-rate decay) against the whole.

    The budget is hard: ``reserve`` (s, kept up to date by :func:`fit` from what it measures) is the time that
    what follows a stop takes (the step under way, the last validation, the last checkpoint), so training stops
    that much before ``budget_s``, and the learning rate's progress reaches its end there.

    >>> stop = Stop(budget_s=10.0)
    >>> stop.reserve = 10.0  # a validation as long as the budget: no step fits
    >>> stop(0)
    True
    """

    def __init__(self, steps: int | None = None, budget_s: float | None = None,
                 overall: tuple[float, float] | None = None):
        self.steps, self.budget_s = steps, budget_s
        self.start = time.perf_counter()
        self.overall = overall if overall is not None else (None if budget_s is None else (self.start, budget_s))
        self.reserve = 0.0

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since the start."""
        return (time.perf_counter() if now is None else now) - self.start

    def left(self, now: float | None = None) -> float | None:
        """Seconds of the budget left (None without a budget)."""
        return None if self.budget_s is None else self.budget_s - self.elapsed(now)

    def progress(self, step: int) -> float:
        """How far through its limits training is at ``step`` (0..1): the larger of the step and time fractions."""
        fractions = [0.0]
        if self.steps:
            fractions.append(step / self.steps)
        if self.overall is not None and self.overall[1] > 0:
            span = max(self.overall[1] - self.reserve, 1e-9)
            fractions.append((time.perf_counter() - self.overall[0]) / span)
        return min(1.0, max(fractions))

    def __call__(self, step: int) -> bool:
        if self.steps is not None and step >= self.steps:
            return True
        return self.budget_s is not None and self.elapsed() + self.reserve >= self.budget_s


class Tail:
    """What :class:`Stop` keeps back at the end of a budget, from the durations :func:`fit` measures: the mean
    training step, the last validation (estimated from the step until one is timed) and the last checkpoint."""

    def __init__(self, val_images: int):
        self.val_images, self.batch = val_images, 1
        self.step_s: float | None = None
        self.val_s: float | None = None
        self.save_s = 0.0

    def stepped(self, seconds: float, batch: int) -> None:
        """A training step of ``batch`` images took ``seconds`` (a running mean; a compiling step is left out)."""
        self.step_s = seconds if self.step_s is None else 0.9 * self.step_s + 0.1 * seconds
        self.batch = batch

    def seconds(self) -> float:
        """The reserve: a step, a validation and a checkpoint."""
        if self.step_s is None:
            return 0.0
        val = self.val_s
        if val is None:
            val = self.step_s * math.ceil(self.val_images / self.batch) * VAL_STEP_FRACTION
        return self.step_s + val + self.save_s


def fit(unit: TrainUnit, batches: Iterator[Tensor], stop: Stop, sink: MetricsSink | NullSink,
        dp: DataParallel | None = None) -> None:
    """Train ``unit`` on ``batches`` until ``stop(unit.step)``: its optimiser on the NLL in bits/dim plus the
    model's regulariser, with learning-rate warm-up (and decay), gradient clipping and Polyak averaging when
    asked for.

    A stop signal (:mod:`waveletflow.training.signals`) ends training after the current step, like the step count.
    A step whose loss or gradient norm is not finite is skipped (more than 50 non-finite losses in a row are an
    error). Validates every ``eval_every`` steps and at the end, writes metrics every ``log_every`` steps to
    ``sink``, and checkpoints every ``checkpoint_every`` steps or ``checkpoint_seconds`` seconds; parameters that
    became non-finite are never checkpointed: the last checkpoint is restored instead.

    With ``dp`` (a data-parallel group, :mod:`waveletflow.training.distributed`) each batch is the group's global
    batch: this rank trains on its slice, gradients are averaged by ``DistributedDataParallel``, the ranks agree
    each step on stopping, the learning rate's progress, skipped steps and checkpoints, and only the group's
    writer validates and writes files.
    """
    opts, model = unit.opts, unit.model
    writer = dp is None or dp.writer
    skipped, grad_norm, last_checkpoint = 0, float("nan"), time.perf_counter()
    tail = Tail(len(unit.val_images) if writer else 0)  # only the writer validates; the ranks agree on stopping
    while True:  # a stop signal (SIGINT, SIGTERM) ends the loop after a whole step, as the step count does
        done, progress = float(stop(unit.step) or requested() is not None), stop.progress(unit.step)
        if dp is not None:
            done, progress = dp.agree(done, progress)
        if done:
            break
        lr = unit.set_lr(progress)
        step_start = time.perf_counter()
        x = next(batches)
        if dp is None:
            nll, reg, nfe = unit.objective(x)
            loss = nll.mean() / (unit.dims * LN2) + reg
        else:
            part = dp.slice(x)
            with unit.precision():
                nll, reg, nfe = dp.objective(part)
            loss = nll.mean() * dp.scale(x.shape[0], part.shape[0]) / (unit.dims * LN2) + reg
        unit.optimizer.zero_grad(set_to_none=True)
        bad = not bool(torch.isfinite(loss))
        if dp is not None:
            bad = bool(dp.agree(float(bad))[0])
        if bad:
            skipped += 1
            if skipped > MAX_NONFINITE_LOSSES:
                raise Diverged(f"{unit.desc}: the loss stayed non-finite; lower --lr (its last checkpoint, if one was "
                               "written, is kept)")
            continue
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(unit.module.parameters(), opts.grad_clip))
        if not math.isfinite(grad_norm):  # the same on every rank: the gradients were averaged
            skipped += 1
            unit.optimizer.zero_grad(set_to_none=True)
            continue
        unit.optimizer.step()
        if opts.compile and unit.compile_s is None:  # the first step compiles the forward and backward graphs
            unit.compile_s = time.perf_counter() - step_start
            log.info("%s: training step compiled in %.1f s", unit.desc, unit.compile_s)
        else:
            tail.stepped(time.perf_counter() - step_start, x.shape[0])
        skipped = 0
        unit.step += 1
        if unit.average is not None:
            unit.average.update(unit.step)
        sink.record(float(bits_per_dim(-nll.detach().mean(), unit.dims, model.n_bits)), x.shape[0])
        now = time.perf_counter()
        elapsed = unit.elapsed_before + stop.elapsed(now)
        due = unit.step % opts.checkpoint_every == 0 or (writer and now - last_checkpoint > opts.checkpoint_seconds)
        if dp is not None:
            due = bool(dp.agree(float(due))[0])
        stop.reserve = tail.seconds()
        if writer:
            val = None
            if unit.step % opts.eval_every == 0 or stop(unit.step):
                val_start = time.perf_counter()
                val = unit.validate()
                tail.val_s = time.perf_counter() - val_start
            if val is not None or unit.step % opts.log_every == 0:
                unit.train_bpd = sink.log(unit.step, elapsed, lr, grad_norm, nfe, val, stop.left(now))
        if due:
            if writer:
                save_start = time.perf_counter()
                if not unit.save(elapsed):
                    unit.restore()
                tail.save_s = time.perf_counter() - save_start
            elif not unit.finite():  # the writer found the same parameters non-finite and restores them
                unit.restore()
            last_checkpoint = now
