"""Noise-augmented models and self-denoising: the noise drawn exactly at every level, Tweedie's estimate from the
model's exact score, σ = 0 leaving training as it was, and the command line."""

import json

import numpy as np
import pytest
import torch

from conftest import TINY_WF, train_tiny
from waveletflow import build_model
from waveletflow.cli import main
from waveletflow.layers import ActNorm
from waveletflow.rundir import RunDir
from waveletflow.training import TrainOptions, train
from waveletflow.wavelets import haar


def affine_glow(noise_std: float) -> torch.nn.Module:
    """A Glow whose couplings and split priors are still the identity (zero-initialised): with random ActNorms and
    1×1 convolutions it is an affine map, so its density is Gaussian with a closed-form score."""
    model = build_model("glow", {"image_shape": [1, 4, 4], "n_bits": 5, "n_scales": 1, "n_steps": 3, "width": 8,
                                 "noise_std": noise_std}).double().eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ActNorm):
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g, dtype=m.bias.dtype))
                m.log_scale.copy_(0.3 * torch.randn(m.log_scale.shape, generator=g, dtype=m.log_scale.dtype))
                m.initialized.fill_(True)
    return model


def test_denoising_is_tweedies_posterior_mean_on_a_gaussian():
    """p_σ = N(m, Σ) is the density of x + σε for a clean x ~ N(m, Σ − σ²I), whose posterior mean given y is
    m + (Σ − σ²I) Σ⁻¹ (y − m) (Tweedie; for Gaussians also the Wiener filter)."""
    sigma = 0.1
    model = affine_glow(sigma)
    d = model.num_dims
    x0 = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    enc = lambda v: model.encode(v.reshape(1, 1, 4, 4)).reshape(-1)  # noqa: E731
    a = torch.autograd.functional.jacobian(enc, x0.reshape(-1))
    a2 = torch.autograd.functional.jacobian(enc, torch.rand(d, dtype=torch.float64))
    assert torch.allclose(a, a2, atol=1e-10)  # affine indeed
    b = enc(x0.reshape(-1)).detach()
    mean = -torch.linalg.solve(a, b)
    cov = torch.linalg.inv(a.T @ a)
    clean = cov - sigma**2 * torch.eye(d, dtype=torch.float64)
    assert torch.linalg.eigvalsh(clean).min() > 0  # a valid clean prior
    y = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    expected = mean + (y.reshape(3, d) - mean) @ torch.linalg.solve(cov, clean)  # rows: (y − m)ᵀ Σ⁻¹ C
    assert torch.allclose(model.denoise(y).reshape(3, d), expected, atol=1e-9)
    with pytest.raises(ValueError, match="trained without noise"):
        affine_glow(0.0).denoise(y)


@pytest.mark.parametrize("steps", [0, 1, 2])
def test_noise_is_drawn_exactly_at_every_level(steps):
    """The low-pass ``steps`` Haar steps down of noisy images (drawn from block means) has the law of the
    ``average`` low-pass of the noisy full image: variance (1/12·4^-n + σ²)/4^steps for constant pixels."""
    sigma, n_bits = 0.05, 5
    model = build_model("waveletflow", {"image_shape": [1, 8, 8], "n_bits": n_bits, "noise_std": sigma})
    images = np.full((4000, 8, 8, 1), 9, dtype=np.uint8)
    gen = torch.Generator().manual_seed(1)
    x = model.prepare(images, gen, steps=steps).double()
    full = model.prepare(images, gen).double()
    for _ in range(steps):
        full = haar(full, "average")[0]
    expected = (1 / (12 * 4**n_bits) + sigma**2) / 4**steps
    for v in (x, full):
        assert abs(v.var().item() / expected - 1) < 0.03
        assert abs(v.mean().item() - 9.5 / 2**n_bits) < 3 * (expected / v.numel()) ** 0.5


def test_no_noise_leaves_training_as_it_was_and_noise_changes_it(tmp_path):
    opts = TrainOptions(steps=4, batch_size=8, progress=False, curves=False, eval_every=2)
    weights = {}
    for name, extra in (("plain", {}), ("zero", {"noise_std": 0.0}), ("noisy", {"noise_std": 0.1})):
        train(tmp_path / name, "digits", level_spec="3", opts=opts, overrides={**TINY_WF, **extra})
        weights[name] = RunDir(tmp_path / name).load_weights(3)
    plain, zero, noisy = weights["plain"], weights["zero"], weights["noisy"]
    assert plain.keys() == zero.keys() == noisy.keys() and plain
    assert all(torch.equal(plain[k], zero[k]) for k in plain)
    assert any(not torch.equal(plain[k], noisy[k]) for k in plain)


def test_noise_std_from_the_command_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_tiny(run, "--noise-std", "0.05")["noise_std"] == 0.05
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", "digits", "--limit", "20"]) == 0
    assert "plus Gaussian noise of std 0.05" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--data", "digits", "--limit", "20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["noise_std"] == 0.05
    assert main(["info", str(run)]) == 0 and "Gaussian noise of std 0.05" in capsys.readouterr().out
    drawn = []
    for flag in ([], ["--denoise"]):
        out = tmp_path / f"s{len(drawn)}.npz"
        assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png"), "--npz", str(out),
                     "--seed", "2", *flag]) == 0
        drawn.append(np.load(out)["x"])
        assert drawn[-1].shape == (4, 8, 8, 1) and drawn[-1].max() <= 31
    assert not np.array_equal(*drawn)  # the same latents, one score step apart
