"""One trainer for every model type: each level trains on its own (SPEC §3), or a set of levels together.

A run folder holds ``model.json`` (the model), ``run.json`` (data and split) and one ``level_XX/``
per level with ``checkpoint.pt`` (weights, optimiser, RNG, step), ``weights.safetensors``,
``state.json`` and ``metrics.csv``. Running the same command again resumes every level. Levels trained
together (``joint``) form one unit whose checkpoint and metrics live in ``joint_A-B-C/``; their weights and
state still go to each ``level_XX/``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from waveletflow.data import ImageDataset, load_dataset, random_crop, random_flip
from waveletflow.errors import UserInputError
from waveletflow.metrics import LN2, bits_per_dim
from waveletflow.models.base import FlowModel, WEIGHTS_FILE, level_dir
from waveletflow.models.glow import glow_config
from waveletflow.models.io import (atomic_write, build_model, load_level_weights, read_model_file, save_level_weights,
                                  write_json_atomic)
from waveletflow.models.waveletflow import waveletflow_config

RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.pt"
STATE_FILE = "state.json"
METRICS_FIELDS = ["step", "elapsed_s", "train_bpd", "val_bpd", "images_per_s", "lr", "grad_norm", "nfe"]


@dataclass
class TrainOptions:
    """How to train. ``steps`` counts optimiser steps per level (per unit with ``joint``: all the levels asked
    for, one optimiser on their summed NLL); ``time_budget`` (s) is for the whole command."""

    steps: int | None = None
    time_budget: float | None = None
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 200
    grad_clip: float = 50.0
    seed: int = 0
    device: str = "cpu"
    init_batch: int = 64
    eval_every: int = 250
    log_every: int = 25
    checkpoint_every: int = 250
    checkpoint_seconds: float = 120.0
    val_images: int = 500
    flip: bool = False
    joint: bool = False
    progress: bool = True
    progress_position: int = 0


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserInputError("--device cuda was asked for but no CUDA GPU is available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise UserInputError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


# ----- the run folder ------------------------------------------------------------------------------
def default_config(model_type: str, image_shape: tuple[int, int, int], n_bits: int, overrides: dict[str, Any]) -> dict:
    """The default config of ``model_type`` for the data, with ``overrides`` (a partial or a whole config) on top."""
    overrides = dict(overrides)
    shape = overrides.pop("image_shape", None)
    if shape is not None and tuple(shape) != tuple(image_shape):
        raise UserInputError(f"the config is for images of shape {tuple(shape)}, the data has {tuple(image_shape)}")
    n_bits = int(overrides.pop("n_bits", n_bits))
    if model_type == "waveletflow":
        return waveletflow_config(image_shape, n_bits, **overrides)
    if model_type == "glow":
        return glow_config(image_shape, n_bits, **overrides)
    if model_type == "mrcnf":
        from waveletflow.models.mrcnf import mrcnf_config

        return mrcnf_config(image_shape, n_bits, **overrides)
    raise UserInputError(f"unknown model type {model_type!r}; choose waveletflow, glow or mrcnf")


def prepare_run(run_dir: str | Path, data: ImageDataset, data_spec: str, model_type: str | None = None,
                overrides: dict[str, Any] | None = None, n_bits: int | None = None, seed: int = 0,
                level_spec: str = "all") -> dict[str, Any]:
    """Create the run folder (``model.json``, ``run.json``), or check that an existing one fits the data.

    Returns the model metadata ``{"model_type", "config"}``.
    """
    run_dir = Path(run_dir)
    if (run_dir / "model.json").exists():
        meta = read_model_file(run_dir)
        if model_type is not None and meta["model_type"] != model_type:
            raise UserInputError(f"{run_dir} holds a {meta['model_type']} model, not {model_type}; use another --out")
        cfg = meta["config"]
        if tuple(cfg["image_shape"]) != data.image_shape:
            raise UserInputError(
                f"{run_dir} was made for images of shape {tuple(cfg['image_shape'])} (C, H, W), "
                f"but {data_spec} has {data.image_shape}"
            )
        if overrides:
            print(f"note: {run_dir} exists; its saved model config is used and --config is ignored", file=sys.stderr)
        return meta
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserInputError(f"{run_dir} exists and is not a waveletflow run; choose a new --out")
    bits = n_bits or data.n_bits
    if bits > data.n_bits:
        raise UserInputError(f"--n-bits {bits} is more than the data's {data.n_bits} bits")
    config = default_config(model_type or "waveletflow", data.image_shape, bits, dict(overrides or {}))
    config.setdefault("display_max", data.max_value if bits == data.n_bits else 2**bits - 1)
    # validate the config and the levels asked for before anything is written
    parse_levels(level_spec, len(build_model(model_type or "waveletflow", config).levels))
    run_dir.mkdir(parents=True, exist_ok=True)
    n_train = len(data.x_train)
    val_size = min(1000, max(1, n_train // 10))
    write_json_atomic(run_dir / RUN_FILE, {
        "data": data_spec, "data_bits": data.n_bits, "val_size": val_size, "seed": seed,
    })
    meta = {"model_type": model_type or "waveletflow", "config": config}
    write_json_atomic(run_dir / "model.json", meta)
    return meta


def read_run_file(run_dir: Path) -> dict[str, Any]:
    try:
        with open(run_dir / RUN_FILE) as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{run_dir}/{RUN_FILE} is missing or corrupt ({type(exc).__name__})") from None


def new_model(meta: dict[str, Any], seed: int) -> FlowModel:
    """The model with its deterministic initial weights (the same in every process for one seed)."""
    torch.manual_seed(seed)
    return build_model(meta["model_type"], meta["config"])


# ----- budgets -------------------------------------------------------------------------------------
def budget_shares(level_dims: list[int], levels: list[int]) -> dict[int, float]:
    """How a time budget is shared among ``levels``: in proportion to each level's dimensions, with a floor of
    half an equal share, since the finest levels cost the most per step and converge the slowest."""
    total = sum(level_dims[i] for i in levels)
    raw = {i: max(level_dims[i] / total, 0.5 / len(levels)) for i in levels}
    s = sum(raw.values())
    return {i: v / s for i, v in raw.items()}


def parse_levels(spec: str, n_levels: int) -> list[int]:
    if spec == "all":
        return list(range(n_levels))
    try:
        levels = sorted({int(v) for v in spec.split(",")})
    except ValueError:
        raise UserInputError(f"--level must be 'all' or level numbers such as 2 or 0,3; got {spec!r}") from None
    bad = [v for v in levels if not 0 <= v < n_levels]
    if bad:
        raise UserInputError(f"level {bad[0]} does not exist; this model has levels 0..{n_levels - 1}")
    return levels


# ----- one level -----------------------------------------------------------------------------------
def _lr_at(step: int, opts: TrainOptions) -> float:
    return opts.lr * min(1.0, (step + 1) / max(1, opts.warmup))


def _batch(model: FlowModel, level: int | None, images, idx: np.ndarray, gen: torch.Generator, data_bits: int,
           opts: TrainOptions) -> torch.Tensor:
    """Dequantise whole images once, then flip and crop them for ``level`` (whole images for None); the
    decomposition happens in the model."""
    x = model.prepare(images[np.sort(idx)], gen, data_bits)
    if opts.flip:
        x = random_flip(x, gen)
    crop = None if level is None else model.level_crop(level)
    if crop is not None:
        x = random_crop(x, crop, gen)
    return x


@torch.no_grad()
def level_validation_bpd(model: FlowModel, levels: list[int], images, data_bits: int,
                         batch_size: int = 256) -> list[float]:
    """Mean bits/dim of each of ``levels`` over its own dimensions, on whole images, with fixed dequantisation
    noise (the same noise for every level)."""
    was = model.training
    model.eval()
    gen = torch.Generator().manual_seed(12345)
    totals, n = [0.0] * len(levels), len(images)
    for s in range(0, n, batch_size):
        x = model.prepare(images[s : s + batch_size], gen, data_bits)
        for i, level in enumerate(levels):
            nll = model.level_loss(level, x)
            totals[i] += float(bits_per_dim(-nll, model.level_dims[level], model.n_bits).sum())
    model.train(was)
    return [t / n for t in totals]


def unit_dir(run_dir: str | Path, levels: list[int]) -> Path:
    """Where one unit of training keeps its checkpoint and metrics: ``level_XX`` for one level, ``joint_A-B-C``
    for levels trained together."""
    if len(levels) == 1:
        return level_dir(run_dir, levels[0])
    return Path(run_dir) / ("joint_" + "-".join(str(v) for v in levels))


def _unit_module(model: FlowModel, levels: list[int]) -> torch.nn.Module:
    if len(levels) == 1:
        return model.levels[levels[0]]
    return torch.nn.ModuleDict({str(v): model.levels[v] for v in levels})


def _save_checkpoint(model: FlowModel, levels: list[int], udir: Path, opt, gen, step: int, elapsed: float,
                     last: dict[str, Any]) -> bool:
    """Write the unit's checkpoint and each level's weights and state atomically; refuses (returns False) when a
    parameter is not finite. Each level's ``state.json`` names the unit that wrote its weights."""
    module = _unit_module(model, levels)
    if not all(torch.isfinite(p).all() for p in module.parameters()):
        return False
    state = {
        "step": step,
        "elapsed_s": elapsed,
        "model": module.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": gen.get_state(),
    }
    atomic_write(udir / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp))
    for i, level in enumerate(levels):
        ldir = level_dir(udir.parent, level)
        save_level_weights(model, level, ldir / WEIGHTS_FILE)
        level_state = {"step": step, "elapsed_s": round(elapsed, 2), "unit": udir.name, "train_bpd": last["train_bpd"],
                       "val_bpd": None if last["val_bpd"] is None else last["levels_val_bpd"][i]}
        if len(levels) > 1:
            level_state["unit_val_bpd"] = last["val_bpd"]
        write_json_atomic(ldir / STATE_FILE, level_state)
    return True


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserInputError(
            f"corrupt checkpoint {path} ({type(exc).__name__}); move it away to go on from the saved level weights "
            f"with a new optimiser, or move {path.parent} away to restart"
        ) from None


def _check_not_superseded(run_dir: Path, levels: list[int], udir: Path) -> None:
    """Refuse to resume a unit whose levels were trained further by another unit since its checkpoint
    (resuming would overwrite the newer weights)."""
    for level in levels:
        path = level_dir(run_dir, level) / STATE_FILE
        if not path.is_file():
            continue
        try:
            writer = json.loads(path.read_text()).get("unit", udir.name)
        except (OSError, ValueError, AttributeError):
            continue
        if writer != udir.name:
            raise UserInputError(
                f"level {level} was trained further in {writer} after {udir.name}/{CHECKPOINT_FILE} was written; "
                f"move {udir} away to continue from the newer weights"
            )


def _start_levels(model: FlowModel, levels: list[int], single: int | None, run_dir: Path, train_images,
                  data_bits: int, opts: TrainOptions, gen: torch.Generator) -> None:
    """A new unit starts each level from its saved weights where another unit trained it (progressive then joint
    training, or the reverse), and from a data-dependent initialisation otherwise."""
    fresh = []
    for level in levels:
        path = level_dir(run_dir, level) / WEIGHTS_FILE
        if path.is_file():
            load_level_weights(model, level, path)
            print(f"note: level {level} starts from its saved weights ({path})", file=sys.stderr)
        else:
            fresh.append(level)
    if not fresh:
        return
    n_train = len(train_images)
    idx = torch.randint(0, n_train, (min(opts.init_batch, n_train),), generator=gen).numpy()
    x = _batch(model, single, train_images, idx, gen, data_bits, opts)
    for level in fresh:
        for m in model.levels[level].modules():
            if hasattr(m, "initialized"):
                m.initialized.fill_(False)
        with torch.no_grad():
            model.level_loss(level, x)  # data-dependent init, layer by layer


def train_level(model: FlowModel, level: int | list[int], run_dir: str | Path, train_images, val_images,
                data_bits: int, opts: TrainOptions, budget_s: float | None = None) -> dict[str, Any]:
    """Train one level, or several levels jointly (one optimiser on their summed NLL, the bits/dim of the image
    when they are all the levels), until ``opts.steps`` optimiser steps in total or ``budget_s`` seconds.

    Resumes from the unit's ``checkpoint.pt`` when present (step, optimiser, RNG). Returns a summary.
    """
    from tqdm import tqdm

    levels = [level] if isinstance(level, int) else sorted(level)
    single = levels[0] if len(levels) == 1 else None  # the level of a one-level unit (crops apply to it)
    run_dir = Path(run_dir)
    udir = unit_dir(run_dir, levels)
    udir.mkdir(parents=True, exist_ok=True)
    if single is None:
        cropped = [v for v in levels if model.level_crop(v) is not None]
        if cropped:
            raise UserInputError(f"level {cropped[0]} trains on crops; joint training needs whole images")
    module = _unit_module(model, levels)
    model.train()
    opt = torch.optim.Adam(module.parameters(), lr=opts.lr)
    gen = torch.Generator().manual_seed(opts.seed * 1009 + (1000 + sum(levels) if single is None else single))
    step, elapsed_before = 0, 0.0
    ckpt_path = udir / CHECKPOINT_FILE
    n_train = len(train_images)
    if ckpt_path.exists():
        _check_not_superseded(run_dir, levels, udir)
        ck = _load_checkpoint(ckpt_path)
        try:
            module.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            gen.set_state(ck["rng"])
            step, elapsed_before = int(ck["step"]), float(ck["elapsed_s"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise UserInputError(f"checkpoint {ckpt_path} does not fit this model ({type(exc).__name__})") from None
    else:
        _start_levels(model, levels, single, run_dir, train_images, data_bits, opts, gen)
    crop = None if single is None else model.level_crop(single)
    full = model.image_shape[1] * model.image_shape[2]
    dims = sum(model.level_dims[v] for v in levels) * ((crop * crop / full) if crop else 1.0)
    level_dims = [model.level_dims[v] for v in levels]

    def validate() -> tuple[float, list[float]]:
        per = level_validation_bpd(model, levels, val_images, data_bits)
        return sum(b * d for b, d in zip(per, level_dims)) / sum(level_dims), per

    metrics_path = udir / "metrics.csv"
    new_file = not metrics_path.exists()
    fields = METRICS_FIELDS
    if not new_file:  # keep the columns of a file an older version started
        with open(metrics_path, newline="") as fh:
            fields = next(csv.reader(fh), None) or METRICS_FIELDS
    metrics = open(metrics_path, "a", newline="")
    writer = csv.DictWriter(metrics, fieldnames=fields, extrasaction="ignore")
    if new_file:
        writer.writeheader()
    tb = _tensorboard(udir)

    target = opts.steps
    start = time.perf_counter()
    last_ckpt_time = start
    desc = "levels " + ",".join(map(str, levels)) if single is None else f"level {single}"
    bar = tqdm(total=target, initial=step, desc=desc, position=opts.progress_position,
               disable=not opts.progress, leave=True, dynamic_ncols=True, file=sys.stderr)
    running, running_n, seen, t_log = 0.0, 0, 0, time.perf_counter()
    skipped, last_val, last_per, grad_norm = 0, None, None, float("nan")
    last_saved: dict[str, Any] = {"train_bpd": None, "val_bpd": None, "levels_val_bpd": None}

    def done() -> bool:
        if target is not None and step >= target:
            return True
        return budget_s is not None and time.perf_counter() - start >= budget_s

    try:
        while not done():
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, opts)
            idx = torch.randint(0, n_train, (min(opts.batch_size, n_train),), generator=gen).numpy()
            x = _batch(model, single, train_images, idx, gen, data_bits, opts)
            nll, reg = model.objective(levels, x)
            nfe = model.nfe(levels)
            loss = nll.mean() / (dims * LN2) + reg
            opt.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                skipped += 1
                if skipped > 50:
                    raise UserInputError(f"{desc}: the loss stayed non-finite; lower --lr (last good checkpoint kept)")
                continue
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(module.parameters(), opts.grad_clip))
            if not math.isfinite(grad_norm):
                skipped += 1
                opt.zero_grad(set_to_none=True)
                continue
            opt.step()
            skipped = 0
            step += 1
            bpd = float(bits_per_dim(-nll.detach().mean(), dims, model.n_bits))
            running += bpd
            running_n += 1
            seen += x.shape[0]
            bar.update(1)
            now = time.perf_counter()
            val_due = step % opts.eval_every == 0
            if step % opts.log_every == 0 or val_due or done():
                if val_due or done():
                    last_val, last_per = validate()
                ips = seen / max(now - t_log, 1e-9)
                row = {
                    "step": step, "elapsed_s": round(elapsed_before + now - start, 2),
                    "train_bpd": round(running / running_n, 5), "val_bpd": "" if not val_due and not done() else round(last_val, 5),
                    "images_per_s": round(ips, 1), "lr": _lr_at(step - 1, opts), "grad_norm": round(grad_norm, 4),
                    "nfe": "" if nfe is None else nfe,
                }
                writer.writerow(row)
                metrics.flush()
                if tb is not None:
                    tb.add_scalar("train_bpd", row["train_bpd"], step)
                    if row["val_bpd"] != "":
                        tb.add_scalar("val_bpd", row["val_bpd"], step)
                post = {"bpd": f"{running / running_n:.3f}", "img/s": f"{ips:.0f}"}
                if nfe is not None:
                    post["nfe"] = str(nfe)
                if last_val is not None:
                    post["val"] = f"{last_val:.3f}"
                if budget_s is not None:
                    post["left"] = f"{max(0.0, budget_s - (now - start)):.0f}s"
                bar.set_postfix(post)
                last_saved = {"train_bpd": row["train_bpd"], "val_bpd": last_val, "levels_val_bpd": last_per}
                running, running_n, seen, t_log = 0.0, 0, 0, now
            if step % opts.checkpoint_every == 0 or now - last_ckpt_time > opts.checkpoint_seconds:
                if not _save_checkpoint(model, levels, udir, opt, gen, step, elapsed_before + now - start, last_saved):
                    _restore(module, desc, ckpt_path, opt)
                last_ckpt_time = now
    finally:
        bar.close()
        metrics.close()
        if tb is not None:
            tb.close()
    if last_val is None:
        last_val, last_per = validate()
        last_saved.update(val_bpd=last_val, levels_val_bpd=last_per)
    elapsed = elapsed_before + time.perf_counter() - start
    if not _save_checkpoint(model, levels, udir, opt, gen, step, elapsed, last_saved):
        raise UserInputError(f"{desc}: parameters became non-finite; the last good checkpoint was kept")
    summary = {"level": levels if single is None else single, "step": step, "elapsed_s": elapsed,
               "val_bpd": last_val}
    if single is None:
        summary["levels_val_bpd"] = last_per
    return summary


def _restore(module: torch.nn.Module, desc: str, ckpt_path: Path, opt) -> None:
    if not ckpt_path.exists():
        raise UserInputError(f"{desc}: parameters became non-finite before the first checkpoint; lower --lr")
    ck = _load_checkpoint(ckpt_path)
    module.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    print(f"warning: {desc} diverged; restored the checkpoint of step {ck['step']}", file=sys.stderr)


def _tensorboard(ldir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional
        return None
    return SummaryWriter(str(ldir / "tensorboard"))


# ----- the whole command ---------------------------------------------------------------------------
def split_train_val(data: ImageDataset, val_size: int):
    n = len(data.x_train)
    if n - val_size < 1:
        raise UserInputError("the training split is too small to hold out validation images")
    train = data.x_train[: n - val_size] if isinstance(data.x_train, np.ndarray) else _Subset(data.x_train, 0, n - val_size)
    val = data.x_train[n - val_size :] if isinstance(data.x_train, np.ndarray) else _Subset(data.x_train, n - val_size, n)
    return train, val


class _Subset:
    """A contiguous slice of a lazily read image set that indexes like an array."""

    def __init__(self, base, start: int, stop: int):
        self.base, self.start, self.stop = base, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            idx = np.arange(*idx.indices(len(self)))
        return self.base[np.asarray(idx) + self.start]


def train(run_dir: str | Path, data_spec: str, model_type: str | None = None, level_spec: str = "all",
          parallel: int = 1, opts: TrainOptions | None = None, overrides: dict[str, Any] | None = None,
          n_bits: int | None = None, image_size: int | None = None, data: ImageDataset | None = None) -> list[dict]:
    """Train (or resume) the levels of a run; returns one summary per trained level."""
    opts = opts or TrainOptions()
    if opts.steps is None and opts.time_budget is None:
        raise UserInputError("give --steps or --time-budget")
    if opts.joint and parallel > 1:
        raise UserInputError("--joint trains its levels together in one process; drop --parallel")
    run_dir = Path(run_dir)
    data = data or load_dataset(data_spec, image_size=image_size)
    meta = prepare_run(run_dir, data, data_spec, model_type, overrides, n_bits, opts.seed, level_spec)
    run = read_run_file(run_dir)
    model = new_model(meta, run.get("seed", opts.seed)).to(opts.device)
    levels = parse_levels(level_spec, len(model.levels))
    shares = budget_shares(model.level_dims, levels)
    start = time.perf_counter()

    if parallel > 1 and len(levels) > 1:
        return _train_parallel(run_dir, data_spec, levels, parallel, opts, model, shares, n_bits, image_size)

    train_x, val_x = split_train_val(data, run["val_size"])
    val_x = val_x[: opts.val_images]
    results = []
    units = [levels] if opts.joint else [[v] for v in levels]
    for i, unit in enumerate(units):
        budget = None
        if opts.time_budget is not None:
            left = opts.time_budget - (time.perf_counter() - start)
            share = sum(shares[v] for v in unit)
            rest = sum(shares[v] for u in units[i:] for v in u)
            budget = max(0.0, left * share / rest)
        results.append(train_level(model, unit, run_dir, train_x, val_x, run["data_bits"], opts, budget))
    from waveletflow.training.plots import plot_curves

    plot_curves(run_dir, names=model.level_names())
    return results


def _train_parallel(run_dir: Path, data_spec: str, levels: list[int], parallel: int, opts: TrainOptions,
                    model: FlowModel, shares: dict[int, float], n_bits: int | None, image_size: int | None) -> list[dict]:
    """Split levels over ``parallel`` worker processes (greedy by budget share) that share the cores."""
    workers: list[list[int]] = [[] for _ in range(min(parallel, len(levels)))]
    load = [0.0] * len(workers)
    for level in sorted(levels, key=lambda lv: -shares[lv]):
        w = load.index(min(load))
        workers[w].append(level)
        load[w] += shares[level]
    threads = max(1, (os.cpu_count() or 1) // len(workers))
    procs = []
    for w, lvls in enumerate(workers):
        worker_opts = {**asdict(opts), "progress_position": w}
        cmd = [sys.executable, "-m", "waveletflow", "train", "--data", data_spec, "--out", str(run_dir),
               "--level", ",".join(map(str, sorted(lvls))), "--threads", str(threads), "--no-curves",
               "--options-json", json.dumps(worker_opts)]
        if n_bits is not None:
            cmd += ["--n-bits", str(n_bits)]
        if image_size is not None:
            cmd += ["--image-size", str(image_size)]
        procs.append(subprocess.Popen(cmd))
    codes = [p.wait() for p in procs]
    if any(codes):
        raise UserInputError(f"a level worker failed (exit codes {codes}); rerun the same command to resume")
    from waveletflow.training.plots import plot_curves

    plot_curves(run_dir, names=model.level_names())
    results = []
    for level in levels:
        with open(level_dir(run_dir, level) / STATE_FILE) as fh:
            results.append({"level": level, **json.load(fh)})
    return results
