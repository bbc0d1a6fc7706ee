"""``train`` as one rank of a ``torchrun`` job: the first rank checks and prepares the run (holding its lock), every
rank learns the placement of ranks on levels (:func:`~waveletflow.training.distributed.place_levels`) and trains
its part; the run folder is the one a single process would have written."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from waveletflow.data import ImageDataset, load_dataset
from waveletflow.errors import RankError, ReportedElsewhere, UserInputError
from waveletflow.models import FlowModel
from waveletflow.rundir import MODEL_FILE, RUN_FILE, RunDir, write_json_atomic
from waveletflow.training import distributed as D
from waveletflow.training import signals
from waveletflow.training.levels import train_by_gain, train_in_turn, train_level
from waveletflow.training.options import TrainOptions
from waveletflow.training.plots import plot_curves
from waveletflow.training.run import (
    check_joint, check_units, new_model, parse_levels, prepare_run, remove_new_run, split_train_val,
)
from waveletflow.training.schedule import budget_shares
from waveletflow.training.spec import RunSpec
from waveletflow.training.unit import UnitResult

log = logging.getLogger("waveletflow")


def level_weights(model: FlowModel, levels: list[int], run: RunDir, opts: TrainOptions) -> dict[int, float]:
    """Each level's share of the work, by which ranks are placed. With a time budget: the share of the budget it
    gets (:func:`budget_shares`). With a step count: its seconds per step as measured by an earlier command of the
    run (``state.json``) when every level has one, else an estimate (parameters × dimensions it models, which
    follows the convolutions' multiply-adds)."""
    if opts.steps is None:
        return budget_shares(model.level_dims, levels)
    measured = {}
    for v in levels:
        try:
            state = run.read_state(v) or {}
        except UserInputError:
            state = {}
        if state.get("step") and state.get("elapsed_s"):
            measured[v] = float(state["elapsed_s"]) / int(state["step"])
    if len(measured) == len(levels):
        return measured
    out = {}
    for v in levels:
        crop = model.level_crop(v)
        c, h, w = model.image_shape
        fraction = (crop * crop / (h * w)) if crop else 1.0
        params = sum(p.numel() for p in model.levels[v].parameters())
        out[v] = float(params) * model.level_dims[v] * fraction
    return out


def train_torchrun(env: D.DistEnv, run_dir: str | Path, spec: RunSpec, opts: TrainOptions,
                   data: ImageDataset | None = None, data_parallel: bool = True) -> list[UnitResult]:
    """Train this rank's part of the run (see :func:`waveletflow.training.train`); returns, on the first rank,
    the summaries of every unit of the job, on the others those of their own units."""
    device = D.device_for(opts.device, env.local_rank)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    opts = replace(opts, device=device)
    D.init(env, device)
    try:
        with _rank_errors(env), signals.graceful_stop():
            results, names = _train_rank(env, RunDir(run_dir), spec, opts, data, data_parallel)
            stopped_by = signals.requested()
    finally:
        D.shutdown()
    if opts.curves and env.rank == 0:
        plot_curves(Path(run_dir), names=names)
    if stopped_by is not None:  # every rank stopped its units with a checkpoint; the first one says where
        raise signals.stopped(results, stopped_by)
    return results


def _train_rank(env: D.DistEnv, run: RunDir, spec: RunSpec, opts: TrainOptions, data: ImageDataset | None,
                data_parallel: bool) -> tuple[list[UnitResult], list[str]]:
    with ExitStack() as stack:
        setup: dict[str, Any] | None = None
        error: BaseException | None = None
        if env.rank == 0:  # checks and prepares the run, holding its lock until every rank has finished
            try:
                spec = spec.on(run)
                data = data or load_dataset(spec.data, image_size=spec.image_size, crop=spec.crop)
                stack.enter_context(run.lock())
                new = run.is_empty()
                try:
                    name, config = prepare_run(run.path, data, spec, opts.seed, budget_s=opts.time_budget,
                                               device=opts.device)
                    info = run.read_run()
                    model = new_model(name, config, info.get("seed", opts.seed))
                    levels = parse_levels(spec.levels, len(model.levels))
                    check_joint(model, levels, opts.joint)
                    check_units(run, model, [levels] if opts.joint else [[v] for v in levels])
                    placement = D.place_levels(level_weights(model, levels, run, opts), env.world_size,
                                               opts.batch_size, opts.joint, data_parallel)
                    for path in run.remove_temporaries():
                        log.info("removed %s, left by a process stopped while saving", path)
                except Exception:
                    if new:
                        remove_new_run(run)
                    raise
                setup = {"model": run.read_model_json(), "run": run.read_run(), "placement": placement,
                         "name": name, "config": config,
                         "image_size": spec.image_size, "crop": spec.crop}
            except Exception as exc:  # noqa: BLE001 - every rank learns of it and stops
                error = exc
        setup = D.broadcast(setup if error is None else {"error": _one_line(error)})
        if "error" in setup:
            if error is not None:
                raise error
            raise ReportedElsewhere(setup["error"])
        placement: D.Placement = setup["placement"]
        # every rank makes every group, in the same order (torch.distributed asks it of new_group)
        groups = [D.new_group(r) if len(r) > 1 else None for r in placement.ranks]
        working = placement.working_ranks
        finish_group = D.new_group(working, timeout=D.FINISH_TIMEOUT)
        g = placement.group_of(env.rank)
        if env.rank == 0:
            log.info("torchrun: %d ranks: %s", env.world_size, placement.describe())
            if env.restart:
                log.info("torchrun restarted the ranks (restart %d): every unit resumes from its last checkpoint",
                         env.restart)
        if g is None:
            log.info("rank %d has no level to train (%s); it exits", env.rank, placement.describe())
            return [], []
        if env.rank != 0:
            _write_run_files(run, setup)  # a rank on a machine that does not share the run folder
            data = data or load_dataset(spec.data, image_size=setup["image_size"], crop=setup["crop"])
        info = setup["run"]
        model = new_model(setup["name"], setup["config"], info.get("seed", opts.seed)).to(opts.device)
        levels, ranks = list(placement.levels[g]), placement.ranks[g]
        position = ranks[0] if len(ranks) > 1 else env.rank
        opts = replace(opts, progress=opts.progress and env.rank == ranks[0], curves=False,
                       progress_position=opts.progress_position + placement.working_ranks.index(position))
        train_x, val_x = split_train_val(data, info["val_size"])
        args = (model, levels, run, train_x, val_x[: opts.val_images], data.n_bits, opts)
        if len(ranks) > 1:
            dp = D.DataParallel(groups[g], ranks, env.rank, opts.device)
            results = [train_level(model, levels if opts.joint else levels[0], run.path, train_x,
                                   val_x[: opts.val_images], data.n_bits, opts, opts.time_budget, dp=dp)]
            if not dp.writer:
                results = []
        elif opts.schedule == "gain" and opts.time_budget is not None and not opts.joint and len(levels) > 1:
            results = train_by_gain(*args)
        else:
            results = train_in_turn(*args)
        everything = D.all_gather(results, group=finish_group)  # waits for the slowest level
        results = sorted((r for part in everything for r in part),
                         key=lambda r: r.levels)
        return results, model.level_names()


@contextmanager
def _rank_errors(env: D.DistEnv) -> Iterator[None]:
    """Errors a rank other than the first meets on its own, and a lost peer, as one-line :class:`RankError`."""
    try:
        yield
    except ReportedElsewhere:
        raise
    except UserInputError as exc:
        if env.rank == 0 or isinstance(exc, RankError):
            raise
        raise RankError(f"rank {env.rank}: {exc}") from None
    except RuntimeError as exc:  # a peer died: torchrun stops (or restarts) every rank
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if not isinstance(exc, torch.distributed.DistError) and not any(
                w in first.lower() for w in ("gloo", "nccl", "connection closed", "connection reset")):
            raise
        raise RankError(f"rank {env.rank} lost contact with the other ranks ({first[:200]}); checkpoints "
                        f"written so far are kept: rerun the command (or use torchrun --max-restarts) to "
                        f"resume") from None


def _write_run_files(run: RunDir, setup: dict[str, Any]) -> None:
    """Write the run's ``model.json`` and ``run.json`` where this rank does not see them (no shared folder)."""
    if run.model_file.is_file() and run.run_file.is_file():
        return
    run.path.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run.path / MODEL_FILE, setup["model"])
    write_json_atomic(run.path / RUN_FILE, setup["run"])


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text if isinstance(exc, UserInputError) else f"{type(exc).__name__}: {text}"
