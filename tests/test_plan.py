"""Cluster jobs without rendezvous: ``plan`` prints one ``train`` per job, ``gather`` combines their part runs into
the run that one ``train --level all`` makes."""

import contextlib
import io
import json
import os
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_reliability import run_cli, snapshot
from waveletflow.cli import main
from waveletflow.rundir import RunDir

# a 3-level Wavelet Flow of the 8x8 digits: a 2x2 base, then 2x2 -> 4x4 and 4x4 -> 8x8
TINY3 = {"base_size": 2, "levels": [{"n_steps": 2, "width": 8, "n_blocks": 1, "n_scales": 1},
                                    {"n_steps": 2, "width": 8}, {"n_steps": 2, "width": 8}]}
# one thread per level in one train and in every job: float sums are bit-identical only at equal thread counts
OPTS = ["--config", "tiny3.json", "--steps", "6", "--batch-size", "16", "--eval-every", "3", "--no-curves", "--quiet",
        "--threads", "1"]


def assert_one_error_line(code, err, message):
    """Exit code 2 and one ``error:`` line (notes aside: the tiny config's 2x2 base makes the 8x8 preset say one)."""
    lines = [line for line in err.strip().splitlines() if not line.startswith("note: ")]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    assert message in lines[0], lines[0]


@contextlib.contextmanager
def inside(folder: Path):
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


def quiet_main(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


def commands(text: str) -> list[list[str]]:
    """The command lines of plan's output (every other line is a comment), split as a shell splits them."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert all(line.startswith(("#", "waveletflow ")) for line in lines), text
    return [shlex.split(line) for line in lines if not line.startswith("#")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """In one folder (relative paths, as on a cluster): ``all``, trained by one ``train --level all``, and ``run``,
    gathered from the parts that the jobs of ``plan --nodes 2`` trained; and plan's output."""
    root = tmp_path_factory.mktemp("plan")
    (root / "tiny3.json").write_text(json.dumps(TINY3))
    with inside(root):
        assert quiet_main(["train", "--data", "digits", "--out", "all", *OPTS])[0] == 0
        code, text = quiet_main(["plan", "--data", "digits", "--out", "run", "--nodes", "2", *OPTS])
        assert code == 0
        assert not (root / "run").exists() and not (root / "run.parts").exists()  # plan writes nothing
        for cmd in commands(text):
            assert cmd[0] == "waveletflow"
            assert quiet_main(cmd[1:])[0] == 0, cmd
    return root, text


def test_jobs_then_gather_give_the_run_of_one_train(runs, capsys):
    root, text = runs
    jobs = commands(text)
    assert [c[:2] for c in jobs] == [["waveletflow", "train"]] * 2 + [["waveletflow", "gather"]]
    assert "--time-budget" not in text and "# --steps 6" in text
    all_run, run = RunDir(root / "all"), RunDir(root / "run")
    assert json.loads(run.model_file.read_text()) == json.loads(all_run.model_file.read_text())
    gathered, one = json.loads(run.run_file.read_text()), json.loads(all_run.run_file.read_text())
    assert "training" not in gathered and one.pop("training")["threads"] == [1]  # how a command trained: no part's
    assert gathered == one
    for level in range(3):
        a, b = load_file(str(run.weights_file(level))), load_file(str(all_run.weights_file(level)))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), level
        steps = [torch.load(r.checkpoint_file(level), weights_only=True)["step"] for r in (run, all_run)]
        assert steps == [6, 6]
    # the parts are copied, not moved
    assert (root / "run.parts" / "levels_0-1" / "level_00" / "weights.safetensors").is_file()
    evals = []
    for r in (run, all_run):
        code, out, _ = run_cli(capsys, ["evaluate", r.path, "--data", "digits", "--limit", "64", "--json"])
        assert code == 0
        evals.append(json.loads(out))
    assert evals[0] == evals[1]


def test_nodes_group_the_levels_and_default_is_one_job_per_level(runs, capsys):
    root, text = runs
    jobs = commands(text)[:-1]
    levels = [c[c.index("--level") + 1] for c in jobs]
    assert levels == ["0,1", "2"]  # every level once; the finest level (3/4 of the dimensions) on its own
    outs = [c[c.index("--out") + 1] for c in jobs]
    assert outs == ["run.parts/levels_0-1", "run.parts/level_2"]
    assert commands(text)[-1] == ["waveletflow", "gather", "--out", "run", *outs]
    for c in jobs:  # every other option passed through as given
        assert c[:7] == ["waveletflow", "train", "--data", "digits", "--out", c[5], "--level"]
        assert sorted(c[8:]) == sorted(OPTS)
    with inside(root):
        code, out, _ = run_cli(capsys, ["plan", "--data", "digits", "--out", "new", "--time-budget", "60", *OPTS[:2],
                                        "--level", "1,2"])
    assert code == 0
    jobs = commands(out)[:-1]
    assert [c[c.index("--level") + 1] for c in jobs] == ["1", "2"]
    assert all(c[c.index("--time-budget") + 1] == "60" for c in jobs)
    assert "every job gets the whole budget" in out


def test_plan_for_an_existing_run_leaves_out_its_levels(runs, capsys, tmp_path):
    root, _ = runs
    shutil.copy(root / "tiny3.json", tmp_path)
    shutil.copytree(root / "all", tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "level_02")
    with inside(tmp_path):
        code, out, err = run_cli(capsys, ["plan", "--data", "digits", "--out", "run", *OPTS])
        assert code == 0, err
        assert [c[c.index("--level") + 1] for c in commands(out)[:-1]] == ["2"]
        assert "holds levels 0,1 already" in out
        code, _, err = run_cli(capsys, ["plan", "--data", "digits", "--out", "run", *OPTS, "--level", "1"])
        assert_one_error_line(code, err, "level 1 is in run already")
        code, _, err = run_cli(capsys, ["plan", "--data", "digits", "--out", "run", *OPTS[2:]])
        assert_one_error_line(code, err, "holds another model than these options make")


def test_slurm_job_array(runs, capsys, tmp_path):
    root, _ = runs
    with inside(root):
        code, out, _ = run_cli(capsys, ["plan", "--data", "digits", "--out", "run2", "--nodes", "2", "--slurm",
                                        tmp_path / "train.sbatch", *OPTS])
    assert code == 0
    script = (tmp_path / "train.sbatch").read_text()
    assert script.startswith("#!/bin/bash\n") and "#SBATCH --array=0-1\n" in script
    assert 'case "$SLURM_ARRAY_TASK_ID" in' in script and "--dependency=afterok:" in script
    for cmd in commands(out):
        assert shlex.join(cmd) in script


def test_gather_again_is_a_no_op_and_never_overwrites(runs, capsys, tmp_path):
    root, _ = runs
    parts = [root / "run.parts" / "levels_0-1", root / "run.parts" / "level_2"]
    shutil.copytree(root / "run", tmp_path / "run")
    code, out, _ = run_cli(capsys, ["gather", "--out", tmp_path / "run", *parts])
    assert code == 0 and out.count("already") == 3
    # the same levels trained by another train (other timings in state.json): refused, nothing changed
    shutil.copytree(root / "all", tmp_path / "all")
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, ["gather", "--out", tmp_path / "all", *parts])
    assert_one_error_line(code, err, "differs from")
    assert snapshot(tmp_path) == before


def test_a_failed_copy_leaves_no_run(runs, capsys, tmp_path, monkeypatch):
    root, _ = runs
    parts = [root / "run.parts" / "levels_0-1", root / "run.parts" / "level_2"]
    real = shutil.copytree
    calls = []

    def failing(src, dst, *args, **kwargs):
        calls.append(src)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copytree", failing)
    before = snapshot(root)
    code, _, err = run_cli(capsys, ["gather", "--out", tmp_path / "new", *parts])
    assert_one_error_line(code, err, "No space left on device")
    assert not (tmp_path / "new").exists() and snapshot(root) == before


def test_a_part_still_training_is_refused(runs, capsys, tmp_path):
    root, _ = runs
    shutil.copytree(root / "run.parts" / "level_2", tmp_path / "level_2")
    with RunDir(tmp_path / "level_2").lock():
        code, _, err = run_cli(capsys, ["gather", "--out", tmp_path / "new", tmp_path / "level_2"])
    assert_one_error_line(code, err, "is being trained by process")
    code, out, _ = run_cli(capsys, ["gather", "--out", tmp_path / "new", tmp_path / "level_2", "--json"])
    assert code == 0 and json.loads(out)["copied"] == [2] and json.loads(out)["levels"] == [2]


@pytest.fixture()
def workspace(runs, tmp_path):
    """Copies of the parts, and bad ones: another model, a level twice, a folder that is no run."""
    root, _ = runs
    for name in ("levels_0-1", "level_2"):
        shutil.copytree(root / "run.parts" / name, tmp_path / name)
    shutil.copytree(tmp_path / "level_2", tmp_path / "other_model")
    meta = json.loads((tmp_path / "other_model" / "model.json").read_text())
    meta["config"]["levels"][2]["width"] = 16
    (tmp_path / "other_model" / "model.json").write_text(json.dumps(meta))
    shutil.copytree(tmp_path / "level_2", tmp_path / "level_2_again")
    (tmp_path / "norun").mkdir()
    (tmp_path / "norun" / "notes.txt").write_text("hello")
    shutil.copy(root / "tiny3.json", tmp_path)
    (tmp_path / "exists.sbatch").write_text("#!/bin/bash\n")
    return tmp_path


PLAN = ["plan", "--data", "digits", "--out", "{tmp}/new", "--config", "{tmp}/tiny3.json", "--steps", "6"]
BAD = [
    (PLAN + ["--nodes", "0"], "--nodes must be between 1 and 3"),
    (PLAN + ["--nodes", "4"], "--nodes must be between 1 and 3"),
    (PLAN + ["--level", "1,2", "--nodes", "3"], "--nodes must be between 1 and 2"),
    (PLAN + ["--level", "5"], "level 5 does not exist"),
    (PLAN + ["--slurm", "{tmp}/exists.sbatch"], "exists; give a new file name"),
    (PLAN + ["--slurm", "{tmp}/missing/a.sbatch"], "does not exist"),
    (PLAN + ["--joint"], "--joint trains levels together"),
    (PLAN + ["--lr", "nan"], "lr must be a positive number"),
    (PLAN[:-2], "give --steps N or --time-budget SECONDS"),
    (["plan", "--data", "{tmp}/none.npz", "--out", "{tmp}/new", "--steps", "6"], "none.npz"),
    (["plan", "--data", "digits", "--out", "{tmp}/norun", "--steps", "6"], "is not a waveletflow run"),
    (["gather", "--out", "{tmp}/new", "{tmp}/levels_0-1", "{tmp}/other_model"], "other_model holds another model"),
    (["gather", "--out", "{tmp}/new", "{tmp}/levels_0-1", "{tmp}/level_2", "{tmp}/level_2_again"],
     "level 2 was trained in two parts"),
    (["gather", "--out", "{tmp}/new", "{tmp}/levels_0-1", "{tmp}/norun"], "norun is not a waveletflow run"),
    (["gather", "--out", "{tmp}/new", "{tmp}/levels_0-1", "{tmp}/nothing"], "nothing does not exist"),
    (["gather", "--out", "{tmp}/other_model", "{tmp}/levels_0-1"], "holds another model than the parts"),
    (["gather", "--out", "{tmp}/norun", "{tmp}/level_2"], "norun exists and is not a waveletflow run"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[f"{a[0]}: {m}" for a, m in BAD])
def test_bad_inputs_one_line_and_nothing_written(workspace, capsys, args, message):
    before = snapshot(workspace)
    code, _, err = run_cli(capsys, [a.replace("{tmp}", str(workspace)) for a in args])
    assert_one_error_line(code, err, message)
    assert snapshot(workspace) == before
