"""The defaults a user types: bf16 networks, compiled steps, parallel levels and capacity fitted to the budget."""

import json
from pathlib import Path

import pytest
import torch

from conftest import TINY_WF
from flow_checks import flat_jacobian_logdet, randomize
from waveletflow import load
from waveletflow.cli import main
from waveletflow.data import load_dataset
from waveletflow.flows import standard_normal_logp
from waveletflow.layers import network_precision
from waveletflow.models import build_model
from waveletflow.models.capacity import CAPACITY, MEASURED_BUDGETS, fit_capacity
from waveletflow.models.config import PRESETS
from waveletflow.training import TrainOptions, train
from waveletflow.training.options import bf16_is_fast
from waveletflow.training.schedule import auto_workers, split_threads, usable_cores

REPO = Path(__file__).resolve().parents[1]


def opts(**kw):
    base = dict(batch_size=16, init_batch=16, eval_every=5, log_every=2, val_images=32, progress=False, warmup=5,
                curves=False)
    return TrainOptions(**{**base, **kw})


def level_params(run, level: int = 1):
    """The raw weights in the checkpoint of one level."""
    return torch.load(Path(run) / f"level_{level:02d}" / "checkpoint.pt", weights_only=True)["model"]


# ----- bf16 networks ----------------------------------------------------------------------------------------
def test_bf16_networks_only_inside_the_block_and_log_dets_stay_float32():
    model = build_model("waveletflow", {"image_shape": [1, 8, 8], "n_bits": 5, **TINY_WF})
    randomize(model)  # a new coupling is the identity: its zero-initialised output hides the precision
    x = torch.rand(4, 1, 8, 8)
    with network_precision(model, torch.bfloat16):
        nll_bf16 = model.objective([3], x).nll
    assert nll_bf16.dtype == torch.float32
    assert all(m.net_dtype is None for m in model.modules() if hasattr(m, "net_dtype"))
    # outside the block nothing changed: the same call twice gives bit-identical float32 figures
    assert torch.equal(model.objective([3], x).nll, model.objective([3], x).nll)
    assert not torch.equal(nll_bf16, model.objective([3], x).nll)  # the networks did run in bf16 inside


def test_a_bf16_trained_model_is_an_exact_float32_density(tmp_path):
    data = load_dataset("digits")
    train(tmp_path / "r", "digits", "waveletflow", "all", 1, opts(steps=20, precision="bf16"), dict(TINY_WF),
          data=data)
    model = load(tmp_path / "r").double().eval()
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    expected = standard_normal_logp(model.encode(x)) + flat_jacobian_logdet(model.encode, x)
    assert abs(model.log_prob(x).item() - expected.item()) < 1e-6
    xs = torch.rand(6, 1, 8, 8, dtype=torch.float64)
    assert (model.decode(model.encode(xs)) - xs).abs().max() < 1e-9


def test_bf16_and_float32_training_end_close_in_training_loss(tmp_path):
    data = load_dataset("digits")
    losses = {}
    for precision in ("fp32", "bf16"):
        res = train(tmp_path / precision, "digits", "waveletflow", "3", 1,
                    opts(steps=20, precision=precision, log_every=20), dict(TINY_WF), data=data)
        assert res[0].step == 20
        rows = (tmp_path / precision / "level_03" / "metrics.csv").read_text().splitlines()
        losses[precision] = float(rows[-1].split(",")[2])  # the mean training bits/dim of the 20 steps
    # one seed, the same batches: bfloat16 networks move the loss by far less than training does (5.6 → 3.6)
    assert abs(losses["bf16"] - losses["fp32"]) < 0.05, losses


def test_auto_precision_follows_the_hardware():
    resolved = TrainOptions(steps=1, device="cpu").resolved()
    assert resolved.precision == ("bf16" if bf16_is_fast("cpu") else "fp32")
    assert resolved.batch_size == 16 and TrainOptions(steps=1, batch_size=5).resolved().batch_size == 5
    assert TrainOptions(steps=1, precision="fp32").resolved().network_dtype() is None
    bf16 = TrainOptions(steps=1, precision="bf16").resolved()
    assert bf16.network_dtype(16) == torch.bfloat16 and bf16.network_dtype(4) is None  # 2×2 levels: float32


# ----- compiled steps ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_compiled_runs_resume_without_compile_and_the_reverse(tmp_path):
    data = load_dataset("digits")
    cfg = {"levels": TINY_WF["levels"][:2], "base_size": 4}
    common = dict(decay=0.0, precision="fp32", eval_every=100, log_every=100)

    def run(name, first, second):
        train(tmp_path / name, "digits", "waveletflow", "1", 1, opts(steps=6, compile=first, **common), cfg, data=data)
        ck = torch.load(tmp_path / name / "level_01" / "checkpoint.pt", weights_only=False)
        assert not any("_orig_mod" in k for k in ck["model"])  # the plain module's names
        res = train(tmp_path / name, "digits", None, "1", 1, opts(steps=12, compile=second, **common), data=data)
        assert res[0].step == 12
        return level_params(tmp_path / name)

    eager, compiled = run("eager", False, False), run("compiled", True, True)
    for name, first, second in (("compiled-then-eager", True, False), ("eager-then-compiled", False, True)):
        mixed = run(name, first, second)
        for k in eager:  # a mixed run ends where either mode ends, up to the compiler's float rounding
            assert torch.allclose(mixed[k], eager[k], atol=1e-4) and torch.allclose(mixed[k], compiled[k], atol=1e-4)
    uninterrupted = tmp_path / "compiled-once"
    train(uninterrupted, "digits", "waveletflow", "1", 1, opts(steps=12, compile=True, **common), cfg, data=data)
    once = level_params(uninterrupted)
    for k in once:  # compiled, stopped and resumed compiled: bit-identical to one compiled run
        assert torch.equal(once[k], compiled[k]), k
    state = json.loads((uninterrupted / "level_01" / "state.json").read_text())
    assert state["step"] == 12


# ----- parallel levels ----------------------------------------------------------------------------------------
def test_auto_workers_never_exceed_levels_or_cores():
    for levels in range(1, 10):
        for cores in range(1, 20):
            n = auto_workers(levels, "cpu", cores)
            assert 1 <= n <= min(levels, cores) and (n == min(levels, cores))
            threads = split_threads([1.0 / (i + 1) for i in range(n)], cores)
            assert len(threads) == n and min(threads) >= 1
            assert sum(threads) == max(cores, n)  # every core used, none twice (unless more workers than cores)
            assert threads == sorted(threads, reverse=True)  # the heaviest worker gets the most
    assert auto_workers(6, "cuda", 16, gpus=2) == 2 and auto_workers(6, "cuda", 16, gpus=0) == 1


def test_train_with_no_flags_uses_parallel_levels_the_fitted_size_and_the_fastest_precision(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)  # 28×28 images: the size whose capacity was measured (the 28x28 preset)
    x = rng.integers(0, 256, (300, 28, 28, 1), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x[:260], x_test=x[260:])
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "d.npz"), "--out", str(out), "--time-budget", "6"]) == 0
    err = capsys.readouterr().err
    info = json.loads((out / "run.json").read_text())
    t = info["training"]
    assert t["workers"] == auto_workers(3, "cpu", usable_cores()) and t["precision"] in ("bf16", "fp32")
    assert f"{t['workers']} process" in err and f"precision {t['precision']}" in err
    choice = fit_capacity("waveletflow", (1, 28, 28), 6.0, "cpu")
    assert info["capacity"] == choice.to_dict()
    assert json.loads((out / "model.json").read_text())["config"]["levels"][2]["width"] == choice.width
    assert "fitted to the 6 s budget" in err
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"width {choice.width}, fitted to the 6 s budget" in text and "last trained:" in text


# ----- capacity fitted to the budget ------------------------------------------------------------------------
def test_capacity_is_deterministic_and_follows_the_budget():
    for (model_type, size), tiers in CAPACITY.items():
        h, w = map(int, size.split("x"))
        shape = (1 if size == "28x28" else 3, h, w)
        short, long = (fit_capacity(model_type, shape, b, "cpu") for b in MEASURED_BUDGETS)
        assert short.width == tiers[0].width and long.width == tiers[-1].width
        assert fit_capacity(model_type, shape, MEASURED_BUDGETS[0], "cpu") == short  # the same every time
        edge = tiers[0].up_to_s
        assert fit_capacity(model_type, shape, edge, "cpu").width == short.width
        assert fit_capacity(model_type, shape, edge + 1, "cpu").width == long.width
        assert fit_capacity(model_type, shape, 300.0, "cuda") is None  # measured on CPUs only
    assert fit_capacity("waveletflow", (1, 16, 16), 300.0, "cpu") is None  # no measurement for that size
    assert fit_capacity("mrcnf", (1, 28, 28), 300.0, "cpu") is None


def test_the_capacity_tiers_are_the_widths_that_won_their_trials():
    path = REPO / "benchmarks" / "results" / "capacity.json"
    if not path.is_file():
        pytest.skip("no capacity measurements yet")
    from benchmarks.capacity import PRESET, best_widths

    rows = json.loads(path.read_text())["rows"]
    best = best_widths(rows)
    for (dataset, model, budget), width in best.items():
        size = PRESET[dataset]
        assert fit_capacity(model, (1, 28, 28) if size == "28x28" else (3, 32, 32), float(budget), "cpu").width == \
            width, (dataset, model, budget)
    # the presets (no budget, or a GPU) are the long budget's choice
    for size in ("28x28", "32x32"):
        assert PRESETS[size]["levels"][-1]["width"] == CAPACITY[("waveletflow", size)][-1].width


def test_a_preset_or_config_is_never_resized(tmp_path):
    from waveletflow.training.run import new_config

    data = load_dataset("digits")
    for kw in ({"preset": "8x8"}, {"overrides": {"base_size": 1}}):
        _, _, choice = new_config(data, "waveletflow", budget_s=60.0, device="cpu", **kw)
        assert choice is None
