"""Scaling on one machine: 1 process against 2 torchrun ranks, with levels split across ranks and with data
parallelism (DDP) inside one level.

Every configuration trains a fresh run for the same number of optimiser steps per level from the same seed, so
the ranks reach the model one process reaches and "wall-clock to a fixed quality" is the wall-clock of the
command. Exactly so for levels split across ranks when the process uses one thread as each rank does (the test
bits/dim printed beside each row show it); with another thread count, or with data parallelism, float sums are
added in another order and the trajectories part by rounding. The speed-up is against one process on all the
cores. The commands are the CLI's, as a user runs them (process start-up and rendezvous included)::

    python -m benchmarks.scaling [--steps 200] [--batch-size 64] [--lr LR] [--warmup N] [--data PATH] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.machine import machine
from benchmarks.paths import REPO, SHARED
from waveletflow import load
from waveletflow.data import load_dataset
from waveletflow.models import build_model, default_config


def _env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    return env


def timed(cmd: list[str], threads: int) -> float:
    """Seconds the command took (it must succeed)."""
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=_env(threads), capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks scaling", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(SHARED / "mnist.npz"))
    p.add_argument("--steps", type=int, default=200, help="optimiser steps per level")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--test-images", type=int, default=1000)
    p.add_argument("--lr", type=float, help="learning rate (default: the library's)")
    p.add_argument("--warmup", type=int, help="warm-up steps (default: the library's)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    a = p.parse_args(argv)
    if not Path(a.data).exists():
        print(f"note: {a.data} not found; nothing measured", file=sys.stderr)
        return 0
    cores = os.cpu_count() or 1
    data = load_dataset(a.data)
    test = data.x_test[: a.test_images]
    work = Path(tempfile.mkdtemp(prefix="wf-scaling-"))
    wf = [sys.executable, "-m", "waveletflow", "train"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    common = ["--data", a.data, "--steps", str(a.steps), "--batch-size", str(a.batch_size), "--quiet", "--no-curves",
              *(f for k in ("lr", "warmup") if getattr(a, k) is not None for f in (f"--{k}", str(getattr(a, k))))]
    levels = len(build_model("waveletflow", default_config("waveletflow", data.image_shape, data.n_bits)).levels)
    finest = str(levels - 1)
    rows = []
    try:
        cases = []
        for what, level_args in (("levels split", []), (f"data-parallel in level {finest}", ["--level", finest])):
            spec = finest if level_args else "all"
            cases += [(what, spec, "1 process", [*wf, *common, *level_args], cores),
                      (what, spec, "1 process", [*wf, *common, *level_args], 1),
                      (what, spec, "2 ranks (torchrun)", [*torchrun, "-m", "waveletflow", "train", *common,
                                                          *level_args], 1)]
        for what, level_spec, how, cmd, threads in cases:
            run = work / f"{what}-{how}-{threads}".replace(" ", "_").replace("(", "").replace(")", "")
            seconds = timed([*cmd, "--out", str(run)], threads)
            model = load(run, allow_untrained=True)
            lv = list(range(levels)) if level_spec == "all" else [int(level_spec)]
            res = model.bits_per_dim(test, data_bits=data.n_bits)
            quality = res.bits_per_dim if level_spec == "all" else float(res.own[int(level_spec)])
            images = a.steps * a.batch_size * len(lv)
            rows.append({"case": what, "how": how, "threads_per_process": threads, "seconds": round(seconds, 1),
                         "images_per_s": round(images / seconds, 1), "test_bpd": round(quality, 4),
                         "levels": lv})
            print(f"{what}: {how}: {seconds:.1f} s, {images / seconds:.1f} images/s, test {quality:.4f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in rows:
        base = next(b for b in rows if b["case"] == r["case"] and b["how"] == "1 process"
                    and b["threads_per_process"] == cores)  # the same cores, used by one process
        r["speedup"] = round(base["seconds"] / r["seconds"], 2)
    result = {"machine": machine(), "python": platform.python_version(), "torch": torch.__version__,
              "command": "python -m benchmarks.scaling " + " ".join(argv if argv is not None else sys.argv[1:]),
              "data": Path(a.data).name, "steps_per_level": a.steps, "batch": a.batch_size, "rows": rows}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"Machine: {result['machine']}  ", f"Command: `{result['command'].strip()}`", "",
             f"{result['data']}, {a.steps} steps per level, global batch {a.batch_size}, test bits/dim on "
             f"{len(test)} images", "",
             "| case | processes | threads each | wall-clock (s) | training images/s | speed-up | test bits/dim |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['case']} | {r['how']} | {r['threads_per_process']} | {r['seconds']} | {r['images_per_s']} | "
              f"{r['speedup']}× | {r['test_bpd']} |" for r in rows]
    (out / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
