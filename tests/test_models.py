import math

import numpy as np
import pytest
import torch

from conftest import TINY_WF
from flow_checks import flat_jacobian_logdet, randomize
from waveletflow import load, save
from waveletflow.flows import standard_normal_logp
from waveletflow.metrics import bits_per_dim
from waveletflow.models import Glow, glow_config, mrcnf, mrcnf_config, wavelet_flow, waveletflow_config
from waveletflow.wavelets import haar, haar_pyramid, inverse_haar


def tiny_wf(shape=(1, 8, 8), convention="average", dtype=torch.float64, **kw):
    cfg = waveletflow_config(shape, 5, convention=convention, **{**TINY_WF, **kw})
    m = wavelet_flow(cfg).to(dtype)
    randomize(m, scale=0.03)
    return m.eval()


def tiny_glow(shape=(1, 8, 8), dtype=torch.float64):
    m = Glow(glow_config(shape, 5, n_scales=2, n_steps=2, width=8)).to(dtype)
    randomize(m, scale=0.03)
    return m.eval()


def tiny_mrcnf(dtype=torch.float64, **kw):
    pytest.importorskip("torchdiffeq")
    cfg = mrcnf_config((1, 4, 4), 5, base_size=2, hidden=[4], divergence="exact",
                       eval_solver={"method": "dopri5", "atol": 1e-7, "rtol": 1e-7}, **kw)
    m = mrcnf(cfg).to(dtype)
    randomize(m, scale=0.1)
    return m.eval()


MODELS = {
    "waveletflow-average": lambda: tiny_wf(),
    "waveletflow-orthonormal": lambda: tiny_wf(convention="orthonormal"),
    "waveletflow-unimodular": lambda: tiny_wf(convention="unimodular"),
    "waveletflow-rgb-base2": lambda: tiny_wf((3, 8, 8), base_size=2, levels=TINY_WF["levels"][:3]),
    "waveletflow-conditioning-network": lambda: tiny_wf(
        levels=[TINY_WF["levels"][0], *({**lv, "cond_width": 4, "cond_depth": 2} for lv in TINY_WF["levels"][1:])]),
    "waveletflow-attention": lambda: tiny_wf(
        levels=[TINY_WF["levels"][0], *({**lv, "cond_width": 4, "cond_depth": 1, "cond_attention": 1}
                                        for lv in TINY_WF["levels"][1:])]),
    "waveletflow-cdf53": lambda: tiny_wf(wavelet="cdf53"),
    "waveletflow-cdf97": lambda: tiny_wf(wavelet="cdf97"),
    "waveletflow-cdf97-unimodular-rgb": lambda: tiny_wf((3, 8, 8), convention="unimodular", wavelet="cdf97",
                                                        base_size=2, levels=TINY_WF["levels"][:3]),
    "glow": lambda: tiny_glow(),
    "glow-rgb": lambda: tiny_glow((3, 8, 8)),
    "mrcnf": lambda: tiny_mrcnf(),
    "mrcnf-cdf53": lambda: tiny_mrcnf(wavelet="cdf53"),
}


@pytest.mark.parametrize("name", MODELS)
def test_log_prob_equals_change_of_variables_of_encode(name):
    model = MODELS[name]()
    x = torch.rand(1, *model.image_shape, dtype=torch.float64)
    z = model.encode(x)
    assert z.shape == (1, model.num_dims)
    expected = standard_normal_logp(z) + flat_jacobian_logdet(model.encode, x)
    assert abs(model.log_prob(x).item() - expected.item()) < 1e-6


@pytest.mark.parametrize("name", MODELS)
def test_decode_encode_round_trip_float32(name):
    model = MODELS[name]().float()
    x = torch.rand(4, *model.image_shape)
    assert (model.decode(model.encode(x)) - x).abs().max() < 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_temperature_zero_is_decoded_zero_latent(name):
    model = MODELS[name]()
    s = model.sample(2, temperature=0.0)
    expected = model.decode(torch.zeros(1, model.num_dims, dtype=torch.float64)).clamp(0, 1 - 1e-6)
    assert torch.allclose(s, expected.expand_as(s), atol=1e-12)


def test_composed_log_prob_is_base_plus_levels_plus_haar_logdet():
    model = tiny_wf()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    pyr = haar_pyramid(x, 1, "average")
    z0, ld0 = model.levels[0](pyr.base)
    total = standard_normal_logp(z0) + ld0 + pyr.logdet
    low = pyr.base
    for j, detail in enumerate(pyr.details):
        z, ld = model.levels[j + 1](detail, low)
        total = total + standard_normal_logp(z) + ld
        low = inverse_haar(low, detail, "average")
    assert torch.allclose(model.log_prob(x), total, atol=1e-9)
    # the per-level split adds up and charges each Haar step to the level it creates
    lp = model.level_log_probs(x)
    assert torch.allclose(lp.sum(1), total, atol=1e-9)
    assert torch.allclose(lp[:, 0], standard_normal_logp(z0) + ld0, atol=1e-9)


def test_per_level_bits_sum_to_total():
    model = tiny_wf()
    images = np.random.default_rng(0).integers(0, 17, (40, 8, 8, 1), dtype=np.uint8)
    res = model.bits_per_dim(images, batch_size=16)
    assert len(res.levels) == 4 and res.images == 40
    assert abs(sum(res.levels) - res.bits_per_dim) < 1e-9
    # the total is the shared bits/dim of the same dequantised images
    x = model.prepare(images, torch.Generator().manual_seed(0))
    direct = float(bits_per_dim(model.log_prob(x).detach(), 64, 5).mean())
    assert abs(direct - res.bits_per_dim) < 1e-6  # same seed, batch sizes differ only in grouping
    assert res.to_dict()["levels"][3]["level"] == 3


def test_level_loss_matches_level_log_probs_and_crops():
    model = tiny_wf(levels=[TINY_WF["levels"][0], {"n_steps": 1, "width": 8}, {"n_steps": 1, "width": 8},
                            {"n_steps": 1, "width": 8, "crop": 4}])
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    lp = model.level_log_probs(x)
    for level in range(4):
        assert torch.allclose(model.objective([level], x).nll, -lp[:, level], atol=1e-10)
    assert model.level_crop(3) == 4
    assert model.objective([3], x[:, :, :4, :4]).nll.shape == (2,)  # a patch trains the top level
    with pytest.raises(ValueError, match="crop"):
        tiny_wf(levels=[{"n_steps": 1}, {"n_steps": 1}, {"n_steps": 1, "crop": 2}, {"n_steps": 1}])


@pytest.mark.parametrize("size", [2, 4])
def test_super_resolution_keeps_the_low_pass(size):
    model = tiny_wf(dtype=torch.float32)
    low = np.random.default_rng(1).integers(0, 17, (5, size, size, 1), dtype=np.uint8)
    high = model.super_resolve(low, temperature=0.8, generator=torch.Generator().manual_seed(0))
    assert high.shape == (5, 8, 8, 1) and high.dtype == np.uint8
    k = torch.as_tensor(high).permute(0, 3, 1, 2).double()
    while k.shape[-1] > size:
        k = haar(k, "average")[0]
    assert (k.permute(0, 2, 3, 1).numpy() - low).__abs__().max() <= 1.0
    with pytest.raises(ValueError, match="level sizes"):
        model.super_resolve(np.zeros((1, 3, 3, 1), np.uint8))
    with pytest.raises(ValueError, match="cannot super-resolve"):
        tiny_glow().super_resolve(low)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_full_size_models_build_and_score(shape):
    for model in (Glow(glow_config(shape, 8, n_steps=1, width=8)), wavelet_flow(waveletflow_config(shape, 8))):
        x = torch.rand(2, *shape)
        lp = model.log_prob(x)
        assert lp.shape == (2,) and torch.isfinite(lp).all()
        assert sum(model.level_dims) == math.prod(shape)
        assert (model.decode(model.encode(x)) - x).abs().max() < 1e-3


def test_per_level_temperatures():
    model = tiny_wf()
    a = model.sample(3, [1.0, 0.0, 0.0, 0.0], generator=torch.Generator().manual_seed(0))
    b = model.sample(3, [1.0, 0.0, 0.0, 0.0], generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="one per level"):
        model.sample(2, [1.0, 0.5])


@pytest.mark.parametrize("name", ["waveletflow-average", "waveletflow-cdf97", "glow"])
def test_save_load_round_trip(name, tmp_path):
    model = MODELS[name]().float()
    save(model, tmp_path / "m")
    loaded = load(tmp_path / "m")
    x = torch.rand(3, *model.image_shape)
    assert type(loaded) is type(model)
    assert torch.allclose(loaded.log_prob(x), model.log_prob(x), atol=1e-5)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="no run"):
        load(tmp_path / "nothing")
    model = tiny_wf().float()
    save(model, tmp_path / "m")
    (tmp_path / "m" / "level_02" / "weights.safetensors").unlink()
    with pytest.raises(ValueError, match="level 2 was never trained"):
        load(tmp_path / "m")
    (tmp_path / "m" / "level_01" / "weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        load(tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        load(tmp_path / "m")


def test_64px_preset_trains_its_top_level_on_patches():
    model = wavelet_flow(waveletflow_config((3, 64, 64), 8))
    top = len(model.levels) - 1
    assert model.level_crop(top) == 32 and model.level_dims[top] == 3 * 3 * 32 * 32
    patch = torch.rand(2, 3, 32, 32)
    assert model.objective([top], patch).nll.shape == (2,)
    with torch.no_grad():
        assert torch.isfinite(model.log_prob(torch.rand(1, 3, 64, 64))).all()


def test_runs_of_the_first_format_load_and_newer_ones_are_refused(tmp_path):
    import json

    model = tiny_wf().float()
    save(model, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    cfg = meta["config"]
    base = {**cfg["levels"][0], "n_levels": cfg["levels"][0].pop("n_scales")}
    old = {"model_type": "waveletflow",  # format 1 ignored keys it did not know, such as another model's
           "config": {**cfg, "base": base, "levels": cfg["levels"][1:], "hidden": [8]}}
    (tmp_path / "m" / "model.json").write_text(json.dumps(old))  # as written before format versions
    x = torch.rand(3, *model.image_shape)
    assert torch.allclose(load(tmp_path / "m").log_prob(x), model.log_prob(x), atol=1e-5)
    (tmp_path / "m" / "model.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(ValueError, match="newer"):
        load(tmp_path / "m")


def test_wavelet_model_composes_any_flows_and_checks_them(tmp_path):
    from waveletflow.flows import MultiScaleGlow, flow_stack
    from waveletflow.models import WaveletModel

    base = MultiScaleGlow((1, 2, 2), n_scales=1, n_steps=1, width=4, squeeze=False)
    details = [flow_stack(3, 1, 1, width=4), flow_stack(3, 1, 1, width=4)]
    model = WaveletModel(base, details, "orthonormal", image_shape=(1, 8, 8)).double()
    randomize(model, scale=0.05)
    assert model.level_dims == [4, 12, 48] and model.level_names()[1] == "details 2x2 -> 4x4"
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    assert (model.decode(model.encode(x)) - x).abs().max() < 1e-9
    # the objective of a set of levels is the sum of their own objectives
    both = model.objective([0, 2], x).nll
    assert torch.allclose(both, model.objective([0], x).nll + model.objective([2], x).nll, atol=1e-10)
    with pytest.raises(ValueError, match="level 1 needs a flow on 3 channels conditioned on 1"):
        WaveletModel(base, [flow_stack(3, 1, 0, width=4), details[1]], image_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="built from a config"):
        save(model, tmp_path / "m")


def test_pixel_methods_refuse_float_images_in_one_line():
    """Pixels are integer NHWC, continuous images float NCHW: a float tensor handed to a method that takes pixels
    is refused (it used to be truncated to integers silently)."""
    from waveletflow.errors import UserInputError
    from waveletflow.models import build_model, waveletflow_config

    model = build_model("waveletflow", waveletflow_config((1, 4, 4), 5))
    x = model.sample(2)  # continuous images
    with pytest.raises(UserInputError, match="expected pixel values"):
        model.bits_per_dim(x)
    with pytest.raises(UserInputError, match="expected pixel values"):
        model.super_resolve(x[:, :, ::2, ::2].permute(0, 2, 3, 1))
    pixels = model.to_uint8(x)  # the pixels of the same images
    assert pixels.dtype == np.uint8 and pixels.shape == (2, 4, 4, 1)
    assert math.isfinite(model.bits_per_dim(pixels).bits_per_dim)


def test_a_checkpointed_glow_is_the_same_model_with_the_same_gradients():
    torch.manual_seed(0)
    plain = Glow(glow_config((3, 8, 8), 5, n_scales=2, n_steps=2, width=8))
    ckpt = Glow(glow_config((3, 8, 8), 5, n_scales=2, n_steps=2, width=8, checkpoint=True))
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(4, 3, 8, 8)
    losses = []
    for m in (plain, ckpt):
        m.train()
        loss = -m.log_prob(x).mean()
        loss.backward()
        losses.append(loss.detach())
    assert torch.allclose(losses[0], losses[1])
    for (n, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters()):
        assert a.grad is not None and torch.allclose(a.grad, b.grad, atol=1e-6), n
