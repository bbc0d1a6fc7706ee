"""One trainer for every model type: each level trains on its own (Yu et al. 2020, §3), or a set of levels
together; running the same command again resumes every unit where it stopped.

The files of a run are described in :mod:`waveletflow.rundir`.
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, replace
from logging.handlers import QueueHandler, QueueListener
from pathlib import Path
from typing import Any

import torch

from waveletflow.data import ImageDataset, load_dataset
from waveletflow.errors import UserInputError
from waveletflow.models import FlowModel
from waveletflow.rundir import LOCK_FILE, RunDir
from waveletflow.training import signals
from waveletflow.training.distributed import DataParallel, DistEnv, worker_device
from waveletflow.training.loop import Stop, fit
from waveletflow.training.options import TrainOptions
from waveletflow.training.plots import plot_curves
from waveletflow.training.run import (
    check_joint, check_units, data_options, new_model, parse_levels, prepare_run, split_train_val,
)
from waveletflow.training.schedule import (
    MarginalGainSchedule, auto_workers, budget_shares, group_levels, split_threads, usable_cores,
)
from waveletflow.training.sinks import MetricsSink, NullSink
from waveletflow.training.unit import TrainUnit

log = logging.getLogger("waveletflow")


def train_level(model: FlowModel, level: int | list[int], run_dir: str | Path, train_images, val_images,
                data_bits: int, opts: TrainOptions, budget_s: float | None = None,
                dp: DataParallel | None = None) -> dict[str, Any]:
    """Train one level, or several levels jointly (one optimiser on their summed NLL, the bits/dim of the image
    when they are all the levels), until ``opts.steps`` optimiser steps in total or ``budget_s`` seconds.

    Resumes from the unit's checkpoint when there is one (step, optimiser, random generator). Returns a summary:
    ``{level, step, elapsed_s, val_bpd}``, with ``level`` a list and ``levels_val_bpd`` for a joint unit.
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


def _train_in_turn(model: FlowModel, levels: list[int], run: RunDir, train_images, val_images, data_bits: int,
                   opts: TrainOptions) -> list[dict[str, Any]]:
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


def _train_by_gain(model: FlowModel, levels: list[int], run: RunDir, train_images, val_images, data_bits: int,
                   opts: TrainOptions) -> list[dict[str, Any]]:
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


def train(run_dir: str | Path, data_spec: str, model_type: str | None = None, level_spec: str = "all",
          parallel: int | str = 1, opts: TrainOptions | None = None, overrides: dict[str, Any] | None = None,
          n_bits: int | None = None, image_size: int | None = None, data: ImageDataset | None = None,
          preset: str | None = None, crop: int | None = None, allow_other_data: bool = False,
          lock: bool = True, data_parallel: bool = True, threads: int | None = None) -> list[dict[str, Any]]:
    """Train (or resume) the levels ``level_spec`` of the run in ``run_dir``; returns one summary per unit.

    Everything is checked before anything is written: the options, the data (against the run's ``run.json``),
    the model config, every checkpoint and saved weights of the run. A new run that fails before its first
    checkpoint leaves no folder behind. While training, the run is locked: a second ``train`` on it is refused.

    Args:
        data_spec: the dataset (see :func:`waveletflow.data.load_dataset`); ``data``, when given, is used
            instead of loading it.
        model_type, overrides, preset, n_bits: the model of a new run (see :func:`prepare_run`).
        parallel: train the levels in this many worker processes sharing the cores; ``"auto"`` (the CLI's
            default): one per level, at most one per core (one per GPU on CUDA), the threads split by the levels'
            work (:func:`~waveletflow.training.schedule.auto_workers`, :func:`~waveletflow.training.schedule.
            split_threads`). The workers are started with ``multiprocessing``'s spawn method and receive the
            dataset: a script that calls ``train`` with more than one worker must do so under
            ``if __name__ == "__main__":``.
        threads: the CPU threads (cores) the command may use in all (default: every core it may run on).
        image_size, crop: resize a folder's images to this side; train on random crops of this side (centre
            crops for validation), pixel values unchanged. A resumed run uses the ones in its ``run.json``
            unless given.
        allow_other_data: go on training an existing run on data other than it was made with (refused
            otherwise).
        lock: take the run's lock (False only where the caller holds it: the level workers of ``parallel``).
        data_parallel: under ``torchrun`` with more ranks than levels, the further ranks train the levels with the
            most work per rank data-parallel (``DistributedDataParallel``); False leaves them without a level
            (they exit at once).

    Started by ``torchrun`` (``WORLD_SIZE`` is set), this process is one rank of the job: the ranks are placed on
    the levels (:func:`~waveletflow.training.distributed.place_levels`), the first rank checks and prepares the
    run and holds its lock, one rank per level writes its files, and the run folder is the one a single process
    would have written (:mod:`waveletflow.training.torchrun`).
    """
    opts = opts or TrainOptions()
    if opts.steps is None and opts.time_budget is None:
        raise UserInputError("give --steps or --time-budget")
    if parallel != "auto" and (isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1):
        raise UserInputError(f"--parallel must be 'auto' or at least 1, got {parallel!r}")
    if opts.joint and parallel != "auto" and parallel > 1:
        raise UserInputError("--joint trains its levels together in one process; drop --parallel")
    if threads is not None and threads < 1:
        raise UserInputError(f"--threads must be at least 1, got {threads}")
    opts = opts.resolved()
    env = DistEnv.from_env()
    if env is not None and lock:  # a rank of a torchrun job (level workers of --parallel never are)
        if parallel != "auto" and parallel > 1:
            raise UserInputError("--parallel starts level processes of its own; under torchrun every rank is one "
                                 "already: leave --parallel out")
        from waveletflow.training.torchrun import train_torchrun

        return train_torchrun(env, run_dir, data_spec, model_type, level_spec, opts, overrides, n_bits, image_size,
                              data, preset, crop, allow_other_data, data_parallel)
    run = RunDir(run_dir)
    image_size, crop = data_options(run, image_size, crop)
    data = data or load_dataset(data_spec, image_size=image_size, crop=crop)
    with (signals.graceful_stop() if lock else nullcontext()), (run.lock() if lock else nullcontext()):
        new = run.is_empty()  # only then may a failure remove what this command wrote
        try:
            name, config = prepare_run(run.path, data, data_spec, model_type, overrides, n_bits, opts.seed,
                                       level_spec, preset, image_size, crop, allow_other_data,
                                       budget_s=opts.time_budget, device=opts.device)
            info = run.read_run()
            model = new_model(name, config, info.get("seed", opts.seed)).to(opts.device)
            levels = parse_levels(level_spec, len(model.levels))
            check_joint(model, levels, opts.joint)
            check_units(run, model, [levels] if opts.joint else [[v] for v in levels])
            work = Workers.plan(model, levels, parallel, opts, threads)
            if lock:
                for path in run.remove_temporaries():
                    log.info("removed %s, left by a process stopped while saving", path)
                log.info("training %s of %s: %s", "level " + str(levels[0]) if len(levels) == 1
                         else "levels " + ",".join(map(str, levels)), run, work.describe(opts))
                run.record_training(work.record(opts))
            results = _train_levels(run, data_spec, data, model, levels, work, opts, info)
            stopped_by = signals.requested() if lock else None
        except Exception:
            if new and lock:
                _remove_new_run(run)
            raise
    if opts.curves:
        plot_curves(run.path, names=model.level_names())
    if stopped_by is not None:
        raise signals.stopped(results, stopped_by)
    return results


@dataclass(frozen=True)
class Workers:
    """How one ``train`` command spreads its levels over processes: ``groups[i]`` are the levels worker ``i``
    trains (in turn), with ``threads[i]`` CPU threads (None: torch's default, in this process)."""

    groups: tuple[tuple[int, ...], ...]
    threads: tuple[int | None, ...]

    @classmethod
    def plan(cls, model: FlowModel, levels: list[int], parallel: int | str, opts: TrainOptions,
             threads: int | None) -> Workers:
        """The workers of ``parallel`` (a count, or ``auto``) for ``levels``, balanced by their budget shares."""
        shares = budget_shares(model.level_dims, levels)
        cores = threads or usable_cores()
        gpus = torch.cuda.device_count() if opts.device.startswith("cuda") else 0
        n = 1 if opts.joint else (auto_workers(len(levels), opts.device, cores, gpus) if parallel == "auto"
                                  else min(int(parallel), len(levels)))
        if n <= 1:
            return cls((tuple(levels),), (threads,))
        groups = group_levels(shares, n)
        return cls(tuple(map(tuple, groups)), tuple(split_threads([sum(shares[v] for v in g) for g in groups], cores)))

    def describe(self, opts: TrainOptions) -> str:
        """One line: processes and threads, precision, batch, compile."""
        def levels(g: tuple[int, ...]) -> str:
            return ("level " if len(g) == 1 else "levels ") + ",".join(map(str, g))

        if len(self.groups) == 1:
            t = self.threads[0] or torch.get_num_threads()
            where = f"1 process, {t} thread{'s' if t > 1 else ''}"
        else:
            where = f"{len(self.groups)} processes (" + "; ".join(
                f"{levels(g)}: {t} thread{'s' if t > 1 else ''}" for g, t in zip(self.groups, self.threads)) + ")"
        how = f"precision {opts.precision}, batch {opts.batch_size}"
        return f"{where} on {opts.device}; {how}" + (", compiled steps" if opts.compile else "")

    def record(self, opts: TrainOptions) -> dict[str, Any]:
        """What ``run.json`` keeps of the last ``train`` command."""
        return {"workers": len(self.groups), "groups": [list(g) for g in self.groups],
                "threads": [t or torch.get_num_threads() for t in self.threads], "device": opts.device,
                "precision": opts.precision, "batch_size": opts.batch_size, "compile": opts.compile,
                "time_budget": opts.time_budget, "steps": opts.steps}


def _train_levels(run: RunDir, data_spec: str, data: ImageDataset, model: FlowModel, levels: list[int],
                  work: Workers, opts: TrainOptions, info: dict[str, Any]) -> list[dict[str, Any]]:
    if len(work.groups) > 1:
        return _train_parallel(run, data_spec, data, work, opts)
    train_x, val_x = split_train_val(data, info["val_size"])
    args = (model, levels, run, train_x, val_x[: opts.val_images], data.n_bits, opts)
    if opts.schedule == "gain" and opts.time_budget is not None and not opts.joint and len(levels) > 1:
        return _train_by_gain(*args)
    return _train_in_turn(*args)


def _remove_new_run(run: RunDir) -> None:
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


# ----- level workers -------------------------------------------------------------------------------
def _train_parallel(run: RunDir, data_spec: str, data: ImageDataset, work: Workers,
                    opts: TrainOptions) -> list[dict[str, Any]]:
    """Train ``work``'s groups of levels in worker processes that share the cores; on CUDA with several GPUs each
    worker trains on its own (``cuda:i``)."""
    ctx = multiprocessing.get_context("spawn")
    started = time.monotonic()  # a worker's budget counts from here: its start-up is part of the command's budget
    stop = ctx.Event()  # set at a stop signal: the workers ignore signals and follow this
    records = ctx.Queue()  # the workers' log records, shown here through this process's handlers
    relay = QueueListener(records, _Relay())
    relay.start()
    workers = []
    try:
        for w, (group, threads) in enumerate(zip(work.groups, work.threads)):
            spec = ",".join(map(str, sorted(group)))
            receive, send = ctx.Pipe(duplex=False)
            worker_opts = replace(opts, curves=False, progress_position=w, device=worker_device(opts.device, w))
            proc = ctx.Process(target=_level_worker, name=f"waveletflow-levels-{spec}",
                               args=(send, str(run.path), data_spec, data, spec, worker_opts, threads,
                                     records, log.getEffectiveLevel(), started, stop))
            proc.start()
            send.close()
            workers.append((spec, proc, receive))
        results, errors = [], []
        signals.set_forward(lambda signum: stop.set() if signum is not None else _kill(workers))
        for spec, proc, receive in workers:
            try:
                status, payload = receive.recv()
            except EOFError:
                status, payload = "error", None
            proc.join()
            if status == "ok":
                results.extend(payload)
            else:
                errors.append(f"levels {spec}: {payload or f'stopped with exit code {proc.exitcode}'}")
    finally:
        signals.set_forward(None)
        _kill(workers)
        relay.stop()
    if errors:
        raise UserInputError(f"a level worker failed ({'; '.join(errors)}); rerun the same command to resume")
    return sorted(results, key=lambda r: r["level"])


def _kill(workers) -> None:
    """Stop the level workers still running, at once."""
    for _, proc, _ in workers:
        if proc.is_alive():
            proc.terminate()
            proc.join()


class _Relay(logging.Handler):
    """Hands a level worker's log record to the library's log of this process."""

    def emit(self, record: logging.LogRecord) -> None:
        log.handle(record)


def _level_worker(conn, run_dir: str, data_spec: str, data: ImageDataset, level_spec: str, opts: TrainOptions,
                  threads: int, records, log_level: int, started: float, stop) -> None:
    """Body of a level worker process: train ``level_spec`` of an existing run, log through ``records`` (a queue
    the parent reads) and send back ``("ok", summaries)`` or ``("error", one line)``. A time budget counts from
    ``started`` (``time.monotonic`` in the parent, before the worker was started); the worker stops gracefully when
    the parent sets ``stop`` (it ignores SIGINT and SIGTERM itself)."""
    signals.follow(stop)
    if opts.time_budget is not None:
        opts = replace(opts, time_budget=max(1e-3, opts.time_budget - (time.monotonic() - started)))
    torch.set_num_threads(threads)
    log.handlers[:] = [QueueHandler(records)]
    log.setLevel(log_level)
    log.propagate = False
    try:
        result = ("ok", train(run_dir, data_spec, None, level_spec, 1, opts, data=data, allow_other_data=True,
                              lock=False))
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else ""
        result = ("error", text if isinstance(exc, UserInputError) else f"{type(exc).__name__}: {text}")
    conn.send(result)
    conn.close()
