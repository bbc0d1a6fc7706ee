"""Hard time budgets: the last validation and checkpoint fit inside the budget (on a fake clock, so that the
test does not depend on this machine's speed), and the last checkpoint is written once."""

import types

from conftest import TINY_WF
from waveletflow.data import load_dataset
from waveletflow.training import TrainOptions, TrainUnit, train
from waveletflow.training import loop
from waveletflow.training.loop import Stop, Tail


class FakeClock:
    """``time.perf_counter`` for the training loop: moves only when a patched step or validation says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def opts(**kw) -> TrainOptions:
    base = dict(batch_size=16, init_batch=16, log_every=2, val_images=32, progress=False, warmup=5, curves=False)
    base.update(kw)
    return TrainOptions(**base)


def test_tail_reserves_a_step_a_validation_and_a_checkpoint():
    tail = Tail(val_images=100)
    assert tail.seconds() == 0.0  # nothing measured: the first step always runs
    tail.stepped(2.0, batch=16)
    # no validation timed yet: 7 batches of validation images at half a step each
    assert tail.seconds() == 2.0 + 7 * 2.0 * loop.VAL_STEP_FRACTION
    tail.val_s, tail.save_s = 30.0, 1.5
    assert tail.seconds() == 2.0 + 30.0 + 1.5


def test_stop_keeps_its_reserve_and_progress_ends_there():
    clock = FakeClock()
    real = loop.time
    loop.time = types.SimpleNamespace(perf_counter=clock)
    try:
        stop = Stop(budget_s=100.0)
        stop.reserve = 20.0
        clock.now += 79.0
        assert not stop(0) and abs(stop.progress(0) - 79.0 / 80.0) < 1e-12
        clock.now += 1.0
        assert stop(0) and stop.progress(0) == 1.0
    finally:
        loop.time = real


def test_a_slow_validation_ends_inside_the_budget(tmp_path, monkeypatch):
    """Steps cost 1 s and validations 10 s of the fake clock: training stops early enough that the final
    validation and checkpoint end within the 60 s budget (without the reserve they ended at 70 s)."""
    clock = FakeClock()
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=clock))
    objective, validate = TrainUnit.objective, TrainUnit.validate
    ends = []

    def slow_objective(self, x):
        clock.now += 1.0
        return objective(self, x)

    def slow_validate(self):
        clock.now += 10.0
        ends.append(clock.now)
        return validate(self)

    monkeypatch.setattr(TrainUnit, "objective", slow_objective)
    monkeypatch.setattr(TrainUnit, "validate", slow_validate)
    data = load_dataset("digits")
    [res] = train(tmp_path / "r", "digits", "waveletflow", "3", 1, opts(time_budget=60.0, eval_every=15,
                                                                       checkpoint_every=10**6),
                  dict(TINY_WF), data=data)
    assert res.step >= 30  # the budget was used, not given up early
    assert len(ends) >= 2 and ends[-1] - 1000.0 <= 60.0, ends


def test_the_last_checkpoint_is_written_once(tmp_path, monkeypatch):
    saves = []
    save = TrainUnit.save

    def counted(self, elapsed_s):
        saves.append(self.step)
        return save(self, elapsed_s)

    monkeypatch.setattr(TrainUnit, "save", counted)
    data = load_dataset("digits")
    train(tmp_path / "r", "digits", "waveletflow", "3", 1, opts(steps=10, eval_every=5, checkpoint_every=5),
          dict(TINY_WF), data=data)
    assert saves == [5, 10]
