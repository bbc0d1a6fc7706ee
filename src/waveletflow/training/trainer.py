"""One trainer for every model type: each level trains on its own (Yu et al. 2020, §3), or a set of levels
together; running the same command again resumes every unit where it stopped.

The files of a run are described in :mod:`waveletflow.rundir`.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from logging.handlers import QueueHandler, QueueListener
from pathlib import Path
from typing import Any

import torch

from waveletflow.data import ImageDataset, load_dataset
from waveletflow.errors import Diverged, UserInputError
from waveletflow.models import FlowModel
from waveletflow.rundir import RunDir
from waveletflow.training import signals
from waveletflow.training.distributed import DistEnv, worker_device
from waveletflow.training.levels import train_by_gain, train_in_turn
from waveletflow.training.options import TrainOptions
from waveletflow.training.plots import plot_curves
from waveletflow.training.run import (
    check_joint, check_units, new_model, parse_levels, prepare_run, remove_new_run, split_train_val,
)
from waveletflow.training.schedule import auto_workers, budget_shares, group_levels, split_threads, usable_cores
from waveletflow.training.spec import ModelOptions, RunSpec, check_budget, check_workers
from waveletflow.training.torchrun import train_torchrun
from waveletflow.training.unit import UnitResult

log = logging.getLogger("waveletflow")


def train(run_dir: str | Path, data_spec: str, model_type: str | None = None, level_spec: str = "all",
          parallel: int | str = 1, opts: TrainOptions | None = None, overrides: dict[str, Any] | None = None,
          n_bits: int | None = None, image_size: int | None = None, data: ImageDataset | None = None,
          preset: str | None = None, crop: int | None = None, allow_other_data: bool = False,
          lock: bool = True, data_parallel: bool = True, threads: int | None = None,
          options: ModelOptions | None = None) -> list[UnitResult]:
    """Train (or resume) the levels ``level_spec`` of the run in ``run_dir``; returns one summary per unit.

    Everything is checked before anything is written: the options, the data (against the run's ``run.json``),
    the model config, every checkpoint and saved weights of the run. A new run that fails before its first
    checkpoint leaves no folder behind. While training, the run is locked: a second ``train`` on it is refused.

    Args:
        data_spec: the dataset (see :func:`waveletflow.data.load_dataset`); ``data``, when given, is used
            instead of loading it.
        model_type: the model type of a new run, or the one an existing run must hold (see :func:`prepare_run`).
        overrides: the model config's entries of a new run (see :func:`prepare_run`).
        preset: the preset of a new run (see :func:`prepare_run`).
        n_bits: the bit depth of a new run's model (default: the data's).
        parallel: train the levels in this many worker processes sharing the cores; ``"auto"`` (the CLI's
            default): one per level, at most one per core (one per GPU on CUDA), the threads split by the levels'
            work (:func:`~waveletflow.training.schedule.auto_workers`, :func:`~waveletflow.training.schedule.
            split_threads`). The workers are started with ``multiprocessing``'s spawn method and receive the
            dataset: a script that calls ``train`` with more than one worker must do so under
            ``if __name__ == "__main__":``.
        threads: the CPU threads (cores) the command may use in all (default: every core it may run on).
        image_size: resize a folder's images to this side. A resumed run uses the one in its ``run.json``
            unless given.
        crop: train on random crops of this side (centre crops for validation), pixel values unchanged; a
            resumed run uses the one in its ``run.json`` unless given.
        allow_other_data: go on training an existing run on data other than it was made with (refused
            otherwise).
        options: the wavelet, the images' noise and the detail levels' context of a new model
            (:class:`~waveletflow.training.spec.ModelOptions`, applied after the capacity is fitted); an existing run
            must hold those given.
        lock: take the run's lock (False only where the caller holds it: the level workers of ``parallel``).
        data_parallel: under ``torchrun`` with more ranks than levels, the further ranks train the levels with the
            most work per rank data-parallel (``DistributedDataParallel``); False leaves them without a level
            (they exit at once).

    Started by ``torchrun`` (``WORLD_SIZE`` is set), this process is one rank of the job: the ranks are placed on
    the levels (:func:`~waveletflow.training.distributed.place_levels`), the first rank checks and prepares the
    run and holds its lock, one rank per level writes its files, and the run folder is the one a single process
    would have written (:mod:`waveletflow.training.torchrun`).
    """
    started = time.monotonic()  # a time budget counts from here: the start-up is part of it
    opts = opts or TrainOptions()
    check_budget(opts.steps, opts.time_budget)
    env = DistEnv.from_env()
    check_workers(parallel, threads, opts.joint, under_torchrun=env is not None and lock)
    opts = opts.resolved()
    spec = RunSpec(data_spec, level_spec, model_type, overrides, preset, n_bits, image_size, crop, allow_other_data,
                   options or ModelOptions())
    if env is not None and lock:  # a rank of a torchrun job (level workers of --parallel never are)
        return train_torchrun(env, run_dir, spec, opts, data, data_parallel)
    run = RunDir(run_dir)
    spec = spec.on(run)
    data = data or load_dataset(spec.data, image_size=spec.image_size, crop=spec.crop)
    with (signals.graceful_stop() if lock else nullcontext()), (run.lock() if lock else nullcontext()):
        new = run.is_empty()  # only then may a failure remove what this command wrote
        try:
            name, config = prepare_run(run.path, data, spec, opts.seed, budget_s=opts.time_budget, device=opts.device)
            info = run.read_run()
            model = new_model(name, config, info.get("seed", opts.seed)).to(opts.device)
            levels = parse_levels(spec.levels, len(model.levels))
            check_joint(model, levels, opts.joint)
            check_units(run, model, [levels] if opts.joint else [[v] for v in levels])
            work = Workers.plan(model, levels, parallel, opts, threads)
            if lock:
                for path in run.remove_temporaries():
                    log.info("removed %s, left by a process stopped while saving", path)
                log.info("training %s of %s: %s", "level " + str(levels[0]) if len(levels) == 1
                         else "levels " + ",".join(map(str, levels)), run, work.describe(opts))
                run.record_training(work.record(opts))
            results = _train_levels(run, data_spec, data, model, levels, work, opts.after(started), info)
            stopped_by = signals.requested() if lock else None
        except Exception:
            if new and lock:
                remove_new_run(run)
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
                  work: Workers, opts: TrainOptions, info: dict[str, Any]) -> list[UnitResult]:
    if len(work.groups) > 1:
        return _train_parallel(run, data_spec, data, work, opts)
    train_x, val_x = split_train_val(data, info["val_size"])
    args = (model, levels, run, train_x, val_x[: opts.val_images], data.n_bits, opts)
    if opts.schedule == "gain" and opts.time_budget is not None and not opts.joint and len(levels) > 1:
        return train_by_gain(*args)
    return train_in_turn(*args)


# ----- level workers -------------------------------------------------------------------------------
def _train_parallel(run: RunDir, data_spec: str, data: ImageDataset, work: Workers,
                    opts: TrainOptions) -> list[UnitResult]:
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
        results, errors, diverged = [], [], []
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
                diverged.append(status == "diverged")
    finally:
        signals.set_forward(None)
        _kill(workers)
        relay.stop()
    if errors and all(diverged):  # a caller can tell divergence from other errors (any other error is said as one)
        raise Diverged(f"a level worker diverged ({'; '.join(errors)})")
    if errors:
        raise UserInputError(f"a level worker failed ({'; '.join(errors)}); rerun the same command to resume")
    return sorted(results, key=lambda r: r.levels)


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
    the parent reads) and send back ``("ok", summaries)`` or ``("error", one line)`` (``"diverged"`` for
    :class:`~waveletflow.errors.Diverged`). A time budget counts from ``started`` (``time.monotonic`` in the parent,
    before the worker was started); the worker stops gracefully when the parent sets ``stop`` (it ignores SIGINT and
    SIGTERM itself)."""
    signals.follow(stop)
    opts = opts.after(started)
    torch.set_num_threads(threads)
    log.handlers[:] = [QueueHandler(records)]
    log.setLevel(log_level)
    log.propagate = False
    try:
        result = ("ok", train(run_dir, data_spec, None, level_spec, 1, opts, data=data, allow_other_data=True,
                              lock=False))
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else ""
        result = ("diverged" if isinstance(exc, Diverged) else "error",
                  text if isinstance(exc, UserInputError) else f"{type(exc).__name__}: {text}")
    conn.send(result)
    conn.close()
