"""One trainer for every model type: each level trains on its own (Yu et al. 2020, §3), or a set of levels
together; running the same command again resumes every unit where it stopped.

The files of a run are described in :mod:`waveletflow.rundir`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from dataclasses import replace
from logging.handlers import QueueHandler, QueueListener
from pathlib import Path
from typing import Any

import torch

from waveletflow.data import ImageDataset, load_dataset
from waveletflow.errors import UserInputError
from waveletflow.models import FlowModel
from waveletflow.rundir import RunDir
from waveletflow.training.loop import Stop, fit
from waveletflow.training.options import TrainOptions, resolve_device
from waveletflow.training.plots import plot_curves
from waveletflow.training.run import budget_shares, new_model, parse_levels, prepare_run, split_train_val
from waveletflow.training.sinks import MetricsSink
from waveletflow.training.unit import TrainUnit

log = logging.getLogger("waveletflow")


def train_level(model: FlowModel, level: int | list[int], run_dir: str | Path, train_images, val_images,
                data_bits: int, opts: TrainOptions, budget_s: float | None = None) -> dict[str, Any]:
    """Train one level, or several levels jointly (one optimiser on their summed NLL, the bits/dim of the image
    when they are all the levels), until ``opts.steps`` optimiser steps in total or ``budget_s`` seconds.

    Resumes from the unit's checkpoint when there is one (step, optimiser, random generator). Returns a summary:
    ``{level, step, elapsed_s, val_bpd}``, with ``level`` a list and ``levels_val_bpd`` for a joint unit.
    """
    run = RunDir(run_dir)
    unit = TrainUnit(model, level, run, opts, train_images, val_images, data_bits).open()
    with MetricsSink(run, unit.levels, unit.desc, opts.steps, unit.step, opts.progress, opts.progress_position) as sink:
        stop = Stop(opts.steps, budget_s)
        fit(unit, unit.batches(), stop, sink)
    if unit.val_bpd is None:
        unit.validate()
    elapsed = unit.elapsed_before + stop.elapsed()
    if not unit.save(elapsed):
        raise UserInputError(f"{unit.desc}: parameters became non-finite; the last good checkpoint was kept")
    return unit.summary(elapsed)


def train(run_dir: str | Path, data_spec: str, model_type: str | None = None, level_spec: str = "all",
          parallel: int = 1, opts: TrainOptions | None = None, overrides: dict[str, Any] | None = None,
          n_bits: int | None = None, image_size: int | None = None, data: ImageDataset | None = None,
          preset: str | None = None) -> list[dict[str, Any]]:
    """Train (or resume) the levels ``level_spec`` of the run in ``run_dir``; returns one summary per unit.

    Args:
        data_spec: the dataset (see :func:`waveletflow.data.load_dataset`); ``data``, when given, is used
            instead of loading it.
        model_type, overrides, preset, n_bits: the model of a new run (see :func:`prepare_run`).
        parallel: train the levels in this many worker processes sharing the cores. The workers are started with
            ``multiprocessing``'s spawn method and receive the dataset: a script that calls ``train`` with
            ``parallel > 1`` must do so under ``if __name__ == "__main__":``.
        image_size: the image side of a folder dataset.
    """
    opts = opts or TrainOptions()
    if opts.steps is None and opts.time_budget is None:
        raise UserInputError("give --steps or --time-budget")
    if opts.joint and parallel > 1:
        raise UserInputError("--joint trains its levels together in one process; drop --parallel")
    opts = replace(opts, device=resolve_device(opts.device))
    run = RunDir(run_dir)
    data = data or load_dataset(data_spec, image_size=image_size)
    name, config = prepare_run(run.path, data, data_spec, model_type, overrides, n_bits, opts.seed, level_spec, preset)
    info = run.read_run()
    model = new_model(name, config, info.get("seed", opts.seed)).to(opts.device)
    levels = parse_levels(level_spec, len(model.levels))
    shares = budget_shares(model.level_dims, levels)
    if parallel > 1 and len(levels) > 1:
        results = _train_parallel(run, data_spec, data, levels, parallel, opts, shares)
    else:
        train_x, val_x = split_train_val(data, info["val_size"])
        val_x = val_x[: opts.val_images]
        units = [levels] if opts.joint else [[v] for v in levels]
        results, start = [], time.perf_counter()
        for i, unit in enumerate(units):
            budget = None
            if opts.time_budget is not None:
                left = opts.time_budget - (time.perf_counter() - start)
                rest = sum(shares[v] for u in units[i:] for v in u)
                budget = max(0.0, left * sum(shares[v] for v in unit) / rest)
            results.append(train_level(model, unit, run.path, train_x, val_x, info["data_bits"], opts, budget))
    if opts.curves:
        plot_curves(run.path, names=model.level_names())
    return results


# ----- level workers -------------------------------------------------------------------------------
def _train_parallel(run: RunDir, data_spec: str, data: ImageDataset, levels: list[int], parallel: int,
                    opts: TrainOptions, shares: dict[int, float]) -> list[dict[str, Any]]:
    """Split levels over ``parallel`` worker processes (greedy by budget share) that share the cores."""
    groups: list[list[int]] = [[] for _ in range(min(parallel, len(levels)))]
    load = [0.0] * len(groups)
    for level in sorted(levels, key=lambda lv: -shares[lv]):
        w = load.index(min(load))
        groups[w].append(level)
        load[w] += shares[level]
    threads = max(1, (os.cpu_count() or 1) // len(groups))
    ctx = multiprocessing.get_context("spawn")
    records = ctx.Queue()  # the workers' log records, shown here through this process's handlers
    relay = QueueListener(records, _Relay())
    relay.start()
    workers = []
    try:
        for w, group in enumerate(groups):
            spec = ",".join(map(str, sorted(group)))
            receive, send = ctx.Pipe(duplex=False)
            worker_opts = replace(opts, curves=False, progress_position=w)
            proc = ctx.Process(target=_level_worker, name=f"waveletflow-levels-{spec}",
                               args=(send, str(run.path), data_spec, data, spec, worker_opts, threads,
                                     records, log.getEffectiveLevel()))
            proc.start()
            send.close()
            workers.append((spec, proc, receive))
        results, errors = [], []
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
        for _, proc, _ in workers:
            if proc.is_alive():
                proc.terminate()
                proc.join()
        relay.stop()
    if errors:
        raise UserInputError(f"a level worker failed ({'; '.join(errors)}); rerun the same command to resume")
    return sorted(results, key=lambda r: r["level"])


class _Relay(logging.Handler):
    """Hands a level worker's log record to the library's log of this process."""

    def emit(self, record: logging.LogRecord) -> None:
        log.handle(record)


def _level_worker(conn, run_dir: str, data_spec: str, data: ImageDataset, level_spec: str, opts: TrainOptions,
                  threads: int, records, log_level: int) -> None:
    """Body of a level worker process: train ``level_spec`` of an existing run, log through ``records`` (a queue
    the parent reads) and send back ``("ok", summaries)`` or ``("error", one line)``."""
    torch.set_num_threads(threads)
    log.handlers[:] = [QueueHandler(records)]
    log.setLevel(log_level)
    log.propagate = False
    try:
        result = ("ok", train(run_dir, data_spec, None, level_spec, 1, opts, data=data))
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else ""
        result = ("error", text if isinstance(exc, UserInputError) else f"{type(exc).__name__}: {text}")
    conn.send(result)
    conn.close()
