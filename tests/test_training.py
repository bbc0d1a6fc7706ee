import json

import numpy as np
import pytest
import torch

from conftest import TINY_WF, shared_file
from waveletflow import load
from waveletflow.data import ImageDataset, load_dataset
from waveletflow.errors import UserInputError
from waveletflow.models import build_model, default_config
from waveletflow.rundir import RunDir
from waveletflow.training import TrainOptions, TrainUnit, budget_shares, train

TINY_GLOW = {"n_scales": 2, "n_steps": 2, "width": 8}


def opts(**kw):
    base = dict(batch_size=16, init_batch=16, eval_every=5, log_every=2, val_images=32, progress=False, warmup=5)
    base.update(kw)
    return TrainOptions(**base)


def level_params(run):
    model = load(run)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_continues_and_matches_uninterrupted(tmp_path):
    data = load_dataset("digits")
    # no learning-rate decay: it follows each command's --steps, and this run is stopped at 5 by a smaller one
    train(tmp_path / "a", "digits", "waveletflow", "all", 1, opts(steps=12, decay=0.0), dict(TINY_WF), data=data)
    train(tmp_path / "b", "digits", "waveletflow", "all", 1, opts(steps=5, decay=0.0), dict(TINY_WF), data=data)
    first = json.loads((tmp_path / "b" / "level_03" / "state.json").read_text())
    assert first["step"] == 5
    res = train(tmp_path / "b", "digits", None, "all", 1, opts(steps=12, decay=0.0), data=data)
    assert [r.step for r in res] == [12, 12, 12, 12]
    a, b = level_params(tmp_path / "a"), level_params(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = (tmp_path / "b" / "level_03" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and rows[-1].startswith("12,")
    assert (tmp_path / "b" / "curves.png").stat().st_size > 1000


def test_single_level_and_time_budget(tmp_path):
    data = load_dataset("digits")
    train(tmp_path / "r", "digits", "waveletflow", "2", 1, opts(steps=3), dict(TINY_WF), data=data)
    assert (tmp_path / "r" / "level_02" / "weights.safetensors").exists()
    assert not (tmp_path / "r" / "level_00").exists()
    with pytest.raises(ValueError, match="never trained"):
        load(tmp_path / "r")
    res = train(tmp_path / "r", "digits", None, "0,1,3", 1, opts(time_budget=4.0), data=data)
    assert all(r.step >= 1 for r in res)
    assert load(tmp_path / "r").log_prob(torch.rand(2, 1, 8, 8)).shape == (2,)


def test_budget_shares():
    shares = budget_shares([1, 3, 12, 48], [0, 1, 2, 3])
    assert abs(sum(shares.values()) - 1) < 1e-12
    assert shares[3] > shares[2] > shares[0] and shares[0] >= 0.5 / 4 * 0.99 / sum(
        max(d / 64, 0.125) for d in [1, 3, 12, 48])


def test_nan_never_reaches_a_checkpoint(tmp_path, monkeypatch, caplog):
    data = load_dataset("digits")
    train(tmp_path / "r", "digits", "waveletflow", "3", 1, opts(steps=2), dict(TINY_WF), data=data)
    ckpt = tmp_path / "r" / "level_03" / "checkpoint.pt"
    before = ckpt.read_bytes()
    model = load(tmp_path / "r", allow_untrained=True)
    with torch.no_grad():
        next(model.levels[3].parameters()).fill_(float("nan"))
    unit = TrainUnit(model, 3, RunDir(tmp_path / "r"), opts(steps=3), data.x_train, data.x_train[:8], 5)
    assert not unit.save(1.0)
    assert ckpt.read_bytes() == before
    unit.restore()  # what training does instead: back to the last checkpoint, with a warning
    assert all(torch.isfinite(p).all() for p in model.levels[3].parameters())
    assert "level 3 diverged; restored the checkpoint of step 2" in caplog.text
    # a non-finite loss is skipped, not stepped on
    cls = type(model)
    real = cls._level_terms
    calls = {"n": 0}

    def flaky(self, x, levels, solver, steps=0):
        calls["n"] += 1
        out = real(self, x, levels, solver, steps)
        if calls["n"] == 3:
            out = {v: t._replace(log_prob=t.log_prob * float("nan")) for v, t in out.items()}
        return out

    monkeypatch.setattr(cls, "_level_terms", flaky)
    res = train(tmp_path / "r", "digits", None, "3", 1, opts(steps=6), data=data)
    assert res[0].step == 6 and calls["n"] > 3
    assert all(torch.isfinite(v).all() for v in load(tmp_path / "r", allow_untrained=True).levels[3].state_dict().values() if v.is_floating_point())


def test_a_loss_that_stays_non_finite_is_diverged_and_a_new_run_is_removed(tmp_path, monkeypatch):
    """More non-finite losses in a row than the loop allows end training with ``Diverged`` (a UserInputError, so
    one line from the CLI); a new run that wrote no checkpoint leaves nothing behind."""
    from waveletflow.errors import Diverged
    from waveletflow.training.loop import MAX_NONFINITE_LOSSES

    data = load_dataset("digits")
    from waveletflow.models.wavelet import WaveletModel

    cls, real = WaveletModel, WaveletModel._level_terms
    calls = {"n": 0}

    def nan(self, x, levels, solver, steps=0):
        calls["n"] += 1
        out = real(self, x, levels, solver, steps)
        return {v: t._replace(log_prob=t.log_prob * float("nan")) for v, t in out.items()}

    monkeypatch.setattr(cls, "_level_terms", nan)
    with pytest.raises(Diverged, match="level 3: the loss stayed non-finite; lower --lr"):
        train(tmp_path / "r", "digits", "waveletflow", "3", 1, opts(steps=100), dict(TINY_WF), data=data)
    # the limit's losses and one more, besides the data-dependent initialisation's forward pass
    assert calls["n"] == MAX_NONFINITE_LOSSES + 2 and issubclass(Diverged, UserInputError)
    assert not (tmp_path / "r").exists() or not any(p.name != ".lock" for p in (tmp_path / "r").iterdir())


def test_a_level_worker_that_diverges_is_diverged_in_the_parent(tmp_path):
    """Levels trained in worker processes: a worker whose training diverged (a learning rate far too high) makes
    the parent raise ``Diverged`` too, so that a caller can tell it from other failures."""
    from waveletflow.errors import Diverged

    with pytest.raises(Diverged, match="a level worker diverged"):
        train(tmp_path / "r", "digits", "waveletflow", "2,3", 2, opts(steps=300, lr=1e4, warmup=1), dict(TINY_WF))


def test_crash_during_checkpoint_keeps_the_old_one(tmp_path, monkeypatch):
    data = load_dataset("digits")
    train(tmp_path / "r", "digits", "waveletflow", "1", 1, opts(steps=2), dict(TINY_WF), data=data)
    ckpt = tmp_path / "r" / "level_01" / "checkpoint.pt"
    before = ckpt.read_bytes()

    def broken_save(obj, path):
        with open(path, "wb") as fh:
            fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(UserInputError, match="cannot write .*checkpoint.pt: disk full"):
        train(tmp_path / "r", "digits", None, "1", 1, opts(steps=4), data=data)
    assert ckpt.read_bytes() == before
    assert not [p for p in ckpt.parent.iterdir() if p.name.endswith(".tmp")]


def test_parallel_and_sequential_training_agree(tmp_path):
    data = load_dataset("digits")
    o = opts(steps=6)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two workers on a 2-core machine: same float reductions
    try:
        train(tmp_path / "seq", "digits", "waveletflow", "all", 1, o, dict(TINY_WF), data=data)
    finally:
        torch.set_num_threads(threads)
    train(tmp_path / "par", "digits", "waveletflow", "all", 2, o, dict(TINY_WF), data=data)
    a = load(tmp_path / "seq").bits_per_dim(data.x_test[:100], data_bits=5)
    b = load(tmp_path / "par").bits_per_dim(data.x_test[:100], data_bits=5)
    assert abs(a.bits_per_dim - b.bits_per_dim) < 1e-3
    assert np.allclose(a.levels, b.levels, atol=1e-3)


def test_existing_run_checks(tmp_path):
    data = load_dataset("digits")
    train(tmp_path / "r", "digits", "waveletflow", "0", 1, opts(steps=1), dict(TINY_WF), data=data)
    with pytest.raises(ValueError, match="holds a waveletflow model"):
        train(tmp_path / "r", "digits", "glow", "0", 1, opts(steps=1), data=data)
    other = ImageDataset("x", np.zeros((20, 16, 16, 1), np.uint8), np.zeros((4, 16, 16, 1), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        train(tmp_path / "r", "x", None, "0", 1, opts(steps=1), data=other)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a waveletflow run"):
        train(tmp_path / "junk", "digits", None, "0", 1, opts(steps=1), data=data)
    assert (tmp_path / "junk" / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="level 9"):
        train(tmp_path / "r", "digits", None, "9", 1, opts(steps=1), data=data)


def test_glow_trains_with_the_same_trainer_and_improves(tmp_path):
    path = shared_file("mnist.npz")
    full = load_dataset(str(path))
    data = ImageDataset("mnist-small", full.x_train[:2000], full.x_test[:200])
    before = None
    torch.manual_seed(0)
    train(tmp_path / "g", str(path), "glow", "all", 1, opts(steps=1, batch_size=32, val_images=64), TINY_GLOW, data=data)
    before = load(tmp_path / "g").bits_per_dim(data.x_test).bits_per_dim
    train(tmp_path / "g", str(path), None, "all", 1, opts(steps=80, batch_size=32, val_images=64, warmup=10), data=data)
    after = load(tmp_path / "g").bits_per_dim(data.x_test).bits_per_dim
    assert after < before - 0.5


# ----- joint training ------------------------------------------------------------------------------
def test_joint_objective_is_the_image_nll():
    model = build_model("waveletflow", default_config("waveletflow", (1, 8, 8), 5, TINY_WF))
    x = torch.rand(3, 1, 8, 8)
    nll, reg, nfe = model.objective([0, 1, 2, 3], x)
    assert torch.allclose(nll, -model.log_prob(x), atol=1e-4)
    assert float(reg) == 0.0 and nfe is None
    part = model.objective([1, 3], x).nll
    assert torch.allclose(part, model.objective([1], x).nll + model.objective([3], x).nll)


def test_joint_training_moves_every_level_and_resumes_exactly(tmp_path):
    data = load_dataset("digits")
    o = opts(steps=6, joint=True)
    res = train(tmp_path / "a", "digits", "waveletflow", "all", 1, o, dict(TINY_WF), data=data)
    assert len(res) == 1 and res[0].levels == (0, 1, 2, 3) and res[0].step == 6
    dims = [1, 3, 12, 48]
    # the joint validation figure is the dimension-weighted mean of the per-level ones
    assert abs(res[0].val_bpd - sum(b * d for b, d in zip(res[0].levels_val_bpd, dims)) / 64) < 1e-9
    unit = tmp_path / "a" / "joint_0-1-2-3"
    assert (unit / "checkpoint.pt").exists() and (unit / "metrics.csv").read_text().splitlines()[-1].startswith("6,")
    for level in range(4):
        state = json.loads((tmp_path / "a" / f"level_{level:02d}" / "state.json").read_text())
        assert state["unit"] == "joint_0-1-2-3" and state["step"] == 6
    # every level moved away from its initial weights in one optimiser
    train(tmp_path / "z", "digits", "waveletflow", "all", 1, opts(steps=0, joint=True), dict(TINY_WF), data=data)
    start, end = level_params(tmp_path / "z"), level_params(tmp_path / "a")
    for level in range(4):
        keys = [k for k in start if k.startswith(f"levels.{level}.") and start[k].is_floating_point()]
        assert any(not torch.equal(start[k], end[k]) for k in keys), level
    # interrupted at 3 and resumed: the same weights as 6 steps in one go
    train(tmp_path / "b", "digits", "waveletflow", "all", 1, opts(steps=3, joint=True), dict(TINY_WF), data=data)
    train(tmp_path / "b", "digits", None, "all", 1, o, data=data)
    b = level_params(tmp_path / "b")
    for k in end:
        assert torch.equal(end[k], b[k]), k
    out = load(tmp_path / "a").bits_per_dim(data.x_test[:50], data_bits=5)
    assert abs(sum(out.levels) - out.bits_per_dim) < 1e-9


def test_progressive_then_joint_starts_from_the_trained_levels(tmp_path, caplog):
    data = load_dataset("digits")
    run = tmp_path / "r"
    train(run, "digits", "waveletflow", "all", 1, opts(steps=3), dict(TINY_WF), data=data)
    trained = level_params(run)
    with caplog.at_level("INFO", logger="waveletflow"):
        train(run, "digits", None, "1,2", 1, opts(steps=0, joint=True), data=data)
    assert "level 2 starts from its saved weights" in caplog.text
    assert (run / "joint_1-2" / "checkpoint.pt").exists()
    after = level_params(run)
    for k in trained:
        assert torch.equal(trained[k], after[k]), k
    train(run, "digits", None, "1,2", 1, opts(steps=2, joint=True), data=data)
    # level 2's own checkpoint is now older than its weights: resuming it would lose the joint steps
    newer = (run / "level_02" / "weights.safetensors").read_bytes()
    with pytest.raises(ValueError, match="trained further in joint_1-2"):
        train(run, "digits", None, "2", 1, opts(steps=5), data=data)
    assert (run / "level_02" / "weights.safetensors").read_bytes() == newer


def test_joint_training_refuses_cropped_levels(tmp_path):
    data = load_dataset("digits")
    cfg = json.loads(json.dumps(TINY_WF))
    cfg["levels"][3]["crop"] = 4
    with pytest.raises(ValueError, match="level 3 trains on crops"):
        train(tmp_path / "r", "digits", "waveletflow", "all", 1, opts(steps=1, joint=True), cfg, data=data)


def test_no_curves_writes_no_curves(tmp_path, caplog):
    data = load_dataset("digits")
    for parallel in (1, 2):
        run = tmp_path / f"p{parallel}"
        o = opts(steps=2, curves=False)
        res = train(run, "digits", "waveletflow", "0,1", parallel, o, dict(TINY_WF), data=data)
        assert [r.levels for r in res] == [(0,), (1,)] and all(r.step == 2 for r in res)
        assert (run / "level_01" / "metrics.csv").is_file()
        assert not (run / "curves.png").exists()
    # a corrupt checkpoint is found before any level is trained further
    (run / "level_01" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    before = (run / "level_00" / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError, match=r"corrupt checkpoint .*level_01"):
        train(run, "digits", None, "0,1", 2, opts(steps=3), data=data)
    assert json.loads((run / "level_00" / "state.json").read_text())["step"] == 2
    assert (run / "level_00" / "checkpoint.pt").read_bytes() == before
    # without its checkpoint, level 1 goes on from its weights; the worker's note shows in this process's log
    (run / "level_01" / "checkpoint.pt").unlink()
    with caplog.at_level("INFO", logger="waveletflow"):
        res = train(run, "digits", None, "0,1", 2, opts(steps=3, curves=False), data=data)
    assert [r.step for r in res] == [3, 3] and not (run / "curves.png").exists()
    assert "level 1 starts from its saved weights" in caplog.text


def test_run_dir_names_every_file(tmp_path):
    run = RunDir(tmp_path)
    assert run.unit_dir(3) == run.unit_dir([3]) == tmp_path / "level_03"
    assert run.unit_dir([2, 0, 1]) == tmp_path / "joint_0-1-2"
    assert run.checkpoint_file([0, 1, 2]) == tmp_path / "joint_0-1-2" / "checkpoint.pt"
    assert run.weights_file(3) == tmp_path / "level_03" / "weights.safetensors"
    assert run.state_file(3) == tmp_path / "level_03" / "state.json"
    assert run.metrics_file(12) == tmp_path / "level_12" / "metrics.csv"
    assert run.tensorboard_dir([1, 2]) == tmp_path / "joint_1-2" / "tensorboard"
    assert (run.model_file, run.run_file, run.curves_file) == (
        tmp_path / "model.json", tmp_path / "run.json", tmp_path / "curves.png")
    assert RunDir.unit_levels("joint_0-1-2") == [0, 1, 2] and RunDir.unit_levels("level_03") == [3]
    assert RunDir.unit_levels("tensorboard") is None
    assert run.read_state(3) is None and run.units_with_metrics() == []
    run.write_state(3, {"step": 1})
    assert run.read_state(3) == {"step": 1}
    run.state_file(3).write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        run.read_state(3)
    with pytest.raises(ValueError, match="run.json is missing or corrupt"):
        run.read_run()
    run.write_run("digits", 5, 150, 0)
    assert run.read_run() == {"data": "digits", "data_bits": 5, "val_size": 150, "seed": 0}
    with pytest.raises(ValueError, match="level 2 was never trained"):
        run.load_weights(2)
    for levels in ([1, 2], [0]):
        run.metrics_file(levels).parent.mkdir(parents=True, exist_ok=True)
        run.metrics_file(levels).write_text("step,train_bpd\n1,2.5\n")
    assert run.units_with_metrics() == [[1, 2], [0]]
    assert run.read_metrics([1, 2]) == [{"step": "1", "train_bpd": "2.5"}]
    assert run.metrics_columns(0) == ["step", "train_bpd"]


# ----- the training recipe: Polyak averaging, Adamax, decay -------------------------------------------
def test_polyak_weights_are_what_evaluate_and_sample_use_and_what_resume_restores(tmp_path):
    from safetensors.torch import load_file

    data = load_dataset("digits")
    o = opts(steps=6, ema=0.9)
    train(tmp_path / "a", "digits", "waveletflow", "3", 1, o, dict(TINY_WF), data=data)
    ck = torch.load(tmp_path / "a" / "level_03" / "checkpoint.pt", weights_only=True)
    saved = load_file(str(tmp_path / "a" / "level_03" / "weights.safetensors"))
    loaded = load(tmp_path / "a", allow_untrained=True).levels[3].state_dict()
    for name, avg in ck["average"].items():
        assert torch.equal(saved[name], avg) and torch.equal(loaded[name], avg), name
    assert any(not torch.equal(ck["model"][n], ck["average"][n]) for n in ck["average"])  # not the raw weights
    # interrupted at 3 and resumed: the same raw weights and the same average as 6 steps in one go
    train(tmp_path / "b", "digits", "waveletflow", "3", 1, opts(steps=3, ema=0.9), dict(TINY_WF), data=data)
    train(tmp_path / "b", "digits", None, "3", 1, o, data=data)
    ck_b = torch.load(tmp_path / "b" / "level_03" / "checkpoint.pt", weights_only=True)
    for key in ("model", "average"):
        for name in ck[key]:
            assert torch.equal(ck[key][name], ck_b[key][name]), (key, name)


def test_adamax_decay_and_their_checks(tmp_path):
    o = TrainOptions(lr=1e-3, warmup=1, decay=0.2)
    assert o.lr_at(10, 0.0) == 1e-3 and abs(o.lr_at(10, 0.9) - 0.5e-3) < 1e-12 and o.lr_at(10, 1.0) == 0.0
    assert TrainOptions(lr=1e-3, warmup=1, decay=0.0).lr_at(10, 1.0) == 1e-3  # decay 0: none
    with pytest.raises(ValueError, match="optimizer"):
        TrainOptions(optimizer="sgd")
    with pytest.raises(ValueError, match="ema"):
        TrainOptions(ema=1.0)
    data = load_dataset("digits")
    res = train(tmp_path / "r", "digits", "waveletflow", "2", 1, opts(steps=4, lr=1e-3, optimizer="adamax", decay=0.5, ema=0.0),
                dict(TINY_WF), data=data)
    assert res[0].step == 4
    ck = torch.load(tmp_path / "r" / "level_02" / "checkpoint.pt", weights_only=True)
    assert "average" not in ck and all("exp_inf" in s for s in ck["optimizer"]["state"].values())  # Adamax's state
    rows = (tmp_path / "r" / "level_02" / "metrics.csv").read_text().splitlines()
    assert float(rows[-1].split(",")[5]) < 1e-3 * 0.6  # the learning rate decayed towards the end


def test_marginal_gain_schedule_keeps_to_the_budget_and_the_floors():
    from waveletflow.training import MarginalGainSchedule

    # level 2's contribution falls ten times faster than the others': after the floors, it gets the slices
    slopes = {0: 0.001, 1: 0.002, 2: 0.02}
    contribution = {0: 1.0, 1: 1.0, 2: 1.0}
    schedule = MarginalGainSchedule([0, 1, 2], budget_s=100.0, slice_s=4.0, floor=0.5)
    order = []
    while (nxt := schedule.next_slice()) is not None:
        level, seconds = nxt
        assert seconds > 0
        order.append(level)
        contribution[level] -= slopes[level] * seconds
        schedule.report(level, seconds, contribution[level])
    assert abs(schedule.spent - 100.0) < 1e-9  # the whole budget, never more
    floor = 0.5 * 100.0 / 3
    assert all(schedule.spent_on(v) >= floor - 1e-9 for v in (0, 1, 2))
    assert schedule.spent_on(2) > 100.0 - 2 * floor - 4.0 - 1e-9  # the rest went to the steepest level
    assert order[: order.index(1)] == [0] * order.index(1)  # floors first, coarse to fine
    # a finished level gets nothing more; with none left, nothing is handed out
    schedule = MarginalGainSchedule([0, 1], budget_s=10.0, slice_s=2.0)
    schedule.finish(0)
    schedule.finish(1)
    assert schedule.next_slice() is None


def test_gain_schedule_trains_every_level_in_slices(tmp_path):
    data = load_dataset("digits")
    o = opts(time_budget=6.0, schedule="gain", slice_seconds=1.0, eval_every=10**6)
    res = train(tmp_path / "r", "digits", "waveletflow", "all", 1, o, dict(TINY_WF), data=data)
    assert [r.levels for r in res] == [(0,), (1,), (2,), (3,)] and all(r.step >= 1 for r in res)
    for level in range(4):
        rows = (tmp_path / "r" / f"level_{level:02d}" / "metrics.csv").read_text().splitlines()
        assert sum(1 for r in rows[1:] if r.split(",")[3]) >= 1  # each slice ends with a validation
    model = load(tmp_path / "r")
    assert model.bits_per_dim(data.x_test[:20], data_bits=5).bits_per_dim > 0
    with pytest.raises(ValueError, match="schedule"):
        TrainOptions(schedule="greedy")


def test_gain_schedule_ends_every_level_with_the_decay(tmp_path):
    data = load_dataset("digits")
    o = opts(time_budget=6.0, schedule="gain", slice_seconds=1.0, eval_every=10**6, log_every=1, decay=0.5)
    train(tmp_path / "r", "digits", "waveletflow", "all", 1, o, dict(TINY_WF), data=data)
    for level in range(4):
        rows = [r.split(",") for r in (tmp_path / "r" / f"level_{level:02d}" / "metrics.csv").read_text().splitlines()[1:]]
        lrs = [float(r[5]) for r in rows]
        assert max(lrs) == pytest.approx(o.lr)  # trained at the full rate before the decay
        assert lrs[-1] < 0.5 * o.lr  # and ended on the decay, whichever level had the last slices


def test_keep_best_saves_the_weights_of_the_best_validation(tmp_path, monkeypatch):
    """With keep_best the weights file holds the parameters of the lowest validation, across a resume, while
    training goes on from the current ones."""
    from types import SimpleNamespace

    from safetensors.torch import load_file

    from waveletflow.models.wavelet import WaveletModel

    data = load_dataset("digits")
    figures = iter([5.0, 3.0, 4.0, 6.0, 2.5, 7.0])  # validations at steps 2, 4, 6 | 8, 10, 12
    monkeypatch.setattr(WaveletModel, "bits_per_dim", lambda self, *a, **k: SimpleNamespace(own=[next(figures)]))
    snapshots = {}
    real = TrainUnit.validate

    def validate(self):  # what the averaged weights were at each validation
        with self.averaged():
            snapshots[self.step] = {n: p.detach().clone() for n, p in self.module.named_parameters()}
        return real(self)

    monkeypatch.setattr(TrainUnit, "validate", validate)
    o = dict(batch_size=8, init_batch=8, eval_every=2, val_images=20, keep_best=True, progress=False, curves=False)
    res = train(tmp_path / "r", "digits", "waveletflow", "0", 1, TrainOptions(steps=6, **o), dict(TINY_WF), data=data)
    assert res[0].val_bpd == 3.0 and res[0].best_step == 4 and res[0].last_val_bpd == 4.0
    run = RunDir(tmp_path / "r")
    saved = load_file(run.weights_file(0))
    matching = [k for k in snapshots[4] if k in saved]
    assert matching and all(torch.equal(saved[k], snapshots[4][k]) for k in matching)
    assert not all(torch.equal(saved[k], snapshots[6][k]) for k in matching)
    assert run.read_state(0)["val_bpd"] == 3.0 and run.read_state(0)["best_step"] == 4
    res = train(tmp_path / "r", "digits", "waveletflow", "0", 1, TrainOptions(steps=12, **o), dict(TINY_WF), data=data)
    # resumed: the best (3.0 at step 4) is remembered; 2.5 at step 10 beats it, 7.0 at step 12 does not
    assert res[0].val_bpd == 2.5 and res[0].best_step == 10
    saved = load_file(run.weights_file(0))
    assert all(torch.equal(saved[k], snapshots[10][k]) for k in matching)
