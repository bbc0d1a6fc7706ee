"""Annealed sampling: the vectorised NUTS against distributions known in closed form, the tempered target of a
flow level against importance sampling of the model's own density, the gradient, determinism, and the CLI.

The statistical checks are seeded (the same numbers every run) and their tolerances are derived from the
standard errors of the estimates they compare: 5 standard errors, a bound an exact sampler passes with
probability above 0.999999 per statistic."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TINY_WF
from flow_checks import randomize
from waveletflow.cli import main
from waveletflow.errors import UserInputError
from waveletflow.mcmc import MCMCOptions, nuts
from waveletflow.models import mrcnf, mrcnf_config, wavelet_flow, waveletflow_config
from waveletflow.models.base import FlowModel
from waveletflow.sampling import annealed_levels, annealed_potential, sample, super_resolve

Z = 5.0  # standard errors allowed


def gaussian(dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    cov = a @ a.T / dim + 0.5 * torch.eye(dim, dtype=torch.float64)
    mean = torch.linspace(-1.0, 2.0, dim, dtype=torch.float64)
    return mean, cov


def assert_moments(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> None:
    """Sample mean and covariance of independent ``samples`` against ``N(mean, cov)``, within Z standard errors."""
    n = samples.shape[0]
    se_mean = (torch.diag(cov) / n).sqrt()
    assert ((samples.mean(0) - mean).abs() <= Z * se_mean).all(), (samples.mean(0), mean)
    var = torch.diag(cov)
    se_cov = ((var[:, None] * var[None, :] + cov**2) / n).sqrt()  # Var of a sample covariance of a Gaussian
    assert ((torch.cov(samples.T) - cov).abs() <= Z * se_cov).all(), (torch.cov(samples.T), cov)


def test_nuts_samples_a_correlated_gaussian():
    mean, cov = gaussian(4)
    prec = torch.linalg.inv(cov)

    def potential(z):
        d = z - mean
        return 0.5 * ((d @ prec) * d).sum(1)

    gen = torch.Generator().manual_seed(1)
    z0 = 3.0 * torch.randn(4000, 4, generator=gen, dtype=torch.float64)  # far too wide a start
    z, stats = nuts(potential, z0, MCMCOptions(), generator=gen)
    assert_moments(z, mean, cov)
    assert 0.3 < stats.accept_rate < 0.95 and stats.chains == 4000
    assert stats.tree_depth >= 1 and stats.leapfrog_steps >= 1


def test_nuts_leaves_the_target_invariant_from_exact_starts():
    """Started from exact draws, the released warm-up and a few transitions keep the distribution: moments stay.
    (A warm-up of only a few iterations leaves step sizes too large and biases the chains: the dual average
    still weighs its first, deliberately large, trial steps.)"""
    mean, cov = gaussian(3, seed=2)
    chol = torch.linalg.cholesky(cov)
    prec = torch.linalg.inv(cov)
    gen = torch.Generator().manual_seed(3)
    z0 = mean + torch.randn(6000, 3, generator=gen, dtype=torch.float64) @ chol.T
    z, _ = nuts(lambda z: 0.5 * (((z - mean) @ prec) * (z - mean)).sum(1), z0, MCMCOptions(steps=5, warmup=10),
                generator=gen)
    assert not torch.equal(z, z0)  # the chains moved
    assert_moments(z, mean, cov)


def test_nuts_same_seed_same_chains_and_checks_its_options():
    def potential(z):
        return 0.5 * (z**2).sum(1) + 0.1 * (z**4).sum(1)

    z0 = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a, sa = nuts(potential, z0, MCMCOptions(steps=4, warmup=2), generator=torch.Generator().manual_seed(5))
    b, sb = nuts(potential, z0, MCMCOptions(steps=4, warmup=2), generator=torch.Generator().manual_seed(5))
    c, _ = nuts(potential, z0, MCMCOptions(steps=4, warmup=2), generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and sa == sb and not torch.equal(a, c)
    for bad in ({"steps": 0}, {"warmup": -1}, {"target_accept": 1.0}, {"max_tree_depth": 0}, {"init_step_size": -1.0}):
        with pytest.raises(UserInputError):
            MCMCOptions(**bad)


def test_nuts_evaluating_only_the_moving_chains_gives_the_same_chains_for_fewer_evaluations():
    """A row potential (chains of different scales, so trajectories of different lengths) gives exactly the chains
    of the same potential evaluated for every chain at every step, with fewer chains' potentials evaluated."""
    gen = torch.Generator().manual_seed(0)
    n, dim = 32, 3
    mu = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    scale = torch.logspace(-1.5, 0.5, n, dtype=torch.float64)[:, None]  # the narrow chains take long trajectories
    z0 = torch.randn(n, dim, generator=gen, dtype=torch.float64)

    def by_rows(z, rows):
        d = (z - mu[rows]) / scale[rows]
        return 0.5 * (d * d).sum(1) + 0.1 * (d**4).sum(1)

    opts = MCMCOptions(steps=6, warmup=4)
    a, sa = nuts(lambda z: by_rows(z, torch.arange(n)), z0, opts, generator=torch.Generator().manual_seed(5))
    b, sb = nuts(by_rows, z0, opts, generator=torch.Generator().manual_seed(5), rows=True)
    assert torch.equal(a, b)
    assert (sa.accept_rate, sa.tree_depth, sa.leapfrog_steps, sa.gradient_evals) == (
        sb.accept_rate, sb.tree_depth, sb.leapfrog_steps, sb.gradient_evals)
    assert sa.row_evals == sa.gradient_evals * n  # every pass took every chain
    assert sb.row_evals < 0.7 * sa.row_evals  # only the moving chains


class AffineModel(FlowModel):
    """``x = A z + b`` on (1, 2, 2) images: ``p(x) = N(b, A Aᵀ)``, whose tempered ``p^γ`` is ``N(b, A Aᵀ / γ)``."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor):
        super().__init__("affine", (1, 2, 2), 8)
        self.a, self.b = nn.Parameter(a), nn.Parameter(b)
        self.levels = nn.ModuleList([nn.Identity()])

    @property
    def level_dims(self):
        return [4]

    def invert_level(self, level, z, low):
        x = z @ self.a.T + self.b
        return x.reshape(-1, 1, 2, 2), torch.linalg.slogdet(self.a)[1].expand(z.shape[0])

    def decode(self, z, solver=None):
        return self.invert_level(0, z, None)[0]


def test_annealed_sampling_of_an_affine_flow_is_the_tempered_gaussian():
    g = torch.Generator().manual_seed(4)
    a = 0.02 * (torch.eye(4, dtype=torch.float64) + 0.5 * torch.randn(4, 4, generator=g, dtype=torch.float64))
    b = torch.tensor([0.3, 0.5, 0.6, 0.4], dtype=torch.float64)
    model = AffineModel(a, b)
    t = 0.7
    report: list[dict] = []
    x = sample(model, 4000, t, generator=torch.Generator().manual_seed(0), mcmc=MCMCOptions(), report=report)
    assert_moments(x.reshape(4000, 4), b, a @ a.T * t**2)  # N(b, A Aᵀ / γ), γ = 1 / T²
    (level,) = report
    assert level["level"] == 0 and level["chains"] == 4000 and 0 < level["accept_rate"] < 1
    assert level["temperature"] == t and level["gradient_evals"] > 0


def tiny_wf(seed: int = 1) -> FlowModel:
    """A small Wavelet Flow on 4×4 images, far from Gaussian (every parameter perturbed)."""
    cfg = waveletflow_config((1, 4, 4), 5, base_size=2, levels=TINY_WF["levels"][:2])
    model = wavelet_flow(cfg).to(torch.float64)
    randomize(model, scale=0.1, seed=seed)
    return model.eval()


def test_annealed_level_matches_importance_sampling_of_the_models_own_density():
    """One detail level of a non-Gaussian flow given a fixed low-pass: the MCMC samples of ``p(d | low)^γ`` have the
    moments that self-normalised importance sampling of exact draws (weights ``p(d | low)^(γ−1)``, from the
    model's exact log-density) gives."""
    model = tiny_wf()
    level, t = 1, 0.75
    gamma = 1 / t**2
    low = torch.full((1, 1, 2, 2), 0.4, dtype=torch.float64) + 0.1 * torch.tensor([[[[0.0, 1.0], [-1.0, 0.5]]]],
                                                                                    dtype=torch.float64)
    dim = model.level_dims[level]
    # importance sampling from exact draws: log p(x | low) = log N(z) − log|det ∂x/∂z|
    m = 200_000
    g = torch.Generator().manual_seed(10)
    with torch.no_grad():
        z = torch.randn(m, dim, generator=g, dtype=torch.float64)
        x, logdet = model.invert_level(level, z, low.expand(m, -1, -1, -1))
        log_p = -0.5 * (z * z).sum(1) - logdet
        w = torch.softmax((gamma - 1) * log_p, 0)
    flat = x.reshape(m, -1)
    is_mean = (w[:, None] * flat).sum(0)
    is_var = (w[:, None] * (flat - is_mean) ** 2).sum(0)
    ess = 1 / (w**2).sum()
    assert ess > 0.05 * m  # the weights are usable
    assert logdet.std() > 0.3  # and the level is far from affine (a constant log-det)
    # MCMC: one chain per row, the model's own annealed sampling of this level
    n = 3000
    out = annealed_levels(model, n, low.expand(n, -1, -1, -1), level, level, [t, t], MCMCOptions(),
                          torch.Generator().manual_seed(11))
    mc = out.reshape(n, -1)
    se = (is_var / n + is_var / ess).sqrt()
    assert ((mc.mean(0) - is_mean).abs() <= Z * se).all(), (mc.mean(0), is_mean, se)
    # the variance too: the tempered density is narrower than the exact one, and MCMC sees that
    se_var = (2 * is_var**2 / n).sqrt() * 1.5  # a Gaussian's, with room for the level's heavier tails
    assert ((mc.var(0) - is_var).abs() <= Z * se_var).all(), (mc.var(0), is_var)
    exact_var = flat.var(0)
    assert (is_var < exact_var).all() and (mc.var(0) < exact_var).all()


def test_annealed_sampling_at_t1_keeps_the_exact_distribution():
    model = tiny_wf(seed=2)
    n = 3000
    with torch.no_grad():  # unclamped images: decoded exact latents against the annealed sampler's output
        exact = model.decode(torch.randn(n, model.num_dims, generator=torch.Generator().manual_seed(0),
                                         dtype=torch.float64)).reshape(n, -1)
    mc = annealed_levels(model, n, None, 0, len(model.levels) - 1, [1.0] * len(model.levels),
                         MCMCOptions(steps=5, warmup=10), torch.Generator().manual_seed(1)).reshape(n, -1)
    se = (exact.var(0) / n + mc.var(0) / n).sqrt()
    assert ((mc.mean(0) - exact.mean(0)).abs() <= Z * se).all()
    se_var = (2 * exact.var(0) ** 2 / n * 2).sqrt() * 1.5
    assert ((mc.var(0) - exact.var(0)).abs() <= Z * se_var).all()


@pytest.mark.parametrize("level", [0, 1])
def test_annealed_potential_gradient_matches_finite_differences(level):
    model = tiny_wf(seed=3)
    dim = model.level_dims[level]
    low = None if level == 0 else torch.rand(2, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z = torch.randn(2, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    z.requires_grad_(True)
    u = annealed_potential(model, level, z, low, 0.8)
    (grad,) = torch.autograd.grad(u.sum(), z)
    h = 1e-6
    fd = torch.zeros_like(grad)
    with torch.no_grad():
        for k in range(dim):
            e = torch.zeros_like(z)
            e[:, k] = h
            fd[:, k] = (annealed_potential(model, level, z + e, low, 0.8) - annealed_potential(model, level, z - e, low, 0.8)) / (2 * h)
    assert torch.allclose(grad, fd, rtol=1e-5, atol=1e-6)
    # and it is the tempered density: γ·½|z|² minus (γ − 1)·log|det ∂z/∂x|
    with torch.no_grad():
        logdet = model.invert_level(level, z, low)[1]
        gamma = 1 / 0.8**2
        assert torch.allclose(u, 0.5 * gamma * (z * z).sum(1) + (gamma - 1) * logdet)


def test_model_sampling_is_seeded_and_super_resolution_keeps_the_low_pass():
    model = tiny_wf(seed=4)
    opts = MCMCOptions(steps=3, warmup=2)
    a = sample(model, 6, 0.9, generator=torch.Generator().manual_seed(0), mcmc=opts)
    b = sample(model, 6, 0.9, generator=torch.Generator().manual_seed(0), mcmc=opts)
    assert torch.equal(a, b)
    low = np.random.default_rng(0).integers(4, 28, (3, 2, 2, 1)).astype(np.uint8)
    report: list[dict] = []
    high = super_resolve(model, low, 0.9, generator=torch.Generator().manual_seed(0), mcmc=opts, report=report)
    assert high.shape == (3, 4, 4, 1) and [r["level"] for r in report] == [1]
    means = high.reshape(3, 2, 2, 2, 2).astype(float).mean(axis=(2, 4))  # 2×2 block means of the output
    assert np.abs(means - low[..., 0]).max() <= 1.0


def test_the_models_deprecated_mcmc_argument_still_samples_the_same():
    """``model.sample(..., mcmc=)`` and ``model.super_resolve(..., mcmc=)`` warn and give what
    :mod:`waveletflow.sampling` gives."""
    model = tiny_wf(seed=4)
    opts = MCMCOptions(steps=2, warmup=2)
    with pytest.warns(DeprecationWarning, match="waveletflow.sampling.sample"):
        old = model.sample(3, 0.9, generator=torch.Generator().manual_seed(0), mcmc=opts)
    assert torch.equal(old, sample(model, 3, 0.9, generator=torch.Generator().manual_seed(0), mcmc=opts))
    low = np.random.default_rng(0).integers(4, 28, (2, 2, 2, 1)).astype(np.uint8)
    with pytest.warns(DeprecationWarning, match="waveletflow.sampling.super_resolve"):
        old = model.super_resolve(low, 0.9, generator=torch.Generator().manual_seed(0), mcmc=opts)
    assert np.array_equal(old, super_resolve(model, low, 0.9, generator=torch.Generator().manual_seed(0), mcmc=opts))


def test_mrcnf_refuses_mcmc_in_one_line():
    pytest.importorskip("torchdiffeq")
    model = mrcnf(mrcnf_config((1, 4, 4), 5, base_size=2, hidden=[4])).eval()
    with pytest.raises(UserInputError, match="not available for mrcnf"):
        sample(model, 2, 0.9, mcmc=MCMCOptions(steps=1, warmup=0))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("mcmc") / "run"
    cfg = run.parent / "tiny.json"
    cfg.write_text(json.dumps(TINY_WF))
    assert main(["train", "--data", "digits", "--out", str(run), "--steps", "3", "--batch-size", "16",
                 "--config", str(cfg), "--quiet"]) == 0
    return run


def test_cli_sample_and_super_resolve_with_mcmc(trained_run, tmp_path, capsys):
    out = tmp_path / "s.png"
    code = main(["sample", str(trained_run), "--n", "4", "--out", str(out), "--temperature", "0.97", "--mcmc",
                 "--mcmc-steps", "2", "--mcmc-warmup", "1", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and out.stat().st_size > 0
    assert [r["level"] for r in res["mcmc"]] == [0, 1, 2, 3]
    assert all(0 <= r["accept_rate"] <= 1 and r["step_size"] > 0 and r["chains"] == 4 for r in res["mcmc"])
    assert res["seconds_per_image"] > 0
    code = main(["sample", str(trained_run), "--n", "2", "--out", str(out), "--mcmc", "--mcmc-steps", "1",
                 "--mcmc-warmup", "0"])
    _, err = capsys.readouterr()
    assert code == 0 and err.count("acceptance") == 4  # one line of statistics per level
    from PIL import Image

    Image.fromarray(np.full((4, 4), 128, dtype=np.uint8)).save(tmp_path / "low.png")
    code = main(["super-resolve", str(trained_run), "--input", str(tmp_path / "low.png"), "--out",
                 str(tmp_path / "h.png"), "--mcmc", "--mcmc-steps", "2", "--mcmc-warmup", "1", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["output"] == [8, 8] and [r["level"] for r in res["mcmc"]] == [3]
    assert math.isfinite(res["seconds"])


def test_mcmc_benchmark_runs_both_ways_of_evaluating_the_chains(trained_run, tmp_path):
    """``benchmarks.mcmc`` measures every level twice: only the moving chains evaluated, and every chain."""
    from benchmarks.mcmc import main as bench

    out = tmp_path / "mcmc.json"
    bench([str(trained_run), "--n", "6", "--pyro-n", "0", "--steps", "2", "--warmup", "1", "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["steps"] == 2 and res["warmup"] == 1 and "--pyro-n 0" in res["command"]
    assert [r["level"] for r in res["levels"]] == list(range(len(TINY_WF["levels"])))
    for r in res["levels"]:
        assert r["all_chains_chain_evals"] == r["all_chains_passes"] * 6  # every pass took every chain
        assert 0 < r["ours_chain_evals"] <= r["ours_passes"] * 6
        assert r["pyro_s_per_image"] is None and r["moving_chains_speedup"] > 0
