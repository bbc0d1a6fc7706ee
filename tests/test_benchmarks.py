"""The benchmark suite in a tiny configuration: every figure is produced (no timing is asserted)."""

import json

import pytest

from conftest import shared_file


def test_benchmark_produces_every_figure(tmp_path):
    shared_file("mnist.npz")
    pytest.importorskip("normflows")
    from benchmarks.run import main

    assert main(["--quick", "--datasets", "mnist", "--budget", "2", "--points", "1", "--test-images", "20",
                 "--throughput-sizes", "16", "--memory-sizes", "16", "--sampling-cases", "16:2",
                 "--ablation", "--ablation-budget", "1", "--ablation-variants", "3,4", "--batch", "8", "--lr", "0.0015",
                 "--warmup", "7", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    (ttq,) = res["time_to_quality"]
    assert ttq["batch"] == 8 and res["recipe"] == {"lr": 0.0015, "warmup": 7}
    assert "learning rate 0.0015, warm-up 7 steps" in (tmp_path / "results.md").read_text()
    glows = ["Glow", "Glow (residual coupling)"]
    assert [m["name"] for m in ttq["models"]] == ["Wavelet Flow", *glows, "normflows Glow"]
    for m in ttq["models"]:
        assert 0.85 <= m["param_ratio"] <= 1.15  # matched parameter counts
        assert len(m["curve"]) == 1 and m["curve"][0]["test_bpd"] > 0
    assert len(ttq["speedups"]) == 3
    (levers,) = res["levers"]
    assert levers["dataset"] == "mnist" and levers["batches"] == [8, 16]
    wf_rows = [r for r in levers["rows"] if r["model"] == "Wavelet Flow"]
    assert [r["level"] for r in wf_rows] == [0, 1, 2]  # 28×28 MNIST: a 7×7 base and two detail levels
    assert sum(r["params"] for r in wf_rows) == ttq["models"][0]["params"]  # the levels make up the model
    assert {r["model"] for r in levers["rows"]} == {"Wavelet Flow", *glows}
    for r in levers["rows"]:
        assert min(r["batch"]["8"], r["batch"]["16"], r["channels_last"], r["one_thread"]) > 0
        assert 0.0 < r["conv_share"] < 1.0
    from benchmarks.levers import per_image_ms

    assert per_image_ms(levers["rows"], "Wavelet Flow", 8) == pytest.approx(sum(1000 / r["batch"]["8"] for r in wf_rows))
    assert "Where a training step goes" in (tmp_path / "results.md").read_text()
    assert {r["model"] for r in res["throughput"]} == {"Wavelet Flow", *glows, "normflows Glow"}
    assert all(r["images_per_s"] > 0 for r in res["throughput"])
    assert res["memory"][0]["wavelet_flow_max_level_mb"] is not None and res["memory"][0]["glow_mb"] is not None
    assert len(res["sampling"]) == 4 and all(r["seconds"] > 0 for r in res["sampling"])
    assert (tmp_path / "time_to_quality_mnist.png").stat().st_size > 1000
    assert "Time to quality" in (tmp_path / "results.md").read_text()
    from benchmarks.ablation import VARIANTS

    ablation = res["ablation"]
    assert [r["variant"] for r in ablation["variants"]] == list(VARIANTS)[3:5]  # the variants asked for
    assert all(len(r["test_bpd"]) == 1 and r["mean"] > 0 and r["spread"] == 0 for r in ablation["variants"])
    assert "Ablation: mnist" in (tmp_path / "results.md").read_text()


def test_sweep_budgets_halve_down_to_the_whole_budget():
    from benchmarks.timetoquality import sweep_budgets

    assert sweep_budgets(600.0, 4) == [75.0, 150.0, 300.0, 600.0]
    assert sweep_budgets(10.0, 1) == [10.0]


def test_time_to_quality_with_a_wavelet_flow_config_and_chosen_baselines(tmp_path):
    """``--wf-config DATASET=FILE`` changes Wavelet Flow's config on that dataset (the Glow is matched to it) and
    ``--against`` picks the baselines; both are recorded. In the ``runs`` protocol (the default) the baseline
    trains once for the whole budget and Wavelet Flow in fresh runs of half the budget and the whole."""
    shared_file("mnist.npz")
    from benchmarks.run import main
    from waveletflow.models import build_model, waveletflow_config

    overrides = {"levels": [{"n_steps": 4, "width": 32, "n_blocks": 1, "n_scales": 1},
                            {"n_steps": 4, "width": 32, "cond_width": 8}, {"n_steps": 4, "width": 48, "cond_width": 8}]}
    cfg = tmp_path / "wf.json"
    cfg.write_text(json.dumps(overrides))
    assert main(["--quick", "--datasets", "mnist", "--budget", "2", "--points", "2", "--test-images", "8",
                 "--skip", "levers,throughput,memory,sampling", "--wf-config", f"mnist={cfg}", "--against",
                 "glow-residual", "--seed", "3", "--out", str(tmp_path)]) == 0
    (ttq,) = json.loads((tmp_path / "results.json").read_text())["time_to_quality"]
    assert [m["name"] for m in ttq["models"]] == ["Wavelet Flow", "Glow (residual coupling)"]
    wf, glow = ttq["models"]
    assert ttq["protocol"] == "runs" and [p["budget_s"] for p in wf["curve"]] == [1.0, 2.0]
    assert [p["budget_s"] for p in glow["curve"]] == [2.0]
    # a budget caps a run's seconds, which are recorded, never asserted against it
    assert all(p["train_s"] > 0 and p["test_bpd"] > 0 for m in ttq["models"] for p in m["curve"])
    runs = tmp_path / "runs" / "mnist"
    for name in ("waveletflow-1s", "waveletflow"):  # each budget its own fresh run, the whole budget's kept as the model
        assert json.loads((runs / name / "run.json").read_text())["seed"] == 3
    (s,) = ttq["speedups"]
    assert s["against"] == "Glow (residual coupling)" and s["goal_bpd"] == glow["curve"][0]["test_bpd"]
    expected = sum(p.numel() for p in build_model("waveletflow", waveletflow_config((1, 28, 28), 8, **overrides)).parameters())
    assert ttq["models"][0]["params"] == expected and ttq["wf_config"] == overrides and ttq["seed"] == 3
    assert json.loads((tmp_path / "runs" / "mnist" / "waveletflow" / "run.json").read_text())["seed"] == 3
    assert 0.7 <= ttq["models"][1]["param_ratio"] <= 1.3
    assert '"cond_width": 8' in (tmp_path / "results.md").read_text()
    with pytest.raises(SystemExit):
        main(["--quick", "--against", "pixelcnn", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["--quick", "--wf-config", f"svhn={cfg}", "--out", str(tmp_path)])


def test_highres_benchmark_sections(tmp_path):
    """The photos' time to quality at a given size, with the best validation kept, and the memory of every
    level of a preset against Glow."""
    shared_file("photos/manifest.csv")
    pytest.importorskip("normflows")
    from benchmarks.run import main

    assert main(["--highres", "--quick", "--highres-sizes", "16", "--highres-budget", "1", "--highres-batch", "8",
                 "--points", "1", "--test-images", "4", "--keep-best-every", "2", "--out", str(tmp_path)]) == 0
    assert not (tmp_path / "results.json").exists()  # the main results are left alone
    res = json.loads((tmp_path / "results_highres.json").read_text())
    (ttq,) = res["time_to_quality"]
    assert ttq["dataset"] == "photos16" and ttq["test_images"] == 4 and ttq["batch"] == 8
    assert [m["name"] for m in ttq["models"]][0] == "Wavelet Flow" and len(ttq["models"]) == 4
    assert all(m["curve"][0]["test_bpd"] > 0 for m in ttq["models"])
    mem = res["highres_memory"]
    assert [r["level"] for r in mem["levels"]] == list(range(7)) and all(r["mb"] is not None for r in mem["levels"])
    assert mem["levels"][-1]["crop"] == 32 and mem["levels"][0]["crop"] is None  # the 64 px preset's top level
    assert {(r["model"], r["size"]) for r in mem["glow"]} == {(m, s) for m in ("glow", "glow-residual") for s in (32, 64)}
    assert all(r["mb"] is not None for r in mem["glow"])
    md = (tmp_path / "results_highres.md").read_text()
    assert "Time to quality: photos16" in md and "Peak memory of one training step at 64 px" in md


def test_mrcnf_benchmark_section(tmp_path):
    """MRCNF beside Wavelet Flow and the Glows on MNIST: its curve, the sampling latency of every trained model,
    and per level of the trained Wavelet Flow and MRCNF the images/s of a step and MRCNF's function evaluations."""
    shared_file("mnist.npz")
    from benchmarks.run import main

    assert main(["--mrcnf", "--quick", "--budget", "2", "--points", "1", "--test-images", "8",
                 "--out", str(tmp_path)]) == 0
    assert not (tmp_path / "results.json").exists()  # the main results are left alone
    res = json.loads((tmp_path / "results_mrcnf.json").read_text())
    (ttq,) = res["time_to_quality"]
    assert ttq["protocol"] == "chunks"  # the MRCNF section keeps its resumed chunks
    names = [m["name"] for m in ttq["models"]]
    assert names[:3] == ["Wavelet Flow", "Glow", "Glow (residual coupling)"] and "MRCNF" in names
    assert all(m["curve"][0]["test_bpd"] > 0 and m["sample_s"] > 0 and m["sample_n"] == 64 for m in ttq["models"])
    assert (tmp_path / "runs" / "mnist-mrcnf" / "mrcnf" / "model.json").is_file()
    rows = res["trained_levels"]
    assert [(r["model"], r["level"]) for r in rows] == [(m, lv) for m in ("Wavelet Flow", "MRCNF") for lv in range(3)]
    assert all(r["images_per_s"] > 0 for r in rows)
    for r in rows:  # a discrete flow has no function evaluations; every MRCNF level solves at least once a step
        if r["model"] == "Wavelet Flow":
            assert r["train_nfe"] is None and r["test_nfe"] is None
        else:
            assert r["train_nfe"] >= 2 and r["test_nfe"] >= 2
    mrcnf_params = next(m["params"] for m in ttq["models"] if m["name"] == "MRCNF")
    assert sum(r["params"] for r in rows if r["model"] == "MRCNF") == mrcnf_params
    md = (tmp_path / "results_mrcnf.md").read_text()
    assert "s for 64 samples" in md and "NFE per training step" in md


def _shipped_config(name: str, shape):
    """A config file of ``benchmarks/configs`` as the Wavelet Flow config for images of ``shape``."""
    from pathlib import Path

    from waveletflow.models import waveletflow_config

    overrides = json.loads((Path(__file__).parents[1] / "benchmarks" / "configs" / name).read_text())
    return waveletflow_config(shape, 8, **overrides)


def _released(shape):
    """The preset as released for images of ``shape`` (the base of the shipped configs)."""
    from waveletflow.models import waveletflow_config

    return waveletflow_config(shape, 8, preset=f"{shape[1]}x{shape[2]}-released")


@pytest.mark.parametrize("name, shape", [("cond-mnist.json", (1, 28, 28)), ("cond-cifar.json", (3, 32, 32))])
def test_shipped_conditioning_configs_are_the_presets_levels_with_a_conditioning_network(name, shape):
    from benchmarks.contenders import count_params
    from waveletflow.models import build_model

    cfg, preset = _shipped_config(name, shape), _released(shape)
    assert len(cfg.levels) == len(preset.levels)
    assert cfg.levels[0].cond_width == 0 and all(lv.cond_width == 32 for lv in cfg.levels[1:])
    for ours, released in zip(cfg.levels, preset.levels):  # otherwise the preset's levels, unchanged
        assert (ours.n_steps, ours.width) == (released.n_steps, released.width)
    extra = count_params(build_model("waveletflow", cfg)) - count_params(build_model("waveletflow", preset))
    assert 0 < extra < 0.2 * count_params(build_model("waveletflow", preset))


@pytest.mark.parametrize("name, base, shape", [("narrow-mnist.json", "cond-mnist.json", (1, 28, 28)),
                                               ("narrow-cifar.json", None, (3, 32, 32))])
def test_shipped_narrow_configs_change_only_the_finest_levels_width(name, base, shape):
    """The benchmark's Wavelet Flow configs: their base config (the conditioning one, or the preset as released)
    with only the finest level narrowed to width 48, so fewer parameters, each level a valid flow."""
    import torch

    from benchmarks.contenders import count_params
    from waveletflow.models import build_model

    cfg = _shipped_config(name, shape)
    ref = _shipped_config(base, shape) if base else _released(shape)
    assert len(cfg.levels) == len(ref.levels)
    for ours, theirs in zip(cfg.levels[:-1], ref.levels[:-1]):
        assert ours == theirs
    assert cfg.levels[-1].width == 48 < ref.levels[-1].width
    assert (cfg.levels[-1].n_steps, cfg.levels[-1].cond_width) == (ref.levels[-1].n_steps, ref.levels[-1].cond_width)
    model = build_model("waveletflow", cfg)
    assert count_params(model) < count_params(build_model("waveletflow", ref))
    torch.manual_seed(0)
    x = torch.rand(2, *shape)
    with torch.no_grad():
        model.eval()
        assert torch.allclose(model.decode(model.encode(x)), x, atol=1e-4)


@pytest.mark.parametrize("name", ["defaults", "defaults-summary", "throughput", "capacity", "beyond", "memory",
                                  "tuning", "projection", "highres", "demo"])
def test_tables_in_the_readme_and_docs_are_generated_from_their_result_files(name):
    """Every table between a page's markers (README and docs) is what its result file gives, never a hand copy."""
    from pathlib import Path

    from benchmarks import beyond, capacity, defaults, demo, highres, memory, projection, throughput, tuning
    from benchmarks.readme import block, markers

    repo = Path(__file__).parents[1]
    module = {"defaults": defaults, "throughput": throughput, "capacity": capacity, "beyond": beyond,
              "memory": memory, "tuning": tuning, "projection": projection, "highres": highres,
              "demo": demo}[name.split("-")[0]]
    make = defaults.BLOCKS[name] if name.startswith("defaults") else module.markdown
    pages = [p for p in [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]
             if markers(name)[0] in p.read_text()]
    assert pages, f"no page holds the {name} table"
    path = repo / "benchmarks" / "results" / f"{name.split('-')[0]}.json"
    if not path.is_file() and name not in ("beyond", "memory", "tuning", "projection", "highres"):
        pytest.skip(f"{path.name} not measured yet")
    table = make(json.loads(path.read_text()) if path.is_file() else {"rows": []})  # these say they are not yet
    for page in pages:
        assert block(page.read_text(), name) == table, page.relative_to(repo)


def test_beyond_plans_one_factor_at_a_time_resumes_and_reports(tmp_path, monkeypatch):
    """The reviewers' questions benchmark: its runs, its commands (quality --denoise for noisy variants only), a
    second call runs only what the file lacks, and the table carries seeds and spreads."""
    from benchmarks import beyond

    todo = beyond.plan()
    assert len(todo) == 3 * 2 * (len(beyond.VARIANTS) - 1) and todo[0][2] == 0 and todo[-1][2] == 2
    # the context variant that is the default model again is not run twice: the presets say which it is
    from waveletflow.models import waveletflow_config

    for dataset, shape in (("mnist", (1, 28, 28)), ("cifar10", (3, 32, 32))):
        contexts = {lv.context for lv in waveletflow_config(shape).levels[1:]}
        assert contexts == {beyond.DEFAULT_CONTEXT[dataset]}
        assert (dataset, f"context-{beyond.DEFAULT_CONTEXT[dataset]}", 0) not in todo
    cmds = beyond.commands("mnist", "noise-0.1", 1, tmp_path / "r")
    assert cmds["train"][-2:] == ["--noise-std", "0.1"] and cmds["quality_denoised"][-1] == "--denoise"
    assert "quality_denoised" not in beyond.commands("mnist", "cdf97", 0, tmp_path / "r")
    assert beyond.commands("cifar10", "default", 0, tmp_path / "r")["quality"][5:7] == ["--n", "1017"]
    monkeypatch.setattr(beyond, "RESULTS", tmp_path / "beyond.json")
    ran = []

    def fake(d, v, s, work):
        ran.append((d, v, s))
        den = {"quality_denoised": {"fd": 9.0, "fd_inf": 8.0, "kid": 0.005}} if v.startswith("noise") else {}
        return {"key": beyond.key(d, v, s), "dataset": d, "variant": v, "seed": s, "test_bpd": 1.0 + s / 10,
                "scores": {"quality": {"fd": 10.0 + s, "fd_inf": 9.5 + s, "kid": 0.01 * (s + 1)}, **den}}

    monkeypatch.setattr(beyond, "run_one", fake)
    beyond.run_all(beyond.plan(["mnist"], [0], ["default", "noise-0.05"]), tmp_path)
    beyond.run_all(beyond.plan(["mnist"], [0, 1], ["default", "noise-0.05"]), tmp_path)
    assert ran == [("mnist", "default", 0), ("mnist", "noise-0.05", 0), ("mnist", "default", 1),
                   ("mnist", "noise-0.05", 1)]
    result = json.loads((tmp_path / "beyond.json").read_text())
    assert {r["cpu"] for r in result["rows"]} == {result["machine"]}  # every row says which machine ran it
    table = beyond.markdown(result)
    assert f"Machine: {result['machine']}  " in table
    result["rows"][2]["cpu"] = result["rows"][3]["cpu"] = "Other CPU"  # seed 1 on another machine: said per seed
    assert beyond.machines(result) == f"seed 0: {result['machine']}; seed 1: Other CPU"
    assert ("| mnist | default | `(none)` | 1.050 (1.000–1.100) | 0.0150 (0.0100–0.0200) | 10.00 (9.50–10.50) "
            "| 10.50 (10.00–11.00) | – | – |") in table
    assert "| mnist | noise-0.05 | `--noise-std 0.05` | 1.050 (1.000–1.100) (noisy) |" in table
    assert "| 0.0050 (0.0050–0.0050) | 8.00 (8.00–8.00) |" in table and "(Partial: 2 of 3 seeds so far" in table
    assert "Not measured yet" in beyond.markdown({"rows": []})
    for unit, last in (("level_0", 40), ("level_1", 1200)):  # the steps each unit made: its metrics' last row
        (tmp_path / "run" / unit).mkdir(parents=True)
        (tmp_path / "run" / unit / "metrics.csv").write_text(f"step,val_bpd\n20,3.0\n{last},2.5\n")
    assert beyond.steps_trained(tmp_path / "run") == {"level_0": 40, "level_1": 1200}


def test_beyond_says_plainly_which_variants_score_better_than_the_strongest_glow():
    """The generated verdict pairs seeds, picks the Glow with the lower KID, uses a noisy variant's denoised
    samples, and says so when no variant is ahead."""
    from benchmarks import beyond

    def row(v, s, kid, den=None):
        scores = {"quality": {"fd": 1.0, "fd_inf": 1.0, "kid": kid}}
        if den is not None:
            scores["quality_denoised"] = {"fd": 1.0, "fd_inf": 1.0, "kid": den}
        return {"key": beyond.key("mnist", v, s), "dataset": "mnist", "variant": v, "seed": s, "test_bpd": 1.0,
                "scores": scores}

    rows = [row("glow", 0, 0.05), row("glow", 1, 0.05), row("glow-residual", 0, 0.02), row("glow-residual", 1, 0.03),
            row("default", 0, 0.01), row("default", 1, 0.04), row("cdf97", 0, 0.06), row("cdf97", 1, 0.07),
            row("noise-0.1", 0, 0.09, den=0.001), row("noise-0.1", 1, 0.09, den=0.002)]
    text = beyond.verdict(rows, "mnist")
    assert "strongest Glow by KID is glow-residual (0.0250)" in text
    assert "(the default below both Glows in 0 of 2 seeds)" in text  # equal bits/dim are not below
    lower = [dict(r, test_bpd=0.5) if (r["variant"], r["seed"]) == ("default", 0) else r for r in rows]
    assert "in 1 of 2 seeds" in beyond.verdict(lower, "mnist")
    assert "default 0.0250 (1 of 2 seeds)" in text.split("Behind")[1]  # a tie on the mean is not ahead
    assert "noise-0.1 0.0015 (2 of 2 seeds)" in text.split("Behind")[0]
    assert "cdf97 0.0650 (0 of 2 seeds)" in text.split("Behind")[1]
    worse = [r for r in rows if r["variant"] in ("glow", "glow-residual", "cdf97")]
    assert "No Wavelet Flow variant's samples score better" in beyond.verdict(worse, "mnist")
    assert "no Glow scored yet" in beyond.verdict(rows[4:], "mnist")
    lines = beyond.answers(rows, "mnist")
    assert len(lines) == 2  # mnist's context question has only its default here
    assert lines[0].startswith("- mnist, the wavelet (seeds 0, 1): KID default 0.0250, cdf97 0.0650; lowest default "
                               "(lowest in 2 of 2 seeds); bits/dim lowest default (1.000)")
    # a variant with fewer seeds: every mean is over the seeds all of the question's variants ran
    partial = beyond.answers([r for r in rows if (r["variant"], r["seed"]) != ("cdf97", 1)], "mnist")
    assert partial[0].startswith("- mnist, the wavelet (seed 0): KID default 0.0100, cdf97 0.0600;")
    assert "KID default 0.0250, noise-0.1 0.0015; lowest noise-0.1 (lowest in 2 of 2 seeds)" in lines[1]
    assert lines[1].endswith("denoising lowered KID in 2 of 2 runs.")
    grids = beyond.grids_markdown({"rows": rows})
    assert "| default (`no flags`) | ![mnist default](beyond/mnist-default.png) |" in grids
    assert "![mnist noise-0.1](beyond/mnist-noise-0.1-denoised.png)" in grids and "context-none" not in grids
    assert "seed 0" in beyond.grids_markdown({"rows": [dict(r, seed=1) for r in rows]})


def test_beyond_photos_variants_blocks_and_table(tmp_path):
    """The 256 px part: the whole-image variant differs from the preset only in the top level's crop, the
    wavelet is the small data sets' best by KID, and blockiness tells an upsampled coarse image from noise."""
    import numpy as np

    from benchmarks import beyond_photos as bp
    from waveletflow.models import waveletflow_config
    from waveletflow.models.presets import PRESETS

    whole = bp.whole_top_config(256)
    assert whole["levels"][:-1] == PRESETS["256x256"]["levels"][:-1] and "crop" not in whole["levels"][-1]
    assert "crop" in PRESETS["256x256"]["levels"][-1]  # the preset itself is untouched
    assert waveletflow_config((3, 256, 256), 8, **whole).levels[-1].crop is None
    rows = [{"variant": "cdf53", "scores": {"quality": {"kid": 0.02}}},
            {"variant": "cdf97", "scores": {"quality": {"kid": 0.01}}},
            {"variant": "cdf97", "scores": {"quality": {"kid": 0.05}}}]
    assert bp.best_wavelet(rows) == "cdf53" and bp.best_wavelet([]) == "cdf97"
    cmds = bp.commands("haar-whole-top", tmp_path / "r", "cdf53")
    assert cmds["train"][cmds["train"].index("--config") + 1] == str(tmp_path / "whole-top.json")
    assert bp.commands("best-wavelet-patches", tmp_path / "r", "cdf53")["train"][-2:] == ["--wavelet", "cdf53"]
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 10, (4, 32, 32, 3))
    blocky = np.kron(rng.normal(0, 50, (4, 4, 4, 3)), np.ones((1, 8, 8, 1))) + rng.normal(0, 1, (4, 32, 32, 3))
    assert abs(bp.blockiness(noise, 8) - 1) < 0.05 and bp.blockiness(blocky, 8) > 5
    assert bp.blockiness(blocky, 8) > bp.blockiness(blocky, 16) > 1  # every 16 px edge is an 8 px edge
    result = {"machine": "m", "reference_blockiness": {"8": 1.01, "16": 1.02},
              "rows": [{"variant": "haar-patches", "wavelet": "haar", "test_bpd": 3.5, "blockiness": {"8": 1.5,
                                                                                                 "16": 1.6},
                        "steps": {"level_00": 3000, "level_08": 1497}}]}
    table = bp.markdown(result)
    assert "| haar-patches: " in table and "| haar | 3.500 | 1.50 | 1.60 | 1,497 |" in table and "1.01 / 1.02" in table
    assert "Not measured yet" in bp.markdown({"rows": []})


def test_report_check_finds_a_figure_that_differs_from_its_file(tmp_path):
    """``python -m benchmarks report --check`` passes on the repository and fails on a page with a changed figure."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from benchmarks import report
    from benchmarks.readme import block, write_block

    repo = Path(__file__).parents[1]
    done = subprocess.run([sys.executable, "-m", "benchmarks", "report", "--check"], cwd=repo, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert report.tables() and report.check() == []
    shutil.copy(repo / "README.md", tmp_path / "README.md")
    shutil.copytree(repo / "docs", tmp_path / "docs")
    page, name, table = report.tables(tmp_path)[0]
    content = block(page.read_text(), name)
    figure = next(tok for tok in content.split() if tok[:1].isdigit() and "." in tok)
    write_block(page, name, content.replace(figure, "9" + figure, 1))
    assert report.check(tmp_path) == [f"{page.relative_to(tmp_path)}: {name}"]
    assert report.write(tmp_path) and report.check(tmp_path) == []


def test_the_defaults_verdict_is_generated_and_says_where_the_goal_is_missed():
    from benchmarks import defaults

    rows = []
    for seed, jitter in ((0, -0.001), (1, 0.001)):
        for budget in (75, 150, 300, 600):  # Wavelet Flow's fresh runs: 2 − budget/1000 bits/dim
            rows.append({"dataset": "mnist", "model": "waveletflow", "budget_s": budget, "seed": seed,
                         "test_bpd": 2.0 - budget / 1000 + jitter})
        for model, at in (("glow", {300: 1.8, 600: 1.5}), ("glow-residual", {300: 1.75, 600: 1.45})):
            for budget, bpd in at.items():
                rows.append({"dataset": "mnist", "model": model, "budget_s": budget, "seed": seed,
                             "test_bpd": bpd + jitter})
    text = defaults.verdict({"rows": rows})
    assert "from seeds 0, 1" in text and "ahead of the best Glow's in 2 of 2 cells" in text
    assert "by more than the seeds' spread in 2 of them" in text
    assert ": 1.09–1.20×; the goal of 3× is not met" in text  # 250 s for Glow's 300 s, 550 s for its 600 s
    worse = [{**r, "test_bpd": r["test_bpd"] + 0.2} if r["model"] == "waveletflow" else r for r in rows]
    text = defaults.verdict({"rows": worse})
    assert "ahead of the best Glow's in 0 of 2 cells" in text and "behind in every seed in 2" in text
    assert ": 0.67×; the goal" in text and "In 1 cell(s) Wavelet Flow does not reach it within 600 s" in text
    assert defaults.verdict({"rows": []}) == "No runs yet.\n"


def test_memory_probes_every_contender_and_decomposes_the_factors(tmp_path, monkeypatch):
    """The decomposed memory benchmark at a tiny side: every Wavelet Flow level and both Glows are probed in their
    own process, a Glow extrapolated past the cap is not attempted, and the table's factors are the ratios."""
    from benchmarks import memory

    whole = memory.row(8, "wf-whole", 2, "cpu", None, 20.0)
    assert [lv["level"] for lv in whole["levels"]] == [0, 1, 2, 3]  # 8×8: a 1×1 base and three detail levels
    assert all(lv["mb"] is not None and lv["params"] > 0 for lv in whole["levels"])
    assert whole["mb"] == max(lv["mb"] for lv in whole["levels"])
    glow = memory.row(8, "glow-ckpt", 2, "cpu", None, 20.0)
    assert glow["n_scales"] == memory.glow_scales(8) == 1 and glow["checkpoint"] and glow["mb"] is not None
    assert memory.glow_scales(256) == 6 and memory.glow_scales(1024) == 8
    skipped = memory.row(1024, "glow", 4, "cpu", {"side": 512, "mb": 6000.0}, 20.0)  # 24000 MB extrapolated
    assert skipped["mb"] is None and skipped["extrapolated_mb"] == 24000.0 and "not attempted" in skipped["note"]
    rows = [{"key": memory.key(256, w), "side": 256, "what": w, "batch": 4, "mb": mb}
            for w, mb in (("wf-whole", 100.0), ("wf-crops", 50.0), ("glow", 1000.0), ("glow-ckpt", 400.0))]
    table = memory.markdown({"machine": "m", "rows": rows + [skipped]})
    assert "| 256 px (6 scales) | 1,000 | 400 | 100 | 50.0 | 10.0× | 4.0× | 2.0× |" in table
    assert "| 1024 px (8 scales) | did not fit (≈ 23 GB extrapolated) | – | – | – | – | – | – |" in table
    assert "Not measured yet" in memory.markdown({"rows": []})


def test_every_benchmark_is_a_subcommand(capsys):
    from benchmarks.__main__ import SECTIONS, main

    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    assert all(name in shown for name in [*SECTIONS, "report"])
    assert main(["memory", "--report"]) == 0
    assert "memory" in capsys.readouterr().out.lower()


def test_tuning_reshapes_at_the_same_parameters():
    """Depth against width: the flow steps scale, the width is re-solved so the parameters stay the default's."""
    from benchmarks import tuning
    from waveletflow.models import build_model

    def params(model_type, config, level=None):
        return build_model(model_type, config, device="meta").num_parameters(level)

    glow = tuning.base_config("glow-residual", (1, 28, 28), 300)
    deep = tuning.reshaped("glow-residual", glow, 2.0)
    assert deep["n_steps"] == 2 * glow["n_steps"] and deep["width"] < glow["width"]
    assert abs(params("glow-residual", deep) / params("glow-residual", glow) - 1) < 0.15
    wf = tuning.base_config("waveletflow", (1, 28, 28), 75)
    shallow = tuning.reshaped("waveletflow", wf, 0.5)
    for i, (a, b) in enumerate(zip(wf["levels"], shallow["levels"])):
        assert b["n_steps"] == max(1, round(a["n_steps"] / 2)) and b["width"] >= a["width"]
        assert abs(params("waveletflow", shallow, i) / params("waveletflow", wf, i) - 1) < 0.2, i
    assert tuning.reshaped("glow", glow, 1.0) is glow


def test_tuning_scores_trials_on_validation_and_trains_the_best_with_every_seed(tmp_path, monkeypatch):
    from benchmarks import tuning

    monkeypatch.setattr(tuning, "RESULTS", tmp_path / "tuning.json")
    calls = []

    def fake(dataset, model, config, lr, batch, budget, seed, run, split):
        calls.append((model, lr, batch, budget, seed, split))
        # the lowest validation figure: lr 0.004 with batch 32 and twice the depth
        bpd = 2.0 - (lr == 0.004) * 0.1 - (batch == 32) * 0.05 - (config.get("n_steps", 0) > 8) * 0.01
        return {"bpd": bpd, "images": 10, "wall_s": 1.0, "params": 5_000_000, "command": "waveletflow train ...",
                "steps": {"level_00": 1000 + seed}}

    monkeypatch.setattr(tuning, "train_and_score", fake)
    tuning.run_all(["mnist"], ["glow"], tmp_path)
    trials = [c for c in calls if c[3] == tuning.TRIAL_S]
    assert len(trials) == len(tuning.trials()) == 18 and {c[5] for c in trials} == {"val"}
    finals = [c for c in calls if c[3] == tuning.BUDGET_S]
    assert [(c[1], c[2], c[4], c[5]) for c in finals] == [(0.004, 32, s, "test") for s in tuning.SEEDS]
    rows = json.loads((tmp_path / "tuning.json").read_text())["rows"]
    final = next(r for r in rows if r["key"] == tuning.final_key("mnist", "glow", 0))
    for field in ("model", "dataset", "seed", "budget_s", "bits_per_dim", "params", "cpu", "tuning"):
        assert field in final, field
    assert final["tuning"]["depth"] == 2.0 and final["tuning"]["trial"].startswith("trial/mnist/glow/lr0.004/")
    calls.clear()
    tuning.run_all(["mnist"], ["glow"], tmp_path)  # resumed: nothing left to run
    assert calls == []
    table = tuning.markdown(json.loads((tmp_path / "tuning.json").read_text()))
    assert "| mnist | Glow | 18 of 18 | 0.004, ×2, 32 | 1.840 | 1.840–2.000 | 1.840 (1.840–1.840) |" in table
    assert "learning rate 0.004 for Glow; depth ×2 for Glow." in table  # the best trial is on the grid's edge
    assert "| mnist | Glow | 5.00 M | 1000 |" in table  # seed 0's final run: how far it got
    assert "Plainly" not in table  # no Wavelet Flow to compare with
    assert "Not measured yet" in tuning.markdown({"rows": []})


def test_tuning_check_trains_each_contenders_best_two_trials_for_the_full_budget_on_validation(tmp_path, monkeypatch):
    """--check: the best and the runner-up trial of each contender, again at the full budget, seed 0, scored on
    validation images only; resumable; the table says whether the best stayed ahead."""
    from benchmarks import tuning

    monkeypatch.setattr(tuning, "RESULTS", tmp_path / "tuning.json")
    calls = []

    def fake(dataset, model, config, lr, batch, budget, seed, run, split):
        calls.append((model, lr, batch, budget, seed, split))
        if budget == tuning.TRIAL_S:  # trials: lr 0.004 best, then 0.002 (batch 16 ahead of 32, depth as is)
            as_is = json.loads(tuning._shape(model, tuning.SHAPES[dataset], budget, 1.0))["n_steps"]
            bpd = 2.0 - lr * 100 + (batch == 32) * 0.5 + (config["n_steps"] != as_is) * 0.5
        else:  # at the full budget the runner-up (lr 0.002) ends ahead for Glow, behind for the residual Glow
            bpd = {("glow", 0.004): 1.5, ("glow", 0.002): 1.4, ("glow-residual", 0.004): 1.3}.get((model, lr), 1.45)
        return {"bpd": bpd, "images": 10, "wall_s": 1.0, "params": 5_000_000, "command": "...", "steps": {}}

    monkeypatch.setattr(tuning, "train_and_score", fake)
    with pytest.raises(SystemExit, match="no trial of rank 1"):  # before the grid ran
        tuning.run_checks(["mnist"], ["glow"], tmp_path)
    tuning.run_all(["mnist"], ["glow", "glow-residual"], tmp_path)
    calls.clear()
    tuning.run_checks(["mnist"], ["glow", "glow-residual"], tmp_path)
    assert [c[:2] for c in calls] == [("glow", 0.004), ("glow-residual", 0.004), ("glow", 0.002), ("glow-residual", 0.002)]
    assert {c[2:] for c in calls} == {(16, tuning.BUDGET_S, 0, "val")}
    calls.clear()
    tuning.run_checks(["mnist"], ["glow", "glow-residual"], tmp_path)  # resumed: nothing left
    assert calls == []
    result = json.loads((tmp_path / "tuning.json").read_text())
    check = next(r for r in result["rows"] if r["key"] == tuning.check_key("mnist", "glow", 2))
    assert check["trial"].startswith("trial/mnist/glow/lr0.002/") and check["trial_val_bpd"] < 2.0
    table = tuning.markdown(result)
    assert "| mnist | Glow | 0.004, ×1, 16 | 1.600 → 1.500 | 0.002, ×1, 16 | 1.800 → 1.400 | no (-0.100) |" in table
    assert "| mnist | Glow (residual coupling) | 0.004, ×1, 16 | 1.600 → 1.300 | 0.002, ×1, 16 | 1.800 → 1.450 | yes (+0.150) |" in table
    assert "stayed ahead of the runner-up at 300 s for 1 of 2 contenders" in table
    with pytest.raises(SystemExit) as exc:  # a data set it does not know: one line, exit status 2
        tuning.main(["--check", "--datasets", "imagenet"])
    assert exc.value.code == 2


def test_runs_report_each_levels_steps(tmp_path):
    from benchmarks.paths import level_steps

    for level, step in (("level_00", 12), ("level_01", 345)):
        (tmp_path / level).mkdir()
        (tmp_path / level / "state.json").write_text(json.dumps({"step": step, "best_step": 10}))
    (tmp_path / "level_02").mkdir()  # a level killed before its first state file
    assert level_steps(tmp_path) == {"level_00": 12, "level_01": 345}


def test_tuning_verdict_compares_tuned_wavelet_flow_with_the_strongest_glow_seed_by_seed():
    """The generated sentence names the Glow with the lowest mean, the mean gap and its sign, and in how many seeds
    Wavelet Flow is ahead; it says nothing until both have every seed."""
    from benchmarks import tuning

    def final(model, seed, bpd):
        return {"kind": "final", "dataset": "mnist", "model": model, "seed": seed, "bits_per_dim": bpd}

    rows = [final("waveletflow", s, b) for s, b in zip(tuning.SEEDS, (1.50, 1.40, 1.45))]
    rows += [final("glow", s, b) for s, b in zip(tuning.SEEDS, (1.60, 1.60, 1.60))]
    rows += [final("glow-residual", s, b) for s, b in zip(tuning.SEEDS, (1.46, 1.44, 1.47))]
    said = tuning.verdict(rows, "mnist")
    assert "strongest tuned Glow is Glow (residual coupling) (1.457)" in said
    assert "Wavelet Flow (1.450) is ahead of it by 0.007 bits/dim" in said and "ahead in 2 of 3 seeds" in said
    assert "-0.040, +0.040, +0.020" in said
    worse = [dict(r, bits_per_dim=r["bits_per_dim"] + 0.1) if r["model"] == "waveletflow" else r for r in rows]
    assert "is behind it by 0.093" in tuning.verdict(worse, "mnist") and "ahead in 0 of 3" in tuning.verdict(worse,
                                                                                                        "mnist")
    assert tuning.verdict(rows[:-1], "mnist").count("Glow (residual coupling)") == 0  # a seed missing: not compared
    assert tuning.verdict(rows[:5], "mnist") == ""  # Wavelet Flow has all seeds, no Glow has
    readme = tuning.summary({"rows": [dict(r, cpu="cpu A") for r in rows]})
    assert "Plainly, on mnist after equal tuning" in readme and "; mnist: final runs: cpu A." in readme
    assert "On cifar10, equal tuning has not finished: 0 of 72 trials and 0 of 12 final runs" in readme


def test_a_diverged_trial_is_recorded_and_never_wins(tmp_path, monkeypatch):
    """A learning rate of the grid that makes ``train`` fail with a non-finite loss ends that trial, not the
    benchmark; any other failure stops it. A trial without a figure never becomes the best."""
    import sys

    from benchmarks import tuning

    fail = [sys.executable, "-c", "import sys; sys.exit('error: level 2: the loss stayed non-finite; lower --lr')"]
    assert tuning._run(fail, tuning.DIVERGED) == ("", "error: level 2: the loss stayed non-finite; lower --lr")
    with pytest.raises(SystemExit):
        tuning._run([sys.executable, "-c", "import sys; sys.exit('error: something else')"], tuning.DIVERGED)
    monkeypatch.setattr(tuning, "RESULTS", tmp_path / "tuning.json")

    def fake(dataset, model, config, lr, batch, budget, seed, run, split):
        bpd = None if lr == 0.004 else 2.0 - lr
        return {"bpd": bpd, "images": 10, "wall_s": 1.0, "params": 5, "command": "waveletflow train ...",
                **({"diverged": "error: non-finite"} if bpd is None else {})}

    monkeypatch.setattr(tuning, "train_and_score", fake)
    tuning.run_all(["mnist"], ["glow"], tmp_path)
    rows = json.loads((tmp_path / "tuning.json").read_text())["rows"]
    assert sum(r["val_bpd"] is None for r in rows if r["kind"] == "trial") == 6
    assert tuning.best_trial(rows, "mnist", "glow")["lr"] == 0.002
    table = tuning.markdown({"rows": rows})
    assert "| mnist | Glow | 18 of 18 (6 diverged) | 0.002, " in table
    assert "Partial on mnist: 18 of 72 trials have run" in table  # the other contenders' trials are not there


def test_tuning_runs_the_contenders_in_turn_and_names_each_data_sets_machines(tmp_path, monkeypatch):
    """Stopped part-way, the contenders of a data set have run equally far; a data set's trials come before its
    final runs and before the next data set; the table says which machines ran what."""
    from benchmarks import tuning

    order = tuning.schedule(["mnist", "cifar10"], ["waveletflow", "glow"])
    n = len(tuning.trials())
    assert len(order) == 2 * (2 * n + 2 * len(tuning.SEEDS))
    for i in range(0, 2 * n, 2):
        assert [m for _, _, m, _ in order[i : i + 2]] == ["waveletflow", "glow"] and order[i][3] == order[i + 1][3]
    kinds = [(k, d) for k, d, _, _ in order]
    assert kinds == sorted(kinds, key=lambda kd: (kd[1] != "mnist", kd[0] != "trial"))
    monkeypatch.setattr(tuning, "RESULTS", tmp_path / "tuning.json")
    cpus = iter(["cpu A"] * 5 + ["cpu B"] * 100)
    monkeypatch.setattr(tuning, "machine", lambda: next(cpus))

    def fake(dataset, model, config, lr, batch, budget, seed, run, split):
        return {"bpd": 2.0 + lr, "images": 10, "wall_s": 1.0, "params": 5, "command": "waveletflow train ..."}

    monkeypatch.setattr(tuning, "train_and_score", fake)
    tuning.run_all(["mnist"], ["waveletflow", "glow"], tmp_path)
    table = tuning.markdown(json.loads((tmp_path / "tuning.json").read_text()))
    assert "Machines: mnist: trials: cpu A (5 runs); cpu B (31 runs), final runs: cpu B  " in table


def test_normflows_glow_trains_with_our_recipe():
    """The peer's Glow gets Polyak averaging and the final decay: the learning rate falls linearly to zero over the
    last 30% of a training call, and test figures use the averaged weights."""
    pytest.importorskip("normflows")
    import torch

    from benchmarks.contenders import NormflowsGlow
    from waveletflow.data import load_dataset

    data = load_dataset("digits")
    glow = NormflowsGlow((1, 8, 8), 1, 1, 8, data, "cpu", 8, lr=1e-3, warmup=1)
    assert glow.lr_at(0.5) == pytest.approx(1e-3) and glow.lr_at(0.85) == pytest.approx(0.5e-3)
    assert glow.lr_at(1.0) == 0.0
    while glow.step < 3:  # a few steps, however slow the machine's first ones are
        glow.train_for(0.5)
    assert glow.average is not None
    own = {k: v.clone() for k, v in glow.model.state_dict().items()}
    assert any(not torch.equal(glow.average[k], own[k]) for k in glow.average)
    images = data.x_test[:16]
    averaged = glow.test_bpd(images)
    glow.model.load_state_dict(glow._averaged_state())
    assert glow._bpd(images, 256) == pytest.approx(averaged)
    glow.model.load_state_dict(own)
    assert glow._bpd(images, 256) != pytest.approx(averaged)


def test_normflows_glow_diverges_as_our_trainer_does_and_starts_afresh_at_another_learning_rate(monkeypatch):
    """normflows' Glow skips a non-finite loss as our loop does and, after as many in a row as our loop allows,
    raises ``Diverged``; ``fresh`` builds it again from its seed, untrained, at the learning rate asked for."""
    pytest.importorskip("normflows")
    import torch

    from benchmarks.contenders import NormflowsGlow
    from waveletflow.data import load_dataset
    from waveletflow.errors import Diverged
    from waveletflow.training.loop import MAX_NONFINITE_LOSSES

    data = load_dataset("digits")
    glow = NormflowsGlow((1, 8, 8), 1, 1, 8, data, "cpu", 8, lr=1e-3, warmup=1, seed=3)
    again = glow.fresh(lr=5e-4)
    assert again.lr == 5e-4 and again.step == 0 and again.params() == glow.params()
    assert all(torch.equal(a, b) for a, b in zip(glow.model.state_dict().values(), again.model.state_dict().values()))
    calls = {"n": 0}

    def nan(x):
        calls["n"] += 1
        return torch.tensor(float("nan"))

    monkeypatch.setattr(glow.model, "forward_kld", nan)
    with pytest.raises(Diverged, match="stayed non-finite at lr 0.001"):
        glow.train_for(600.0)
    assert calls["n"] == MAX_NONFINITE_LOSSES + 1 and glow.step == 0


def test_a_diverged_run_is_run_again_at_half_the_learning_rate_and_a_stopped_row_keeps_finished_contenders(
        tmp_path, monkeypatch):
    """time_to_quality's fresh-runs protocol: a contender that diverges is trained again, fresh, at half its learning
    rate (at most RETRIES times, then the error stands), and the point records it; with ``resume`` a contender whose
    entry was finished for the same signature is kept and the others are trained again."""
    from benchmarks import timetoquality as ttq
    from waveletflow.errors import Diverged

    class Toy:
        name = "Toy"

        def __init__(self, lr, limit):
            self.lr, self.limit, self.tried = lr, limit, []

        def fresh(self, run_dir=None, lr=None):
            return Toy(self.lr if lr is None else lr, self.limit)

        def train_for(self, seconds):
            if self.lr > self.limit:
                raise Diverged("level 0: the loss stayed non-finite")

    trained, tries = ttq.train_retrying(Toy(2e-3, 1e-3), 5.0)
    assert trained.lr == 1e-3 and tries == {"diverged_lr": [2e-3], "lr": 1e-3}
    assert ttq.train_retrying(Toy(2e-3, 1.0), 5.0)[1] == {}
    with pytest.raises(Diverged, match="diverged at lr 0.002, 0.001, 0.0005"):
        ttq.train_retrying(Toy(2e-3, 1e-4), 5.0)
    # resume: an entry is kept only for the same signature
    sig = {"budget_s": 10.0, "points": 3, "batch": 8, "seed": 0, "params": 5, "test_images": 4}
    done = tmp_path / "glow.json"
    assert ttq._finished(done, sig) is None
    done.write_text(json.dumps({"signature": sig, "entry": {"name": "Glow"}}))
    assert ttq._finished(done, sig) == {"name": "Glow"}
    assert ttq._finished(done, {**sig, "seed": 1}) is None
    done.write_text("{half a file")
    assert ttq._finished(done, sig) is None


def test_sampling_tables_are_made_from_their_result_files(tmp_path, monkeypatch):
    """The three tables of the sampling guide: a row of each from a small result, "Not measured yet" without one,
    the pages' blocks equal to what the result files give, and ``report`` loading a folder source file by file."""
    from pathlib import Path

    from benchmarks import report, sampling_tables as st
    from benchmarks.readme import block

    pyro = {"n": 8, "levels": [{"level": 0, "name": "base 7x7", "dims": 49, "ours_s_per_image": 2.0,
                                "ours_step_size": 0.861, "pyro_s_per_image": 5.0, "pyro_step_size": 0.844}]}
    assert "| 0: base 7×7 (49 dims) | 2.00 | 5.00 | 2.5× | 0.86 / 0.84 |" in st.mcmc_pyro(pyro)
    assert "ours, 8 chains in one batch" in st.mcmc_pyro(pyro)
    level = {"name": "details 1x1 -> 2x2", "dims": 9, "ours_chain_evals": 7786, "all_chains_chain_evals": 12032}
    rows = {"levels": [{**level, "level": 1, "ours_s_per_image": 0.1, "all_chains_s_per_image": 0.2},
                       {**level, "level": 2, "ours_s_per_image": 0.3, "all_chains_s_per_image": 0.3}]}
    table = st.mcmc_rows(rows)
    assert "| 1: details 1×1 → 2×2 (9 dims) | 7,786 / 12,032 | 0.100 | 0.200 | 2.00× |" in table
    assert "| all levels |  | 0.40 | 0.50 | 1.25× |" in table

    def scores(fd, kid):
        return {"fd": fd, "kid": kid, "kid_std": 0.5, "confidence": 0.75, "class_entropy": -0.0}

    def run(t, fd, kid, mcmc=None, **more):
        return {"temperature": t, "mcmc": mcmc, "seconds_per_image": 0.006,
                "scores": {"samples": scores(fd, kid), **more}}

    quality = {"mnist_exact": run(1.0, 10.0, 2.0, **{"blur training images": scores(3.0, 1.0)}),
               "mnist_mcmc0.9": run(0.9, 8.0, 3.0, [{"accept_rate": 0.531}, {"accept_rate": 0.586}]),
               "mnist_exact_s1": run(1.0, 1.0, 1.0)}  # another seed: not a row
    table = st.sample_quality(quality)  # the best FD and KID of the samples in bold
    assert "| MNIST | Wavelet Flow: exact, T = 1 | 10.0 | **2.00 ± 0.50** | 0.750 | 0.00 | 0.00600 |  |" in table
    assert ("| MNIST | Wavelet Flow: MCMC, T = 0.9 | **8.0** | 3.00 ± 0.50 | 0.750 | 0.00 | 0.00600 | 0.53 / 0.59 |"
            in table)
    assert "| MNIST | blurred training images | 3.0 | 1.00 ± 0.50 | 0.750 | 0.00 |  |  |" in table
    assert "| 1.0 |" not in table and table.endswith("|\n")
    quality["mnist_mcmc0.9_s1"] = run(0.9, 12.0, 0.5, [{"accept_rate": 0.5}])
    quality["mnist_lat09"] = run(0.9, 9.0, 2.5)
    quality["mnist_lat09"]["seconds_per_image"] = 0.003
    seeds = st.sample_quality_seeds(quality)  # every seed, and MCMC against the others seed by seed
    assert "| MNIST | exact, T = 1 | 10.0 / 1.0 | 2.00 / 1.00 | 0.00600 |" in seeds
    assert "| MNIST | MCMC, T = 0.9 | 8.0 / 12.0 | 3.00 / 0.50 | 0.00600 |" in seeds
    assert ("- MNIST, MCMC, T = 0.9 against exact, T = 1: FD lower in 1 of 2 seeds, KID lower in 1 of 2, at 1× the "
            "seconds per image.") in seeds
    assert ("- MNIST, MCMC, T = 0.9 against latent temperature, T = 0.9: FD lower in 1 of 1 seeds, KID lower in 0 of 1, "
            "at 2× the seconds per image.") in seeds
    for make in st.BLOCKS.values():
        assert make({"rows": []}).startswith("Not measured yet: ") and make({}).count("\n") == 1

    repo = Path(__file__).parents[1]
    page = (repo / "docs" / "guide" / "sampling.md").read_text()
    for name, make in st.BLOCKS.items():
        assert block(page, name) == make(report.load(st.RESULTS[name])), name

    folder = tmp_path / "results"
    folder.mkdir()
    for stem, content in quality.items():
        (folder / f"{stem}.json").write_text(json.dumps(content))
    (folder / "notes.txt").write_text("not a result")
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("<!-- folder:start -->\nold\n<!-- folder:end -->\n")
    monkeypatch.setattr(report, "SOURCES", {"folder": (folder, lambda result: json.dumps(result, sort_keys=True))})
    ((page_path, name, content),) = report.tables(tmp_path)
    assert name == "folder" and json.loads(content) == quality
    assert report.load(tmp_path / "missing") == {"rows": []}


def test_highres_rows_pass_published_scales_resume_and_read_ratios_off_mean_curves(tmp_path, monkeypatch):
    """The high-resolution benchmark: one row per (size, seed), Glow at the published number of scales, a second
    call runs only what the file lacks, the longest run against its budget recorded, and the ratios read off the
    seeds' mean curves with each seed's beside them."""
    from benchmarks import highres, timetoquality

    assert highres.plan() == [(64, 0), (256, 0), (64, 1), (256, 1), (64, 2), (256, 2)]
    monkeypatch.setattr(highres, "RESULTS", tmp_path / "highres.json")
    calls = []

    def fake(name, budget, points, test_images, device, out, wf_parallel, batch, **kw):
        calls.append((kw["image_size"], kw["seed"], kw["glow_n_scales"], kw["protocol"], budget, batch))
        s = kw["seed"]
        wf = [{"budget_s": budget / 4, "train_s": budget / 4, "test_bpd": 5.0 - s / 10},
              {"budget_s": budget / 2, "train_s": budget / 2, "test_bpd": 4.0 - s / 10},
              {"budget_s": budget, "train_s": budget * 1.01, "test_bpd": 3.0 - s / 10}]
        glow = [{"budget_s": budget, "train_s": budget, "test_bpd": 4.0 if s == 0 else 2.0}]
        return {"test_images": 31, "glow_n_scales": kw["glow_n_scales"],
                "models": [{"name": n, "params": 2_000_000, "param_ratio": 1.0, "curve": c, "sample_n": 64,
                            "sample_s": 0.5} for n, c in (("Wavelet Flow", wf), ("Glow", glow))]}

    monkeypatch.setattr(timetoquality, "time_to_quality", fake)
    highres.run_all([(64, 0)], tmp_path)
    highres.run_all([(64, 0), (64, 1)], tmp_path)
    assert calls == [(64, 0, 4, "runs", 300.0, 64), (64, 1, 4, "runs", 300.0, 64)]
    result = json.loads((tmp_path / "highres.json").read_text())
    assert [r["key"] for r in result["rows"]] == ["photos64/seed0", "photos64/seed1"]
    assert all(r["longest_over_budget"] == 1.01 and r["cpu"] == result["machine"] for r in result["rows"])
    (glow,) = highres.ratios(result["rows"])
    # seed 0: Glow ends at 4.0, which Wavelet Flow reaches at B/2 (2×); seed 1: Glow's 2.0 is never reached
    assert glow["seeds"] == [2.0, None] and glow["reached"] == 1
    # mean curves: Wavelet Flow 4.95, 3.95, 2.95 against Glow's 3.0, reached between B/2 and B
    t = 150 + (3.95 - 3.0) / (3.95 - 2.95) * (303 - 150)
    assert glow["mean_curves"] == round(300 / t, 2)
    table = highres.markdown(result)
    assert "**64 px**, B = 300 s, batch 64, Glow with 4 scales, seeds 0, 1; the longest run took 1.01× its budget" in table
    assert f"| Glow | 2.00 M | 3.000 (2.000–4.000) | {300 / t:.2f}× | 2.00×, – | 1 of 2 |" in table
    assert "(Partial: 2 of 3 seeds" in table and "Not measured yet" in highres.markdown({"rows": []})
    said = highres.summary(result)  # the README's sentences: against the strongest Glow, seed by seed
    assert ("at 64 px (B = 300 s, seeds 0, 1) Wavelet Flow's default ends at 2.950 (2.900–3.000) and the strongest "
            "Glow, Glow, at 3.000 (2.000–4.000): Wavelet Flow ahead by 0.050 bits/dim on average, ahead in 1 of 2 "
            f"seeds; it reaches that figure {300 / t:.2f}× sooner (the seeds' mean curves; per seed 2.00–2.00×, "
            "reached in 1 of 2)") in said
    assert "at 256 px, not measured yet" in said and "Diverged" not in table
    result["rows"][1]["models"][1]["curve"][-1].update(diverged_lr=[0.002], lr=0.001)  # a Glow run again
    assert ("run again, fresh, at half the learning rate, the rule for every contender; the figures are the runs that "
            "trained: Glow, seed 1: 0.002 → 0.001.") in highres.markdown(result)
    for r in result["rows"]:  # a Glow that ends worse than Wavelet Flow's first point: only a lower bound
        r["models"][1]["curve"][-1]["test_bpd"] = 6.0
    (glow,) = highres.ratios(result["rows"])
    assert glow["lower_bound"] and glow["seeds_lower_bound"] == [True, True]
    assert "| ≥ 4.00× | ≥ 4.00×, ≥ 4.00× | 2 of 2 |" in highres.markdown(result)


def test_highres_row_trains_every_contender_for_real(tmp_path, monkeypatch):
    shared_file("photos/manifest.csv")
    pytest.importorskip("normflows")
    from benchmarks import highres

    row = highres.run_one(16, 0, tmp_path, budget=1, batch=8, test_images=4)
    assert row["glow_n_scales"] == 2 and len(row["models"]) == 4  # log2(16) - 2 scales
    assert [len(m["curve"]) for m in row["models"]] == [3, 1, 1, 1] and row["longest_over_budget"] > 0
    # the row again, as after a stop: every contender had finished, so none trains again and the row is the same
    from benchmarks.contenders import NormflowsGlow, Ours

    def never(self, seconds):
        raise AssertionError("trained again")

    monkeypatch.setattr(Ours, "train_for", never)
    monkeypatch.setattr(NormflowsGlow, "train_for", never)
    assert highres.run_one(16, 0, tmp_path, budget=1, batch=8, test_images=4)["models"] == row["models"]
    # every point records each level's steps (Wavelet Flow's levels each their own); a row from before that record
    # gets them back from its run folders, except normflows' Glow, which has none
    wf, *glows = row["models"]
    assert all(len(p["steps"]) > 1 for p in wf["curve"]) and all(list(g["curve"][-1]["steps"]) == ["level_00"] for g in glows)
    old = json.loads(json.dumps(row | {"key": "photos16/seed0", "size": 16, "seed": 0}))
    for m in old["models"]:
        for p in m["curve"]:
            del p["steps"]
    assert highres.fill_steps(old, tmp_path) and not highres.fill_steps(old, tmp_path)
    assert [[p.get("steps") for p in m["curve"]] for m in old["models"]] == \
        [[p["steps"] for p in m["curve"]] for m in row["models"][:3]] + [[None]]


def test_glow_at_the_published_scales_is_matched_in_parameters_at_256_px():
    """At 256 px with 6 scales Glow's narrowest coupling networks are already too many parameters: its steps per
    scale come down until the parameters match (within 15%), for both Glows."""
    from benchmarks.contenders import count_params, matched_glow_config
    from waveletflow.models import build_model

    target = 2_372_388  # the 256x256 preset's Wavelet Flow
    for model_type in ("glow", "glow-residual"):
        cfg = matched_glow_config(model_type, (3, 256, 256), 8, target, 6)
        assert cfg.n_scales == 6
        assert abs(count_params(build_model(model_type, cfg)) / target - 1) < 0.15, model_type
