"""Super-resolution scored against bicubic and Lanczos: PSNR, SSIM, the box downsampling, super-resolution to
an intermediate level size, and the ``superres-eval`` command."""

import json

import numpy as np
import pytest
import torch

from conftest import TINY_WF
from waveletflow.cli import main
from waveletflow.metrics import psnr, ssim
from waveletflow.models import wavelet_flow, waveletflow_config
from waveletflow.superres import box_downsample, superres_eval, upsample


def test_psnr_is_the_mse_in_decibels():
    a = torch.zeros(2, 3, 4, 4)
    b = a.clone()
    b[0] += 5.0  # MSE 25
    b[1, :, :2] += 10.0  # MSE 50
    got = psnr(b, a)
    assert torch.allclose(got, torch.tensor([10 * np.log10(255**2 / 25), 10 * np.log10(255**2 / 50)],
                                            dtype=torch.float64))
    assert torch.isinf(psnr(a, a)).all()


def test_ssim_is_one_for_equal_images_and_falls_with_noise():
    pytest.importorskip("torchmetrics")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 32, 32), generator=g).double()
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    little = (x + torch.randn(x.shape, generator=g) * 5).clamp(0, 255)
    much = (x + torch.randn(x.shape, generator=g) * 40).clamp(0, 255)
    assert (ssim(much, x) < ssim(little, x)).all() and (ssim(little, x) < 1).all()


def test_box_downsample_and_upsampling_baselines():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    low = box_downsample(images, 4)
    means = images.reshape(2, 2, 4, 2, 4, 3).astype(np.float64).mean(axis=(2, 4))
    assert low.shape == (2, 2, 2, 3) and np.abs(low - means).max() <= 0.5
    flat = np.full((1, 4, 4, 3), 77, dtype=np.uint8)
    for method in ("bicubic", "lanczos"):
        up = upsample(flat, 4, method)
        assert up.shape == (1, 16, 16, 3) and (up == 77).all()  # a constant image stays constant
    with pytest.raises(ValueError, match="unknown upsampling"):
        upsample(flat, 2, "nearest")


def _model():
    torch.manual_seed(0)
    cfg = waveletflow_config((3, 16, 16), 8, base_size=2, levels=[{"n_steps": 1, "width": 8}] * 4)
    return wavelet_flow(cfg).eval()


def test_super_resolution_to_an_intermediate_level_keeps_the_low_pass():
    model = _model()
    low = np.random.default_rng(1).integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    mid = model.super_resolve(low, 1.0, torch.Generator().manual_seed(0), size=8)
    full = model.super_resolve(low, 1.0, torch.Generator().manual_seed(0))
    assert mid.shape == (3, 8, 8, 3) and full.shape == (3, 16, 16, 3)
    for out, f in ((mid, 2), (full, 4)):
        means = out.reshape(3, 4, f, 4, f, 3).astype(np.float64).mean(axis=(2, 4))
        assert np.abs(means - low).max() <= 1.0  # the output's low-pass is the input within one grey level
    with pytest.raises(ValueError, match="one of the heights"):
        model.super_resolve(low, 1.0, size=5)


def test_superres_eval_rows():
    pytest.importorskip("torchmetrics")
    model = _model()
    images = np.random.default_rng(2).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    rows = superres_eval(model, images, factors=(2, 4), draws=3, temperatures=(1.0, 0.0))
    methods = {(r["factor"], r["method"]) for r in rows}
    for f in (2, 4):
        assert {(f, "bicubic"), (f, "lanczos"), (f, "one draw, T=1"), (f, "mean of 3 draws, T=1"),
                (f, "one draw, T=0"), (f, "mean of 3 draws, T=0")} <= methods
    by = {(r["factor"], r["method"]): r for r in rows}
    for f in (2, 4):  # at T = 0 every draw is the same image: the mean is the single draw
        assert by[f, "one draw, T=0"]["psnr"] == pytest.approx(by[f, "mean of 3 draws, T=0"]["psnr"])
        assert all(np.isfinite(r["psnr"]) and -1 <= r["ssim"] <= 1 for r in rows)
    # the scores are those of the outputs: bicubic's by hand
    up = upsample(box_downsample(images, 4), 4, "bicubic")
    want = float(psnr(torch.from_numpy(up).permute(0, 3, 1, 2), torch.from_numpy(images).permute(0, 3, 1, 2)).mean())
    assert by[4, "bicubic"]["psnr"] == pytest.approx(want)
    with pytest.raises(ValueError, match="the test images are 12x12 with 3 channels; this model super-resolves to"):
        superres_eval(model, images[:, :12, :12], factors=(2,))
    with pytest.raises(ValueError, match="power of two"):
        superres_eval(model, images, factors=(3,))


def test_superres_eval_command(tmp_path, capsys):
    pytest.importorskip("torchmetrics")
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_WF))
    run = tmp_path / "run"
    assert main(["train", "--data", "digits", "--out", str(run), "--steps", "2", "--batch-size", "8",
                 "--config", str(cfg), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["superres-eval", str(run), "--data", "digits", "--factor", "2", "--draws", "2", "--limit", "6",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["method"] for r in rows} >= {"bicubic", "lanczos", "one draw, T=1", "mean of 2 draws, T=0.5"}
    code = main(["superres-eval", str(run), "--data", "digits", "--factor", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:")


def test_info_describes_a_preset_without_a_run(capsys):
    assert main(["info", "1024x1024"]) == 0
    out = capsys.readouterr().out
    assert "1024x1024x3 images" in out and "trains on 64x64 crops" in out and "level 10" in out


def test_npz_arrays_by_prefix(tmp_path):
    from waveletflow.data import load_dataset

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x8_train=rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8),
             x8_test=rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8))
    ds = load_dataset(f"{tmp_path / 'd.npz'}:x8")
    assert len(ds.x_train) == 5 and len(ds.x_test) == 2 and ds.image_shape == (3, 8, 8)
    with pytest.raises(ValueError, match="'x9_train'"):
        load_dataset(f"{tmp_path / 'd.npz'}:x9")


def test_super_resolve_command_downsamples_a_full_size_image(tmp_path, capsys):
    from PIL import Image

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_WF))
    run = tmp_path / "run"
    assert main(["train", "--data", "digits", "--out", str(run), "--steps", "1", "--batch-size", "8",
                 "--config", str(cfg), "--quiet"]) == 0
    from waveletflow.data import load_dataset

    digit = load_dataset("digits").x_test[0]
    Image.fromarray((digit[:, :, 0].astype(np.float64) * 255 / 16).round().astype(np.uint8)).save(tmp_path / "d.png")
    capsys.readouterr()
    assert main(["super-resolve", str(run), "--input", str(tmp_path / "d.png"), "--downsample", "4",
                 "--out", str(tmp_path / "sr.png")]) == 0
    out = np.asarray(Image.open(tmp_path / "sr.png"))
    assert out.shape[:2] == (8, 24)  # enlarged input | super-resolution | original
    assert np.array_equal(out[:, 16:], np.asarray(Image.open(tmp_path / "d.png")))
    assert main(["super-resolve", str(run), "--input", str(tmp_path / "d.png"), "--downsample", "1",
                 "--out", str(tmp_path / "x.png")]) == 2


def test_ssim_per_image_and_channel_equals_torchmetrics_on_the_batch():
    tm = pytest.importorskip("torchmetrics.functional.image")
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (3, 3, 24, 24), generator=g).double()
    y = (x + torch.randn(x.shape, generator=g) * 20).clamp(0, 255)
    want = tm.structural_similarity_index_measure(y, x, data_range=255.0, reduction="none")
    assert torch.allclose(ssim(y, x), want, atol=1e-12)
