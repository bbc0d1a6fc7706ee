"""The No-U-Turn Sampler (Hoffman & Gelman 2014), one independent chain per row, all chains in lockstep.

Every chain has its own momentum, its own trajectory, its own tree depth and its own proposal; only the potential
and its gradient are evaluated for all chains at once, so a batch of N images costs one batched pass of the flow
per leapfrog step instead of N single-image passes. Chains that have finished their trajectory keep their state
while the others go on (their rows are masked), so an iteration costs as many passes as its longest trajectory.
A potential that can be evaluated for some of the chains (``rows=True``: it takes the chains' indices) is
evaluated only for the chains still moving, so a few long trajectories no longer cost a pass over every chain.

The chains of a batch share one step size, adapted during the warm-up by dual averaging of their mean acceptance
statistic. Adapted per chain, 10 warm-up iterations are too few: a chain's own acceptance is noisy, a few
rejected early trials drive its step size to a tiny value, and that chain's long trajectories then set the cost
of every iteration for all chains. After the warm-up the step size is fixed, so every chain is an exact NUTS
chain of the target.

The tree is built iteratively with multinomial sampling (progressive within a subtree, biased between doublings)
and the generalised U-turn criterion checked at every sub-boundary of a subtree, as in Stan and NumPyro's
iterative NUTS; the mass matrix is the identity (latents of a flow are whitened by construction).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from waveletflow.errors import UserInputError

#: ``U(z) -> (N,)``: the potential (minus the log target density, up to a constant) of each chain's state
Potential = Callable[[Tensor], Tensor]

#: ``U(z, rows) -> (M,)``: the same for M of the chains, ``rows`` (M,) their indices (z's rows are those chains')
RowPotential = Callable[[Tensor, Tensor], Tensor]

#: an energy error above this many nats marks a divergent trajectory (Stan's threshold)
MAX_ENERGY_ERROR = 1000.0


@dataclass(frozen=True)
class MCMCOptions:
    """NUTS settings, as in the released Wavelet Flow code: ``warmup`` iterations of step-size adaptation by dual
    averaging towards ``target_accept``, then ``steps`` iterations; the last state of each chain is its sample."""

    steps: int = 30
    warmup: int = 10
    target_accept: float = 0.6
    max_tree_depth: int = 10
    init_step_size: float | None = None  # None: Hoffman & Gelman's heuristic (the median over the chains)

    def __post_init__(self) -> None:
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise UserInputError(f"MCMC steps must be a whole number of at least 1, got {self.steps!r}")
        if not (isinstance(self.warmup, int) and self.warmup >= 0):
            raise UserInputError(f"MCMC warm-up must be a whole number, not negative, got {self.warmup!r}")
        if not 0.0 < self.target_accept < 1.0:
            raise UserInputError(f"the target acceptance must lie strictly between 0 and 1, got {self.target_accept!r}")
        if not (isinstance(self.max_tree_depth, int) and 1 <= self.max_tree_depth <= 16):
            raise UserInputError(f"the maximum tree depth must be a whole number in 1..16, got {self.max_tree_depth!r}")
        if self.init_step_size is not None and not (math.isfinite(self.init_step_size) and self.init_step_size > 0):
            raise UserInputError(f"the initial step size must be a positive number, got {self.init_step_size!r}")


@dataclass
class ChainStats:
    """What a run of the sampler did, averaged over its chains: the mean acceptance statistic of the sampling
    iterations, the adapted step size, the mean tree depth and leapfrog steps per iteration, the divergent
    transitions, the gradient evaluations (batched passes) and the chains' potentials evaluated in them
    (``row_evals``: ``gradient_evals`` × chains when every pass takes every chain)."""

    accept_rate: float
    step_size: float
    tree_depth: float
    leapfrog_steps: float
    divergences: int
    gradient_evals: int
    chains: int
    row_evals: int = 0

    @staticmethod
    def combine(parts: list[ChainStats]) -> ChainStats:
        """The statistics of several runs (batches of chains) as one: means weighted by chains, counts summed."""
        n = sum(p.chains for p in parts)

        def mean(field: str) -> float:
            return sum(getattr(p, field) * p.chains for p in parts) / n

        return ChainStats(mean("accept_rate"), mean("step_size"), mean("tree_depth"), mean("leapfrog_steps"),
                          sum(p.divergences for p in parts), sum(p.gradient_evals for p in parts), n,
                          sum(p.row_evals for p in parts))

    def to_dict(self) -> dict:
        return {"accept_rate": round(self.accept_rate, 4), "step_size": self.step_size,
                "tree_depth": round(self.tree_depth, 3), "leapfrog_steps": round(self.leapfrog_steps, 2),
                "divergences": self.divergences, "gradient_evals": self.gradient_evals, "chains": self.chains,
                "row_evals": self.row_evals}


def potential_and_grad(potential: Potential, z: Tensor) -> tuple[Tensor, Tensor]:
    """``U(z)`` (N,) and its gradient (N, D); chains are independent rows, so the gradient of the sum is each
    chain's own gradient. Non-finite potentials become +inf with a zero gradient (the move is then rejected)."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        u = potential(z)
        (g,) = torch.autograd.grad(u.sum(), z)
    u, g = u.detach(), g.detach()
    bad = ~torch.isfinite(u) | ~torch.isfinite(g).all(dim=1)
    if bad.any():
        u = torch.where(bad, torch.full_like(u, math.inf), u)
        g = torch.where(bad[:, None], torch.zeros_like(g), g)
    return u, g


class _Counter:
    """The potential and its gradient, counting batched passes (``calls``) and chains evaluated (``rows``)."""

    def __init__(self, potential: Potential | RowPotential, rows: bool):
        self.potential, self.by_rows, self.calls, self.rows = potential, rows, 0, 0

    def __call__(self, z: Tensor, live: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``U`` and its gradient for every chain; with ``live`` (N,) and a row potential only the live chains
        are evaluated (the others get U = 0 and a zero gradient, which the caller discards)."""
        self.calls += 1
        n = z.shape[0]
        if not self.by_rows:
            self.rows += n
            return potential_and_grad(self.potential, z)
        idx = torch.arange(n, device=z.device) if live is None else live.nonzero().squeeze(1)
        self.rows += len(idx)
        if len(idx) == n:
            return potential_and_grad(lambda v: self.potential(v, idx), z)
        u_part, g_part = potential_and_grad(lambda v: self.potential(v, idx), z[idx])
        u = torch.zeros(n, dtype=u_part.dtype, device=z.device).index_copy(0, idx, u_part)
        g = torch.zeros_like(z).index_copy(0, idx, g_part)
        return u, g


def _leapfrog(grad_fn: _Counter, z: Tensor, p: Tensor, g: Tensor, eps: Tensor,
              live: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One leapfrog step per chain with signed step sizes ``eps`` (N,); with ``live`` (N,) only those chains'
    results are used (the others' new state is garbage, for the caller to discard)."""
    e = eps[:, None]
    p = p - 0.5 * e * g
    z = z + e * p
    u, g = grad_fn(z, live)
    p = p - 0.5 * e * g
    return z, p, u, g


def _turning(p_left: Tensor, p_right: Tensor, p_sum: Tensor) -> Tensor:
    """The generalised U-turn criterion (identity mass) per chain, as in NumPyro's ``_is_turning``."""
    rho = p_sum - 0.5 * (p_left + p_right)
    return ((p_left * rho).sum(1) <= 0) | ((p_right * rho).sum(1) <= 0)


def _checkpoint_range(n: int) -> tuple[int, int]:
    """For leaf ``n`` of a subtree (odd ``n``): the checkpoints whose sub-subtrees end at this leaf."""
    idx_max = bin(n >> 1).count("1")
    trailing = (~n & (n + 1)).bit_length() - 1  # the number of trailing one bits of n
    return idx_max - trailing + 1, idx_max


def _uniform(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64).to(device)


def _step_size_guess(grad_fn: _Counter, z: Tensor, u: Tensor, g: Tensor, generator: torch.Generator | None) -> Tensor:
    """Hoffman & Gelman's heuristic (their Algorithm 4), per chain: double or halve the step size until one leapfrog
    step's acceptance probability crosses ½."""
    n = z.shape[0]
    eps = torch.ones(n, dtype=z.dtype, device=z.device)
    p = torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device)
    h0 = u + 0.5 * (p * p).sum(1)
    _, p1, u1, _ = _leapfrog(grad_fn, z, p, g, eps)
    log_ratio = torch.nan_to_num(h0 - u1 - 0.5 * (p1 * p1).sum(1), nan=-math.inf)
    direction = torch.where(log_ratio > math.log(0.5), 1.0, -1.0).to(z.dtype)
    active = torch.ones(n, dtype=torch.bool, device=z.device)
    for _ in range(40):
        crossed = direction * log_ratio <= -direction * math.log(2.0)
        active = active & ~crossed
        if not active.any():
            break
        eps = torch.where(active, eps * torch.pow(2.0, direction), eps)
        _, p1, u1, _ = _leapfrog(grad_fn, z, p, g, eps)
        log_ratio = torch.nan_to_num(h0 - u1 - 0.5 * (p1 * p1).sum(1), nan=-math.inf)
    return eps.clamp(1e-6, 1e3)


class _DualAveraging:
    """Nesterov dual averaging of the log step size (Hoffman & Gelman 2014, §3.2)."""

    def __init__(self, eps0: Tensor, target: float, gamma: float = 0.05, t0: float = 10.0, kappa: float = 0.75):
        self.mu = torch.log(10 * eps0)
        self.target, self.gamma, self.t0, self.kappa = target, gamma, t0, kappa
        self.h_bar = torch.zeros_like(eps0)
        self.log_eps_bar = torch.zeros_like(eps0)
        self.t = 0

    def update(self, accept: Tensor) -> Tensor:
        """Feed one iteration's acceptance statistics (N,); returns the next step sizes."""
        self.t += 1
        t = self.t
        w = 1.0 / (t + self.t0)
        self.h_bar = (1 - w) * self.h_bar + w * (self.target - accept)
        log_eps = self.mu - math.sqrt(t) / self.gamma * self.h_bar
        eta = t ** -self.kappa
        self.log_eps_bar = eta * log_eps + (1 - eta) * self.log_eps_bar
        return torch.exp(log_eps)

    def final(self) -> Tensor:
        return torch.exp(self.log_eps_bar)


def _nuts_iteration(grad_fn: _Counter, z: Tensor, u: Tensor, g: Tensor, eps: Tensor, max_depth: int,
                    generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One NUTS transition of every chain. Returns the new ``z, u, g``, the acceptance statistic (N,), the tree
    depth (N,), the leapfrog steps (N,) and whether the trajectory diverged (N,)."""
    n, dim = z.shape
    dev, dt = z.device, z.dtype
    p0 = torch.randn(z.shape, generator=generator, dtype=dt).to(dev)
    h0 = u + 0.5 * (p0 * p0).sum(1)
    # the trajectory's two ends (position, momentum, potential, gradient) and its proposal
    zl, pl, gl = z.clone(), p0.clone(), g.clone()
    zr, pr, gr = z.clone(), p0.clone(), g.clone()
    ul, ur = u.clone(), u.clone()
    z_new, u_new, g_new = z.clone(), u.clone(), g.clone()
    log_w = torch.zeros(n, dtype=torch.float64, device=dev)  # log Σ exp(H0 − H) over the trajectory
    p_sum = p0.clone()
    running = torch.ones(n, dtype=torch.bool, device=dev)
    diverged = torch.zeros(n, dtype=torch.bool, device=dev)
    depth = torch.zeros(n, dtype=torch.long, device=dev)
    steps = torch.zeros(n, dtype=torch.long, device=dev)
    accept_sum = torch.zeros(n, dtype=torch.float64, device=dev)
    for j in range(max_depth):
        if not running.any():
            break
        right = _uniform(n, generator, dev) < 0.5
        sign = torch.where(right, 1.0, -1.0).to(dt)
        # the subtree grows from the end it extends
        zc = torch.where(right[:, None], zr, zl)
        pc = torch.where(right[:, None], pr, pl)
        gc = torch.where(right[:, None], gr, gl)
        size = 2**j
        sub_z, sub_u, sub_g = zc.clone(), u.clone(), gc.clone()
        sub_log_w = torch.full((n, ), -math.inf, dtype=torch.float64, device=dev)
        sub_p_sum = torch.zeros_like(p0)
        sub_ok = running.clone()  # chains whose subtree is still valid (not turned, not diverged)
        depth_ckpts = max(1, j)
        p_ckpts = torch.zeros(depth_ckpts, n, dim, dtype=dt, device=dev)
        sum_ckpts = torch.zeros(depth_ckpts, n, dim, dtype=dt, device=dev)
        uc = torch.where(right, ur, ul)
        for leaf in range(size):
            if not sub_ok.any():
                break
            live = sub_ok
            z1, p1, u1, g1 = _leapfrog(grad_fn, zc, pc, gc, sign * eps, live)
            # chains that have stopped keep their end (a diverging one must not run off to inf)
            zc, pc = torch.where(live[:, None], z1, zc), torch.where(live[:, None], p1, pc)
            uc, gc = torch.where(live, u1, uc), torch.where(live[:, None], g1, gc)
            steps += live.long()
            h = uc + 0.5 * (pc * pc).sum(1)
            delta = (h0 - h).double()  # log weight of the new leaf; NaN → −inf
            delta = torch.nan_to_num(delta, nan=-math.inf, posinf=-math.inf)
            div = live & (-delta > MAX_ENERGY_ERROR)
            diverged |= div
            accept_sum += torch.where(live, torch.clamp(delta, max=0.0).exp(), torch.zeros_like(delta))
            # progressive multinomial sampling within the subtree
            new_log_w = torch.logaddexp(sub_log_w, delta)
            take = live & ~div & (_uniform(n, generator, dev).log() < delta - new_log_w)
            sub_z = torch.where(take[:, None], zc, sub_z)
            sub_u = torch.where(take, uc, sub_u)
            sub_g = torch.where(take[:, None], gc, sub_g)
            sub_log_w = torch.where(live, new_log_w, sub_log_w)
            sub_p_sum = torch.where(live[:, None], sub_p_sum + pc, sub_p_sum)
            # U-turns inside the subtree, at every boundary of a sub-subtree that ends at this leaf
            turned = torch.zeros(n, dtype=torch.bool, device=dev)
            if leaf % 2 == 0:
                k = bin(leaf).count("1")
                if k < depth_ckpts:
                    p_ckpts[k] = torch.where(live[:, None], pc, p_ckpts[k])
                    sum_ckpts[k] = torch.where(live[:, None], sub_p_sum, sum_ckpts[k])
            else:
                lo, hi = _checkpoint_range(leaf)
                for k in range(hi, lo - 1, -1):
                    part_sum = sub_p_sum - sum_ckpts[k] + p_ckpts[k]
                    turned |= _turning(p_ckpts[k], pc, part_sum)
            sub_ok = sub_ok & ~div & ~turned
        # the subtree's far end becomes the trajectory's end on its side (for chains still running)
        ext_r = running & right
        ext_l = running & ~right
        zr, pr, gr, ur = (torch.where(ext_r[:, None], zc, zr), torch.where(ext_r[:, None], pc, pr),
                          torch.where(ext_r[:, None], gc, gr), torch.where(ext_r, uc, ur))
        zl, pl, gl, ul = (torch.where(ext_l[:, None], zc, zl), torch.where(ext_l[:, None], pc, pl),
                          torch.where(ext_l[:, None], gc, gl), torch.where(ext_l, uc, ul))
        depth = torch.where(running, depth + 1, depth)
        merge = running & sub_ok
        # biased progressive sampling between the old tree and the new subtree
        take = merge & (_uniform(n, generator, dev).log() < sub_log_w - log_w)
        z_new = torch.where(take[:, None], sub_z, z_new)
        u_new = torch.where(take, sub_u, u_new)
        g_new = torch.where(take[:, None], sub_g, g_new)
        log_w = torch.where(merge, torch.logaddexp(log_w, sub_log_w), log_w)
        p_sum = torch.where(merge[:, None], p_sum + sub_p_sum, p_sum)
        running = merge & ~_turning(pl, pr, p_sum)  # the whole trajectory's U-turn
    accept = accept_sum / steps.clamp(min=1).double()
    return z_new, u_new, g_new, accept, depth, steps, diverged


def nuts(potential: Potential | RowPotential, z0: Tensor, options: MCMCOptions = MCMCOptions(),
         generator: torch.Generator | None = None,
         progress: Callable[[int, int], None] | None = None, rows: bool = False) -> tuple[Tensor, ChainStats]:
    """Run one NUTS chain per row of ``z0`` (N, D) on ``exp(−potential)``; returns the chains' last states and
    their statistics. Random numbers come from ``generator`` (the same seed gives the same samples);
    ``progress(i, total)`` is called after every iteration. With ``rows`` the potential is a
    :data:`RowPotential` and each leapfrog step evaluates only the chains whose trajectories are still growing
    (the same chains as without it, at a cost that follows the chains' total steps)."""
    if z0.dim() != 2:
        raise UserInputError(f"NUTS takes states of shape (chains, dimensions), got {tuple(z0.shape)}")
    grad_fn = _Counter(potential, rows)
    z = z0.detach().clone()
    u, g = grad_fn(z)
    if not torch.isfinite(u).all():
        raise UserInputError("the MCMC chains start where the target density is zero or not finite")
    n = z.shape[0]
    if options.init_step_size is None:
        eps0 = _step_size_guess(grad_fn, z, u, g, generator).double().median().reshape(1)
    else:
        eps0 = torch.full((1,), float(options.init_step_size), dtype=torch.float64, device=z.device)
    eps = eps0.to(z.dtype).expand(n)
    adapt = _DualAveraging(eps0, options.target_accept)
    total = options.warmup + options.steps
    accepts, depths, leapfrogs, divergences = [], [], [], 0
    for i in range(total):
        z, u, g, accept, depth, steps, div = _nuts_iteration(grad_fn, z, u, g, eps, options.max_tree_depth, generator)
        if i < options.warmup:
            eps = adapt.update(accept.mean().reshape(1)).to(z.dtype).expand(n)
            if i == options.warmup - 1:
                eps = adapt.final().to(z.dtype).expand(n)
        else:
            accepts.append(accept)
            depths.append(depth.double())
            leapfrogs.append(steps.double())
            divergences += int(div.sum())
        if progress is not None:
            progress(i + 1, total)
    stats = ChainStats(float(torch.stack(accepts).mean()), float(eps.double().mean()),
                       float(torch.stack(depths).mean()), float(torch.stack(leapfrogs).mean()), divergences,
                       grad_fn.calls, n, grad_fn.rows)
    return z.detach(), stats
