"""ODE solver settings for continuous flows (torchdiffeq), with the one place for their defaults."""

from __future__ import annotations

from dataclasses import dataclass

from waveletflow.errors import UserInputError

__all__ = ["DEFAULT_EVAL_SOLVER", "DEFAULT_TRAIN_SOLVER", "SOLVERS", "SolverConfig"]

SOLVERS = ("dopri5", "bosh3", "rk4", "euler", "midpoint", "adaptive_heun", "dopri8")


@dataclass(frozen=True)
class SolverConfig:
    """A torchdiffeq solver: ``method`` (one of :data:`SOLVERS`) and positive tolerances (all three required: the
    defaults are :data:`DEFAULT_TRAIN_SOLVER` and :data:`DEFAULT_EVAL_SOLVER`)."""

    method: str
    atol: float
    rtol: float

    def __post_init__(self) -> None:
        if self.method not in SOLVERS:
            raise UserInputError(f"unknown ODE solver {self.method!r}; choose one of {', '.join(SOLVERS)}")
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise UserInputError(f"the ODE tolerance must be positive, got {name}={value!r}")


DEFAULT_TRAIN_SOLVER = SolverConfig("bosh3", 1e-3, 1e-3)
DEFAULT_EVAL_SOLVER = SolverConfig("dopri5", 1e-5, 1e-5)
