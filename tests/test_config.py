"""Model configs: key and type checks, JSON round trips, defaults for a data set, and model.json upgrades."""

from __future__ import annotations

import json

from dataclasses import replace

import pytest

from waveletflow.config import from_dict, to_dict
from waveletflow.errors import UserInputError
from waveletflow.layers.cnf import DEFAULT_EVAL_SOLVER, SolverConfig
from waveletflow.models.config import (
    PRESETS,
    CNFLevelConfig,
    GlowConfig,
    GlowLevelConfig,
    MRCNFConfig,
    WaveletFlowConfig,
    glow_config,
    mrcnf_config,
    waveletflow_config,
)
from waveletflow.models.format import MODEL_FORMAT, upgrade_model_meta


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_unknown_top_level_key_is_named():
    with pytest.raises(UserInputError) as exc:
        waveletflow_config((1, 8, 8), widht=3)
    msg = one_line(exc)
    assert "unknown key 'widht' in config" in msg and "allowed:" in msg and "levels" in msg


def test_unknown_key_inside_a_level_names_the_level():
    levels = [{}, {}, {"widht": 8}, {}]
    with pytest.raises(UserInputError) as exc:
        waveletflow_config((1, 8, 8), levels=levels)
    msg = one_line(exc)
    assert "unknown key 'widht' in config levels[2]" in msg and "did you mean 'width'" in msg
    with pytest.raises(UserInputError, match=r"unknown key 'depth' in config levels\[1\]"):
        mrcnf_config((1, 16, 16), levels=[{}, {"depth": 2}])
    with pytest.raises(UserInputError, match=r"unknown key 'order' in config train_solver"):
        mrcnf_config((1, 8, 8), train_solver={"method": "rk4", "atol": 1e-3, "rtol": 1e-3, "order": 4})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"levels": [{"n_steps": "four"}, {}, {}, {}]}, "config levels[0].n_steps must be an int, got 'four'"),
        ({"levels": [{}, {"width": True}, {}, {}]}, "config levels[1].width must be an int, got True"),
        ({"lu": 1}, "config lu must be true or false, got 1"),
        ({"base_size": "1"}, "config base_size must be an int or a list of 2 ints, got '1'"),
        ({"levels": {"n_steps": 4}}, "config levels must be a list of mappings"),
        ({"display_max": 2.5}, "config display_max must be an int or null, got 2.5"),
    ],
)
def test_wrong_types_are_refused(overrides, expected):
    with pytest.raises(UserInputError) as exc:
        waveletflow_config((1, 8, 8), **overrides)
    assert expected in one_line(exc)


def test_glow_types_and_values():
    with pytest.raises(UserInputError, match="config n_steps must be an int, got 'four'"):
        glow_config((1, 8, 8), n_steps="four")
    with pytest.raises(UserInputError, match="config n_scales must be an int, got False"):
        glow_config((1, 8, 8), n_scales=False)
    with pytest.raises(UserInputError, match="unknown coupling 'afine'"):
        glow_config((1, 8, 8), coupling="afine")
    with pytest.raises(UserInputError, match="width must be positive"):
        glow_config((1, 8, 8), width=0)
    with pytest.raises(UserInputError, match="missing the required key 'image_shape'"):
        GlowConfig.from_dict({"n_bits": 5})


def test_floats_accept_ints_and_tuples_come_from_lists():
    cfg = mrcnf_config((1, 16, 16), end_time=2, hidden=[8, 8], levels=[{}, {"hidden": [4], "steer": 0}])
    assert cfg.end_time == 2.0 and isinstance(cfg.end_time, float)
    assert cfg.hidden == (8, 8) and cfg.levels[1].hidden == (4,) and cfg.levels[1].steer == 0.0
    assert cfg.level_settings(1) == CNFLevelConfig((4,), 1, True, 2.0, 0.0)
    assert cfg.level_settings(0).hidden == (8, 8)


@pytest.mark.parametrize(
    "cfg",
    [
        glow_config((3, 32, 32), n_bits=5, width=16, display_max=31),
        waveletflow_config((1, 64, 64), n_bits=5),
        waveletflow_config((3, 16, 12), display_max=200),
        mrcnf_config((1, 28, 28), levels=[{"hidden": [8]}, {}, {"steer": 0.1, "cnf_blocks": 2}],
                     train_solver=SolverConfig("rk4", 1e-2, 1e-2)),
    ],
)
def test_to_dict_json_from_dict_round_trip(cfg):
    data = json.loads(json.dumps(cfg.to_dict()))
    again = type(cfg).from_dict(data)
    assert again == cfg and from_dict(type(cfg), to_dict(cfg)) == cfg
    assert again.to_dict() == data


def test_solver_configs_are_dicts_in_json():
    data = mrcnf_config((1, 16, 16)).to_dict()
    assert data["train_solver"] == {"method": "bosh3", "atol": 1e-3, "rtol": 1e-3}
    assert MRCNFConfig.from_dict(data).eval_solver == DEFAULT_EVAL_SOLVER
    with pytest.raises(UserInputError, match="config eval_solver"):
        mrcnf_config((1, 16, 16), eval_solver={"method": "nope", "atol": 1e-3, "rtol": 1e-3})


def test_presets_are_chosen_by_size_and_indexed_by_level():
    cfg = waveletflow_config((1, 8, 8), n_bits=5)
    assert cfg.base_size == 1 and len(cfg.levels) == 4 and cfg.sizes[0] == (1, 1)
    assert cfg.levels[0] == GlowLevelConfig(n_steps=4, width=32, n_blocks=1, n_scales=1)
    assert [(lv.n_steps, lv.width) for lv in cfg.levels[1:]] == [(4, 32), (6, 48), (8, 64)]
    assert waveletflow_config((1, 28, 28)).base_size == 7 and len(waveletflow_config((1, 28, 28)).levels) == 3
    big = waveletflow_config((3, 64, 64))
    assert len(big.levels) == 7 and big.levels[-1].crop == 32 and big.levels[:-1] == waveletflow_config(
        (3, 32, 32), preset="32x32-released").levels
    # the 32x32 preset is the released one; 28x28 adds the conditioning network to the released one
    assert waveletflow_config((3, 32, 32)).levels == waveletflow_config((3, 32, 32), preset="32x32-released").levels
    released = waveletflow_config((1, 28, 28), preset="28x28-released").levels
    mnist = waveletflow_config((1, 28, 28)).levels
    assert mnist == tuple(replace(lv, cond_width=32 if i else 0) for i, lv in enumerate(released))
    assert waveletflow_config((1, 8, 8), 5, preset="8x8") == cfg
    for name, preset in PRESETS.items():
        size = int(name.split("x")[0])
        assert len(waveletflow_config((1, size, size)).levels) == len(preset["levels"])
    with pytest.raises(UserInputError, match="unknown preset 'huge'"):
        waveletflow_config((1, 8, 8), preset="huge")


def test_generic_configs_for_other_sizes():
    cfg = waveletflow_config((3, 16, 12))
    assert cfg.base_size == (4, 3) and cfg.sizes == [(4, 3), (8, 6), (16, 12)]
    assert cfg.levels == (GlowLevelConfig(),) * 3
    cfg = waveletflow_config((1, 24, 24), n_bits=5)
    assert cfg.base_size == 3 and len(cfg.levels) == 4 and cfg.n_bits == 5
    assert mrcnf_config((1, 16, 12)).base_size == (8, 6) and len(mrcnf_config((1, 16, 12)).levels) == 2
    assert mrcnf_config((1, 8, 8)).levels == (CNFLevelConfig(),)


def test_overrides_replace_top_level_keys():
    cfg = waveletflow_config((1, 8, 8), base_size=2, lu=False)
    assert cfg.base_size == 2 and not cfg.lu and cfg.levels == (GlowLevelConfig(),) * 3
    cfg = waveletflow_config((1, 8, 8), levels=[{"n_steps": 2}] * 4)
    assert all(lv == GlowLevelConfig(n_steps=2) for lv in cfg.levels)
    cfg = mrcnf_config((1, 16, 16), **{"base_size": 4, "image_shape": [1, 16, 16], "n_bits": 3})
    assert len(cfg.levels) == 3 and cfg.n_bits == 3 and cfg.image_shape == (1, 16, 16)
    assert glow_config((1, 28, 28), **{"image_shape": [1, 8, 8]}).n_scales == 2
    whole = waveletflow_config((3, 64, 64), display_max=255)
    assert waveletflow_config((3, 64, 64), 8, **json.loads(json.dumps(whole.to_dict()))) == whole
    with pytest.raises(UserInputError, match="config image_shape must be a list of 3 ints"):
        waveletflow_config((1, 8, 8), **{"image_shape": [8, 8]})


def test_level_count_must_match_the_pyramid():
    with pytest.raises(UserInputError) as exc:
        waveletflow_config((1, 8, 8), levels=[{}] * 3)
    assert one_line(exc) == (
        "8×8 images with a 1×1 base have 4 levels (the base and 3 detail levels), but the config lists 3"
    )
    with pytest.raises(UserInputError, match="cannot be halved down to a base of 3×3"):
        waveletflow_config((1, 8, 8), base_size=3)
    with pytest.raises(UserInputError, match="have 2 levels"):
        MRCNFConfig(image_shape=(1, 16, 16), levels=(CNFLevelConfig(),))


def test_level_placement_checks():
    with pytest.raises(UserInputError, match="level 0 .* cannot be cropped"):
        waveletflow_config((1, 8, 8), levels=[{"crop": 4}, {}, {}, {}])
    with pytest.raises(UserInputError, match="level 2: n_scales and squeeze"):
        waveletflow_config((1, 8, 8), levels=[{}, {}, {"n_scales": 2}, {}])
    with pytest.raises(UserInputError, match="level 1: crop 6 must be .* divisible by 8"):
        waveletflow_config((1, 8, 8), levels=[{}, {"crop": 6}, {}, {}])
    with pytest.raises(UserInputError, match="level 0 .* cond_width is for detail levels"):
        waveletflow_config((1, 8, 8), levels=[{"cond_width": 8}, {}, {}, {}])
    with pytest.raises(UserInputError, match="cond_width must be 0 .* got -1"):
        waveletflow_config((1, 8, 8), levels=[{}, {"cond_width": -1}, {}, {}])
    with pytest.raises(UserInputError, match="MRCNF uses the unimodular"):
        mrcnf_config((1, 8, 8), convention="average")
    with pytest.raises(UserInputError, match="level 0: steer 1.0 must be less than end_time"):
        mrcnf_config((1, 8, 8), steer=1.0)


def test_presets_only_for_waveletflow_and_mrcnf():
    with pytest.raises(UserInputError) as exc:
        glow_config((1, 8, 8), preset="8x8")
    assert one_line(exc) == "presets exist for waveletflow and mrcnf models only"
    with pytest.raises(UserInputError) as exc:
        mrcnf_config((1, 8, 8), preset="8x8")  # a Wavelet Flow preset
    assert one_line(exc) == "unknown MRCNF preset '8x8'; choose one of mrcnf-cpu, mrcnf-published"


def test_configs_are_frozen():
    cfg = glow_config((1, 8, 8))
    with pytest.raises(AttributeError):
        cfg.width = 3  # type: ignore[misc]


def test_upgrade_format_1_waveletflow_meta():
    old = {
        "model_type": "waveletflow",
        "config": {
            "image_shape": [1, 8, 8], "n_bits": 5, "base_size": 1, "convention": "average", "lu": True,
            "preset": "8x8", "display_max": 31,
            "base": {"n_steps": 4, "width": 32, "n_blocks": 1, "n_levels": 1},
            "levels": [{"n_steps": 4, "width": 32}, {"n_steps": 6, "width": 48}, {"n_steps": 8, "width": 64}],
        },
    }
    meta = upgrade_model_meta(old)
    assert meta["version"] == MODEL_FORMAT == 3 and meta["model_type"] == "waveletflow"
    assert meta["config"]["wavelet"] == "haar"  # formats 1 and 2 knew Haar only
    assert "preset" not in meta["config"] and "base" not in meta["config"] and "base" in old["config"]
    cfg = WaveletFlowConfig.from_dict(meta["config"])
    assert cfg == waveletflow_config((1, 8, 8), n_bits=5, display_max=31)
    assert upgrade_model_meta(meta) == meta


def test_upgrade_format_1_glow_and_mrcnf_meta():
    glow = upgrade_model_meta({"model_type": "glow", "config": {"image_shape": [1, 8, 8], "n_levels": 2}})
    assert GlowConfig.from_dict(glow["config"]).n_scales == 2
    mrcnf = upgrade_model_meta({"model_type": "mrcnf", "config": {
        "image_shape": [1, 16, 16], "base_size": 8, "hidden": [8], "base": {"hidden": [4]}, "levels": [{}],
        "train_solver": {"method": "bosh3", "atol": 1e-3, "rtol": 1e-3}}})
    cfg = MRCNFConfig.from_dict(mrcnf["config"])
    assert cfg.levels[0].hidden == (4,) and cfg.levels[1] == CNFLevelConfig() and cfg.hidden == (8,)


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"version": 99, "model_type": "glow", "config": {}}, "newer waveletflow (model format 99)"),
        ([1, 2], "unreadable model metadata"),
        ({"version": "2", "model_type": "glow", "config": {}}, "unreadable model metadata"),
        ({"model_type": "glow"}, "unreadable model metadata"),
        ({"model_type": "waveletflow", "config": {"base": 3}}, "unreadable model metadata"),
    ],
)
def test_upgrade_refuses_newer_or_unreadable_meta(meta, expected):
    with pytest.raises(UserInputError) as exc:
        upgrade_model_meta(meta)
    assert expected in one_line(exc)


def test_keys_of_the_first_format_get_a_pointer_to_the_new_ones():
    with pytest.raises(UserInputError, match=r"levels\[0\]"):
        waveletflow_config((1, 8, 8), base={"n_steps": 2})
    with pytest.raises(UserInputError, match="n_scales"):
        glow_config((1, 8, 8), n_levels=2)


def test_a_format_one_run_drops_the_keys_that_format_ignored(caplog):
    meta = {"model_type": "waveletflow", "config": {"image_shape": [1, 8, 8], "hidden": [8],
                                                   "base": {"n_levels": 1}, "levels": [{"widht": 3}, {}, {}]}}
    with caplog.at_level("INFO", logger="waveletflow"):
        config = upgrade_model_meta(meta)["config"]
    assert "hidden" not in config and config["levels"][1] == {} and config["levels"][0] == {"n_scales": 1}
    assert "hidden" in caplog.text and "levels[1].widht" in caplog.text
    WaveletFlowConfig.from_dict(config)


def test_mrcnf_presets():
    from waveletflow.models import build_model, mrcnf_config

    cpu, pub = mrcnf_config((1, 28, 28)), mrcnf_config((1, 28, 28), preset="mrcnf-published")
    assert cpu == mrcnf_config((1, 28, 28), preset="mrcnf-cpu") and cpu.hidden == (32, 32, 32) and cpu.alpha == 0.05
    assert (pub.hidden, pub.cnf_blocks, pub.alpha) == ((64, 64, 64), 2, 1e-6)
    assert mrcnf_config((3, 32, 32), preset="mrcnf-published").alpha == 0.05  # α = 1e-6 is MNIST's
    assert mrcnf_config((1, 28, 28), preset="mrcnf-published", alpha=0.01).alpha == 0.01  # overrides win
    count = lambda c: sum(p.numel() for p in build_model("mrcnf", c, device="meta").parameters())  # noqa: E731
    assert count(cpu) == 62_868 and count(pub) == 472_488  # the figures the README gives
    with pytest.raises(ValueError, match="unknown MRCNF preset 'mrcnf-big'"):
        mrcnf_config((1, 28, 28), preset="mrcnf-big")


def test_info_describes_an_mrcnf_preset(capsys):
    import json

    from waveletflow.cli import main

    assert main(["info", "mrcnf-published", "--channels", "1", "--image-size", "28", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model_type"] == "mrcnf" and info["parameters"] == 472_488 and info["image_shape"] == [1, 28, 28]
