"""Training the units of one process: one unit (:func:`train_level`), the units one after the other with the
budget split up front (:func:`train_in_turn`), or slice by slice to the level that gains most
(:func:`train_by_gain`). Both ``train`` and a ``torchrun`` rank train their units with these."""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from pathlib import Path

from waveletflow.models import FlowModel
from waveletflow.rundir import RunDir
from waveletflow.training import signals
from waveletflow.training.distributed import DataParallel
from waveletflow.training.loop import Stop, fit
from waveletflow.training.options import TrainOptions
from waveletflow.training.schedule import MarginalGainSchedule, budget_shares
from waveletflow.training.sinks import MetricsSink, NullSink
from waveletflow.training.unit import TrainUnit, UnitResult

log = logging.getLogger("waveletflow")


def train_level(model: FlowModel, level: int | list[int], run_dir: str | Path, train_images, val_images,
                data_bits: int, opts: TrainOptions, budget_s: float | None = None,
                dp: DataParallel | None = None) -> UnitResult:
    """Train one level, or several levels jointly (one optimiser on their summed NLL, the bits/dim of the image
    when they are all the levels), until ``opts.steps`` optimiser steps in total or ``budget_s`` seconds.

    Resumes from the unit's checkpoint when there is one (step, optimiser, random generator). Returns how the
    unit ended (:class:`~waveletflow.training.unit.UnitResult`).
    With ``dp`` (under ``torchrun``) this rank trains the unit data-parallel in that group; only the group's
    first rank writes files.
    """
    run = RunDir(run_dir)
    writer = dp is None or dp.writer
    unit = TrainUnit(model, level, run, opts, train_images, val_images, data_bits, writer=writer).open()
    if dp is not None:
        dp.attach(model, unit.levels, unit.steps)
    sink = (MetricsSink(run, unit.levels, unit.desc, opts.steps, unit.step, opts.progress, opts.progress_position)
            if writer else NullSink())
    with sink:
        stop = Stop(opts.steps, budget_s)
        fit(unit, unit.batches(), stop, sink, dp)
    return unit.finish(unit.elapsed_before + stop.elapsed())


def train_in_turn(model: FlowModel, levels: list[int], run: RunDir, train_images, val_images, data_bits: int,
                   opts: TrainOptions) -> list[UnitResult]:
    """The units one after the other (all levels as one unit with ``joint``), a time budget split up front by
    :func:`budget_shares`; time a unit leaves unused passes to the units after it."""
    shares = budget_shares(model.level_dims, levels)
    units = [levels] if opts.joint else [[v] for v in levels]
    results, start = [], time.perf_counter()
    for i, unit in enumerate(units):
        if signals.requested() is not None:  # stopped: the units not yet started stay as they are
            break
        budget = None
        if opts.time_budget is not None:
            left = opts.time_budget - (time.perf_counter() - start)
            rest = sum(shares[v] for u in units[i:] for v in u)
            budget = max(0.0, left * sum(shares[v] for v in unit) / rest)
        results.append(train_level(model, unit, run.path, train_images, val_images, data_bits, opts, budget))
    return results


def train_by_gain(model: FlowModel, levels: list[int], run: RunDir, train_images, val_images, data_bits: int,
                   opts: TrainOptions) -> list[UnitResult]:
    """Levels trained on their own, the time budget handed out in slices by :class:`MarginalGainSchedule`: each
    slice ends with a validation, whose figure (the level's contribution to the image's bits/dim) steers the next.
    With a learning-rate ``decay``, that final fraction of the budget is kept back and split among the levels by
    :func:`budget_shares`, so that every level ends its training with the decay."""
    units = {v: TrainUnit(model, v, run, opts, train_images, val_images, data_bits).open() for v in levels}
    gain_s = opts.time_budget * (1.0 - opts.decay)
    schedule = MarginalGainSchedule(levels, gain_s, opts.slice_seconds)
    start = time.perf_counter()
    with ExitStack() as stack:
        sinks = {v: stack.enter_context(MetricsSink(run, [v], units[v].desc, opts.steps, units[v].step, opts.progress,
                                                    opts.progress_position + i)) for i, v in enumerate(levels)}

        def run_slice(level: int, stop: Stop) -> bool:
            """Train ``level`` until ``stop``; False when it is at its step count (nothing more to give it)."""
            unit, step = units[level], units[level].step
            fit(unit, unit.batches(), stop, sinks[level])
            unit.elapsed_before += stop.elapsed()
            if unit.step > step and unit.val_step != unit.step:  # the clock ran out between a step and its check
                unit.validate()
            return unit.step > step

        while signals.requested() is None and (nxt := schedule.next_slice()) is not None:
            level, seconds = nxt
            seconds = min(seconds, gain_s - (time.perf_counter() - start))  # the clock decides
            if seconds <= 0:
                break
            stop = Stop(opts.steps, seconds, overall=(start, opts.time_budget))  # before the decay: full rate
            if not run_slice(level, stop):
                schedule.finish(level)
                continue
            schedule.report(level, stop.elapsed(), units[level].val_bpd * model.level_dims[level] / model.num_dims)
        if opts.decay > 0 and signals.requested() is None:
            open_levels = [v for v in levels if v not in schedule.finished]
            shares = budget_shares(model.level_dims, open_levels) if open_levels else {}
            for i, level in enumerate(open_levels):
                rest = sum(shares[v] for v in open_levels[i:])
                seconds = (opts.time_budget - (time.perf_counter() - start)) * shares[level] / rest
                if seconds <= 0:
                    break
                # progress runs from 1 - decay to 1 over this level's part: its learning rate decays to zero
                lead = seconds * (1.0 - opts.decay) / opts.decay
                run_slice(level, Stop(opts.steps, seconds, overall=(time.perf_counter() - lead, seconds / opts.decay)))
    return [units[v].finish(units[v].elapsed_before) for v in levels]
