"""Continuous normalizing flows (Chen et al. 2018; Grathwohl et al. 2019, FFJORD) with the RNODE regularisers
(Finlay et al. 2020) and STEER end times (Ghosh et al. 2020), and the logit transform (Dinh et al. 2017).

Needs ``torchdiffeq`` (``pip install waveletflow[ode]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from waveletflow.errors import UserInputError
from waveletflow.layers.base import FlowOutput, InvertibleLayer, conv_shape
from waveletflow.layers.solver import DEFAULT_EVAL_SOLVER, DEFAULT_TRAIN_SOLVER, SolverConfig

try:  # imported with this module, never first under a ``torch.device("meta")`` context (its tables would land there)
    import torchdiffeq
except ImportError:  # optional: pip install waveletflow[ode]
    torchdiffeq = None


class LogitTransform(InvertibleLayer):
    """``y = logit(α + (1 − 2α)·x)`` for x in [0, 1): maps pixels onto the real line (Dinh et al. 2017)."""

    def __init__(self, num_channels: int, alpha: float = 0.05):
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise UserInputError(f"the logit transform needs 0 <= alpha < 0.5, got {alpha}")
        self.in_shape = self.out_shape = conv_shape(num_channels)
        self.alpha = alpha

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        s = self.alpha + (1 - 2 * self.alpha) * x
        y = torch.log(s) - torch.log1p(-s)
        logdet = (math.log(1 - 2 * self.alpha) - torch.log(s) - torch.log1p(-s)).reshape(x.shape[0], -1).sum(1)
        return y, logdet

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(y)
        x = (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)
        log_s_1ms = F.logsigmoid(y) + F.logsigmoid(-y)  # log(s·(1 − s)) at s = sigmoid(y)
        return x, (log_s_1ms - math.log(1 - 2 * self.alpha)).reshape(y.shape[0], -1).sum(1)


class ODEFunc(nn.Module):
    """``f(t, z | cond)``: 3×3 convolutions with time as an extra input channel, softplus, zero-initialised output."""

    def __init__(self, channels: int, cond_channels: int = 0, hidden: tuple[int, ...] = (64, 64, 64)):
        super().__init__()
        dims = [channels + cond_channels, *hidden]
        self.convs = nn.ModuleList(nn.Conv2d(a + 1, b, 3, padding=1) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Conv2d(dims[-1] + 1, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, t: Tensor, z: Tensor, cond: Tensor | None = None) -> Tensor:
        h = z if cond is None else torch.cat((z, cond), dim=1)
        tt = torch.ones_like(z[:, :1]) * t
        for conv in self.convs:
            h = F.softplus(conv(torch.cat((h, tt), dim=1)))
        return self.out(torch.cat((h, tt), dim=1))


#: the tolerance of ODE states that must not steer the step size (the RNODE integrals)
UNCONTROLLED_TOL = 1e20


class CNF(InvertibleLayer):
    """A continuous normalizing flow ``dz/dt = f(t, z | cond)`` from t = 0 (data) to t = T (latent).

    :meth:`transform` returns ``z(T)``, the log-det ``∫ Tr ∂f/∂z dt`` (so ``log p(x) = log p(z(T)) + logdet``),
    the RNODE integrals and the function evaluations. The trace is exact (``divergence="exact"``, D backward
    passes: small inputs and checks) or Hutchinson's estimate (FFJORD) with one Gaussian or Rademacher draw per
    solve, from ``noise_generator`` in training when set (the trainer sets it, and its checkpoint saves it), else
    from the global RNG. The RNODE integrals, kinetic energy ``½‖f‖²`` and Jacobian Frobenius norm
    ``‖εᵀ∂f/∂z‖²`` (0 with the exact trace), are per sample and, as in the RNODE code, divided by the
    dimension so that their weights sit beside a bits/dim loss; they are integrated in training only, outside
    the solver's error control. In training mode with ``steer > 0`` the end time is drawn (from the same
    generator) from ``U[T − steer, T + steer]``. A ``solver`` of ``None`` means ``train_solver`` in training mode
    and ``eval_solver`` in evaluation mode. ``adjoint`` back-propagates with the adjoint method (Chen et al.
    2018) to the input and the parameters (not to ``cond``), in memory independent of the number of steps.
    """

    def __init__(self, num_channels: int, cond_channels: int = 0, hidden: tuple[int, ...] = (64, 64, 64),
                 end_time: float = 1.0, divergence: str = "hutchinson", noise: str = "gaussian", steer: float = 0.0,
                 train_solver: SolverConfig = DEFAULT_TRAIN_SOLVER, eval_solver: SolverConfig = DEFAULT_EVAL_SOLVER,
                 adjoint: bool = False):
        super().__init__()
        if torchdiffeq is None:
            raise UserInputError("continuous flows need torchdiffeq: pip install torchdiffeq")
        if divergence not in ("hutchinson", "exact"):
            raise UserInputError(f"divergence must be hutchinson or exact, got {divergence!r}")
        if noise not in ("gaussian", "rademacher"):
            raise UserInputError(f"noise must be gaussian or rademacher, got {noise!r}")
        if not end_time > 0 or not 0 <= steer < end_time:
            raise UserInputError(f"a CNF needs end_time > 0 and 0 <= steer < end_time, got {end_time}, {steer}")
        for s in (train_solver, eval_solver):
            if not isinstance(s, SolverConfig):
                raise UserInputError(f"an ODE solver must be a SolverConfig, got {s!r}")
        self.in_shape = self.out_shape = conv_shape(num_channels)
        self.cond_channels = cond_channels
        self.func = ODEFunc(num_channels, cond_channels, tuple(hidden))
        self.train_solver = train_solver
        self.eval_solver = eval_solver
        self.end_time = end_time
        self.divergence = divergence
        self.noise = noise
        self.steer = steer
        self.adjoint = adjoint
        #: where training draws Hutchinson's noise and the STEER end times from (None: the global RNG); the
        #: trainer sets its unit's generator, which its checkpoint saves, so that a resumed run is exact
        self.noise_generator: torch.Generator | None = None

    # -- the trace ----------------------------------------------------------------------------------
    def divergence_of(self, t: Tensor, z: Tensor, cond: Tensor | None, eps: Tensor | None = None,
                      exact: bool | None = None, create_graph: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """``(f, Tr ∂f/∂z, ‖εᵀ∂f/∂z‖²)`` per sample at time ``t``.

        The trace is Hutchinson's estimate with ``eps`` unless ``exact`` (default: the layer's ``divergence``).
        """
        exact = self.divergence == "exact" if exact is None else exact
        with torch.enable_grad():
            if not (create_graph and z.requires_grad):
                z = z.detach().requires_grad_(True)
            f = self.func(t, z, cond)
            n = z.shape[0]
            if exact:
                flat_f = f.reshape(n, -1)
                div = torch.zeros(n, dtype=z.dtype, device=z.device)
                for i in range(flat_f.shape[1]):
                    g = torch.autograd.grad(flat_f[:, i].sum(), z, create_graph=create_graph, retain_graph=True)[0]
                    div = div + g.reshape(n, -1)[:, i]
                frob = torch.zeros_like(div)
            else:
                vjp = torch.autograd.grad(f, z, eps, create_graph=create_graph)[0]
                div = (vjp * eps).reshape(n, -1).sum(1)
                frob = vjp.pow(2).reshape(n, -1).sum(1)
        return f, div, frob

    def _generator(self) -> torch.Generator | None:
        return self.noise_generator if self.training else None

    def _noise(self, z: Tensor) -> Tensor:
        gen = self._generator()
        if gen is None:
            if self.noise == "gaussian":
                return torch.randn_like(z)
            return torch.randint(0, 2, z.shape, device=z.device).to(z.dtype) * 2 - 1
        if self.noise == "gaussian":
            eps = torch.randn(z.shape, generator=gen, device=gen.device, dtype=z.dtype)
        else:
            eps = torch.randint(0, 2, z.shape, generator=gen, device=gen.device).to(z.dtype) * 2 - 1
        return eps.to(z.device)

    def _end(self, z: Tensor) -> float:
        if self.training and self.steer > 0:
            return self.end_time + (2 * float(torch.rand((), generator=self._generator())) - 1) * self.steer
        return self.end_time

    def _solve(self, dynamics: Callable, state: tuple[Tensor, ...], t0: float, t1: float,
               solver: SolverConfig | None, controlled: int | None = None) -> tuple[Tensor, ...]:
        """Solve from ``t0`` to ``t1``; only the first ``controlled`` states (default: all) steer the adaptive step
        size: the others (the RNODE integrals) get a tolerance of 1e20, as in the RNODE and MRCNF code."""
        from torchdiffeq import odeint, odeint_adjoint

        solver = solver or (self.train_solver if self.training else self.eval_solver)
        x = state[0]
        t = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
        free = len(state) - (len(state) if controlled is None else controlled)
        tol = lambda v: v if not free else [v] * (len(state) - free) + [UNCONTROLLED_TOL] * free  # noqa: E731
        opts = {"method": solver.method, "atol": tol(solver.atol), "rtol": tol(solver.rtol)}
        if self.adjoint and torch.is_grad_enabled():
            out = odeint_adjoint(dynamics, state, t, adjoint_params=tuple(self.parameters()),
                                 adjoint_atol=solver.atol, adjoint_rtol=solver.rtol, **opts)
        else:
            out = odeint(dynamics, state, t, **opts)
        return tuple(s[-1] for s in out)

    def _dynamics(self, cond: Tensor | None, eps: Tensor | None, counter: list[int],
                  regularize: bool) -> Callable:
        def dynamics(t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            counter[0] += 1
            # no graph under no_grad: sampling, and the forward solve of the adjoint method
            f, div, frob = self.divergence_of(t, state[0], cond, eps, create_graph=torch.is_grad_enabled())
            if not regularize:
                return f, div
            kinetic = 0.5 * f.pow(2).reshape(f.shape[0], -1).mean(1)
            return f, div, kinetic, frob / f[0].numel()

        return dynamics

    def transform(self, x: Tensor, cond: Tensor | None = None, solver: SolverConfig | None = None) -> FlowOutput:
        """``FlowOutput(z(T), logdet, kinetic, jacobian, nfe)`` for data ``x``.

        The RNODE integrals are integrated in training mode only (``None`` in evaluation mode), outside the
        solver's error control: they never change its step sizes (nor, so, ``z`` and the log-det).
        """
        self._check(x, cond)
        eps = None if self.divergence == "exact" else self._noise(x)
        counter = [0]
        zeros = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        end = self._end(x)
        if not self.training:
            dynamics = self._dynamics(cond, eps, counter, regularize=False)
            z, div = self._solve(dynamics, (x, zeros), 0.0, end, solver)
            return FlowOutput(z, div, None, None, counter[0])
        dynamics = self._dynamics(cond, eps, counter, regularize=True)
        z, div, kinetic, frob = self._solve(dynamics, (x, zeros, zeros, zeros), 0.0, end, solver, controlled=2)
        return FlowOutput(z, div, kinetic, frob, counter[0])

    def inverse_transform(self, z: Tensor, cond: Tensor | None = None, solver: SolverConfig | None = None,
                          jac: bool = True) -> FlowOutput:
        """``FlowOutput(x, logdet, None, None, nfe)``: the ODE solved backwards from T to 0 with its log-det
        (``jac=False``: without it, one function evaluation per step and no trace, as sampling needs)."""
        self._check(z, cond)
        counter = [0]
        if not jac:
            def plain(t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
                counter[0] += 1
                return (self.func(t, state[0], cond),)

            (x,) = self._solve(plain, (z,), self.end_time, 0.0, solver)
            return FlowOutput(x, None, None, None, counter[0])
        eps = None if self.divergence == "exact" else self._noise(z)
        zeros = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        dynamics = self._dynamics(cond, eps, counter, regularize=False)
        x, div = self._solve(dynamics, (z, zeros), self.end_time, 0.0, solver)
        return FlowOutput(x, div, None, None, counter[0])

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform(x, cond)[:2]  # type: ignore[return-value]

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.inverse_transform(z, cond)[:2]  # type: ignore[return-value]
