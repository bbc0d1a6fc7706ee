"""Training every model type level by level, with checkpoints, resume, metrics and curves."""

from waveletflow.training.gathering import gather
from waveletflow.training.levels import train_level
from waveletflow.training.loop import Stop, fit
from waveletflow.training.options import TrainOptions, resolve_device
from waveletflow.training.planning import Job, Plan, plan, plan_jobs
from waveletflow.training.plots import plot_curves
from waveletflow.training.run import parse_levels, prepare_run, split_train_val
from waveletflow.training.schedule import MarginalGainSchedule, budget_shares
from waveletflow.training.sinks import MetricsSink
from waveletflow.training.spec import ModelOptions, RunSpec, check_budget, check_workers
from waveletflow.training.trainer import train
from waveletflow.training.unit import TrainUnit, UnitResult

__all__ = [
    "Job",
    "MetricsSink",
    "Plan",
    "ModelOptions",
    "RunSpec",
    "Stop",
    "TrainOptions",
    "TrainUnit",
    "UnitResult",
    "MarginalGainSchedule",
    "budget_shares",
    "check_budget",
    "check_workers",
    "fit",
    "gather",
    "parse_levels",
    "plan",
    "plan_jobs",
    "plot_curves",
    "prepare_run",
    "resolve_device",
    "split_train_val",
    "train",
    "train_level",
]
