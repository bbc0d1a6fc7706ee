"""Images/s of one training step, level by level and for each Glow, under each speed lever of ``train``.

Each row times the training step that ``waveletflow train`` takes with its defaults (the batch it chooses, the
channels-last layout, fused Adam, clipping, Polyak averaging, data drawn by the unit) for a Wavelet Flow level
or a whole Glow, in float32 and with bfloat16 networks (``--precision``), eager and compiled (``--compile``),
side by side in one run on one thread (as each level worker of ``--parallel auto`` has on a 2-core machine).
The compile column also gives the seconds of the first (compiling) step.

    python -m benchmarks.throughput                   # MNIST and the CIFAR-10 subset
    python -m benchmarks.throughput --device cuda     # on a GPU (see benchmarks/gpu.sh)

Writes ``benchmarks/results/throughput.json`` (or ``--out``) and prints its table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from benchmarks.machine import machine
from benchmarks.readme import write_block
from benchmarks.paths import DATA, REPO
from waveletflow.data import load_dataset
from waveletflow.metrics import LN2
from waveletflow.models import build_model
from waveletflow.rundir import RunDir
from waveletflow.training import TrainOptions, split_train_val
from waveletflow.training.run import new_config
from waveletflow.training.unit import TrainUnit

RESULTS = REPO / "benchmarks" / "results" / "throughput.json"
MODELS = {"waveletflow": "Wavelet Flow", "glow": "Glow", "glow-residual": "Glow (residual coupling)"}
#: (column, precision, compile, channels_last)
MODES = (("fp32", "fp32", False, True), ("bf16", "bf16", False, True), ("bf16, NCHW", "bf16", False, False),
         ("fp32 compiled", "fp32", True, True), ("bf16 compiled", "bf16", True, True))


def step_rate(unit: TrainUnit, steps: int, warmup: int = 3) -> tuple[float, float]:
    """(images/s of a training step as ``fit`` takes it, median over ``steps``; seconds of the first step)."""
    opts, times = unit.opts, []
    for i in range(warmup + steps):
        if unit.opts.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        unit.set_lr(0.0)
        x = unit.draw(opts.batch_size)
        nll, reg, _ = unit.objective(x)
        loss = nll.mean() / (unit.dims * LN2) + reg
        unit.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unit.module.parameters(), opts.grad_clip)
        unit.optimizer.step()
        unit.step += 1
        if unit.average is not None:
            unit.average.update(unit.step)
        float(nll.detach().mean())  # as fit reads the step's figure
        if unit.opts.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return opts.batch_size / statistics.median(times[warmup:]), times[0]


def measure(dataset: str, data_dir: Path, device: str, steps: int, models=tuple(MODELS), budget_s: float = 300.0):
    """One row per Wavelet Flow level and per Glow: images/s in every mode of :data:`MODES`."""
    data = load_dataset(str(data_dir / DATA[dataset]))
    train_x, val_x = split_train_val(data, 1000)
    rows = []
    for model_type in models:
        _, config, choice = new_config(data, model_type, budget_s=budget_s, device="cpu")
        torch.manual_seed(0)
        model = build_model(model_type, config).to(device)
        for level in range(len(model.levels)):
            row = {"model": model_type, "level": level if model_type == "waveletflow" else None,
                   "what": model.level_names()[level] if model_type == "waveletflow" else "whole image",
                   "params": model.num_parameters(level),
                   "capacity": None if choice is None else choice.to_dict()}
            for name, precision, compiled, channels_last in MODES:
                opts = TrainOptions(steps=10**6, device=device, precision=precision, compile=compiled,
                                    channels_last=channels_last).resolved()
                with tempfile.TemporaryDirectory() as tmp:
                    m = build_model(model_type, config).to(device)
                    m.load_state_dict(model.state_dict())
                    unit = TrainUnit(m, level, RunDir(tmp), opts, train_x, val_x[:64], data.n_bits).open()
                    # the lever itself, on every level (train keeps levels under 4x4 in float32: see this table)
                    unit.net_dtype = opts.network_dtype()
                    rate, first = step_rate(unit, steps)
                    torch._dynamo.reset()
                row[name] = round(rate, 1)
                if compiled:
                    row[f"{name} first step s"] = round(first, 1)
                row["batch"] = opts.batch_size
            rows.append(row)
            print(f"[throughput] {dataset} {row}", flush=True)
    return rows


def markdown(result: dict) -> str:
    """The throughput tables (one per dataset) as Markdown."""
    names = [m[0] for m in MODES]
    lines = [f"Machine: {result['machine']}  ", f"Command: `{result['command']}`", ""]
    for dataset, rows in result["datasets"].items():
        lines += [f"| {dataset} | part | parameters | " + " | ".join(names) + " | compile time |",
                  "| --- " * (len(names) + 4) + "|"]
        for r in rows:
            part = r["what"] if r["level"] is None else f"level {r['level']}: {r['what']}"
            first = max(r.get(f"{n} first step s", 0) for n in names)
            lines.append(f"| {MODELS[r['model']]} | {part} | {r['params'] / 1e3:.0f} k | "
                         + " | ".join(f"{r[n]:.0f}" for n in names) + f" | {first:.0f} s |")
        lines.append("")
        for model in MODELS:
            mine = [r for r in rows if r["model"] == model]
            if not mine:
                continue
            ms = {n: sum(1000 / r[n] for r in mine) for n in names}
            every = " (a step of every level)" if model == "waveletflow" else ""
            lines.append(f"- {MODELS[model]}: {ms['fp32']:.2f} ms per training image in float32{every}; bf16 "
                         f"{ms['fp32'] / ms['bf16']:.2f}×, compiled "
                         f"{ms['fp32'] / ms['fp32 compiled']:.2f}×, both {ms['fp32'] / ms['bf16 compiled']:.2f}×, "
                         f"bf16 channels-last against NCHW {ms['bf16, NCHW'] / ms['bf16']:.2f}×.")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import os
    import sys

    p = argparse.ArgumentParser(prog="python -m benchmarks throughput", description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default=",".join(DATA))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=30, help="timed steps per mode (after 3 warm-up steps)")
    p.add_argument("--data-dir", default=os.environ.get("WAVELETFLOW_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--report", action="store_true", help="only print the table of the result file")
    p.add_argument("--readme", nargs="+", metavar="FILE",
                   help="also write the table into these Markdown files, between their throughput markers")
    a = p.parse_args(argv)
    if a.report:
        text = markdown(json.loads(Path(a.out).read_text()))
        for page in a.readme or []:
            write_block(page, "throughput", text)
        print(text)
        return 0
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    result = {"machine": machine(a.threads), "command": "python -m benchmarks.throughput " + " ".join(
        argv if argv is not None else sys.argv[1:]), "datasets": {}}
    for dataset in a.datasets.split(","):
        result["datasets"][dataset] = measure(dataset, Path(a.data_dir), a.device, a.steps)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    for page in a.readme or []:
        write_block(page, "throughput", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
