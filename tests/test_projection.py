"""The k-worker projection (benchmarks/projection.py): its arithmetic against brute force, on synthetic curves."""

from __future__ import annotations

import math

import pytest

from benchmarks import projection as pj
from benchmarks import report

#: two levels: a coarse one (100 dims) that is cheap, a fine one (300 dims) that costs 3× as much per step
DIMS = [100, 300]
STEP_S = [0.01, 0.03]
WF = [[(s, 4.0 - s / 1000) for s in range(100, 2001, 100)], [(s, 3.0 - s / 2000) for s in range(100, 2001, 100)]]
GLOW_CURVE = [(s, 3.5 - s / 1000) for s in range(200, 3001, 200)]


def test_read_curve_keeps_the_best_validation_so_far(tmp_path):
    f = tmp_path / "metrics.csv"
    f.write_text("step,elapsed_s,train_bpd,val_bpd\n10,1,5,\n20,2,4,3.0\n30,3,3.5,\n40,4,3,3.2\n50,5,3,2.5\n")
    assert pj.read_curve(f) == [(20, 3.0), (40, 3.0), (50, 2.5)]


def test_every_level_gets_its_worker_share_of_the_wall_clock():
    for k in (1, 2):
        rates = pj.level_rates(DIMS, STEP_S, k)
        busy = [r * s for r, s in zip(rates, STEP_S)]  # the fraction of a worker's time each level takes
        assert sum(busy) == pytest.approx(k)
    assert pj.level_rates(DIMS, STEP_S, 2) == pytest.approx([1 / s for s in STEP_S])


def brute_force(k: int, target: float, dt: float = 0.01) -> float:
    rates = pj.level_rates(DIMS, STEP_S, k)
    t = 0.0
    while t < 1000:
        if pj.composed(WF, DIMS, [r * t for r in rates]) <= target:
            return t
        t += dt
    return math.inf


@pytest.mark.parametrize("k", [1, 2])
def test_wavelet_flow_time_is_the_first_time_the_composed_figure_reaches_the_target(k):
    q = 0.25 * 3.5 + 0.75 * 2.4
    exact = pj.wavelet_flow_time(WF, DIMS, STEP_S, k, q)
    assert exact == pytest.approx(brute_force(k, q), abs=0.02)
    # one more validation point is needed just before it
    rates = pj.level_rates(DIMS, STEP_S, k)
    assert pj.composed(WF, DIMS, [r * exact * 0.999 for r in rates]) > q
    assert pj.wavelet_flow_time(WF, DIMS, STEP_S, k, 0.1) == math.inf


def test_more_workers_never_slow_wavelet_flow_down():
    q = pj.target(WF, DIMS, GLOW_CURVE)
    assert pj.wavelet_flow_time(WF, DIMS, STEP_S, 2, q) < pj.wavelet_flow_time(WF, DIMS, STEP_S, 1, q)


def test_target_is_what_both_models_reach():
    q = pj.target(WF, DIMS, GLOW_CURVE)
    # after 80% of the steps: level 0 at step 1600 (2.4), level 1 at 1600 (2.2), the Glow at 2400 (1.1)
    assert q == pytest.approx(max(0.25 * 2.4 + 0.75 * 2.2, 1.1))
    assert pj.target(WF, DIMS, GLOW_CURVE, 1.0) == pytest.approx(2.0)
    assert pj.glow_time(GLOW_CURVE, 0.05, q) < math.inf
    assert pj.glow_time(GLOW_CURVE, 0.05, 3.0) == pytest.approx(600 * 0.05)  # step 600: 2.9, the first ≤ 3.0


def test_allreduce_grows_with_ranks_and_is_bounded_by_twice_the_gradient_bytes():
    p, bw = 10**6, 1e9
    times = [pj.allreduce_s(p, k, bw, 0.0) for k in (1, 2, 4, 8, 16)]
    assert times[0] == 0 and times == sorted(times) and times[-1] < 2 * 4 * p / bw


def result(seeds=(0, 1)) -> dict:
    step_s = {"waveletflow": STEP_S, pj.GLOW: {str(k): 0.05 / k ** 0.5 for k in pj.RANKS}}
    rows = [{"key": f"mnist/seed{s}", "dataset": "mnist", "seed": s, "level_dims": DIMS,
             "params": {"waveletflow": 10**6, pj.GLOW: 10**6}, "waveletflow": WF, pj.GLOW: GLOW_CURVE}
            for s in seeds]
    return {"machine": "test", "rows": rows, "step_s": {"mnist": step_s}}


def test_report_has_a_line_per_k_and_the_crossing():
    text = pj.markdown(result())
    for k in (1, 2, 4, 8, 16):
        assert f"\n| {k} | " in text
    q = pj.target(WF, DIMS, GLOW_CURVE)
    one = pj.wavelet_flow_time(WF, DIMS, STEP_S, 1, q)
    assert f"| 1 | {one:.0f} s (" in text  # two seeds: mean (lowest–highest)
    assert "Wavelet Flow on 2 workers" in text
    assert "Glow matches it with" in text or "no rank count" in text
    assert "Not measured yet" in pj.markdown({})


def test_the_projection_block_is_generated_from_its_file():
    assert "projection" in report.SOURCES
    assert any(name == "projection" for _, name, _ in report.tables())


def test_a_rerun_keeps_the_rows_whose_run_folders_are_gone(tmp_path, monkeypatch, capsys):
    """Seeds trained in another sitting stay in the file: only the seeds whose runs are found are measured again."""
    import json

    kept = json.loads(json.dumps({**result(), "machine": "earlier machine"}))
    kept["step_s"]["mnist"]["machine"] = "earlier machine"
    monkeypatch.setattr(pj, "RESULTS", tmp_path / "projection.json")
    pj.RESULTS.write_text(json.dumps(kept))
    assert pj.main(["--runs", str(tmp_path / "none"), "--datasets", "mnist"]) == 0
    after = json.loads(pj.RESULTS.read_text())
    assert after["rows"] == kept["rows"] and after["step_s"] == kept["step_s"]
    assert "no default and glow-residual runs" in capsys.readouterr().out
    assert "step times: earlier machine" in pj.markdown(after)
