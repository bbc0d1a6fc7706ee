"""Bad inputs, concurrent trainers, kills, full disks: one ``error:`` line and exit 2, and no run is lost or mixed."""

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, TINY_WF
from waveletflow.cli import main
from waveletflow.rundir import RunDir


def snapshot(root: Path) -> dict:
    """Every file and folder under ``root``: its bytes and permission bits (byte-identical means equal)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = ("link", os.readlink(p)) if p.is_symlink() else (
            ("dir", p.stat().st_mode) if p.is_dir() else (p.read_bytes(), p.stat().st_mode))
    return out


def run_cli(capsys, argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code, err, message):
    """Exit code 2 and one ``error:`` line (besides ``note:`` lines of work begun, such as training's first)."""
    lines = [line for line in err.strip().splitlines() if not line.startswith("note: ")]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    assert message in lines[0], lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained run on digits (3 steps per level)."""
    root = tmp_path_factory.mktemp("trained")
    (root / "tiny.json").write_text(json.dumps(TINY_WF))
    assert main(["train", "--data", "digits", "--out", str(root / "run"), "--steps", "3", "--batch-size", "16",
                 "--config", str(root / "tiny.json"), "--quiet", "--no-curves"]) == 0
    return root / "run"


@pytest.fixture()
def workspace(tmp_path, trained):
    """A copy of the trained run and the bad inputs of the table, in one folder."""
    shutil.copytree(trained, tmp_path / "run")
    (tmp_path / "wrongtype.json").write_text('{"levels": [{"n_steps": "four"}, {}, {}, {}]}')
    (tmp_path / "bogus.json").write_text('{"bogus_key": 1}')
    (tmp_path / "typo.json").write_text('{"levels": [{}, {"widht": 8}, {}, {}]}')
    (tmp_path / "huge.json").write_text('{"levels": [{}, {"width": 60000}, {}, {}]}')
    (tmp_path / "wide.json").write_text('{"levels": [{}, {"width": 1000000000}, {}, {}]}')
    (tmp_path / "deep.json").write_text('{"levels": [{}, {"n_steps": 100000}, {}, {}]}')
    (tmp_path / "cropped.json").write_text('{"levels": [{}, {}, {}, {"crop": 4}]}')
    (tmp_path / "rand.npz").write_bytes(np.random.default_rng(0).bytes(3000))
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "other.npz", x_train=rng.integers(0, 32, (200, 8, 8, 1), dtype=np.uint8),
             x_test=rng.integers(0, 32, (20, 8, 8, 1), dtype=np.uint8))
    for name, side, top in (("d4", 4, 32), ("d16", 16, 32), ("d8bits", 8, 256)):
        np.savez(tmp_path / f"{name}.npz", x_train=rng.integers(0, top, (40, side, side, 1), dtype=np.uint8),
                 x_test=rng.integers(0, top, (6, side, side, 1), dtype=np.uint8))
    for split, n in (("train", 12), ("test", 3)):
        (tmp_path / "text" / split).mkdir(parents=True)
        for i in range(n):
            (tmp_path / "text" / split / f"{i}.png").write_text("not an image")
    (tmp_path / "adir").mkdir()
    return tmp_path


# one process: a test that changes this process (monkeypatch) must see the training in it
TRAIN_NEW = ["train", "--data", "digits", "--out", "{tmp}/new", "--steps", "2", "--quiet", "--parallel", "1"]
TRAIN_RUN = ["train", "--data", "digits", "--out", "{tmp}/run", "--steps", "5", "--quiet", "--parallel", "1"]

BAD_INPUTS = [
    (TRAIN_NEW + ["--lr", "-1"], "lr must be a positive number"),
    (TRAIN_NEW + ["--lr", "nan"], "lr must be a positive number"),
    (TRAIN_NEW + ["--lr", "inf"], "lr must be a positive number"),
    (TRAIN_NEW + ["--lr", "0"], "lr must be a positive number"),
    (TRAIN_RUN + ["--lr", "inf"], "lr must be a positive number"),
    (TRAIN_NEW + ["--eval-every", "0"], "eval_every must be at least 1"),
    (TRAIN_NEW + ["--threads", "-1"], "--threads must be at least 1"),
    (TRAIN_NEW + ["--threads", "0"], "--threads must be at least 1"),
    (TRAIN_NEW + ["--image-size", "0"], "--image-size must be at least 1"),
    (TRAIN_NEW + ["--warmup", "-5"], "warmup must not be negative"),
    (TRAIN_NEW + ["--n-bits", "0"], "--n-bits must be at least 1"),
    (TRAIN_NEW + ["--n-bits", "9"], "more than the data's 5 bits"),
    (TRAIN_NEW + ["--batch-size", "0"], "--batch-size must be at least 1"),
    (TRAIN_NEW + ["--parallel", "0"], "--parallel must be 'auto' or at least 1"),
    (TRAIN_NEW + ["--ema", "1.5"], "ema must be in [0, 1)"),
    (TRAIN_NEW + ["--decay", "nan"], "decay must be in [0, 1)"),
    (["train", "--data", "digits", "--out", "{tmp}/new", "--time-budget", "nan"], "time_budget must be a positive"),
    (["train", "--data", "digits", "--out", "{tmp}/new", "--time-budget", "inf"], "time_budget must be a positive"),
    (["train", "--data", "digits", "--out", "{tmp}/new", "--time-budget", "-3"], "--time-budget must be positive"),
    (TRAIN_NEW + ["--config", "{tmp}/wrongtype.json"], "levels[0].n_steps must be an int, got 'four'"),
    (TRAIN_NEW + ["--config", "{tmp}/bogus.json"], "unknown key 'bogus_key'"),
    (TRAIN_NEW + ["--config", "{tmp}/typo.json"], "'widht'"),
    (TRAIN_NEW + ["--config", "{tmp}/huge.json"], "more than this machine's memory"),
    (TRAIN_NEW + ["--level", "9"], "level 9 does not exist"),
    (["train", "--data", "{tmp}/rand.npz", "--out", "{tmp}/new", "--steps", "1"], "is not an .npz file"),
    (["train", "--data", "{tmp}/text", "--out", "{tmp}/new", "--steps", "1"], "is not an image that can be read"),
    (["train", "--data", "digits", "--out", "{tmp}/bogus.json", "--steps", "1"], "is a file, not a folder"),
    (["train", "--data", "{tmp}/other.npz", "--out", "{tmp}/run", "--steps", "5", "--quiet"], "holds other images"),
    (TRAIN_RUN + ["--level", "7"], "level 7 does not exist"),
    (["evaluate", "{tmp}/run", "--data", "digits", "--batch-size", "0"], "batch size must be at least 1"),
    (["evaluate", "{tmp}/run", "--data", "digits", "--batch-size", "-1"], "batch size must be at least 1"),
    (["evaluate", "{tmp}/run", "--data", "digits", "--limit", "0"], "--limit must be at least 1"),
    (["evaluate", "{tmp}/nothing", "--data", "digits"], "no run"),
    (["sample", "{tmp}/run", "--out", "{tmp}/s.txt"], "give an image file ending in .png"),
    (["sample", "{tmp}/run", "--out", "{tmp}/adir"], "is a folder"),
    (["sample", "{tmp}/run", "--out", "{tmp}/missing/s.png"], "does not exist"),
    (["sample", "{tmp}/run", "--out", "{tmp}/s.png", "--npz", "{tmp}/missing/x.npz"], "does not exist"),
    (["sample", "{tmp}/run", "--out", "{tmp}/s.png", "--npz", "{tmp}/x.txt"], "ending in .npz"),
    (["sample", "{tmp}/run", "--out", "{tmp}/s.png", "--temperature", "nan"], "--temperature must be a finite"),
    (["sample", "{tmp}/run", "--out", "{tmp}/s.png", "--temperature", "inf"], "--temperature must be a finite"),
    (["sample", "{tmp}/run", "--out", "{tmp}/s.png", "--temperature", "-1"], "not negative"),
    (["sample", "{tmp}/run", "--out", "{tmp}/s.png", "--n", "0"], "--n must be at least 1"),
    (["sample", "{tmp}/run", "--out", "{tmp}/s.png", "--mcmc", "--mcmc-steps", "0"], "--mcmc-steps must be at least 1"),
    (["sample", "{tmp}/run", "--out", "{tmp}/s.png", "--mcmc", "--mcmc-steps", "-3"], "--mcmc-steps must be at least 1"),
    (["sample", "{tmp}/run", "--out", "{tmp}/s.png", "--mcmc", "--mcmc-warmup", "-1"], "--mcmc-warmup must not be negative"),
    (["sample", "{tmp}/run", "--out", "{tmp}/s.png", "--mcmc", "--temperature", "0"], "--mcmc needs a temperature above 0"),
    (["sample", "{tmp}/run", "--out", "{tmp}/s.png", "--mcmc", "--mcmc-accept", "1.5"], "--mcmc-accept must lie"),
    (["sample", "{tmp}/run", "--out", "{tmp}/s.png", "--mcmc", "--mcmc-depth", "0"], "--mcmc-depth must lie in 1..16"),
    (["sample", "{tmp}/run", "--out", "{tmp}/s.png", "--mcmc-steps", "5"], "applies to annealed sampling: add --mcmc"),
    (["sample", "{tmp}/nothing", "--out", "{tmp}/s.png", "--mcmc"], "no run"),
    (["super-resolve", "{tmp}/run", "--out", "{tmp}/x.png", "--input", "{tmp}/a.png", "--mcmc", "--temperature", "0"],
     "--mcmc needs a temperature above 0"),
    (["quality", "{tmp}/run", "--data", "digits", "--n", "1"], "--n must be at least 2"),
    (["quality", "{tmp}/run", "--data", "digits", "--mcmc", "--temperature", "-1"], "not negative"),
    (["quality", "{tmp}/run", "--data", "digits", "--out", "{tmp}/q.txt"], "give an image file ending in .png"),
    (["quality", "{tmp}/nothing", "--data", "digits"], "no run"),
    (["super-resolve", "{tmp}/run", "--out", "{tmp}/x.xyz", "--input", "{tmp}/a.png"], "give an image file"),
    (["super-resolve", "{tmp}/run", "--out", "{tmp}/x.png", "--input", "{tmp}/adir"], "is a folder; give one image"),
    (["super-resolve", "{tmp}/run", "--out", "{tmp}/x.png", "--input", "{tmp}/none.png"], "does not exist"),
    (["info", "{tmp}/nothing"], "no run"),
    (["info", "mrcnf-published", "--channels", "2"], "--channels must be 1 or 3"),
    (["pyramid", "--out", "{tmp}/p.png", "--n", "0"], "--n must be at least 1"),
    (["pyramid", "--out", "{tmp}/p.txt"], "give an image file"),
    (["superres-eval", "{tmp}/run", "--data", "digits", "--temperature", "nan"], "must be finite"),
    (["superres-eval", "{tmp}/run", "--data", "digits", "--draws", "0"], "--draws must be at least 1"),
    (["demo", "--out", "{tmp}/d", "--time-budget", "nan"], "time_budget must be a positive number"),
    # found by trying about 200 bad inputs against an earlier release
    (["evaluate", "{tmp}/run", "--data", "digits", "--image-size", "4"], "resizes the images of a folder"),
    (TRAIN_NEW + ["--seed", "99999999999999999999"], "a seed lies in 0..4294967295"),
    (["sample", "{tmp}/run", "--out", "{tmp}/s.png", "--seed", "99999999999999999999"], "a seed lies in"),
    (["plan", "--data", "digits", "--out", "{tmp}/new", "--steps", "2", "--seed", "-1"], "a seed lies in"),
    (TRAIN_NEW + ["--config", "{tmp}/wide.json"], "width must be at most 65536, got 1000000000"),
    (TRAIN_NEW + ["--config", "{tmp}/deep.json"], "n_steps must be at most 1024, got 100000"),
    (["sample", "{tmp}/run", "--out", "{tmp}/s.png", "--mcmc", "--temperature", "1e4"],
     "--mcmc takes temperatures up to 4"),
    (["superres-eval", "{tmp}/run", "--data", "{tmp}/d4.npz"], "needs images of at least 6x6; the test images are 4x4"),
    (["superres-eval", "{tmp}/run", "--data", "{tmp}/d16.npz"], "the test images are 16x16 with 1 channel"),
    (["superres-eval", "{tmp}/run", "--data", "{tmp}/d8bits.npz"], "give data of the model's bit depth"),
    # wavelets past Haar
    (TRAIN_RUN + ["--wavelet", "cdf97"], "holds a waveletflow model with the haar wavelet, not --wavelet cdf97"),
    (TRAIN_NEW + ["--model", "glow", "--wavelet", "cdf53"], "--wavelet is for the wavelet models"),
    (TRAIN_NEW + ["--wavelet", "cdf53", "--config", "{tmp}/cropped.json"],
     "level 3: crop 4 and its margin of 4 pixels on each side cover the image"),
    (TRAIN_NEW + ["--wavelet", "db4"], "invalid choice: 'db4'"),
    (["pyramid", "--out", "{tmp}/p.png", "--wavelet", "cdf53", "--base-size", "3"], "cannot be halved down"),
    # noise-augmented models
    (TRAIN_NEW + ["--noise-std", "-1"], "--noise-std must be at least 0, got -1"),
    (TRAIN_NEW + ["--noise-std", "nan"], "--noise-std must be at least 0, got nan"),
    (TRAIN_NEW + ["--noise-std", "2"], "noise_std must be in [0, 1]"),
    (TRAIN_RUN + ["--noise-std", "0.1"], "holds a model of images with noise 0, not --noise-std 0.1"),
    (["sample", "{tmp}/run", "--out", "{tmp}/s.png", "--denoise"], "denoising needs a model of noisy images"),
    (["quality", "{tmp}/run", "--data", "digits", "--n", "4", "--denoise"], "denoising needs a model of noisy images"),
    # global context
    (TRAIN_NEW + ["--model", "glow", "--context", "attention"], "--context is for Wavelet Flow's detail levels"),
    (TRAIN_RUN + ["--context", "attention"], "have context none, not --context attention"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a[:1] + a[4:]) for a, _ in BAD_INPUTS])
def test_bad_inputs_one_line_and_nothing_written(workspace, capsys, args, message):
    before = snapshot(workspace)
    code, _, err = run_cli(capsys, [a.replace("{tmp}", str(workspace)) for a in args])
    assert_one_error_line(code, err, message)
    assert snapshot(workspace) == before  # the run byte-identical, no new run, no output file


def test_corrupt_checkpoint_found_before_any_level_is_trained(workspace, capsys):
    ckpt = workspace / "run" / "level_02" / "checkpoint.pt"
    ckpt.write_bytes(b"garbage")
    before = snapshot(workspace)
    code, _, err = run_cli(capsys, TRAIN_RUN[:4] + [workspace / "run", "--parallel", "1", "--steps", "5", "--quiet"])
    assert_one_error_line(code, err, "corrupt checkpoint")
    assert snapshot(workspace) == before  # levels 0 and 1 were not trained further
    shutil.copy(workspace / "run" / "level_00" / "checkpoint.pt", ckpt)  # readable, but another level's
    before = snapshot(workspace)
    code, _, err = run_cli(capsys, TRAIN_RUN[:4] + [workspace / "run", "--parallel", "1", "--steps", "5", "--quiet"])
    assert_one_error_line(code, err, "level_02/checkpoint.pt does not fit this model")
    assert snapshot(workspace) == before


def test_super_resolve_on_a_model_without_levels(workspace, capsys):
    from PIL import Image

    glow = workspace / "glow"
    assert run_cli(capsys, ["train", "--data", "digits", "--model", "glow", "--out", glow, "--steps", "1", "--quiet",
                            "--no-curves"])[0] == 0
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(workspace / "low.png")
    before = snapshot(workspace)
    code, _, err = run_cli(capsys, ["super-resolve", glow, "--input", workspace / "low.png", "--out",
                                    workspace / "sr.png"])
    assert_one_error_line(code, err, "has no wavelet levels and cannot super-resolve")
    assert snapshot(workspace) == before


def test_info_says_what_is_wrong(workspace, capsys):
    run = workspace / "run"
    (run / "level_01" / "state.json").write_text("{half")
    code, out, _ = run_cli(capsys, ["info", run])
    assert code == 0 and "corrupt" in out.split("level 1")[1].splitlines()[0]
    meta = json.loads((run / "model.json").read_text())
    meta["config"]["levels"][1]["width"] = 60000
    (run / "model.json").write_text(json.dumps(meta))
    code, _, err = run_cli(capsys, ["info", run])
    assert_one_error_line(code, err, "more than this machine's memory")


def test_other_data_only_when_asked(workspace, capsys):
    run = workspace / "run"
    code, _, err = run_cli(capsys, ["train", "--data", workspace / "other.npz", "--out", run, "--steps", "4", "--quiet",
                                    "--no-curves", "--allow-other-data", "--parallel", "1"])
    assert code == 0 and "--allow-other-data" in err
    assert json.loads((run / "level_00" / "state.json").read_text())["step"] == 4
    assert json.loads((run / "run.json").read_text())["data"] == "digits"  # what the run was made with
    # the same data under another name is the same data
    (workspace / "tiny.json").write_text(json.dumps(TINY_WF))
    args = ["--out", workspace / "r2", "--quiet", "--no-curves", "--config", workspace / "tiny.json", "--parallel", "1"]
    assert run_cli(capsys, ["train", "--data", workspace / "other.npz", "--steps", "2", *args])[0] == 0
    shutil.copy(workspace / "other.npz", workspace / "moved.npz")
    code, _, err = run_cli(capsys, ["train", "--data", workspace / "moved.npz", "--steps", "3", *args])
    assert code == 0, err
    # digits as an .npz: 8-bit pixels where digits has 5, so other data
    from waveletflow.data import load_dataset

    d = load_dataset("digits")
    np.savez(workspace / "digits8.npz", x_train=d.x_train, x_test=d.x_test)
    code, _, err = run_cli(capsys, ["train", "--data", workspace / "digits8.npz", "--out", run, "--steps", "5",
                                    "--quiet"])
    assert_one_error_line(code, err, "holds other images")


def test_symlinked_level_folder_is_refused(workspace, capsys):
    run, outside = workspace / "run", workspace / "outside"
    shutil.move(run / "level_01", outside)
    (run / "level_01").symlink_to(outside, target_is_directory=True)
    before = snapshot(workspace)
    code, _, err = run_cli(capsys, TRAIN_RUN[:4] + [run, "--parallel", "1", "--steps", "5", "--quiet"])
    assert_one_error_line(code, err, "is a link")
    assert snapshot(workspace) == before


def test_disk_full_keeps_the_previous_checkpoint(workspace, capsys, monkeypatch):
    run = workspace / "run"
    before = {p: p.read_bytes() for p in run.rglob("checkpoint.pt")}

    def full(obj, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    code, _, err = run_cli(capsys, TRAIN_RUN[:4] + [run, "--parallel", "1", "--steps", "5", "--quiet", "--no-curves"])
    assert_one_error_line(code, err, "No space left on device")
    assert "checkpoint.pt" in err
    assert {p: p.read_bytes() for p in run.rglob("checkpoint.pt")} == before
    assert not list(run.rglob("*.tmp")) and not (run / ".lock").exists()


def test_unwritable_run_is_one_line(workspace, capsys, monkeypatch):
    real_open = os.open

    def denied(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    before = snapshot(workspace)
    code, _, err = run_cli(capsys, TRAIN_RUN[:4] + [workspace / "run", "--parallel", "1", "--steps", "5", "--quiet"])
    assert_one_error_line(code, err, "Permission denied")
    code, _, err = run_cli(capsys, TRAIN_NEW[:4] + [workspace / "new", "--parallel", "1", "--steps", "5", "--quiet"])
    assert_one_error_line(code, err, "Permission denied")
    code, _, err = run_cli(capsys, ["gather", "--out", workspace / "gathered", workspace / "run"])
    assert_one_error_line(code, err, f"cannot write in {workspace / 'gathered'}: Permission denied")
    assert snapshot(workspace) == before


def test_files_honour_the_umask(tmp_path):
    from waveletflow.rundir import atomic_write

    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.txt", lambda tmp: Path(tmp).write_text("x"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    old = os.umask(0o002)
    try:
        atomic_write(tmp_path / "a.txt", lambda tmp: Path(tmp).write_text("y"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o664


def test_temporaries_of_a_killed_save_are_removed(workspace, capsys):
    run = workspace / "run"
    left = [run / "level_01" / ".checkpoint.pt.abc123.tmp", run / ".model.json.x1.tmp",
            run / "level_00" / ".weights.safetensors.q.tmp"]
    for p in left:
        p.write_bytes(b"half a file")
    mine = run / "level_01" / ".my-notes.tmp"
    mine.write_text("keep")
    code, _, _ = run_cli(capsys, TRAIN_RUN[:4] + [run, "--parallel", "1", "--steps", "4", "--quiet", "--no-curves"])
    assert code == 0
    assert not any(p.exists() for p in left) and mine.read_text() == "keep"


def test_metrics_cut_back_to_the_checkpoint_on_resume(tmp_path):
    run = RunDir(tmp_path)
    path = run.metrics_file(1)
    path.parent.mkdir()
    path.write_text("step,elapsed_s,train_bpd\n1,0.1,3\n2,0.2,2.5\n3,0.3,2.4\n4,0.4,2.\n5,0.5")
    run.truncate_metrics(1, 3)
    assert [r["step"] for r in run.read_metrics(1)] == ["1", "2", "3"]
    run.truncate_metrics(1, 0)
    assert path.read_text().strip() == "step,elapsed_s,train_bpd"


def _train_script(run: Path, steps: int, eval_every: int = 10) -> str:
    return textwrap.dedent(f"""
        import sys, torch
        torch.set_num_threads(1)
        from waveletflow.training import TrainOptions, train
        opts = TrainOptions(steps={steps}, batch_size=16, checkpoint_every=3, log_every=1, eval_every={eval_every},
                            progress=False, curves=False, device="cpu")
        train({str(run)!r}, "digits", "waveletflow", "all", 1, opts, {TINY_WF!r})
    """)


def _popen(script: str):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, proc, timeout=120.0):
    t0 = time.monotonic()
    while not predicate():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() - t0 < timeout
        time.sleep(0.02)


def test_kill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    steps = 40
    ref = _popen(_train_script(tmp_path / "ref", steps))
    assert ref.wait() == 0, ref.stderr.read()
    run, rng, kills = tmp_path / "killed", random.Random(7), 0
    for attempt in range(4):  # killed three times at random moments, then left to finish
        started = time.time()
        proc = _popen(_train_script(run, steps))
        if attempt < 3:  # wait until this process writes metrics: training has begun
            _wait_for(lambda: any(p.stat().st_mtime > started for p in run.rglob("metrics.csv")), proc)
            time.sleep(rng.uniform(0.0, 2.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
        else:
            assert proc.wait() == 0, proc.stderr.read()
    assert kills >= 1
    for level in range(4):
        a = torch.load(tmp_path / "ref" / f"level_{level:02d}" / "checkpoint.pt", weights_only=True)
        b = torch.load(run / f"level_{level:02d}" / "checkpoint.pt", weights_only=True)
        assert a["step"] == b["step"] == steps
        assert torch.equal(a["rng"], b["rng"])
        for part in ("model", "average"):
            assert all(torch.equal(a[part][k], b[part][k]) for k in a[part])
        sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
        assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])
        for name in ("weights.safetensors",):
            assert (tmp_path / "ref" / f"level_{level:02d}" / name).read_bytes() == \
                (run / f"level_{level:02d}" / name).read_bytes()
        rows = RunDir(run).read_metrics(level)
        assert [int(r["step"]) for r in rows] == list(range(1, steps + 1))  # one row per step
    assert not list(run.rglob("*.tmp")) and not (run / ".lock").exists()


def test_second_trainer_is_refused_and_a_killed_ones_lock_does_not_block(tmp_path, capsys):
    run = tmp_path / "run"
    first = _popen(_train_script(run, 150, eval_every=50))
    _wait_for(lambda: (run / ".lock").is_file() and (run / "level_00" / "metrics.csv").is_file(), first)
    assert first.poll() is None  # the first is training level 0 of four
    code, _, err = run_cli(capsys, ["train", "--data", "digits", "--out", run, "--steps", "500", "--quiet"])
    assert_one_error_line(code, err, "is being trained by process")
    assert first.wait() == 0, first.stderr.read()
    for level in range(4):
        assert [int(r["step"]) for r in RunDir(run).read_metrics(level)] == list(range(1, 151))
    assert not (run / ".lock").exists()
    # a trainer killed while it holds the lock: the next one goes on
    second = _popen(_train_script(run, 2000, eval_every=50))
    _wait_for(lambda: (run / ".lock").is_file(), second)
    second.send_signal(signal.SIGKILL)
    second.wait()
    assert (run / ".lock").is_file()  # left behind by the killed process
    code, _, err = run_cli(capsys, ["train", "--data", "digits", "--out", run, "--steps", "160", "--quiet",
                                    "--no-curves"])
    assert code == 0, err
    assert not (run / ".lock").exists()


def test_info_of_a_level_whose_weights_were_removed_and_of_a_state_of_wrong_types(workspace, capsys):
    run = workspace / "run"
    for name in ("weights.safetensors", "checkpoint.pt"):
        (run / "level_02" / name).unlink()
    (run / "level_03" / "state.json").write_text('{"step": "abc"}')
    code, out, _ = run_cli(capsys, ["info", run])
    assert code == 0
    lines = {line.split(")")[0].strip(): line for line in out.splitlines() if line.strip().startswith("level")}
    assert "not trained (no weights; state.json left from step 3)" in lines["level 2 (details 2x2 -> 4x4"]
    assert 'corrupt' in lines["level 3 (details 4x4 -> 8x8"] and 'step is "abc"' in lines["level 3 (details 4x4 -> 8x8"]
    code, out, _ = run_cli(capsys, ["info", run, "--json"])
    levels = json.loads(out)["levels"]
    assert levels[2]["trained"] is False and levels[0]["trained"] is True


def test_plan_does_not_count_a_level_stopped_before_its_first_checkpoint(workspace, capsys):
    run = workspace / "run"
    for name in ("weights.safetensors", "checkpoint.pt", "state.json"):
        (run / "level_03" / name).unlink()  # only metrics.csv left, as by a trainer killed early
    (workspace / "tiny.json").write_text(json.dumps(TINY_WF))  # the config the run was made with
    plan = ["plan", "--data", "digits", "--out", run, "--steps", "5", "--config", workspace / "tiny.json"]
    before = snapshot(workspace)
    code, _, err = run_cli(capsys, plan)
    assert_one_error_line(code, err, "level 3 of")
    assert "has a folder without weights or a checkpoint (level_03/" in err and "already" not in err
    assert snapshot(workspace) == before
    shutil.rmtree(run / "level_02")  # now a level to plan, beside the one stopped early
    code, out, err = run_cli(capsys, plan)
    assert code == 0, err
    assert "holds levels 0,1 already: not planned" in out and "# job 0: level 2" in out
    assert "holds a folder of level 3 without weights or a checkpoint" in out


def test_weights_honour_the_umask_also_when_gathered(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        (tmp_path / "tiny.json").write_text(json.dumps(TINY_WF))
        args = ["--data", "digits", "--steps", "2", "--quiet", "--no-curves", "--config", tmp_path / "tiny.json"]
        assert run_cli(capsys, ["train", "--out", tmp_path / "run", *args])[0] == 0
        for level in (0, 1):
            assert run_cli(capsys, ["train", "--out", tmp_path / f"part{level}", "--level", level, *args])[0] == 0
            os.chmod(tmp_path / f"part{level}" / f"level_{level:02d}" / "weights.safetensors", 0o600)  # an old part
        assert run_cli(capsys, ["gather", "--out", tmp_path / "gathered", tmp_path / "part0", tmp_path / "part1"])[0] == 0
    finally:
        os.umask(old)
    files = [*(tmp_path / "run").rglob("*.safetensors"), *(tmp_path / "gathered").rglob("*.safetensors")]
    assert len(files) == 6 and all(f.stat().st_mode & 0o777 == 0o644 for f in files)


def test_sample_checks_every_output_first_and_writes_all_or_nothing(workspace, capsys, monkeypatch):
    out = workspace / "ok.png"
    out.write_bytes(b"an earlier image")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(workspace / "ro") else real_access(p, mode))
    (workspace / "ro").mkdir()
    before = snapshot(workspace)
    code, _, err = run_cli(capsys, ["sample", workspace / "run", "--out", out, "--npz", workspace / "ro" / "s.npz"])
    assert_one_error_line(code, err, "is not writable")
    assert snapshot(workspace) == before
    # a write that fails late (a full disk) leaves both paths as they were
    import tempfile

    real_mkstemp = tempfile.mkstemp

    def full(*args, **kwargs):
        if kwargs.get("prefix", "").startswith(".s.npz"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", full)
    code, _, err = run_cli(capsys, ["sample", workspace / "run", "--out", out, "--npz", workspace / "s.npz"])
    assert_one_error_line(code, err, "No space left on device")
    assert out.read_bytes() == b"an earlier image" and not (workspace / "s.npz").exists()
    assert not list(workspace.glob(".*.tmp"))


def test_torchrun_variables_that_make_no_rank_are_one_line(workspace, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    before = snapshot(workspace)
    code, _, err = run_cli(capsys, TRAIN_NEW[:4] + [workspace / "new", "--parallel", "1", "--steps", "2"])
    assert_one_error_line(code, err, "this process has no valid rank (RANK='5', WORLD_SIZE=2)")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29999")
    monkeypatch.setenv("WAVELETFLOW_RENDEZVOUS_TIMEOUT", "abc")
    code, _, err = run_cli(capsys, TRAIN_NEW[:4] + [workspace / "new", "--parallel", "1", "--steps", "2"])
    assert_one_error_line(code, err, "WAVELETFLOW_RENDEZVOUS_TIMEOUT must be a positive number of seconds, got 'abc'")
    assert snapshot(workspace) == before


def test_superres_eval_takes_each_factor_once(workspace, capsys):
    pytest.importorskip("torchmetrics")
    code, out, err = run_cli(capsys, ["superres-eval", workspace / "run", "--data", "digits", "--factor", "2,2",
                                      "--draws", "1", "--temperature", "1", "--limit", "4", "--json"])
    assert code == 0, err
    rows = json.loads(out)
    assert [r["method"] for r in rows] == ["bicubic", "lanczos", "one draw, T=1"]


def test_quality_says_when_the_data_has_fewer_test_images_than_samples(workspace, capsys):
    pytest.importorskip("torchmetrics")
    code, out, err = run_cli(capsys, ["quality", workspace / "run", "--data", "digits", "--n", "400", "--json"])
    assert code == 0, err
    res = json.loads(out)
    assert res["reference_images"] == 297 and res["n"] == 400
    assert "holds 297 test images: the 400 samples are compared with those 297" in err


def test_sampling_never_returns_non_finite_images(monkeypatch):
    from waveletflow.models import build_model
    from waveletflow.models.draws import MAX_REDRAWS, NonFiniteSamples

    model = build_model("waveletflow", {"image_shape": [1, 8, 8], "n_bits": 5, **TINY_WF}).eval()
    real = model.decode
    calls = []

    def overflowing(z, solver=None):  # the first draw of every other image overflows, as a Glow's inverse can
        x = real(z, solver)
        if not calls:
            x[::2] = float("nan")
        calls.append(len(z))
        return x

    monkeypatch.setattr(model, "decode", overflowing)
    redrawn: list[int] = []
    x = model.sample(6, generator=torch.Generator().manual_seed(0), redrawn=redrawn)
    assert torch.isfinite(x).all() and redrawn == [3] and calls == [6, 3]
    monkeypatch.setattr(model, "decode", lambda z, solver=None: torch.full((len(z), 1, 8, 8), float("nan")))
    with pytest.raises(NonFiniteSamples, match=f"6 of 6 samples stayed non-finite after {MAX_REDRAWS} redraws"):
        model.sample(6)
    low = np.zeros((2, 4, 4, 1), np.uint8)
    real_from = model._decode_from
    monkeypatch.setattr(model, "_decode_from", lambda x, z, first, solver: real_from(x, z, first, solver) * float("inf"))
    with pytest.raises(NonFiniteSamples, match="2 of 2"):
        model.super_resolve(low)


def test_sample_command_refuses_non_finite_images_with_one_line(workspace, capsys, monkeypatch):
    from waveletflow.models.wavelet import WaveletModel

    monkeypatch.setattr(WaveletModel, "decode", lambda self, z, solver=None: torch.full(
        (len(z), *self.image_shape), float("nan")))
    before = snapshot(workspace)
    code, _, err = run_cli(capsys, ["sample", workspace / "run", "--out", workspace / "s.png"])
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert code == 2 and len(lines) == 1 and "samples stayed non-finite" in lines[0]
    assert snapshot(workspace) == before


def _stop_script(run: Path, steps: int) -> str:
    return textwrap.dedent(f"""
        import sys, torch
        torch.set_num_threads(1)
        from waveletflow.cli import main
        import json, pathlib
        pathlib.Path({str(run)!r} + ".json").write_text(json.dumps({TINY_WF!r}))
        sys.exit(main(["train", "--data", "digits", "--out", {str(run)!r}, "--steps", "{steps}", "--batch-size", "16",
                       "--config", {str(run)!r} + ".json", "--parallel", "1", "--quiet", "--no-curves",
                       "--checkpoint-every", "1000", "--eval-every", "1000", "--decay", "0"]))
    """)


STOP_STEPS = 200


@pytest.fixture(scope="module")
def stop_reference(tmp_path_factory) -> Path:
    """The uninterrupted run the stopped-and-resumed ones must equal, trained once for every signal."""
    ref = tmp_path_factory.mktemp("stop") / "ref"
    proc = _popen(_stop_script(ref, STOP_STEPS))
    assert proc.wait() == 0, proc.stderr.read()
    return ref


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_checkpoints_every_level_in_training_and_resume_is_bit_identical(tmp_path, signum,
                                                                                        stop_reference):
    steps = STOP_STEPS
    run = tmp_path / "stopped"
    proc = _popen(_stop_script(run, steps))
    metrics = run / "level_01" / "metrics.csv"  # level 0 done, level 1 some steps in
    _wait_for(lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 2, proc)
    proc.send_signal(signum)
    code, err = proc.wait(), proc.stderr.read()
    assert code == 128 + signum, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"stopped by {signal.Signals(signum).name}: level 0 at step {steps}, level 1 at step")
    assert "Traceback" not in err
    ck = torch.load(run / "level_01" / "checkpoint.pt", weights_only=True)
    assert 0 < ck["step"] < steps
    assert int(RunDir(run).read_metrics(1)[-1]["step"]) <= ck["step"]  # no row past the checkpoint
    assert not (run / "level_02").exists()  # levels not yet started stay as they are
    assert _popen(_stop_script(run, steps)).wait() == 0  # the same command resumes
    for level in range(4):
        a = torch.load(stop_reference / f"level_{level:02d}" / "checkpoint.pt", weights_only=True)
        b = torch.load(run / f"level_{level:02d}" / "checkpoint.pt", weights_only=True)
        assert a["step"] == b["step"] == steps and torch.equal(a["rng"], b["rng"])
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
