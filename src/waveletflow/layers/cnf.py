"""Continuous normalizing flows (neural ODEs) with RNODE regularisation, and the logit transform (SPEC §4).

Needs ``torchdiffeq`` (``pip install waveletflow[ode]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from waveletflow.errors import UserInputError
from waveletflow.layers.base import InvertibleLayer

SOLVERS = ("dopri5", "bosh3", "rk4", "euler", "midpoint", "adaptive_heun", "dopri8")


class LogitTransform(InvertibleLayer):
    """``y = logit(α + (1 − 2α)·x)`` for x in [0, 1): maps pixels onto the real line (RealNVP, FFJORD)."""

    def __init__(self, num_channels: int, alpha: float = 0.05):
        super().__init__()
        self.num_channels = num_channels
        self.alpha = alpha

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        s = self.alpha + (1 - 2 * self.alpha) * x
        y = torch.log(s) - torch.log1p(-s)
        logdet = (math.log(1 - 2 * self.alpha) - torch.log(s) - torch.log1p(-s)).reshape(x.shape[0], -1).sum(1)
        return y, logdet

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> Tensor:
        return (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)


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


@dataclass
class SolverConfig:
    method: str = "dopri5"
    atol: float = 1e-3
    rtol: float = 1e-3


class CNF(InvertibleLayer):
    """A continuous normalizing flow ``dz/dt = f(t, z | cond)`` from t = 0 (data) to t = T (latent).

    ``forward`` returns ``(z(T), ∫ Tr ∂f/∂z dt)``: the log-det of the map, so that
    ``log p(x) = log p(z(T)) + logdet``. The trace is exact (``divergence="exact"``, D backward passes: small
    inputs and checks) or Hutchinson's estimate with one Gaussian or Rademacher draw per solve. In training mode
    the RNODE integrals (kinetic energy ``½‖f‖²`` and Jacobian Frobenius ``‖εᵀ∂f/∂z‖²``, per sample and, as in
    the RNODE code, divided by the dimension so that their weights sit beside a bits/dim loss) are kept in
    ``last_regularizers`` and STEER draws the end time from ``U[T − b, T + b]``; ``last_nfe`` counts function
    evaluations of the last solve.
    """

    def __init__(self, num_channels: int, cond_channels: int = 0, hidden: tuple[int, ...] = (64, 64, 64),
                 end_time: float = 1.0, divergence: str = "hutchinson", noise: str = "gaussian", steer: float = 0.0,
                 train_solver: SolverConfig | None = None, eval_solver: SolverConfig | None = None,
                 adjoint: bool = False):
        super().__init__()
        try:
            import torchdiffeq  # noqa: F401
        except ImportError:
            raise UserInputError("continuous flows need torchdiffeq: pip install torchdiffeq") from None
        if divergence not in ("hutchinson", "exact"):
            raise UserInputError(f"divergence must be hutchinson or exact, got {divergence!r}")
        if noise not in ("gaussian", "rademacher"):
            raise UserInputError(f"noise must be gaussian or rademacher, got {noise!r}")
        self.train_solver = train_solver or SolverConfig("dopri5", 1e-3, 1e-3)
        self.eval_solver = eval_solver or SolverConfig("dopri5", 1e-5, 1e-5)
        for s in (self.train_solver, self.eval_solver):
            if s.method not in SOLVERS:
                raise UserInputError(f"unknown ODE solver {s.method!r}; choose one of {', '.join(SOLVERS)}")
        self.num_channels = num_channels
        self.cond_channels = cond_channels
        self.func = ODEFunc(num_channels, cond_channels, tuple(hidden))
        self.end_time = end_time
        self.divergence = divergence
        self.noise = noise
        self.steer = steer
        self.adjoint = adjoint
        self.last_nfe = 0
        self.last_regularizers: dict[str, Tensor] = {}

    # -- the trace ----------------------------------------------------------------------------------
    def divergence_of(self, t: Tensor, z: Tensor, cond: Tensor | None, eps: Tensor | None = None,
                      exact: bool | None = None, create_graph: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """``(f, Tr ∂f/∂z, ‖εᵀ∂f/∂z‖²)`` per sample at time ``t``; Hutchinson's estimate with ``eps`` unless exact."""
        exact = self.divergence == "exact" if exact is None else exact
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.requires_grad_(True)
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

    def _noise(self, z: Tensor) -> Tensor:
        if self.noise == "gaussian":
            return torch.randn_like(z)
        return torch.randint(0, 2, z.shape, device=z.device).to(z.dtype) * 2 - 1

    def _odeint(self, fn, state, t, solver: SolverConfig):
        from torchdiffeq import odeint, odeint_adjoint

        if self.adjoint and isinstance(fn, nn.Module):
            return odeint_adjoint(fn, state, t, method=solver.method, atol=solver.atol, rtol=solver.rtol)
        return odeint(fn, state, t, method=solver.method, atol=solver.atol, rtol=solver.rtol)

    def _end(self, z: Tensor) -> float:
        if self.training and self.steer > 0:
            return self.end_time + (2 * float(torch.rand(())) - 1) * self.steer
        return self.end_time

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x, cond)
        solver = self.train_solver if self.training else self.eval_solver
        eps = None if self.divergence == "exact" else self._noise(x)
        create_graph = torch.is_grad_enabled()
        self.last_nfe = 0
        n = x.shape[0]

        def dynamics(t, state):
            self.last_nfe += 1
            f, div, frob = self.divergence_of(t, state[0], cond, eps, create_graph=create_graph)
            kinetic = 0.5 * f.pow(2).reshape(n, -1).mean(1)
            return f, div, kinetic, frob / f[0].numel()

        zeros = torch.zeros(n, dtype=x.dtype, device=x.device)
        t = torch.tensor([0.0, self._end(x)], dtype=x.dtype, device=x.device)
        z, div, kinetic, frob = (s[-1] for s in self._odeint(dynamics, (x, zeros, zeros, zeros), t, solver))
        self.last_regularizers = {"kinetic": kinetic, "jacobian": frob}
        return z, div

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        self._check(z, cond)
        solver = self.train_solver if self.training else self.eval_solver
        self.last_nfe = 0

        def dynamics(t, y):
            self.last_nfe += 1
            return self.func(t, y, cond)

        t = torch.tensor([self.end_time, 0.0], dtype=z.dtype, device=z.device)
        return self._odeint(dynamics, z, t, solver)[-1]
