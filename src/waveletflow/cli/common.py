"""What the commands share: checked options (temperatures, MCMC settings, output paths), the model of a run,
drawing samples with progress, and saving them."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from waveletflow import sampling
from waveletflow.errors import UserInputError


def parse_temperature(text: str):
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
    out_folder(p, flag)


def out_folder(p: Path, flag: str) -> None:
    if not p.parent.is_dir():
        raise UserInputError(f"{flag} {p}: folder {p.parent} does not exist")
    if not os.access(p.parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise UserInputError(f"{flag} {p}: {p.parent if not os.access(p.parent, os.W_OK) else p} is not writable; "
                             f"choose another path")


def load_model(a, plain: bool = False):
    """The model of a run on the asked device, and the ODE solver asked for (None: the model's own; always None
    for a ``plain`` command, which has no solver options)."""
    from dataclasses import replace

    from waveletflow.models import load
    from waveletflow.training import resolve_device

    model = load(a.run, resolve_device(a.device))
    if plain or (a.ode_solver is None and a.ode_tol is None):
        return model, None
    if not model.continuous:
        raise UserInputError(f"--ode-solver and --ode-tol apply to continuous models (mrcnf), not {model.model_type}")
    s = model.config.eval_solver
    tol = {} if a.ode_tol is None else {"atol": a.ode_tol, "rtol": a.ode_tol}
    return model, replace(s, method=a.ode_solver or s.method, **tol)  # checked by SolverConfig


def mcmc_options(a, temperature) -> Any:
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


class LevelBars:
    """A progress bar per level of annealed sampling, on stderr."""

    def __init__(self, model, enabled: bool):
        self.names, self.enabled, self.bar, self.level = model.level_names(), enabled, None, None

    def __call__(self, level: int, i: int, total: int) -> None:
        if not self.enabled:
            return
        if level != self.level:
            from tqdm import tqdm

            self.close()
            self.bar = tqdm(total=total, desc=f"MCMC level {level} ({self.names[level]})", leave=False,
                            disable=None)  # none off a terminal
            self.level = level
        self.bar.update(i - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def seeded_draw(model, a, mcmc, draw) -> tuple[Any, list[dict], list[int], float]:
    """``draw(generator, report, progress, redrawn)`` seeded by ``a.seed``, with a progress bar per level under
    ``--mcmc`` (not with ``--json``): its result, each level's MCMC statistics, the counts of images drawn again and
    the seconds it took."""
    import torch

    gen = torch.Generator().manual_seed(a.seed)
    report: list[dict] = []
    redrawn: list[int] = []
    bars = LevelBars(model, mcmc is not None and not a.json)
    t0 = time.perf_counter()
    try:
        out = draw(gen, report, bars, redrawn)
    finally:
        bars.close()
    return out, report, redrawn, time.perf_counter() - t0


def draw_samples(model, a, temperature, mcmc, solver):
    """``a.n`` samples (see :func:`seeded_draw`): the images, each level's MCMC statistics and the seconds it took;
    ``a.redrawn`` the images drawn again."""
    x, report, redrawn, seconds = seeded_draw(
        model, a, mcmc, lambda gen, report, bars, redrawn: sampling.sample(model, a.n, temperature, gen, mcmc,
                                                                            report, bars, redrawn, solver,
                                                                            a.denoise))
    a.redrawn = sum(redrawn)
    return x, report, seconds


def print_mcmc_report(report: list[dict]) -> None:
    """Each level's chain statistics, one line per level on stderr."""
    import sys

    for r in report:
        print(f"level {r['level']} ({r['name']}): acceptance {r['accept_rate']:.2f}, step size {r['step_size']:.3g}, "
              f"{r['leapfrog_steps']:.1f} leapfrog steps per iteration, {r['divergences']} divergent, "
              f"{r['seconds']:.1f} s", file=sys.stderr)


def model_options(a):
    """The ``--wavelet``, ``--noise-std`` and ``--context`` of ``train`` / ``plan``
    (:class:`~waveletflow.training.ModelOptions`)."""
    from waveletflow.training import ModelOptions

    return ModelOptions(a.wavelet, a.noise_std, a.context)


def read_overrides(path: str | None) -> dict:
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


def other_rank() -> bool:
    """Whether this process is a valid rank of a ``torchrun`` job other than the first (which speaks for all)."""
    try:
        world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ.get("RANK", "0"))
    except (KeyError, ValueError):
        return False
    return 0 < rank < world


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
