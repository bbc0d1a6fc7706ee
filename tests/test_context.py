"""Global context for the detail levels: self-attention over the whole low-pass image in the conditioning network,
the ``--context`` choice, and the model options applied after the capacity is fitted."""

import pytest
import torch

from conftest import train_tiny
from flow_checks import randomize
from waveletflow.cli import main
from waveletflow.layers.conditioning import EncodedCondition, GlobalContext
from waveletflow.flows import flow_stack
from waveletflow.models import glow_config, mrcnf_config, waveletflow_config
from waveletflow.training import ModelOptions


def encoder(attention: int) -> EncodedCondition:
    layer = EncodedCondition(flow_stack(3, 1, 1 + 8, 8), 1, width=8, depth=2, attention=attention)
    randomize(layer, scale=0.3)
    return layer.eval()


def test_global_context_starts_as_no_change_and_has_any_size():
    ctx = GlobalContext(8, layers=2)
    f = torch.rand(2, 8, 40, 24)
    assert torch.equal(ctx(f), f)  # its output convolution is zero-initialised
    randomize(ctx, scale=0.3)
    assert ctx(f).shape == f.shape and not torch.allclose(ctx(f), f)
    assert ctx(torch.rand(1, 8, 3, 5)).shape == (1, 8, 3, 5)  # fewer positions than the grid


def test_attention_sees_the_whole_image_and_dilated_convolutions_do_not():
    c = torch.rand(1, 1, 32, 32)
    far = c.clone()
    far[:, :, 0, 0] += 1.0  # one pixel in a corner
    for attention, reaches in ((0, False), (1, True)):
        layer = encoder(attention)
        change = (layer.encode(far) - layer.encode(c)).abs()[0, :, 31, 31].max().item()  # the other corner
        assert (change > 1e-6) == reaches, (attention, change)


def test_model_options_set_the_context_of_every_detail_level():
    cfg = waveletflow_config((1, 8, 8), 5)
    for context, widths, layers in (("none", [0, 0, 0], [0, 0, 0]), ("dilated", [32, 32, 32], [0, 0, 0]),
                                    ("attention", [32, 32, 32], [1, 1, 1])):
        out = ModelOptions(context=context).apply("waveletflow", cfg)
        assert [lv.cond_width for lv in out.levels[1:]] == widths
        assert [lv.cond_attention for lv in out.levels[1:]] == layers
        assert {lv.context for lv in out.levels[1:]} == {context} and out.levels[0] == cfg.levels[0]
    wide = waveletflow_config((1, 8, 8), 5, levels=[{}, {"cond_width": 16}, {}, {}])
    assert ModelOptions(context="attention").apply("waveletflow", wide).levels[1].cond_width == 16  # kept
    with pytest.raises(ValueError, match="--context is for Wavelet Flow's detail levels"):
        ModelOptions(context="attention").apply("glow", glow_config((1, 8, 8), 5))
    with pytest.raises(ValueError, match="--context is for Wavelet Flow's detail levels"):
        ModelOptions(context="none").apply("mrcnf", mrcnf_config((1, 16, 16), 5))
    with pytest.raises(ValueError, match="cond_attention needs the conditioning network's features"):
        waveletflow_config((1, 8, 8), 5, levels=[{}, {"cond_attention": 1}, {}, {}])
    with pytest.raises(ValueError, match="level 0"):
        waveletflow_config((1, 8, 8), 5, levels=[{"cond_width": 4, "cond_attention": 1}, {}, {}, {}])


def test_context_wavelet_and_noise_from_train_plan_and_info(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--context", "attention", "--wavelet", "cdf53", "--noise-std", "0.02"]
    config = train_tiny(run, *args, steps=2, batch=8)
    assert [lv["cond_attention"] for lv in config["levels"]] == [0, 1, 1, 1]
    assert config["wavelet"] == "cdf53" and config["noise_std"] == 0.02
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    assert capsys.readouterr().out.count("attention context") == 3
    assert main(["train", "--data", "digits", "--out", str(run), "--steps", "3", "--quiet", "--no-curves",
                 "--parallel", "1", *args]) == 0  # the same options resume it
    assert main(["plan", "--data", "digits", "--out", str(tmp_path / "planned"), "--steps", "2", *args]) == 0
    jobs = [line for line in capsys.readouterr().out.splitlines() if line.startswith("waveletflow train ")]
    assert jobs and all("--context attention" in j and "--wavelet cdf53" in j and "--noise-std 0.02" in j
                        for j in jobs)
