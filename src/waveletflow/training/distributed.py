"""Training under ``torchrun`` (torch.distributed): which ranks train which levels, and data parallelism inside a
level.

Levels of a Wavelet Flow need no communication (Yu et al. 2020, §3), so the ranks of a ``torchrun`` job are
placed on levels: with no more ranks than levels, each rank trains a group of levels (loads balanced by
:func:`~waveletflow.training.schedule.group_levels`); with more, every level gets one rank and the remaining ranks
join the levels with the most work per rank, where they train with ``DistributedDataParallel`` in that level's
process group. Joint training is plain data parallelism over all ranks.

Inside a data-parallel group every rank draws the same global batch from the unit's generator (seeded as in a
single process) and trains on its own slice of it, so the ranks see distinct images, the stream is reproducible,
and ``k`` ranks take the same optimiser steps as one process on the same global batches. The ranks agree once a
step on when to stop and where the learning-rate schedule is (a time budget is measured on each rank's clock),
and on whether a loss was not finite, so they never part ways.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from waveletflow.errors import RendezvousError, UserInputError

#: seconds a rank waits for the others to join the rendezvous (``WAVELETFLOW_RENDEZVOUS_TIMEOUT`` overrides)
RENDEZVOUS_TIMEOUT_S = 300.0
#: how long the ranks wait for the slowest level at the end of a run (levels may train for very different times)
FINISH_TIMEOUT = datetime.timedelta(days=30)


@dataclass(frozen=True)
class DistEnv:
    """The torch.distributed environment that ``torchrun`` sets for each rank."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    restart: int  # TORCHELASTIC_RESTART_COUNT: how many times torchrun restarted the workers

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DistEnv | None:
        """The environment of a rank started by ``torchrun``, or None outside of one (no ``WORLD_SIZE``)."""
        env = os.environ if environ is None else environ
        if "WORLD_SIZE" not in env:
            return None
        try:
            world = int(env["WORLD_SIZE"])
            rank = int(env.get("RANK", "-1"))
            local_rank = int(env.get("LOCAL_RANK", rank))
            local_world = int(env.get("LOCAL_WORLD_SIZE", world))
            restart = int(env.get("TORCHELASTIC_RESTART_COUNT", "0"))
        except ValueError:
            raise UserInputError("the torch.distributed variables WORLD_SIZE, RANK and LOCAL_RANK must be whole "
                                 "numbers; start the ranks with torchrun") from None
        if world < 1 or not 0 <= rank < world:
            raise UserInputError(f"this process has no valid rank (RANK={env.get('RANK')!r}, WORLD_SIZE={world}); "
                                 "start the ranks with torchrun")
        return cls(rank, world, local_rank, local_world, restart)


@dataclass(frozen=True)
class Placement:
    """Which ranks train which levels: group ``g`` trains ``levels[g]`` (in turn, or together when ``joint``) on
    the global ranks ``ranks[g]``; a group of several ranks trains its one unit data-parallel."""

    levels: tuple[tuple[int, ...], ...]
    ranks: tuple[tuple[int, ...], ...]
    joint: bool = False

    def group_of(self, rank: int) -> int | None:
        """The group of ``rank``, or None for a rank without a level."""
        for g, ranks in enumerate(self.ranks):
            if rank in ranks:
                return g
        return None

    @property
    def working_ranks(self) -> list[int]:
        return sorted(r for ranks in self.ranks for r in ranks)

    def describe(self) -> str:
        """One line per group: ``levels 0,1 on rank 2`` or ``level 2 on ranks 3-5 (data-parallel)``."""
        lines = []
        for levels, ranks in zip(self.levels, self.ranks):
            what = ("levels " if len(levels) > 1 else "level ") + ",".join(map(str, levels))
            if len(ranks) == 1:
                lines.append(f"{what} on rank {ranks[0]}")
            else:
                lines.append(f"{what} on ranks {ranks[0]}-{ranks[-1]} (data-parallel)")
        return "; ".join(lines)


def place_levels(weights: dict[int, float], world_size: int, batch_size: int, joint: bool = False,
                 data_parallel: bool = True) -> Placement:
    """Place ``world_size`` ranks on the levels of ``weights`` (level → its share of the work).

    ``joint``: one group of all the levels on all ranks. Otherwise, up to as many ranks as levels: each rank a
    group of levels with loads as even as :func:`group_levels` makes them. More ranks than levels: one rank per
    level, then each further rank to the level with the most work per rank (data-parallel), contiguous ranks per
    level; with ``data_parallel`` False the further ranks get no level. A data-parallel group never has more ranks
    than images in a batch; more ranks than that is refused.
    """
    from waveletflow.training.schedule import group_levels

    levels = sorted(weights)
    if joint:
        if world_size > batch_size:
            raise UserInputError(f"more ranks than useful work: {world_size} ranks share a batch of {batch_size} "
                                 f"images; start at most {batch_size} ranks or raise --batch-size")
        return Placement((tuple(levels),), (tuple(range(world_size)),), joint=True)
    if world_size <= len(levels):
        groups = group_levels(weights, world_size)
        return Placement(tuple(map(tuple, groups)), tuple((r,) for r in range(len(groups))))
    counts = {v: 1 for v in levels}
    if data_parallel:
        for _ in range(world_size - len(levels)):
            open_levels = [v for v in levels if counts[v] < batch_size]
            if not open_levels:
                raise UserInputError(
                    f"more ranks than useful work: {world_size} ranks, but {len(levels)} level"
                    f"{'s' if len(levels) > 1 else ''} with batches of {batch_size} images can use at most "
                    f"{len(levels) * batch_size} (one image of a batch per rank); start fewer ranks or raise "
                    f"--batch-size")
            best = max(open_levels, key=lambda v: (weights[v] / counts[v], -v))
            counts[best] += 1
    ranks, start = [], 0
    for v in levels:
        ranks.append(tuple(range(start, start + counts[v])))
        start += counts[v]
    return Placement(tuple((v,) for v in levels), tuple(ranks))


def shard(batch_size: int, ranks: int, index: int) -> slice:
    """The slice of a global batch that rank ``index`` of ``ranks`` trains on (sizes differ by at most one)."""
    base, extra = divmod(batch_size, ranks)
    start = index * base + min(index, extra)
    return slice(start, start + base + (1 if index < extra else 0))


def rendezvous_timeout() -> datetime.timedelta:
    """:data:`RENDEZVOUS_TIMEOUT_S`, or ``WAVELETFLOW_RENDEZVOUS_TIMEOUT`` (seconds; anything else is refused)."""
    raw = os.environ.get("WAVELETFLOW_RENDEZVOUS_TIMEOUT", "")
    if not raw:
        return datetime.timedelta(seconds=RENDEZVOUS_TIMEOUT_S)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise UserInputError(f"WAVELETFLOW_RENDEZVOUS_TIMEOUT must be a positive number of seconds, got {raw!r}")
    return datetime.timedelta(seconds=seconds)


def init(env: DistEnv, device: str) -> str:
    """Join the job's process group (NCCL for CUDA devices, gloo otherwise); returns the backend. A missing or
    unreachable rendezvous is one clear line, after :func:`rendezvous_timeout` at most."""
    import torch.distributed as dist

    backend = "nccl" if device.startswith("cuda") else "gloo"
    if dist.is_initialized():
        return dist.get_backend()
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise RendezvousError(f"no torch.distributed rendezvous: {' and '.join(missing)} not set (WORLD_SIZE="
                             f"{env.world_size}); start the ranks with torchrun")
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    timeout = rendezvous_timeout()
    try:
        kwargs = {"device_id": torch.device(device)} if backend == "nccl" else {}
        with _quiet_native_stderr():  # c10d logs each retry with a C++ stack; the outcome is said below
            dist.init_process_group(backend, store=_store(env, timeout), rank=env.rank, world_size=env.world_size,
                                    timeout=timeout, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure to join is the user's rendezvous
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RendezvousError(f"cannot join the torch.distributed rendezvous at {where} as rank {env.rank} of "
                             f"{env.world_size}: {first}") from None
    return backend


def _store(env: DistEnv, timeout: datetime.timedelta):
    """The job's key-value store at ``MASTER_ADDR:MASTER_PORT`` (torchrun's agent hosts it; without torchrun, rank 0
    does), under a prefix of its own for each restart: process groups made after a restart must not find the
    addresses that the ranks of an earlier attempt left there."""
    import torch.distributed as dist

    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), env.world_size,
                          is_master=not agent and env.rank == 0, timeout=timeout)
    return dist.PrefixStore(f"waveletflow/{os.environ.get('TORCHELASTIC_RUN_ID', '')}/attempt_{env.restart}", store)


@contextmanager
def _quiet_native_stderr():
    """Send what native code writes to the standard error (file descriptor 2) nowhere while in the block."""
    import sys

    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no standard error to quiet
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class DataParallel:
    """The ranks of one data-parallel group: the unit's objective wrapped in ``DistributedDataParallel`` in the
    group's process group (:meth:`attach`), the rank's slice of each global batch, and the per-step agreements."""

    def __init__(self, group, ranks: tuple[int, ...], rank: int, device: str):
        self.group, self.ranks, self.size = group, tuple(ranks), len(ranks)
        self.index = self.ranks.index(rank)
        self.device = device
        self.objective: Any = None

    def attach(self, model, unit_levels: list[int], steps: int) -> DataParallel:
        """Wrap the objective of the unit's levels (opened: initialised or resumed) in ``DistributedDataParallel``,
        which starts every rank from the first rank's parameters."""
        from torch.nn.parallel import DistributedDataParallel

        self.objective = DistributedDataParallel(
            _Objective(model, unit_levels, steps), process_group=self.group,
            device_ids=[torch.device(self.device).index or 0] if self.device.startswith("cuda") else None)
        return self

    @property
    def writer(self) -> bool:
        """Whether this rank writes the group's checkpoints, weights and metrics (its first rank)."""
        return self.index == 0

    def slice(self, x: Tensor) -> Tensor:
        return x[shard(x.shape[0], self.size, self.index)]

    def scale(self, batch_size: int, shard_size: int) -> float:
        """The factor on a slice's mean loss that makes the group's averaged gradient the global batch's."""
        return shard_size * self.size / batch_size

    def agree(self, *values: float) -> list[float]:
        """The largest of each value over the group's ranks (stop flags, progress through the budget)."""
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return t.tolist()

    @property
    def _comm_device(self) -> str:
        return self.device if self.device.startswith("cuda") else "cpu"


class _Objective(torch.nn.Module):
    """A unit's training objective as a module whose parameters are its levels', for ``DistributedDataParallel``."""

    def __init__(self, model, levels: list[int], steps: int):
        super().__init__()
        self.levels_ = torch.nn.ModuleDict({str(v): model.levels[v] for v in levels})
        self._model = [model]  # not a submodule: only the unit's levels are the wrapper's parameters
        self._unit_levels, self._steps = list(levels), steps

    def forward(self, x: Tensor) -> Any:
        return self._model[0].objective(self._unit_levels, x, steps=self._steps)


def new_group(ranks: tuple[int, ...] | list[int], timeout: datetime.timedelta | None = None):
    """``torch.distributed.new_group``: every rank of the job must call it, in the same order."""
    import torch.distributed as dist

    return dist.new_group(list(ranks), timeout=timeout) if timeout else dist.new_group(list(ranks))


def broadcast(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather(obj: Any, group=None) -> list[Any]:
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, obj, group=group)
    return out


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def device_for(device: str, local_rank: int) -> str:
    """A rank's device: ``cuda:LOCAL_RANK`` (modulo the GPUs there are) when training on CUDA, else ``device``."""
    if device == "cuda" and torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return device


def worker_device(device: str, worker: int) -> str:
    """A ``--parallel`` worker's device: its own GPU (``cuda:i``, round robin) when training on CUDA with several."""
    if device == "cuda" and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return f"cuda:{worker % torch.cuda.device_count()}"
    return device
