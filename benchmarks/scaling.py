"""Scaling on one machine: 1 process against 2 torchrun ranks, with levels split across ranks and with data
parallelism (DDP) inside one level, and Glow's alternative: data parallelism in its one flow. Beside them, ``train``
as typed, which starts a process per level itself (``--parallel auto``; the "1 process" rows pass ``--parallel 1``).

Every configuration trains a fresh run for the same number of optimiser steps per level from the same seed, so
the ranks reach the model one process reaches and "wall-clock to a fixed quality" is the wall-clock of the
command. Exactly so for levels split across ranks when the process uses one thread as each rank does (the test
bits/dim printed beside each row show it); with another thread count, or with data parallelism, float sums are
added in another order and the trajectories part by rounding. The speed-up is against one process on all the
cores. The commands are the CLI's, as a user runs them (process start-up and rendezvous included)::

    python -m benchmarks scaling [--steps 200] [--batch-size B] [--lr LR] [--warmup N] [--data PATH] [--out benchmarks/results]

The batch, learning rate and warm-up are the library's unless given (the batch of ``train`` on a CPU, 16: the
batch every time-to-quality benchmark trains at).
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
from waveletflow.training.options import AUTO_BATCH


def _env(threads: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS")}
    env.update(PYTHONWARNINGS="ignore", **({"OMP_NUM_THREADS": str(threads)} if threads is not None else {}))
    return env


def timed(cmd: list[str], threads: int | None) -> float:
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
    p.add_argument("--batch-size", type=int, help="global batch (default: the library's, 16 on a CPU)")
    p.add_argument("--glow", default="glow-residual", help="the Glow whose data parallelism is measured ('' for none)")
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
    batch = a.batch_size if a.batch_size is not None else AUTO_BATCH["cpu"]
    common = ["--data", a.data, "--steps", str(a.steps), "--batch-size", str(batch), "--quiet", "--no-curves",
              *(f for k in ("lr", "warmup") if getattr(a, k) is not None for f in (f"--{k}", str(getattr(a, k))))]
    levels = len(build_model("waveletflow", default_config("waveletflow", data.image_shape, data.n_bits)).levels)
    finest = str(levels - 1)
    rows = []
    try:
        cases = []
        groups = [("levels split", "all", []), (f"data-parallel in level {finest}", finest, ["--level", finest])]
        if a.glow:
            groups.append((f"{a.glow}: data-parallel", "0", ["--model", a.glow]))
        for what, spec, extra in groups:
            one = [*wf, *common, *extra, "--parallel", "1"]  # train's default would start a process per level
            cases += [(what, spec, "1 process", one, cores), (what, spec, "1 process", one, 1)]
            if spec == "all":  # the command as typed: the levels in parallel processes, the threads theirs to split
                cases.append((what, spec, f"`train` as typed ({min(levels, cores)} level processes)",
                              [*wf, *common, *extra], None))
            cases.append((what, spec, "2 ranks (torchrun)", [*torchrun, "-m", "waveletflow", "train", *common,
                                                              *extra], 1))
        for what, level_spec, how, cmd, threads in cases:
            run = work / f"case{len(rows)}"
            seconds = timed([*cmd, "--out", str(run)], threads)
            model = load(run, allow_untrained=True)
            lv = list(range(levels)) if level_spec == "all" else [int(level_spec)]
            res = model.bits_per_dim(test, data_bits=data.n_bits)
            quality = res.bits_per_dim if level_spec == "all" else float(res.own[int(level_spec)])
            images = a.steps * batch * len(lv)
            rows.append({"case": what, "how": how, "threads_per_process": threads or "auto",
                         "seconds": round(seconds, 1),
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
              "data": Path(a.data).name, "steps_per_level": a.steps, "batch": batch, "rows": rows}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"Machine: {result['machine']}  ", f"Command: `{result['command'].strip()}`", "",
             f"{result['data']}, {a.steps} steps per level (the Glow: of its one flow), global batch {batch}, test "
             f"bits/dim on "
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
