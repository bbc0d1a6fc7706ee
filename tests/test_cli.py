import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_WF
from waveletflow.cli import main


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    cfg = run.parent / "tiny.json"
    cfg.write_text(json.dumps(TINY_WF))
    assert main(["train", "--data", "digits", "--out", str(run), "--steps", "3", "--batch-size", "16",
                 "--config", str(cfg), "--quiet"]) == 0
    return run


def test_console_script_help_and_version():
    out = subprocess.run([sys.executable, "-m", "waveletflow", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "super-resolve" in out.stdout
    out = subprocess.run([sys.executable, "-m", "waveletflow", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("waveletflow ")
    out = subprocess.run([sys.executable, "-m", "waveletflow", "evaluate", "/no/such/run", "--data", "digits"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().startswith("error:") and len(out.stderr.strip().splitlines()) == 1


def test_evaluate_json_levels_sum(trained_run, capsys):
    code, out, _ = run_cli(capsys, "evaluate", trained_run, "--data", "digits", "--limit", "50", "--json")
    assert code == 0
    res = json.loads(out)
    assert res["images"] == 50 and [lv["level"] for lv in res["levels"]] == [0, 1, 2, 3]
    assert abs(sum(lv["bits_per_dim"] for lv in res["levels"]) - res["bits_per_dim"]) < 1e-9
    code, out, _ = run_cli(capsys, "evaluate", trained_run, "--data", "digits", "--limit", "50")
    assert code == 0 and f"{res['bits_per_dim']:.4f}" in out


def test_evaluate_the_validation_images_the_run_held_out(trained_run, capsys):
    """``--split val``: the training images the run validated on (for tuning without the test images)."""
    from waveletflow import load
    from waveletflow.data import load_dataset
    from waveletflow.rundir import RunDir
    from waveletflow.training import split_train_val

    code, out, _ = run_cli(capsys, "evaluate", trained_run, "--data", "digits", "--split", "val", "--json")
    assert code == 0
    res = json.loads(out)
    val = split_train_val(load_dataset("digits"), RunDir(trained_run).read_run()["val_size"])[1]
    assert res["images"] == len(val) > 0
    assert abs(load(trained_run).bits_per_dim(val, data_bits=5).bits_per_dim - res["bits_per_dim"]) < 1e-9


def test_sample_png_and_npz(trained_run, tmp_path, capsys):
    code, _, _ = run_cli(capsys, "sample", trained_run, "--n", "6", "--out", tmp_path / "s.png", "--npz", tmp_path / "s.npz",
                         "--temperature", "0.7", "--seed", "3")
    assert code == 0
    x = np.load(tmp_path / "s.npz")["x"]
    assert x.shape == (6, 8, 8, 1) and x.dtype == np.uint8 and x.max() <= 31
    assert Image.open(tmp_path / "s.png").size[0] > 8
    run_cli(capsys, "sample", trained_run, "--n", "6", "--out", tmp_path / "t.png", "--npz", tmp_path / "t.npz", "--seed", "3",
            "--temperature", "0.7,0.7,0.7,0.7")
    assert np.array_equal(np.load(tmp_path / "t.npz")["x"], x)  # one temperature = the same for every level


def test_super_resolve_cli(trained_run, tmp_path, capsys):
    low = np.array([[0, 255], [128, 60]], np.uint8)
    Image.fromarray(low).save(tmp_path / "low.png")
    code, out, _ = run_cli(capsys, "super-resolve", trained_run, "--input", tmp_path / "low.png", "--out", tmp_path / "high.png")
    assert code == 0
    assert Image.open(tmp_path / "high.png").size == (8, 8)
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "bad.png")
    code, _, err = run_cli(capsys, "super-resolve", trained_run, "--input", tmp_path / "bad.png", "--out", tmp_path / "x.png")
    assert code == 2 and "level sizes" in err and not (tmp_path / "x.png").exists()


def test_info(trained_run, capsys):
    code, out, _ = run_cli(capsys, "info", trained_run)
    assert code == 0 and "waveletflow model for 8x8x1" in out and "step 3" in out
    code, out, _ = run_cli(capsys, "info", trained_run, "--json")
    info = json.loads(out)
    assert len(info["levels"]) == 4 and all(lv["trained"] for lv in info["levels"])
    assert sum(lv["parameters"] for lv in info["levels"]) == info["parameters"]


def test_pyramid_png(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "pyramid", "--out", tmp_path / "p.png", "--n", "4")
    assert code == 0 and Image.open(tmp_path / "p.png").size[0] > 32


@pytest.mark.parametrize("args,message", [
    (["train", "--data", "nosuchdata", "--out", "{tmp}/r", "--steps", "1"], "unknown dataset"),
    (["train", "--data", "{tmp}/missing.npz", "--out", "{tmp}/r", "--steps", "1"], "does not exist"),
    (["train", "--data", "{tmp}/nokeys.npz", "--out", "{tmp}/r", "--steps", "1"], "x_train"),
    (["train", "--data", "digits", "--out", "{tmp}/r"], "--steps"),
    (["train", "--data", "digits", "--out", "{tmp}/r", "--steps", "0"], "at least 1"),
    (["train", "--data", "digits", "--out", "{tmp}/r", "--steps", "1", "--config", "{tmp}/bad.json"], "not valid JSON"),
    (["train", "--data", "digits", "--out", "{tmp}/r", "--steps", "1", "--level", "x"], "--level"),
    (["train", "--data", "{tmp}/odd.npz", "--out", "{tmp}/r", "--steps", "1", "--model", "glow", "--config",
      "{tmp}/glow3.json"], "odd size"),
    (["train", "--data", "digits", "--out", "{tmp}/r", "--steps", "1", "--preset", "28x28"], "preset 28x28 is for 28×28 images"),
    (["pyramid", "--data", "digits", "--out", "{tmp}/p.png", "--base-size", "3"], "cannot be halved"),
    (["evaluate", "{tmp}/nothing", "--data", "digits"], "no run"),
    (["sample", "{tmp}/nothing", "--out", "{tmp}/s.png"], "no run"),
    (["info", "{tmp}/nothing"], "no run"),
    (["train", "--data", "digits", "--out", "{tmp}/r", "--steps", "1", "--bogus"], "unrecognized"),
    (["train", "--data", "digits", "--out", "{tmp}/r", "--steps", "1", "--joint", "--parallel", "2"], "--joint"),
    (["train", "--data", "digits", "--out", "{tmp}/r", "--steps", "1", "--config", "{tmp}/typo.json"], "'widht'"),
    (["train", "--data", "digits", "--out", "{tmp}/r", "--steps", "1", "--model", "glow", "--preset", "8x8"], "preset"),
    (["train", "--data", "digits", "--out", "{tmp}/r", "--steps", "1", "--config", "{tmp}/bits.json"], "n_bits"),
])
def test_user_errors_are_one_line_exit_2(tmp_path, capsys, args, message):
    np.savez(tmp_path / "nokeys.npz", images=np.zeros((2, 4, 4, 1), np.uint8))
    np.savez(tmp_path / "odd.npz", x_train=np.zeros((8, 6, 6, 1), np.uint8), x_test=np.zeros((2, 6, 6, 1), np.uint8))
    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "glow3.json").write_text('{"n_scales": 3}')
    (tmp_path / "typo.json").write_text('{"levels": [{}, {"widht": 8}, {}, {}]}')
    (tmp_path / "bits.json").write_text('{"n_bits": "x"}')
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    _, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert not (tmp_path / "r" / "model.json").exists()


def test_corrupt_and_untrained_runs_fail_cleanly(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    weights = run / "level_02" / "weights.safetensors"
    weights.write_bytes(b"not a safetensors file")
    code, _, err = run_cli(capsys, "evaluate", run, "--data", "digits", "--limit", "5")
    assert code == 2 and "corrupt" in err
    weights.unlink()
    code, _, err = run_cli(capsys, "sample", run, "--out", tmp_path / "s.png")
    assert code == 2 and "level 2 was never trained" in err
    ckpt = run / "level_01" / "checkpoint.pt"
    ckpt.write_bytes(b"garbage")
    code, _, err = run_cli(capsys, "train", "--data", "digits", "--out", run, "--steps", "5", "--level", "1", "--quiet")
    assert code == 2 and "corrupt checkpoint" in err
    assert ckpt.read_bytes() == b"garbage"  # the user's file is left as it was
    code, _, err = run_cli(capsys, "evaluate", trained_run, "--data", "digits", "--ode-tol", "1e-3")
    assert code == 2 and "apply to continuous models" in err
    code, _, err = run_cli(capsys, "evaluate", trained_run, "--data", "{}".format(tmp_path / "odd.npz"))
    assert code == 2


def test_training_log_without_a_terminal_is_plain_lines_per_level(tmp_path):
    """With stderr not a terminal (a file, CI, Slurm) ``train`` writes no progress bar: no carriage return, and
    a plain line for every level (its step, bits/dim, images/s), here from two level processes."""
    import json

    from conftest import TINY_WF

    (tmp_path / "tiny.json").write_text(json.dumps(TINY_WF))
    with open(tmp_path / "log", "w") as err:
        done = subprocess.run([sys.executable, "-m", "waveletflow", "train", "--data", "digits", "--out",
                               str(tmp_path / "run"), "--steps", "30", "--config", str(tmp_path / "tiny.json"),
                               "--parallel", "2", "--threads", "2", "--no-curves"],
                              stdout=subprocess.DEVNULL, stderr=err, text=True)
    log = (tmp_path / "log").read_text()
    assert done.returncode == 0, log
    assert "\r" not in log and "\x1b[" not in log
    for level in range(4):
        lines = [ln for ln in log.splitlines() if ln.startswith(f"note: level {level}: step ")]
        assert lines and lines[-1].startswith(f"note: level {level}: step 30/30, "), log
        assert "bits/dim" in lines[-1] and "images/s" in lines[-1]
