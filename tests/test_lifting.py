"""Wavelets past Haar by lifting (CDF 5/3, CDF 9/7): PyWavelets' coefficients, perfect reconstruction, exact
log-dets, and models with a lifted wavelet through the public API and the command line."""

import json

import numpy as np
import pytest
import torch

from conftest import TINY_WF, train_tiny
from flow_checks import flat_jacobian_logdet, randomize
from waveletflow.cli import main
from waveletflow.data import periodic_pad
from waveletflow.flows import standard_normal_logp
from waveletflow.models import wavelet_flow, waveletflow_config
from waveletflow.training import ModelOptions
from waveletflow.wavelets import (
    CONVENTIONS, WAVELETS, crop_margin, dwt2, haar, idwt2, inverse_haar, inverse_wavelet_pyramid, logdet_per_low,
    wavelet_pyramid,
)
from waveletflow.wavelets.lifting import BOUNDARIES, LIFTINGS, lift, unlift

LIFTED = ("cdf53", "cdf97")


def rand(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("wavelet", LIFTED)
def test_periodic_step_is_pywavelets_periodization(wavelet):
    """With the periodic boundary and the ``orthonormal`` normalisation, the coefficients are PyWavelets' own."""
    pywt = pytest.importorskip("pywt")
    x = rand(2, 3, 16, 12)
    low, detail, _ = dwt2(x, wavelet, "orthonormal", "periodic")
    ca, (ch, cv, cd) = pywt.dwt2(x.numpy(), LIFTINGS[wavelet].pywt_name, mode="periodization")
    bands = detail.reshape(2, 3, 3, 8, 6).numpy()
    for ours, theirs in ((low.numpy(), ca), (bands[:, :, 0], ch), (bands[:, :, 1], cv), (bands[:, :, 2], cd)):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)


@pytest.mark.parametrize("wavelet,extra", [("cdf53", 1), ("cdf97", 2)])
def test_symmetric_step_is_pywavelets_reflect_without_its_extra_boundary_coefficients(wavelet, extra):
    """Whole-sample symmetric extension: PyWavelets' ``reflect`` mode, whose ``extra`` further coefficients at each
    end (the filters' overhang) carry nothing new."""
    pywt = pytest.importorskip("pywt")
    x = rand(2, 1, 12, 20, seed=1)
    low, detail, _ = dwt2(x, wavelet, "orthonormal", "symmetric")
    ca, (ch, cv, cd) = pywt.dwt2(x.numpy(), LIFTINGS[wavelet].pywt_name, mode="reflect")
    rows, cols = slice(extra, extra + 6), slice(extra, extra + 10)
    bands = detail.reshape(2, 1, 3, 6, 10).numpy()
    for ours, theirs in ((low.numpy(), ca), (bands[:, :, 0], ch), (bands[:, :, 1], cv), (bands[:, :, 2], cd)):
        np.testing.assert_allclose(ours, theirs[..., rows, cols], rtol=0, atol=1e-10)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("wavelet", WAVELETS)
def test_perfect_reconstruction(wavelet, convention, boundary):
    for shape in ((1, 2, 2, 2), (2, 3, 6, 10), (1, 1, 32, 4)):
        x = rand(*shape)
        low, detail, _ = dwt2(x, wavelet, convention, boundary)
        assert low.shape == (shape[0], shape[1], shape[2] // 2, shape[3] // 2)
        assert detail.shape == (shape[0], 3 * shape[1], shape[2] // 2, shape[3] // 2)
        assert (idwt2(low, detail, wavelet, convention, boundary) - x).abs().max() < 1e-12
    x = x.float()
    assert (idwt2(*dwt2(x, wavelet, convention, boundary)[:2], wavelet, convention, boundary) - x).abs().max() < 1e-5


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("wavelet", WAVELETS)
def test_logdet_equals_the_autograd_jacobian(wavelet, convention, boundary):
    x = rand(1, 2, 4, 6, seed=2)

    def step(v):
        low, detail, _ = dwt2(v, wavelet, convention, boundary)
        return torch.cat((low.reshape(-1), detail.reshape(-1)))

    logdet = dwt2(x, wavelet, convention, boundary)[2]
    assert abs(flat_jacobian_logdet(step, x).item() - logdet.item()) < 1e-9
    assert abs(logdet.item() - 2 * 2 * 3 * logdet_per_low(wavelet, convention)) < 1e-12


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_haar_is_the_haar_step_exactly(convention):
    x = rand(2, 3, 8, 4, seed=3)
    ours, theirs = dwt2(x, "haar", convention), haar(x, convention)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert torch.equal(idwt2(ours[0], ours[1], "haar", convention), inverse_haar(theirs[0], theirs[1], convention))


@pytest.mark.parametrize("wavelet,degree", [("cdf53", 1), ("cdf97", 3)])
def test_constants_keep_their_value_and_polynomials_leave_no_detail(wavelet, degree):
    """``average``: the low-pass of a constant image is the constant (every boundary); the high-pass removes
    polynomials up to the wavelet's vanishing moments (2 for 5/3, 4 for 9/7) away from the boundaries."""
    for boundary in BOUNDARIES:
        low, detail, _ = dwt2(torch.full((1, 1, 8, 8), 0.3, dtype=torch.float64), wavelet, "average", boundary)
        assert torch.allclose(low, torch.full_like(low, 0.3), atol=1e-14) and detail.abs().max() < 1e-14
    t = torch.arange(64, dtype=torch.float64) / 64
    s, d = lift((1 + t - 2 * t**2 + 3 * t**3)[None] if degree == 3 else (1 + 2 * t)[None], wavelet)
    assert d[0, 3:-3].abs().max() < 1e-12 and d.abs().max() > 0  # the boundaries do see the extension
    assert torch.allclose(unlift(s, d, wavelet), (1 + t - 2 * t**2 + 3 * t**3 if degree == 3 else 1 + 2 * t)[None])


@pytest.mark.parametrize("wavelet", LIFTED)
def test_pyramid_round_trip_and_its_logdet(wavelet):
    x = rand(2, 3, 32, 16, seed=4)
    pyr = wavelet_pyramid(x, (4, 2), wavelet, "average")
    assert pyr.base.shape == (2, 3, 4, 2) and [tuple(d.shape[2:]) for d in pyr.details] == [(4, 2), (8, 4), (16, 8)]
    assert (inverse_wavelet_pyramid(pyr.base, pyr.details, wavelet, "average") - x).abs().max() < 1e-12
    expected = 3 * (16 * 8 + 8 * 4 + 4 * 2) * logdet_per_low(wavelet, "average")
    assert torch.allclose(pyr.logdet, torch.full((2,), expected, dtype=torch.float64))


def tiny_wf(wavelet, dtype=torch.float64, **kw):
    model = wavelet_flow(waveletflow_config((1, 8, 8), 5, wavelet=wavelet, **{**TINY_WF, **kw})).to(dtype)
    randomize(model, scale=0.03)
    return model.eval()


def test_a_lifted_model_draws_every_level_from_the_whole_image():
    assert tiny_wf("haar").input_steps([1]) == 2 and tiny_wf("cdf97").input_steps([1]) == 0
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    model = tiny_wf("cdf97")
    # a level's term is the same whether asked alone or with the others
    assert torch.allclose(model.objective([2], x).nll, -model.level_log_probs(x)[:, 2], atol=1e-10)
    with pytest.raises(ValueError, match="unknown wavelet 'db4'"):
        waveletflow_config((1, 8, 8), 5, wavelet="db4")


def cropped(wavelet, level, crop, boundary="periodic"):
    levels = [{"n_steps": 1, "width": 4, "n_scales": 1}] + [{"n_steps": 1, "width": 4} for _ in range(3)]
    levels[level]["crop"] = crop
    cfg = waveletflow_config((1, 32, 32), 5, base_size=4, wavelet=wavelet, boundary=boundary, levels=levels)
    model = wavelet_flow(cfg).double()
    randomize(model, scale=0.05)
    return model.eval()


@pytest.mark.parametrize("wavelet,level", [("cdf97", 3), ("cdf53", 2), ("cdf53", 3)])
def test_a_crop_with_its_margin_gives_the_whole_images_coefficients(wavelet, level):
    """A cropped level trains on windows of the periodic image, the crop plus its margin on every side: its term is
    exactly the level's flow on the whole image's coefficients under the crop (the image's edges included)."""
    model, crop = cropped(wavelet, level, 8), 8
    steps, margin = len(model.levels) - level, model.level_margin(level)
    assert margin == crop_margin(wavelet, steps) > 0
    x = torch.rand(2, 1, 32, 32, dtype=torch.float64)
    low = x
    for _ in range(steps):
        low, detail, _ = dwt2(low, wavelet, "average", "periodic")
    for top, left in ((0, 0), (24, 16), (8, 24)):  # corners wrap around the image's edges
        window = periodic_pad(x, margin)[..., top : top + crop + 2 * margin, left : left + crop + 2 * margin]
        r = slice(top >> steps, (top + crop) >> steps)
        c = slice(left >> steps, (left + crop) >> steps)
        z, ld = model.levels[level](detail[..., r, c], low[..., r, c])
        expected = standard_normal_logp(z) + ld + low[0, :, r, c].numel() * logdet_per_low(wavelet, "average")
        assert torch.allclose(model.level_log_probs(window, [level])[:, 0], expected, atol=1e-9)
        assert torch.allclose(model.objective([level], window).nll, -expected, atol=1e-9)


def test_crops_of_a_lifted_wavelet_need_the_periodic_boundary_and_room_for_their_margin():
    with pytest.raises(ValueError, match='need "boundary": "periodic"'):
        cropped("cdf53", 3, 8, boundary="symmetric")
    with pytest.raises(ValueError, match="crop 8 and its margin of 16 pixels on each side cover the image"):
        cropped("cdf97", 2, 8)
    # --wavelet on a config with crops chooses the periodic boundary for them
    cfg = waveletflow_config((1, 32, 32), 5, base_size=4, levels=[{}, {}, {}, {"crop": 8}])
    assert ModelOptions(wavelet="cdf53").apply("waveletflow", cfg).boundary == "periodic"
    assert ModelOptions(wavelet="cdf53").apply("waveletflow", waveletflow_config((1, 32, 32), 5)).boundary == "symmetric"


def test_a_cropped_level_of_a_lifted_wavelet_trains_from_the_command_line(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d32.npz", x_train=rng.integers(0, 32, (64, 32, 32, 1), dtype=np.uint8),
             x_test=rng.integers(0, 32, (8, 32, 32, 1), dtype=np.uint8))
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"base_size": 4, "levels": [{"n_steps": 1, "width": 4}] * 3
                               + [{"n_steps": 1, "width": 4, "crop": 8}]}))
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "d32.npz"), "--out", str(run), "--steps", "3", "--batch-size",
                 "4", "--config", str(cfg), "--wavelet", "cdf97", "--level", "3", "--quiet", "--no-curves",
                 "--n-bits", "5", "--parallel", "1"]) == 0
    config = json.loads((run / "model.json").read_text())["config"]
    assert config["boundary"] == "periodic" and config["levels"][3]["crop"] == 8
    assert json.loads((run / "level_03" / "state.json").read_text())["step"] == 3


@pytest.mark.parametrize("wavelet", LIFTED)
def test_super_resolution_keeps_the_lifted_low_pass(wavelet):
    model = tiny_wf(wavelet, torch.float32)
    low = np.random.default_rng(1).integers(12, 20, (4, 2, 2, 1), dtype=np.uint8)
    high = model.super_resolve(low, temperature=0.05, generator=torch.Generator().manual_seed(0))
    assert high.shape == (4, 8, 8, 1)
    assert np.abs(model.downsample(high, 4).astype(int) - low).max() <= 1  # its own low-pass, within rounding


def test_train_info_evaluate_pyramid_and_superres_eval_with_a_lifted_wavelet(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_tiny(run, "--wavelet", "cdf97")["wavelet"] == "cdf97"
    assert json.loads((run / "model.json").read_text())["version"] == 3
    capsys.readouterr()
    assert main(["info", str(run)]) == 0 and "wavelet: cdf97 (by lifting, symmetric boundary), average normalisation" in capsys.readouterr().out
    assert main(["info", str(run), "--json"]) == 0 and json.loads(capsys.readouterr().out)["wavelet"] == "cdf97"
    assert main(["train", "--data", "digits", "--out", str(run), "--steps", "4", "--quiet", "--no-curves",
                 "--parallel", "1", "--wavelet", "cdf97"]) == 0  # resumed: the same wavelet is fine
    assert main(["evaluate", str(run), "--data", "digits", "--limit", "20", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert abs(sum(lv["bits_per_dim"] for lv in res["levels"]) - res["bits_per_dim"]) < 1e-9
    assert main(["superres-eval", str(run), "--data", "digits", "--factor", "2", "--limit", "8", "--draws", "1",
                 "--temperature", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["method"] for r in rows} >= {"bicubic", "one draw, T=1"}
    assert main(["pyramid", "--out", str(tmp_path / "p.png"), "--wavelet", "cdf53", "--n", "2"]) == 0
    assert "average CDF53 pyramid of 2 images" in capsys.readouterr().out and (tmp_path / "p.png").is_file()
