"""High resolution: image folders with train/ and test/, exact crops, the large presets, gradient checkpointing
and evaluation, sampling and super-resolution in chunks."""

import json

import numpy as np
import pytest
import torch

from flow_checks import flat_jacobian_logdet, randomize
from waveletflow.data import Crops, load_dataset
from waveletflow.models import wavelet_flow, waveletflow_config
from waveletflow.models.config import HIGHRES_PATCH, PRESETS


def _save(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _photos(root, sizes_train, sizes_test, seed=0):
    """A folder with train/ and test/ of random RGB PNGs of the given (height, width)."""
    rng = np.random.default_rng(seed)
    images = {}
    for split, sizes in (("train", sizes_train), ("test", sizes_test)):
        for i, (h, w) in enumerate(sizes):
            a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            _save(root / split / f"{i:02d}.png", a)
            images[(split, i)] = a
    return images


def test_folder_with_train_and_test_subfolders_is_split_by_them(tmp_path):
    images = _photos(tmp_path, [(12, 12)] * 5, [(12, 12)] * 2)
    (tmp_path / "train" / "notes.txt").write_text("not an image")  # skipped, with a note
    ds = load_dataset(str(tmp_path))
    assert len(ds.x_train) == 5 and len(ds.x_test) == 2 and ds.image_shape == (3, 12, 12)
    assert ds.info["layout"] == "train/ and test/ folders"
    np.testing.assert_array_equal(ds.x_test[1], images[("test", 1)])  # at their own size: no resampling
    np.testing.assert_array_equal(ds.x_train[np.array([0, 4])], np.stack([images[("train", 0)], images[("train", 4)]]))


def test_flat_folder_holds_out_every_tenth_file(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(20):
        _save(tmp_path / f"im{i:02d}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    ds = load_dataset(str(tmp_path))
    assert (len(ds.x_train), len(ds.x_test)) == (18, 2) and "every 10th" in ds.info["layout"]


def test_crops_keep_pixel_values_exact_and_are_drawn_from_the_generator(tmp_path):
    images = _photos(tmp_path, [(20, 24), (16, 30), (18, 18)], [(17, 21)])  # mixed sizes
    ds = load_dataset(str(tmp_path), crop=8)
    assert isinstance(ds.x_train, Crops) and ds.image_shape == (3, 8, 8)
    # centre crops for test images, exact pixels
    np.testing.assert_array_equal(ds.x_test[0], images[("test", 0)][4:12, 6:14])
    # random crops: every crop is an exact window of its image, and the generator decides the windows
    idx = np.array([0, 1, 2, 2])
    a = ds.x_train.random(idx, torch.Generator().manual_seed(3))
    b = ds.x_train.random(idx, torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(a, b)
    for crop, i in zip(a, idx):
        full = images[("train", int(i))]
        h, w = full.shape[:2]
        windows = [(y, x) for y in range(h - 7) for x in range(w - 7) if np.array_equal(full[y : y + 8, x : x + 8], crop)]
        assert windows, "a crop is not a window of its image"
    c = ds.x_train.random(idx, torch.Generator().manual_seed(4))
    assert not np.array_equal(a, c)


def test_training_on_crops_of_larger_images(tmp_path):
    from waveletflow.training import TrainOptions, train

    _photos(tmp_path / "data", [(24, 24)] * 6, [(24, 24)] * 2)
    opts = TrainOptions(steps=2, batch_size=4, init_batch=4, val_images=2, progress=False, curves=False)
    config = {"levels": [{"n_steps": 1, "width": 4, "n_blocks": 1, "n_scales": 1}] + [{"n_steps": 1, "width": 4}] * 3}
    train(tmp_path / "run", str(tmp_path / "data"), "waveletflow", "all", 1, opts, config, crop=8)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["crop"] == 8
    model_json = json.loads((tmp_path / "run" / "model.json").read_text())
    assert model_json["config"]["image_shape"] == [3, 8, 8]
    # resuming without --crop uses the run's crop
    res = train(tmp_path / "run", str(tmp_path / "data"), None, "all", 1, TrainOptions(
        steps=3, batch_size=4, init_batch=4, val_images=2, progress=False, curves=False))
    assert all(r.step == 3 for r in res)


@pytest.mark.parametrize("make, message", [
    (lambda root: _photos(root, [(8, 8)] * 3, [(8, 8)]), "smaller than the crop"),
    (lambda root: _photos(root, [(16, 16), (16, 20), (16, 16)], [(16, 16)]), "different sizes"),
    (lambda root: (_photos(root, [(16, 16)] * 3, [(16, 16)]), (root / "train" / "fake.png").write_text("text")),
     "not an image"),
    (lambda root: _photos(root, [(16, 16)], [(16, 16)]), "at least 2"),
])
def test_bad_folders_are_one_line_errors(tmp_path, make, message):
    make(tmp_path)
    crop = 12 if message == "smaller than the crop" else None
    with pytest.raises(ValueError, match=message):
        load_dataset(str(tmp_path), crop=crop)


def test_bad_folders_from_the_command_line(tmp_path, capsys):
    from waveletflow.cli import main

    _photos(tmp_path / "d", [(16, 16), (16, 20), (16, 16)], [(16, 16)])
    code = main(["train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and "different sizes" in err[0]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("side", [128, 256, 512, 1024])
def test_highres_presets(side):
    config = waveletflow_config((3, side, side), 8)
    n = side.bit_length() - 1
    assert len(config.levels) == n + 1 and config.base_size == 1
    model = wavelet_flow(config)
    for lv in range(1, n + 1):
        details = 2 ** (lv - 1)
        crop = config.levels[lv].crop
        # a level trains on details of at most HIGHRES_PATCH pixels: whole images below, crops above
        assert (crop is None) == (details <= HIGHRES_PATCH)
        if crop is not None:
            assert crop * details // side == HIGHRES_PATCH
    assert PRESETS[f"{side}x{side}"]["levels"][-1]["crop"] == side * HIGHRES_PATCH // 2 ** (n - 1)
    assert model.num_parameters() == sum(model.num_parameters(lv) for lv in range(n + 1))


@pytest.mark.parametrize("side", [256, 1024])
def test_highres_preset_levels_pass_the_change_of_variables_check(side):
    """Every level's flow of the preset (fully convolutional) on a small input: its log-det equals the autograd
    Jacobian's and the inverse undoes it."""
    torch.manual_seed(0)
    model = wavelet_flow(waveletflow_config((3, side, side), 8)).double()
    randomize(model, scale=0.02)
    for lv, flow in enumerate(model.levels):
        if lv == 0:
            x, cond = torch.rand(1, 3, 1, 1, dtype=torch.float64), None
        else:
            x, cond = torch.randn(1, 9, 2, 2, dtype=torch.float64), torch.rand(1, 3, 2, 2, dtype=torch.float64)
        y, logdet = flow(x, cond)
        expected = flat_jacobian_logdet(lambda v, c=cond, f=flow: f(v, c)[0], x)
        assert abs(logdet.item() - expected.item()) < 1e-8, lv
        back, _ = flow.inverse(y, cond)
        assert (back - x).abs().max() < 1e-9, lv


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    levels = [{"n_steps": 1, "width": 4, "n_blocks": 1, "n_scales": 1}] + [{"n_steps": 2, "width": 8}] * 3
    plain = wavelet_flow(waveletflow_config((3, 8, 8), 8, levels=levels))
    ckpt = wavelet_flow(waveletflow_config((3, 8, 8), 8, levels=[levels[0]] + [{**lc, "checkpoint": True} for lc in levels[1:]]))
    ckpt.load_state_dict(plain.state_dict())
    randomize(plain, scale=0.05)
    randomize(ckpt, scale=0.05)
    x = torch.rand(4, 3, 8, 8)
    grads = []
    for model in (plain, ckpt):
        model.zero_grad()
        loss = model.objective([3], x).nll.mean()
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.levels[3].parameters()]))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6)
    for a, b in zip(grads[0][1], grads[1][1]):
        assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="level 0"):
        waveletflow_config((3, 8, 8), 8, levels=[{**levels[0], "checkpoint": True}] + levels[1:])


def test_chunked_evaluation_sampling_and_super_resolution_equal_unchunked(monkeypatch):
    import waveletflow.models.base as base

    levels = [{"n_steps": 1, "width": 4, "n_blocks": 1, "n_scales": 1}] + [{"n_steps": 1, "width": 4}] * 4
    model = wavelet_flow(waveletflow_config((3, 16, 16), 8, levels=levels))
    randomize(model, scale=0.05)
    images = np.random.default_rng(0).integers(0, 256, (7, 16, 16, 3), dtype=np.uint8)
    low = images.reshape(7, 4, 4, 4, 4, 3).mean(axis=(2, 4)).round().astype(np.uint8)
    whole = model.bits_per_dim(images, batch_size=256)
    samples = model.sample(5, 0.8, generator=torch.Generator().manual_seed(1))
    sr = model.super_resolve(low, 0.8, generator=torch.Generator().manual_seed(2))
    monkeypatch.setattr(base, "EVAL_BATCH_PIXELS", 2 * 16 * 16)  # two images per chunk
    assert model.chunk_size() == 2
    chunked = model.bits_per_dim(images, batch_size=256)
    assert chunked.bits_per_dim == pytest.approx(whole.bits_per_dim, abs=1e-5)
    assert chunked.levels == pytest.approx(whole.levels, abs=1e-5)
    assert torch.allclose(model.sample(5, 0.8, generator=torch.Generator().manual_seed(1)), samples, atol=1e-5)
    np.testing.assert_array_equal(model.super_resolve(low, 0.8, generator=torch.Generator().manual_seed(2)), sr)


def test_block_means_are_exact_and_their_noise_has_the_block_means_law():
    from waveletflow.data import block_means, dequantize_means

    k = torch.randint(0, 256, (3, 2, 32, 32))
    for steps in (1, 3, 5):
        f = 2**steps
        want = k.double().reshape(3, 2, 32 // f, f, 32 // f, f).mean(dim=(3, 5))
        assert torch.equal(block_means(k, steps), want)
    g = torch.Generator().manual_seed(0)
    means = torch.full((20000,), 100.25, dtype=torch.float64)
    for block in (4, 16, 64, 1024):
        u = dequantize_means(means, 8, block, g, torch.float64) * 256 - means
        # the mean of `block` U(0, 1) draws: mean 1/2, variance 1/(12 block), inside [0, 1]
        assert abs(float(u.mean()) - 0.5) < 4 * (1 / (12 * block * 20000)) ** 0.5
        assert float(u.var()) == pytest.approx(1 / (12 * block), rel=0.05)
        assert float(u.min()) >= 0 and float(u.max()) <= 1


@pytest.mark.parametrize("convention", ["average", "orthonormal"])
def test_a_level_trained_from_its_low_pass_sees_what_it_sees_in_the_whole_image(convention):
    """The input drawn ``steps`` Haar steps down gives each level the terms of the full-resolution image."""
    from waveletflow.layers.haar import haar

    torch.manual_seed(0)
    config = waveletflow_config((3, 16, 16), 8, base_size=2, convention=convention,
                                levels=[{"n_steps": 2, "width": 8}] * 4)
    model = wavelet_flow(config).double()
    randomize(model)
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    full = model.level_log_probs(x)
    for level in range(len(model.levels)):
        steps = model.input_steps([level])
        low = x
        for _ in range(steps):
            low = haar(low, convention)[0]
        assert torch.allclose(model.level_log_probs(low, [level], steps=steps)[:, 0], full[:, level], atol=1e-9)
        assert torch.allclose(model.objective([level], low, steps=steps).nll, -full[:, level], atol=1e-9)
    # prepare(steps) is the convention's low-pass of dequantised images (up to the noise's draw)
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    low = model.prepare(images, torch.Generator().manual_seed(0), steps=2)
    means = torch.from_numpy(images).permute(0, 3, 1, 2).double().reshape(2, 3, 4, 4, 4, 4).mean(dim=(3, 5))
    scale = model.low_pass_scale(2)
    assert torch.all(low / scale * 256 >= means) and torch.all(low / scale * 256 <= means + 1)
    with pytest.raises(ValueError, match="Haar steps"):
        model.objective([len(model.levels) - 1], low, steps=2)  # the finest level needs whole-resolution input


def test_training_draws_coarse_levels_from_cached_block_means_and_crops_on_whole_blocks(tmp_path, monkeypatch):
    from waveletflow.rundir import RunDir
    from waveletflow.training import unit as unit_module
    from waveletflow.training.options import TrainOptions
    from waveletflow.training.unit import TrainUnit

    small = {"n_steps": 1, "width": 4}
    config = waveletflow_config((3, 32, 32), 8, base_size=2, levels=[small] * 4 + [{**small, "crop": 16}])
    model = wavelet_flow(config)
    images = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    opts = TrainOptions(steps=1, batch_size=4, seed=3)

    def draw(level, n=4):
        unit = TrainUnit(model, level, RunDir(tmp_path / "r"), opts, images, images[:2], 8)
        return unit, unit.draw(n)

    cached_unit, cached = draw(2)
    assert cached_unit._means is not None and cached.shape == (4, 3, 8, 8)  # 2 Haar steps down
    monkeypatch.setattr(unit_module, "MEANS_CACHE_BYTES", 0)
    uncached_unit, uncached = draw(2)
    assert uncached_unit._means is None and torch.equal(cached, uncached)  # the same draw either way
    # the top level's crop: 16×16 pixels at even positions, so its Haar pairs are the whole image's
    unit, crops = draw(4, n=6)
    assert crops.shape == (6, 3, 16, 16) and unit.steps == 0
    k = torch.floor(crops * 256).to(torch.int64).permute(0, 2, 3, 1).numpy()
    for crop in k:
        hits = [(i, y, x) for i in range(6) for y in range(0, 17, 2) for x in range(0, 17, 2)
                if np.array_equal(images[i, y : y + 16, x : x + 16], crop)]
        assert hits, "a crop is not an even-aligned window of a training image"


def test_a_preset_for_another_size_is_one_line(tmp_path, capsys):
    from waveletflow.cli import main

    _photos(tmp_path / "d", [(16, 16)] * 3, [(16, 16)])
    code = main(["train", "--data", str(tmp_path / "d"), "--preset", "256x256", "--out", str(tmp_path / "r"),
                 "--steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "preset 256x256 is for 256×256 images, these are 16×16" in err[0]
    assert not (tmp_path / "r").exists()
