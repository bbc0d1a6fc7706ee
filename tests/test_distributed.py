"""Training under torchrun: ranks placed on levels, data parallelism inside a level, restarts, and bad inputs.

The ranks are real processes on this machine (gloo on the CPU), started by torchrun or, for the error cases, with
the environment torchrun gives them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from waveletflow.errors import UserInputError
from waveletflow.training import TrainOptions, train
from waveletflow.training.distributed import DistEnv, Placement, place_levels, shard

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or sys.platform != "linux",
                                reason="needs torch.distributed with gloo on Linux")

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
COMMON = ["--data", "digits", "--quiet", "--no-curves", "--eval-every", "1000"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return env


def _torchrun(nproc: int, args: list[str], extra: list[str] | None = None, **kw) -> subprocess.CompletedProcess:
    cmd = [*TORCHRUN, "--standalone", "--nproc_per_node", str(nproc), *(extra or []), "-m", "waveletflow", "train",
           *COMMON, *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120, **kw)


def _reference(out: Path, level: str, **opts) -> None:
    """The same training in this process (no torchrun)."""
    torch.set_num_threads(1)
    train(out, "digits", None, level, 1, TrainOptions(progress=False, curves=False, eval_every=1000, **opts))


def _weights(run: Path, level: int) -> dict[str, torch.Tensor]:
    return load_file(run / f"level_{level:02d}" / "weights.safetensors")


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _checkpoint_step(run: Path, level: int) -> int:
    return int(torch.load(run / f"level_{level:02d}" / "checkpoint.pt", weights_only=False)["step"])


# ----- placement ---------------------------------------------------------------------------------------------
def test_placement_of_ranks_on_levels():
    w = {0: 1.0, 1: 1.0, 2: 4.0, 3: 10.0}
    two = place_levels(w, 2, 64)
    assert two.ranks == ((0,), (1,)) and sorted(v for g in two.levels for v in g) == [0, 1, 2, 3]
    assert (3,) in two.levels  # the heaviest level alone; the other three share a rank
    four = place_levels(w, 4, 64)
    assert four.levels == ((0,), (1,), (2,), (3,)) and four.ranks == ((0,), (1,), (2,), (3,))
    # further ranks go where the work per rank is largest: 10 → 5 → (4 of level 2) → 3.3
    seven = place_levels(w, 7, 64)
    assert [len(r) for r in seven.ranks] == [1, 1, 2, 3]
    assert seven.ranks == ((0,), (1,), (2, 3), (4, 5, 6)) and seven.group_of(5) == 3
    assert place_levels(w, 5, 64, data_parallel=False).group_of(4) is None  # a rank without a level
    joint = place_levels(w, 3, 64, joint=True)
    assert joint == Placement(((0, 1, 2, 3),), ((0, 1, 2),), joint=True)
    with pytest.raises(UserInputError, match="more ranks than useful work"):
        place_levels(w, 9, 2)  # 4 levels x 2 images per batch: at most 8 ranks
    with pytest.raises(UserInputError, match="more ranks than useful work"):
        place_levels(w, 3, 2, joint=True)


@pytest.mark.parametrize("batch,ranks", [(64, 2), (15, 2), (7, 3), (5, 5)])
def test_shards_cover_the_batch_once(batch, ranks):
    covered = [i for r in range(ranks) for i in range(batch)[shard(batch, ranks, r)]]
    assert covered == list(range(batch))
    sizes = [len(range(batch)[shard(batch, ranks, r)]) for r in range(ranks)]
    assert max(sizes) - min(sizes) <= 1


def test_dist_env_reads_torchrun_variables():
    assert DistEnv.from_env({}) is None
    env = DistEnv.from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                            "TORCHELASTIC_RESTART_COUNT": "1"})
    assert env == DistEnv(3, 4, 1, 2, 1)
    with pytest.raises(UserInputError):
        DistEnv.from_env({"WORLD_SIZE": "2", "RANK": "5"})


# ----- real ranks --------------------------------------------------------------------------------------------
def test_two_ranks_data_parallel_in_one_level_match_one_process(tmp_path):
    """2 ranks of DDP on one level take the steps one process takes on the same global batches (an odd batch:
    the ranks' slices differ in size)."""
    # float32 networks: in bfloat16 a slice of 7 or 8 images rounds otherwise than the whole batch of 15
    args = ["--level", "3", "--steps", "8", "--batch-size", "15", "--precision", "fp32"]
    res = _torchrun(2, ["--out", str(tmp_path / "ddp"), *args])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "level 3 on ranks 0-1 (data-parallel)" in res.stderr
    _reference(tmp_path / "one", "3", steps=8, batch_size=15, precision="fp32")
    assert _checkpoint_step(tmp_path / "ddp", 3) == 8
    # the ranks' slices are reduced in another order than one batch's sum: float32 rounding, which Adam's
    # normalised steps carry over 8 steps, differs by CPU (up to about 1e-6 measured); a different batch or step
    # would move the weights by the size of a step (about 1e-4 here)
    assert _max_diff(_weights(tmp_path / "ddp", 3), _weights(tmp_path / "one", 3)) < 1e-5
    ck_ddp = torch.load(tmp_path / "ddp" / "level_03" / "checkpoint.pt", weights_only=False)
    ck_one = torch.load(tmp_path / "one" / "level_03" / "checkpoint.pt", weights_only=False)
    assert torch.equal(ck_ddp["rng"], ck_one["rng"])  # the same global batches were drawn
    # one rank wrote the level: one metrics row per logged step, no files of the other rank
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["level_03", "model.json", "run.json"]


def test_two_ranks_on_two_levels_match_each_level_alone(tmp_path):
    res = _torchrun(2, ["--out", str(tmp_path / "split"), "--level", "2,3", "--steps", "6", "--batch-size", "8"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "level 2 on rank 0; level 3 on rank 1" in res.stderr or "level 2 on rank 1; level 3 on rank 0" in res.stderr
    for level in (2, 3):
        _reference(tmp_path / f"alone{level}", str(level), steps=6, batch_size=8)
        assert _max_diff(_weights(tmp_path / "split", level), _weights(tmp_path / f"alone{level}", level)) == 0.0


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_a_killed_rank_restarts_and_resumes_to_the_same_parameters(tmp_path):
    """torchrun --max-restarts 1: a rank of a data-parallel level is killed after a checkpoint; the restarted
    ranks resume from it and end with the parameters of the same job never killed (over 80 steps a data-parallel
    run and one process part by rounding; the first test compares those over a few steps)."""
    run = tmp_path / "killed"
    args = ["--out", str(run), "--level", "3", "--steps", "80", "--batch-size", "8", "--checkpoint-every", "10"]
    cmd = [*TORCHRUN, "--standalone", "--nproc_per_node", "2", "--max-restarts", "1", "-m", "waveletflow", "train",
           *COMMON, *args]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ck = run / "level_03" / "checkpoint.pt"
    killed = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if ck.exists():
            workers = _children(proc.pid)
            if len(workers) >= 2:
                killed = max(workers)
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.02)
    out, err = proc.communicate(timeout=120)
    assert killed is not None, "the run ended before a checkpoint could be seen"
    assert proc.returncode == 0, err[-3000:]
    whole = _torchrun(2, [*args[:1], str(tmp_path / "whole"), *args[2:]])  # the same job, never killed
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert _checkpoint_step(run, 3) == 80
    assert _max_diff(_weights(run, 3), _weights(tmp_path / "whole", 3)) < 1e-6
    ck = torch.load(run / "level_03" / "checkpoint.pt", weights_only=False)
    ck_whole = torch.load(tmp_path / "whole" / "level_03" / "checkpoint.pt", weights_only=False)
    assert torch.equal(ck["rng"], ck_whole["rng"])
    rows = (run / "level_03" / "metrics.csv").read_text().splitlines()[1:]
    steps = [int(r.split(",")[0]) for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == 80  # each logged step once, after the restart too
    assert not list(run.rglob("*.tmp")) and not (run / ".lock").exists()


# ----- bad inputs: every rank exits 2, one line in all, nothing left behind ----------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ranks(n: int, args: list[str], port: int | None = None, timeout_s: float = 3) -> list[subprocess.CompletedProcess]:
    procs = []
    for r in range(n):
        env = _env()
        env.update(WORLD_SIZE=str(n), RANK=str(r), LOCAL_RANK=str(r), LOCAL_WORLD_SIZE=str(n),
                   WAVELETFLOW_RENDEZVOUS_TIMEOUT=str(timeout_s))
        if port is not None:
            env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, "-m", "waveletflow", "train", *COMMON, *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=60), *p.communicate()) for p in procs]


@pytest.mark.parametrize("case", ["parallel", "too-many-ranks", "no-rendezvous"])
def test_bad_inputs_under_torchrun(tmp_path, case):
    out = tmp_path / "run"
    args = ["--out", str(out), "--steps", "4", "--batch-size", "2"]
    if case == "parallel":
        results = _ranks(2, [*args, "--parallel", "2"], _free_port())
        expect = "leave --parallel out"
    elif case == "too-many-ranks":
        results = _ranks(3, [*args, "--joint"], _free_port())
        expect = "more ranks than useful work"
    else:
        results = _ranks(2, args)  # no MASTER_ADDR / MASTER_PORT
        expect = "no torch.distributed rendezvous"
    assert [r.returncode for r in results] == [2] * len(results)
    errors = [line for r in results for line in r.stderr.splitlines() if line.startswith("error:")]
    if case == "no-rendezvous":
        assert len(errors) == len(results)  # each rank says why it could not join
    else:
        assert len(errors) == 1  # the first rank says it for all
    assert all(expect in e for e in errors), errors
    assert not any("Traceback" in r.stderr for r in results)
    assert not out.exists()


def test_unreachable_rendezvous_is_one_line(tmp_path):
    out = tmp_path / "run"
    env = _env()
    env.update(WORLD_SIZE="2", RANK="1", LOCAL_RANK="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
               WAVELETFLOW_RENDEZVOUS_TIMEOUT="1")
    res = subprocess.run([sys.executable, "-m", "waveletflow", "train", *COMMON, "--out", str(out), "--steps", "4"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [line for line in res.stderr.strip().splitlines()
                                               if line.startswith("error: cannot join")]
    assert not out.exists()


def test_a_rank_without_a_level_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    res = _torchrun(2, ["--out", str(out), "--level", "1", "--steps", "3", "--batch-size", "4", "--no-data-parallel"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "rank 1 has no level to train" in res.stderr
    assert _checkpoint_step(out, 1) == 3 and not (out / "level_00").exists()


def test_devices_of_ranks_and_workers(monkeypatch):
    from waveletflow.training.distributed import device_for, worker_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert [device_for("cuda", r) for r in (0, 3, 5)] == ["cuda:0", "cuda:3", "cuda:1"]
    assert [worker_device("cuda", w) for w in range(5)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0"]
    assert device_for("cpu", 2) == "cpu" and worker_device("cpu", 1) == "cpu"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert worker_device("cuda", 1) == "cuda"  # one GPU: the workers share it
