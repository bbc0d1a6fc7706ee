"""Capacity fitted to a time budget: a short budget gets a small fast model, a long one a larger model.

In a fixed wall-clock budget a narrower network makes more optimiser steps, and far from convergence steps buy
more than width; with a longer budget the larger model pulls ahead. :data:`CAPACITY` holds, for each model type
and image size that was measured, the width that reached the lowest validation bits/dim in short training runs
at two budgets (``python -m benchmarks.capacity``, ``benchmarks/results/capacity.json``; 2 cores of an Intel
Xeon with AMX units, one thread per run, bfloat16 networks). A slower machine makes fewer steps in the same
budget, so its best widths are narrower: on an AMD EPYC without bfloat16 units an earlier release measured
width 48 best for the finest levels at 150–300 s, where this table has 48–64. For Wavelet Flow that is the width of its finest level, which models three quarters of the
dimensions and, with the levels in parallel, trains alone for the whole budget; for the Glows the width of
every coupling network. A budget up to the geometric mean of the two measured budgets takes the short budget's
width, a longer one (or a step count) the long budget's.

The choice applies to a new run made with a time budget and without ``--preset`` or ``--config``, on a CPU (the
tiers were measured there; on a GPU the model is the preset, whose widths are those of the long budget). It is
deterministic: the same table, model, image size and budget give the same model, on every machine and in every
job of a cluster plan.

>>> choice = fit_capacity("waveletflow", (1, 28, 28), 120.0, "cpu")
>>> choice.describe()
'the finest level (2) at width 48, fitted to the 120 s budget (benchmarks/results/capacity.json)'
>>> fit_capacity("waveletflow", (1, 28, 28), None, "cpu") is None
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from waveletflow.models.config import PRESETS

__all__ = ["CAPACITY", "MEASURED_BUDGETS", "CapacityChoice", "Tier", "fit_capacity"]

#: the budgets (s) at which the tiers were measured: short and long
MEASURED_BUDGETS = (150.0, 600.0)
#: where the measurements are, and how to repeat them
SOURCE = "benchmarks/results/capacity.json"
COMMAND = "python -m benchmarks.capacity"


@dataclass(frozen=True)
class Tier:
    """Budgets up to ``up_to_s`` seconds (None: any longer budget, and step counts) take ``width``."""

    up_to_s: float | None
    width: int


def _tiers(short: int, long: int) -> tuple[Tier, ...]:
    return (Tier(math.sqrt(MEASURED_BUDGETS[0] * MEASURED_BUDGETS[1]), short), Tier(None, long))


#: (model type, image height×width) → tiers of the width of its finest level (Wavelet Flow) or of its coupling
#: networks (the Glows), from ``benchmarks/results/capacity.json`` (a test checks that they agree)
CAPACITY: dict[tuple[str, str], tuple[Tier, ...]] = {
    ("waveletflow", "28x28"): _tiers(48, 64),
    ("waveletflow", "32x32"): _tiers(64, 96),
    ("glow", "28x28"): _tiers(64, 64),
    ("glow", "32x32"): _tiers(64, 128),
    ("glow-residual", "28x28"): _tiers(32, 32),
    ("glow-residual", "32x32"): _tiers(64, 64),
}


@dataclass(frozen=True)
class CapacityChoice:
    """The width a budget chose for a model: of level ``level`` (Wavelet Flow's finest), or of every coupling
    network (``level`` None: a Glow)."""

    model_type: str
    size: str
    budget_s: float
    width: int
    level: int | None

    def apply(self, config: Any) -> dict[str, Any]:
        """Config overrides that give ``config`` (the type's default config) this width."""
        if self.level is None:
            return {"width": self.width}
        levels = [lv.to_dict() for lv in config.levels]
        levels[self.level]["width"] = self.width
        return {"levels": levels}

    def describe(self) -> str:
        what = "every coupling network" if self.level is None else f"the finest level ({self.level})"
        return f"{what} at width {self.width}, fitted to the {self.budget_s:g} s budget ({SOURCE})"

    def to_dict(self) -> dict[str, Any]:
        return {"budget_s": self.budget_s, "width": self.width, "level": self.level, "size": self.size,
                "source": SOURCE, "command": COMMAND}


def fit_capacity(model_type: str, image_shape: tuple[int, int, int], budget_s: float | None,
                 device: str) -> CapacityChoice | None:
    """The width that ``budget_s`` seconds buy for a new ``model_type`` model of images of ``image_shape``; None
    where nothing was measured (other sizes and model types), without a time budget, or off the CPU."""
    size = f"{image_shape[1]}x{image_shape[2]}"
    tiers = CAPACITY.get((model_type, size))
    if tiers is None or budget_s is None or not device.startswith("cpu"):
        return None
    width = next(t.width for t in tiers if t.up_to_s is None or budget_s <= t.up_to_s)
    level = len(PRESETS[size]["levels"]) - 1 if model_type == "waveletflow" else None
    return CapacityChoice(model_type, size, float(budget_s), width, level)
