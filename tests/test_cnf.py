"""Continuous flows: log-det through the ODE solve, the Hutchinson estimator, round trips, RNODE, MRCNF."""

from dataclasses import replace

import pytest
import torch

pytest.importorskip("torchdiffeq")

from flow_checks import flat_jacobian_logdet, randomize  # noqa: E402
from waveletflow.flows import standard_normal_logp  # noqa: E402
from waveletflow.layers import ActNorm  # noqa: E402
from waveletflow.layers.cnf import CNF, SolverConfig  # noqa: E402
from waveletflow.models import mrcnf, mrcnf_config  # noqa: E402
from waveletflow.wavelets import haar  # noqa: E402

TIGHT = SolverConfig("dopri5", 1e-9, 1e-9)


def tiny_cnf(cond_channels=0, divergence="exact", **kw):
    torch.manual_seed(0)
    kw = {"train_solver": TIGHT, "eval_solver": TIGHT, **kw}
    cnf = CNF(2, cond_channels, hidden=(8,), divergence=divergence, **kw).double()
    randomize(cnf, scale=0.3)
    return cnf.eval()


@pytest.mark.parametrize("cond_channels", [0, 1])
def test_logdet_matches_jacobian_through_the_solve(cond_channels):
    cnf = tiny_cnf(cond_channels)
    x = torch.randn(1, 2, 2, 2, dtype=torch.float64)
    cond = torch.randn(1, 1, 2, 2, dtype=torch.float64) if cond_channels else None
    out = cnf.transform(x, cond)
    expected = flat_jacobian_logdet(lambda v: cnf(v, cond)[0], x)
    assert abs(out.logdet.item()) > 1e-3  # a non-trivial map
    assert abs(out.logdet.item() - expected.item()) < 1e-4
    assert out.nfe > 0


def test_round_trip():
    cnf = tiny_cnf(1, divergence="hutchinson", eval_solver=SolverConfig("dopri5", 1e-7, 1e-7))
    x = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    cond = torch.randn(3, 1, 3, 3, dtype=torch.float64)
    z, _ = cnf(x, cond)
    assert (z - x).abs().max() > 1e-2
    x_back, _ = cnf.inverse(z, cond)
    assert (x_back - x).abs().max() < 1e-4


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_hutchinson_is_unbiased(noise):
    cnf = tiny_cnf(noise=noise, divergence="hutchinson")
    draws = 4000
    z = torch.randn(1, 2, 2, 2, dtype=torch.float64).expand(draws, -1, -1, -1).clone()
    t = torch.tensor(0.3, dtype=torch.float64)
    _, exact, _ = cnf.divergence_of(t, z[:1], None, exact=True)
    eps = cnf._noise(z)
    _, est, _ = cnf.divergence_of(t, z, None, eps, exact=False)
    se = est.std() / draws**0.5
    assert est.std() > 0  # the draws really vary
    assert abs(est.mean() - exact[0]) < 3 * se


def test_regularizers_zero_for_zero_dynamics_positive_otherwise():
    zero = CNF(2, 0, hidden=(8,), divergence="hutchinson").double().train()
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    out = zero.transform(x)
    assert all(float(v.detach().abs().max()) == 0.0 for v in (out.kinetic, out.jacobian))
    out = tiny_cnf(divergence="hutchinson").train().transform(x)
    assert all(float(v.detach().min()) > 0 for v in (out.kinetic, out.jacobian))


def test_steer_draws_the_end_time():
    cnf = tiny_cnf(divergence="hutchinson", steer=0.5).train()
    ends = {cnf._end(torch.zeros(1)) for _ in range(20)}
    assert len(ends) > 1 and all(0.5 <= e <= 1.5 for e in ends)
    assert cnf.eval()._end(torch.zeros(1)) == 1.0


def tiny_mrcnf(shape=(1, 8, 8), base_size=4, **kw):
    cfg = mrcnf_config(shape, 5, base_size=base_size, hidden=[8], divergence="exact",
                       eval_solver={"method": "dopri5", "atol": 1e-8, "rtol": 1e-8}, **kw)
    torch.manual_seed(0)
    m = mrcnf(cfg).double()
    randomize(m, scale=0.2)
    return m.eval()


def test_mrcnf_log_prob_is_the_sum_of_level_terms():
    model = tiny_mrcnf()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64) * 0.9 + 0.05
    low, detail, haar_logdet = haar(x, "unimodular")
    assert torch.equal(haar_logdet, torch.zeros(2, dtype=torch.float64))  # the unimodular step has log-det 0
    z0, ld0 = model.levels[0](low)
    z1, ld1 = model.levels[1](detail, low)
    expected = standard_normal_logp(z0) + ld0 + standard_normal_logp(z1) + ld1
    assert torch.allclose(model.log_prob(x), expected, atol=1e-6)
    assert torch.allclose(model.level_log_probs(x).sum(1), expected, atol=1e-6)


def test_mrcnf_change_of_variables_and_round_trip():
    model = tiny_mrcnf((1, 4, 4), base_size=2)  # a 2x2 base and one level of details: a 16x16 Jacobian
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64) * 0.9 + 0.05
    z = model.encode(x)
    expected = standard_normal_logp(z) + flat_jacobian_logdet(model.encode, x)
    assert abs(model.log_prob(x).item() - expected.item()) < 1e-4
    assert (model.decode(z) - x).abs().max() < 1e-4


def test_mrcnf_objective_adds_the_rnode_penalty():
    model = tiny_mrcnf()
    model.train()
    for m in model.modules():
        if isinstance(m, CNF):
            m.divergence = "hutchinson"
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64) * 0.9 + 0.05
    nll, reg, nfe = model.objective([1], x)
    assert nll.shape == (4,) and float(reg.detach()) > 0 and nfe > 0


def test_mrcnf_joint_objective_is_the_image_nll_plus_every_level_penalty():
    model = tiny_mrcnf()
    model.train()
    tight = SolverConfig("dopri5", 1e-8, 1e-8)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64) * 0.9 + 0.05
    nll, reg, _ = model.objective([0, 1], x, tight)
    assert torch.allclose(nll, -model.level_log_probs(x, solver=tight).sum(1), atol=1e-6)
    parts = [model.objective([level], x, tight).reg for level in (0, 1)]
    assert all(float(p) > 0 for p in parts)
    assert abs(float(reg) - float(sum(parts))) < 1e-6


def test_mrcnf_actnorm_standardises_each_level_at_initialisation():
    cfg = mrcnf_config((1, 8, 8), 5, base_size=4, hidden=[8])
    model = mrcnf(cfg).double().train()
    x = torch.rand(64, 1, 8, 8, dtype=torch.float64) * 0.1 + 0.3  # narrow details, far from N(0, 1)
    low, detail, _ = haar(x, "unimodular")
    first = model.levels[1].layers[0]
    assert isinstance(first, ActNorm)
    y, _ = first(detail)
    assert abs(float(y.mean())) < 1e-6 and abs(float(y.std(unbiased=False)) - 1) < 1e-3
    bare = mrcnf(replace(cfg, actnorm=False))
    assert not any(isinstance(m, ActNorm) for m in bare.modules())


@pytest.mark.parametrize("joint", [False, True])
def test_mrcnf_trains_and_loads_through_the_shared_trainer(tmp_path, capsys, joint):
    from waveletflow import load
    from waveletflow.data import load_dataset
    from waveletflow.training import TrainOptions, train

    data = load_dataset("digits")
    cfg = {"base_size": 4, "hidden": [8], "train_solver": {"method": "rk4", "atol": 1e-3, "rtol": 1e-3},
           "eval_solver": {"method": "rk4", "atol": 1e-3, "rtol": 1e-3}}
    opts = TrainOptions(steps=2, batch_size=8, init_batch=8, val_images=8, progress=False, joint=joint)
    res = train(tmp_path / "m", "digits", "mrcnf", "all", 1, opts, cfg, data=data)
    assert [r.step for r in res] == ([2] if joint else [2, 2])
    import csv

    with open(tmp_path / "m" / ("joint_0-1" if joint else "level_01") / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert int(rows[-1]["nfe"]) > 0  # rk4: 4 evaluations a step, per CNF solved
    model = load(tmp_path / "m")
    out = model.bits_per_dim(data.x_test[:8], data_bits=5)
    assert abs(sum(out.levels) - out.bits_per_dim) < 1e-9 and out.bits_per_dim > 0
    if joint:
        return
    # the CLI evaluates with another solver when asked, and reports each level's function evaluations
    import json

    from waveletflow.cli import main

    assert main(["evaluate", str(tmp_path / "m"), "--data", "digits", "--limit", "8", "--json",
                 "--ode-solver", "euler"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [lv["nfe"] for lv in res["levels"]] == [1, 1]  # euler over [0, 1] with one step: one evaluation each
    assert main(["evaluate", str(tmp_path / "m"), "--data", "digits", "--limit", "8", "--ode-tol", "-1"]) == 2
    assert "tolerance must be positive" in capsys.readouterr().err


def test_regularizers_do_not_steer_the_solver_and_are_not_integrated_in_evaluation():
    cnf = tiny_cnf(divergence="hutchinson", train_solver=SolverConfig("dopri5", 1e-4, 1e-4)).train()
    x = torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    zeros = torch.zeros(3, dtype=torch.float64)
    cnf.noise_generator = torch.Generator().manual_seed(5)
    out = cnf.transform(x)  # with the RNODE integrals
    cnf.noise_generator = torch.Generator().manual_seed(5)
    eps = cnf._noise(x)  # the same draw
    off = [0]
    z, div = cnf._solve(cnf._dynamics(None, eps, off, regularize=False), (x, zeros), 0.0, 1.0, None)
    assert out.nfe == off[0]  # the same steps with and without the regularisers
    assert torch.allclose(out.z, z, rtol=0, atol=1e-8) and torch.allclose(out.logdet, div, rtol=0, atol=1e-8)
    assert float(out.kinetic.min()) > 0 and float(out.jacobian.min()) > 0
    # what the old solve did (every state under error control) takes other steps: the check above can fail
    controlled = [0]
    cnf._solve(cnf._dynamics(None, eps, controlled, regularize=True), (x, zeros, zeros, zeros), 0.0, 1.0, None)
    assert controlled[0] != off[0]
    ev = cnf.eval().transform(x)
    assert ev.kinetic is None and ev.jacobian is None


def test_mrcnf_resume_is_exact_with_hutchinson_and_steer(tmp_path):
    from waveletflow.data import load_dataset
    from waveletflow.training import TrainOptions, train

    data = load_dataset("digits")
    cfg = {"base_size": 4, "hidden": [8], "divergence": "hutchinson", "steer": 0.25,
           "train_solver": {"method": "bosh3", "atol": 1e-3, "rtol": 1e-3}}
    opts = lambda steps: TrainOptions(steps=steps, batch_size=8, init_batch=8, val_images=8, progress=False,  # noqa: E731
                                      curves=False, checkpoint_every=2, ema=0.0, decay=0.0)
    train(tmp_path / "a", "digits", "mrcnf", "all", 1, opts(4), cfg, data=data)
    train(tmp_path / "b", "digits", "mrcnf", "all", 1, opts(2), cfg, data=data)
    torch.manual_seed(123)  # the global RNG differs on resume: nothing may depend on it
    train(tmp_path / "b", "digits", None, "all", 1, opts(4), data=data)
    for level in (0, 1):
        a = torch.load(tmp_path / "a" / f"level_{level:02d}" / "checkpoint.pt", weights_only=True)
        b = torch.load(tmp_path / "b" / f"level_{level:02d}" / "checkpoint.pt", weights_only=True)
        assert a["step"] == b["step"] == 4
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_mrcnf_trains_in_a_fresh_process(tmp_path):
    """A new run checks its config on the ``meta`` device first: nothing imported then may keep meta tensors."""
    import subprocess
    import sys

    from conftest import REPO

    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "waveletflow", "train", "--model", "mrcnf", "--data", "digits", "--out",
                          str(tmp_path / "m"), "--steps", "1", "--batch-size", "8", "--quiet", "--no-curves",
                          "--config", str(_write(tmp_path / "c.json", '{"base_size": 4, "hidden": [8]}'))],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "m" / "level_01" / "checkpoint.pt").is_file()


def _write(path, text):
    path.write_text(text)
    return path
