"""The commands that work on runs: train, evaluate, sample, super-resolve, info."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from waveletflow.errors import RankError, ReportedElsewhere, UserInputError
from waveletflow.rundir import RunDir

if TYPE_CHECKING:
    from waveletflow.training import TrainOptions

log = logging.getLogger("waveletflow")

#: train flags that set a TrainOptions field of the same name (None: not given, the option's default holds)
_OPTION_FLAGS = ("steps", "time_budget", "batch_size", "lr", "warmup", "seed", "device", "flip", "keep_best", "eval_every", "joint",
                 "optimizer", "ema", "decay", "schedule", "checkpoint_every", "precision", "compile")


def _temperature(text: str):
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise UserInputError(f"--temperature must be a number or numbers separated by commas, got {text!r}") from None
    if not all(0 <= v < math.inf for v in vals):
        raise UserInputError(f"--temperature must be a finite number, not negative, got {text!r}")
    return vals[0] if len(vals) == 1 else vals


def image_out(path: str, flag: str = "--out") -> None:
    """Check an output image path before any work: a file (not a folder) in an existing folder, with an
    extension that Pillow can write."""
    from PIL import Image

    p = Path(path)
    if p.is_dir():
        raise UserInputError(f"{flag} {path} is a folder; give an image file such as {p / 'samples.png'}")
    Image.init()
    fmt = Image.registered_extensions().get(p.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise UserInputError(f"{flag} {path}: give an image file ending in .png (or .jpg, .bmp, .tif, .webp)")
    _out_folder(p, flag)


def _out_folder(p: Path, flag: str) -> None:
    if not p.parent.is_dir():
        raise UserInputError(f"{flag} {p}: folder {p.parent} does not exist")
    if not os.access(p.parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise UserInputError(f"{flag} {p}: {p.parent if not os.access(p.parent, os.W_OK) else p} is not writable; "
                             f"choose another path")


def _load(a):
    """The model of a run on the asked device, and the ODE solver asked for (None: the model's own)."""
    from dataclasses import replace

    from waveletflow.models import load
    from waveletflow.training import resolve_device

    model = load(a.run, resolve_device(a.device))
    if a.ode_solver is None and a.ode_tol is None:
        return model, None
    if not model.continuous:
        raise UserInputError(f"--ode-solver and --ode-tol apply to continuous models (mrcnf), not {model.model_type}")
    s = model.config.eval_solver
    tol = {} if a.ode_tol is None else {"atol": a.ode_tol, "rtol": a.ode_tol}
    return model, replace(s, method=a.ode_solver or s.method, **tol)  # checked by SolverConfig


def _mcmc(a, temperature) -> Any:
    """The MCMC options of ``--mcmc`` (None without it), checked against the temperature."""
    flags = ("mcmc_steps", "mcmc_warmup", "mcmc_accept", "mcmc_depth")
    if not a.mcmc:
        given = [f"--{f.replace('_', '-')}" for f in flags if getattr(a, f) != _MCMC_DEFAULTS[f]]
        if given:
            raise UserInputError(f"{', '.join(given)} applies to annealed sampling: add --mcmc")
        return None
    from waveletflow.mcmc import MCMCOptions

    temps = temperature if isinstance(temperature, list) else [temperature]
    if any(t <= 0 for t in temps):
        raise UserInputError(f"--mcmc needs a temperature above 0, got {a.temperature}")
    if any(t > MAX_MCMC_TEMPERATURE for t in temps):
        raise UserInputError(f"--mcmc takes temperatures up to {MAX_MCMC_TEMPERATURE:g} (annealed sampling sharpens "
                             f"or gently flattens each level; at {max(temps):g} its target is nearly flat and every "
                             f"NUTS iteration runs to the maximum tree depth, minutes per image)")
    if a.mcmc_steps < 1:
        raise UserInputError(f"--mcmc-steps must be at least 1, got {a.mcmc_steps}")
    if a.mcmc_warmup < 0:
        raise UserInputError(f"--mcmc-warmup must not be negative, got {a.mcmc_warmup}")
    if not 0 < a.mcmc_accept < 1:
        raise UserInputError(f"--mcmc-accept must lie strictly between 0 and 1, got {a.mcmc_accept}")
    if not 1 <= a.mcmc_depth <= 16:
        raise UserInputError(f"--mcmc-depth must lie in 1..16, got {a.mcmc_depth}")
    return MCMCOptions(steps=a.mcmc_steps, warmup=a.mcmc_warmup, target_accept=a.mcmc_accept,
                       max_tree_depth=a.mcmc_depth)


#: the highest temperature of annealed sampling (above it the target is nearly flat: NUTS at its deepest trees)
MAX_MCMC_TEMPERATURE = 4.0

_MCMC_DEFAULTS = {"mcmc_steps": 30, "mcmc_warmup": 10, "mcmc_accept": 0.6, "mcmc_depth": 10}


class _LevelBars:
    """A progress bar per level of annealed sampling, on stderr."""

    def __init__(self, model, enabled: bool):
        self.names, self.enabled, self.bar, self.level = model.level_names(), enabled, None, None

    def __call__(self, level: int, i: int, total: int) -> None:
        if not self.enabled:
            return
        if level != self.level:
            from tqdm import tqdm

            self.close()
            self.bar, self.level = tqdm(total=total, desc=f"MCMC level {level} ({self.names[level]})", leave=False), level
        self.bar.update(i - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _draw(model, a, temperature, mcmc, solver):
    """``a.n`` samples seeded by ``a.seed`` (with progress bars under ``--mcmc``): the images, each level's MCMC
    statistics and the seconds it took."""
    import torch

    gen = torch.Generator().manual_seed(a.seed)
    report: list[dict] = []
    redrawn: list[int] = []
    bars = _LevelBars(model, mcmc is not None and not a.json)
    t0 = time.perf_counter()
    try:
        x = model.sample(a.n, temperature, generator=gen, solver=solver, mcmc=mcmc, report=report, progress=bars,
                         redrawn=redrawn)
    finally:
        bars.close()
    a.redrawn = sum(redrawn)
    return x, report, time.perf_counter() - t0


def _mcmc_report(report: list[dict]) -> None:
    """Each level's chain statistics, one line per level on stderr."""
    import sys

    for r in report:
        print(f"level {r['level']} ({r['name']}): acceptance {r['accept_rate']:.2f}, step size {r['step_size']:.3g}, "
              f"{r['leapfrog_steps']:.1f} leapfrog steps per iteration, {r['divergences']} divergent, "
              f"{r['seconds']:.1f} s", file=sys.stderr)


def _read_overrides(path: str | None) -> dict:
    if not path:
        return {}
    try:
        overrides = json.loads(Path(path).read_text())
    except OSError:
        raise UserInputError(f"config file {path} cannot be read") from None
    except ValueError as exc:
        raise UserInputError(f"config file {path} is not valid JSON ({exc})") from None
    if not isinstance(overrides, dict):
        raise UserInputError(f"config file {path} must hold a JSON object")
    return overrides


def _print_summary(results: list[dict], seconds: float, out: str) -> None:
    for r in results:
        val = r.get("val_bpd")
        if isinstance(r["level"], list):
            per = ", ".join(f"{b:.4f}" for b in r["levels_val_bpd"])
            print(f"levels {','.join(map(str, r['level']))} (joint): step {r['step']}, validation {val:.4f} bits/dim "
                  f"of their dimensions (per level, of its own: {per})")
        else:
            print(f"level {r['level']}: step {r['step']}, validation {val:.4f} bits/dim of the level"
                  if val is not None else f"level {r['level']}: step {r['step']}")
    print(f"trained in {seconds:.0f} s; run folder {out}")


def other_rank() -> bool:
    """Whether this process is a valid rank of a ``torchrun`` job other than the first (which speaks for all)."""
    try:
        world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ.get("RANK", "0"))
    except (KeyError, ValueError):
        return False
    return 0 < rank < world


def cmd_train(a) -> int:
    try:
        return _train(a)
    except UserInputError as exc:  # under torchrun every rank finds the same bad option: the first one says it
        if other_rank() and not isinstance(exc, (RankError, ReportedElsewhere)):
            raise ReportedElsewhere(str(exc)) from None
        raise


def train_options(a) -> TrainOptions:
    """The ``TrainOptions`` of ``train``'s flags (also ``plan``'s), each checked: one line for a bad value."""
    from waveletflow.training import TrainOptions

    for name in ("steps", "batch_size", "parallel", "checkpoint_every", "threads", "n_bits"):
        v = getattr(a, name)
        if v is not None and v != "auto" and v < 1:
            raise UserInputError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
    if a.time_budget is not None and a.time_budget <= 0:
        raise UserInputError("--time-budget must be positive")
    if a.steps is None and a.time_budget is None:
        raise UserInputError("give --steps N or --time-budget SECONDS")
    given = {name: getattr(a, name) for name in _OPTION_FLAGS if getattr(a, name) is not None}
    return TrainOptions(**given, progress=not a.quiet, curves=not a.no_curves)


def _train(a) -> int:
    from waveletflow.training import train

    opts = train_options(a)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    results = train(a.out, a.data, a.model, a.level, a.parallel, opts, _read_overrides(a.config), a.n_bits,
                    a.image_size, preset=a.preset, crop=a.crop, allow_other_data=a.allow_other_data,
                    data_parallel=not a.no_data_parallel, threads=a.threads)
    if not a.no_curves and not other_rank():  # under torchrun: the first rank speaks for all
        _print_summary(results, time.perf_counter() - t0, a.out)
    return 0


def cmd_evaluate(a) -> int:
    from waveletflow.data import load_dataset

    from waveletflow.rundir import RunDir

    model, solver = _load(a)
    saved = RunDir(a.run).data_options()
    data = load_dataset(a.data, image_size=a.image_size if a.image_size is not None else saved.get("image_size"),
                        crop=a.crop if a.crop is not None else saved.get("crop"))
    images = data.x_test if a.split == "test" else data.x_train
    if a.limit is not None:
        if a.limit < 1:
            raise UserInputError("--limit must be at least 1")
        images = images[: a.limit]
    if data.image_shape != model.image_shape:
        raise UserInputError(f"the model takes images of shape {model.image_shape} (C, H, W); the data has {data.image_shape}")
    res = model.bits_per_dim(images, batch_size=a.batch_size, seed=a.seed, data_bits=data.n_bits, solver=solver)
    if a.json:
        print(json.dumps(res.to_dict()))
        return 0
    names = model.level_names()
    print(f"{model.model_type} on {a.data} ({a.split}, {res.images} images)")
    for i, b in enumerate(res.levels):
        extra = "" if res.nfe is None else f"   ({res.nfe[i]} ODE function evaluations, last batch)"
        print(f"  level {i} ({names[i]}): {b:.4f}{extra}")
    print(f"  total: {res.bits_per_dim:.4f} bits/dim")
    return 0


def cmd_quality(a) -> int:
    import numpy as np
    import torch

    from waveletflow.data import load_dataset, reduce_bits, to_tensor
    from waveletflow.quality import classifier_summary, degraded, quality, train_classifier

    if a.n < 2:
        raise UserInputError("--n must be at least 2")
    if a.out:
        image_out(a.out)
    temperature = _temperature(a.temperature)
    mcmc = _mcmc(a, temperature)
    model, solver = _load(a)
    saved = RunDir(a.run).data_options()
    data = load_dataset(a.data, image_size=a.image_size if a.image_size is not None else saved.get("image_size"),
                        crop=saved.get("crop"))
    if data.image_shape != model.image_shape:
        raise UserInputError(f"the model takes images of shape {model.image_shape} (C, H, W); the data has {data.image_shape}")
    if data.n_bits < model.n_bits:
        raise UserInputError(f"the model has {model.n_bits}-bit pixels, more than the data's {data.n_bits}")
    clf = train_classifier(data, progress=not a.json)

    def at_model_bits(images):
        k = to_tensor(np.asarray(images))
        return reduce_bits(k, data.n_bits, model.n_bits).permute(0, 2, 3, 1).numpy().astype(np.uint8)

    reference = at_model_bits(data.x_test[: min(a.n, len(data.x_test))])
    if len(reference) < a.n:
        log.warning("%s holds %d test images: the %d samples are compared with those %d", a.data, len(reference),
                    a.n, len(reference))
    x, report, seconds = _draw(model, a, temperature, mcmc, solver)
    samples = model.to_uint8(x)
    if a.out:
        save_samples(model, samples[:64], a.out)
    bits = model.n_bits
    rows = {"samples": quality(samples, reference, clf, bits, bits, seed=a.seed).to_dict()}
    if a.baselines:
        train = at_model_bits(data.x_train[: min(a.n, len(data.x_train))])
        rows["training images"] = quality(train, reference, clf, bits, bits, seed=a.seed).to_dict()
        for kind in ("blocky", "blur", "noise"):
            rows[f"{kind} training images"] = quality(degraded(train, bits, kind, a.seed), reference, clf, bits, bits,
                                                      seed=a.seed).to_dict()
    res = {"run": a.run, "data": a.data, "n": a.n, "reference_images": len(reference), "redrawn": a.redrawn,
           "temperature": temperature,
           "mcmc": report or None,
           "seconds_per_image": round(seconds / a.n, 5), "classifier": classifier_summary(clf), "scores": rows}
    if a.json:
        print(json.dumps(res))
        return 0
    _mcmc_report(report)
    how = "annealed (MCMC)" if mcmc else "latent temperature"
    print(f"{model.model_type}: {a.n} samples at T = {a.temperature} ({how}), {seconds / a.n:.4f} s per image, "
          f"against {len(reference)} test images of {a.data}")
    print(f"feature classifier: test accuracy {clf.test_accuracy:.3f} ({clf.classes} classes)")
    print(f"{'':24s} {'FD':>9s} {'KID':>9s} {'confidence':>10s} {'class entropy':>13s}")
    for name, r in rows.items():
        print(f"{name:24s} {r['fd']:9.3f} {r['kid']:9.4f} {r['confidence']:10.3f} {r['class_entropy']:13.3f}")
    return 0


def display_max(model) -> int:
    """The largest pixel value of the training data, for viewing (e.g. 16 for the 5-bit digits)."""
    value = getattr(model.config, "display_max", None)
    return int(value) if value is not None else 2**model.n_bits - 1


def save_samples(model, images, out: str, npz: str | None = None) -> None:
    """uint8 NHWC images as a PNG grid (upscaled when small) and optionally an ``.npz`` (key ``x``): both files
    or neither (:func:`~waveletflow.rundir.write_files`)."""
    import io

    import numpy as np

    from waveletflow.images import encode_image, image_grid, to_display
    from waveletflow.rundir import write_files

    scale = max(1, 128 // images.shape[1]) if images.shape[1] < 64 else 1
    files = {Path(out): encode_image(image_grid(to_display(images, display_max(model)), scale=scale), out)}
    if npz:
        buf = io.BytesIO()
        np.savez_compressed(buf, x=images)
        files[Path(npz)] = buf.getvalue()
    write_files(files)


def cmd_sample(a) -> int:
    import torch

    if a.n < 1:
        raise UserInputError("--n must be at least 1")
    image_out(a.out)
    if a.npz:
        if Path(a.npz).suffix != ".npz" or Path(a.npz).is_dir():
            raise UserInputError(f"--npz {a.npz}: give a file name ending in .npz")
        _out_folder(Path(a.npz), "--npz")
    temperature = _temperature(a.temperature)
    mcmc = _mcmc(a, temperature)
    model, solver = _load(a)
    x, report, seconds = _draw(model, a, temperature, mcmc, solver)
    save_samples(model, model.to_uint8(x), a.out, a.npz)
    if a.json:
        print(json.dumps({"samples": a.n, "out": a.out, "npz": a.npz, "seconds": round(seconds, 3),
                          "seconds_per_image": round(seconds / a.n, 4), "redrawn": a.redrawn, "mcmc": report or None}))
        return 0
    _mcmc_report(report)
    print(f"wrote {a.n} samples to {a.out}" + (f" and {a.npz}" if a.npz else "") + f" in {seconds:.1f} s")
    return 0


def cmd_super_resolve(a) -> int:
    import torch

    from waveletflow.images import from_display, read_image, save_png, to_display

    import numpy as np

    from waveletflow.superres import box_downsample

    image_out(a.out)
    temperature = _temperature(a.temperature)
    mcmc = _mcmc(a, temperature)
    if Path(a.input).is_dir():
        raise UserInputError(f"--input {a.input} is a folder; give one image file")
    model, solver = _load(a)
    dmax = display_max(model)
    image = from_display(read_image(a.input, model.image_shape[0]), dmax)[None]
    low = image
    if a.downsample is not None:
        if a.downsample < 2:
            raise UserInputError(f"--downsample must be at least 2, got {a.downsample}")
        low = box_downsample(image, a.downsample)
    gen = torch.Generator().manual_seed(a.seed)
    report: list[dict] = []
    redrawn: list[int] = []
    bars = _LevelBars(model, mcmc is not None and not a.json)
    t0 = time.perf_counter()
    try:
        high = model.super_resolve(low, temperature, generator=gen, solver=solver, size=a.size, mcmc=mcmc,
                                   report=report, progress=bars, redrawn=redrawn)
    finally:
        bars.close()
    seconds = time.perf_counter() - t0
    out = high[0]
    if a.downsample is not None:
        f = out.shape[0] // low.shape[1]
        enlarged = low[0].repeat(f, axis=0).repeat(f, axis=1)
        if image.shape[1:3] == out.shape[:2]:
            out = np.concatenate([enlarged, out, image[0]], axis=1)
        else:
            out = np.concatenate([enlarged, out], axis=1)
    save_png(a.out, to_display(out, dmax))
    if a.json:
        print(json.dumps({"out": a.out, "input": [low.shape[2], low.shape[1]], "output": [high.shape[2], high.shape[1]],
                          "seconds": round(seconds, 3), "redrawn": sum(redrawn), "mcmc": report or None}))
        return 0
    _mcmc_report(report)
    print(f"wrote {high.shape[2]}x{high.shape[1]} super-resolution of a {low.shape[2]}x{low.shape[1]} image to "
          f"{a.out} in {seconds:.1f} s" + (" (low-res input enlarged | super-resolution | original)"
                                          if out is not high[0] else ""))
    return 0


def cmd_superres_eval(a) -> int:
    import numpy as np

    from waveletflow.data import load_dataset
    from waveletflow.superres import markdown, superres_eval

    model, _ = _load_plain(a)
    data = load_dataset(a.data, image_size=a.image_size)
    images = data.x_test
    if a.limit is not None:
        if a.limit < 1:
            raise UserInputError("--limit must be at least 1")
        images = images[: a.limit]
    images = images[np.arange(len(images))] if not isinstance(images, np.ndarray) else images
    try:
        factors = [int(v) for v in a.factor.split(",")]
        temps = [float(v) for v in a.temperature.split(",")]
    except ValueError:
        raise UserInputError("--factor and --temperature take numbers separated by commas") from None
    if not all(0 <= t < math.inf for t in temps):
        raise UserInputError(f"--temperature must be finite numbers, not negative, got {a.temperature!r}")
    rows = superres_eval(model, images, factors, a.draws, temps, a.seed)
    if a.json:
        print(json.dumps(rows))
        return 0
    print(markdown(rows, f"{a.run} on {a.data} ({len(images)} test images of {images.shape[2]}x{images.shape[1]})"))
    return 0


def _load_plain(a):
    a.ode_solver = a.ode_tol = None
    return _load(a)


def cmd_info(a) -> int:
    from waveletflow.models import build_model, load, mrcnf_config, waveletflow_config
    from waveletflow.models.config import MRCNF_PRESETS, PRESET_SOURCES, PRESETS

    if a.channels not in (1, 3) or (a.image_size is not None and a.image_size < 2):
        raise UserInputError("--channels must be 1 or 3 and --image-size at least 2")
    source = None
    if a.run in PRESETS and not Path(a.run).exists():  # a preset's model, before any training
        side = int(a.run.split("x")[0])
        model = build_model("waveletflow", waveletflow_config((a.channels, side, side), 8, preset=a.run))
        run, source = None, PRESET_SOURCES.get(a.run)
    elif a.run in MRCNF_PRESETS and not Path(a.run).exists():
        side = a.image_size or 32
        model = build_model("mrcnf", mrcnf_config((a.channels, side, side), 8, preset=a.run))
        run = None
    else:
        model = load(a.run, allow_untrained=True)
        run = RunDir(a.run)
    info = model.describe()
    if source:
        info["source"] = source
    if run is not None:
        try:
            saved = run.read_run()
        except UserInputError:  # a corrupt run.json: the model is still described
            saved = {}
        info.update({k: saved[k] for k in ("capacity", "training") if isinstance(saved.get(k), dict)})
    for lv in info["levels"] if run is not None else []:
        try:
            state = run.read_state(lv["level"])
        except UserInputError as exc:
            state = str(exc)
        lv["trained"] = run.has_weights(lv["level"])
        if state is not None:
            lv["state"] = state
    if a.json:
        print(json.dumps(info, indent=2))
        return 0
    c, h, w = info["image_shape"]
    print(f"{info['model_type']} model for {h}x{w}x{c} images, {info['n_bits']} bits, {info['parameters']:,} parameters")
    conv = getattr(model, "convention", None)
    if conv:
        print(f"Haar convention: {conv}")
    if source:
        print(f"preset {a.run}: {source}")
    try:
        prepared = run.data_options() if run is not None else {}
    except UserInputError:  # a corrupt run.json: the model is still described
        prepared = {}
    if prepared:
        how = {"image_size": "resized to {v}x{v}", "crop": "{v}x{v} crops (random in training, centred in evaluation)"}
        print("images: " + ", ".join(how[k].format(v=v) for k, v in prepared.items()))
    for line in _training_lines(info):
        print(line)
    for lv in info["levels"]:
        text = _state_text(lv) if run is not None else (
            "whole images" if lv.get("crop") is None else f"trains on {lv['crop']}x{lv['crop']} crops")
        print(f"  level {lv['level']} ({lv['name']}): {lv['dims']} dims, {lv['parameters']:,} parameters; {text}")
    return 0


def _training_lines(info: dict) -> list[str]:
    """How the run's model was sized and how its last ``train`` command trained, for ``info``."""
    from waveletflow.models.capacity import CapacityChoice

    lines = []
    cap = info.get("capacity")
    if cap:
        try:
            choice = CapacityChoice(info["model_type"], str(cap["size"]), float(cap["budget_s"]), int(cap["width"]),
                                    None if cap.get("level") is None else int(cap["level"]))
            lines.append(f"capacity: {choice.describe()}")
        except (KeyError, TypeError, ValueError):
            lines.append("capacity: (unreadable record in run.json)")
    t = info.get("training")
    if t:
        try:
            groups = "; ".join(",".join(map(str, g)) for g in t["groups"])
            limit = f"{t['time_budget']:g} s" if t.get("time_budget") is not None else f"{t['steps']} steps"
            lines.append(f"last trained: {t['workers']} process{'es' if t['workers'] > 1 else ''} (levels {groups}; "
                         f"threads {', '.join(map(str, t['threads']))}) on {t['device']}, precision "
                         f"{t['precision']}, batch {t['batch_size']}{', compiled steps' if t.get('compile') else ''}, "
                         f"{limit}")
        except (KeyError, TypeError, ValueError):
            lines.append("last trained: (unreadable record in run.json)")
    return lines


def _state_text(lv: dict) -> str:
    st = lv.get("state")
    if isinstance(st, str):
        return st  # a corrupt state.json, said as it is
    if not lv["trained"]:  # state.json may remain when the weights were removed: it describes nothing now
        return "not trained" + (f" (no weights; state.json left from step {st['step']})"
                                if isinstance(st, dict) and "step" in st else "")
    if not isinstance(st, dict) or "step" not in st:
        return "trained (no state.json)"
    val = st.get("val_bpd")
    text = f"step {st['step']}, {st.get('elapsed_s', 0):.0f} s" + (f", validation {val:.4f} bits/dim" if val is not None else "")
    if st.get("best_step") is not None and st.get("best_step") != st.get("step"):
        text += f" (kept: the best validation, at step {st['best_step']})"
    if len(RunDir.unit_levels(str(st.get("unit", ""))) or []) > 1:
        text += f" (trained in {st['unit']})"
    return text + ("" if lv.get("crop") is None else f"; trains on {lv['crop']}x{lv['crop']} crops")

