"""How a time budget is shared among independently trained levels.

The image's bits/dim is the sum of the levels' contributions, and the levels train independently, so a budget can
be split up front (in proportion to the dimensions each level models, :func:`budget_shares`) or handed out slice
by slice to the level whose contribution is falling fastest per second (:class:`MarginalGainSchedule`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def budget_shares(level_dims: list[int], levels: list[int]) -> dict[int, float]:
    """How a time budget is shared among ``levels``: in proportion to each level's dimensions, with a floor of
    half an equal share, since the finest levels cost the most per step and converge the slowest."""
    total = sum(level_dims[i] for i in levels)
    raw = {i: max(level_dims[i] / total, 0.5 / len(levels)) for i in levels}
    s = sum(raw.values())
    return {i: v / s for i, v in raw.items()}


def group_levels(weights: dict[int, float], n_groups: int) -> list[list[int]]:
    """``weights`` (level → its share of the work) split into at most ``n_groups`` groups of levels with loads as
    even as a greedy split makes them: heaviest level first, each to the least loaded group. Deterministic; each
    group's levels sorted, groups in order of their first level."""
    groups: list[list[int]] = [[] for _ in range(max(1, min(n_groups, len(weights))))]
    load = [0.0] * len(groups)
    for level in sorted(weights, key=lambda lv: (-weights[lv], lv)):
        g = load.index(min(load))
        groups[g].append(level)
        load[g] += weights[level]
    return sorted((sorted(g) for g in groups if g), key=lambda g: g[0])


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system tells it, else all of them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def auto_workers(n_levels: int, device: str, cores: int, gpus: int = 0) -> int:
    """How many level processes ``--parallel auto`` starts: one per level, at most one per core on a CPU and one
    per GPU on CUDA (``gpus``), never more than the levels; 1 for a single level.

    >>> auto_workers(3, "cpu", 2), auto_workers(6, "cpu", 16), auto_workers(1, "cpu", 8), auto_workers(6, "cuda", 16, 4)
    (2, 6, 1, 4)
    """
    limit = max(1, gpus) if device.startswith("cuda") else max(1, cores)
    return max(1, min(n_levels, limit))


def split_threads(loads: list[float], cores: int) -> list[int]:
    """``cores`` threads shared among workers with these ``loads``: one each, then each further thread to the
    worker with the most load per thread (ties to the earlier one), so that the machine is used, never
    oversubscribed (unless there are more workers than cores), and the heaviest worker is helped most.

    >>> split_threads([0.69, 0.31], 2), split_threads([0.59, 0.15, 0.07, 0.07, 0.06, 0.06], 16)
    ([1, 1], [9, 3, 1, 1, 1, 1])
    """
    out = [1] * len(loads)
    for _ in range(cores - len(loads)):
        i = max(range(len(loads)), key=lambda k: (loads[k] / out[k], -k))
        out[i] += 1
    return out


@dataclass
class _Curve:
    spent: float = 0.0  # seconds trained
    points: list[tuple[float, float]] = field(default_factory=list)  # (seconds trained, contribution) after slices


class MarginalGainSchedule:
    """Hands out a time budget in slices, each to the level whose contribution to the image's bits/dim fell
    fastest per second over its last slice (an estimate of its marginal gain).

    Every level first gets slices until its guaranteed floor (``floor`` × an equal share of the budget) is spent,
    coarse levels first, so each has a measured curve; after that, the next slice goes to the level with the
    largest recent gain per second. Slices never reach past the budget.

    Args:
        levels: the levels to train.
        budget_s: the total budget in seconds.
        slice_s: the length of one slice (the last one may be shorter).
        floor: the fraction of an equal share that every level is guaranteed.
    """

    def __init__(self, levels: list[int], budget_s: float, slice_s: float, floor: float = 0.5):
        if not levels:
            raise ValueError("no levels to schedule")
        if budget_s <= 0 or slice_s <= 0 or not 0 <= floor <= 1:
            raise ValueError("the budget and the slice must be positive and the floor in [0, 1]")
        self.levels, self.budget_s, self.slice_s = list(levels), float(budget_s), float(slice_s)
        self.floor_s = floor * budget_s / len(levels)
        self.curves = {level: _Curve() for level in self.levels}
        self.finished: set[int] = set()

    @property
    def spent(self) -> float:
        """Seconds handed out and reported so far."""
        return sum(c.spent for c in self.curves.values())

    def spent_on(self, level: int) -> float:
        return self.curves[level].spent

    def next_slice(self) -> tuple[int, float] | None:
        """``(level, seconds)`` of the next slice, or None when the budget is spent."""
        left = self.budget_s - self.spent
        if left <= 1e-9:
            return None
        open_levels = [v for v in self.levels if v not in self.finished]
        if not open_levels:
            return None
        below = [v for v in open_levels if self.curves[v].spent < self.floor_s - 1e-9]
        if below:  # the floors first
            level = below[0]
            return level, min(self.slice_s, self.floor_s - self.curves[level].spent, left)
        level = max(open_levels, key=self.gain_rate)
        return level, min(self.slice_s, left)

    def finish(self, level: int) -> None:
        """``level`` can use no more time (it reached its step count)."""
        self.finished.add(level)

    def gain_rate(self, level: int) -> float:
        """Recent fall of ``level``'s contribution per second (infinite before two measurements)."""
        points = self.curves[level].points
        if len(points) < 2:
            return float("inf")
        (t0, b0), (t1, b1) = points[-2], points[-1]
        return (b0 - b1) / max(t1 - t0, 1e-9)

    def report(self, level: int, seconds: float, contribution: float) -> None:
        """``level`` trained ``seconds`` more and now contributes ``contribution`` bits/dim to the image."""
        curve = self.curves[level]
        curve.spent += max(0.0, seconds)
        curve.points.append((curve.spent, contribution))
