"""The commands that work on runs: train, evaluate, quality, sample, super-resolve, superres-eval."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from waveletflow import sampling
from waveletflow.cli.common import (
    display_max, draw_samples, image_out, load_model, mcmc_options, model_options, other_rank, out_folder,
    parse_temperature, print_mcmc_report, read_overrides, save_samples, seeded_draw,
)
from waveletflow.errors import RankError, ReportedElsewhere, UserInputError
from waveletflow.rundir import RunDir

if TYPE_CHECKING:
    from waveletflow.training import TrainOptions

log = logging.getLogger("waveletflow")

#: train flags that set a TrainOptions field of the same name (None: not given, the option's default holds)
_OPTION_FLAGS = ("steps", "time_budget", "batch_size", "lr", "warmup", "seed", "device", "flip", "keep_best", "eval_every", "joint",
                 "optimizer", "ema", "decay", "schedule", "checkpoint_every", "precision", "compile")


def _print_summary(results: list, seconds: float, out: str) -> None:
    for r in results:
        if len(r.levels) > 1:
            per = ", ".join(f"{b:.4f}" for b in r.levels_val_bpd)
            print(f"{r.where} (joint): step {r.step}, validation {r.val_bpd:.4f} bits/dim of their dimensions "
                  f"(per level, of its own: {per})")
        else:
            print(f"{r.where}: step {r.step}, validation {r.val_bpd:.4f} bits/dim of the level"
                  if r.val_bpd is not None else f"{r.where}: step {r.step}")
    print(f"trained in {seconds:.0f} s; run folder {out}")


def cmd_train(a) -> int:
    try:
        return _train(a)
    except UserInputError as exc:  # under torchrun every rank finds the same bad option: the first one says it
        if other_rank() and not isinstance(exc, (RankError, ReportedElsewhere)):
            raise ReportedElsewhere(str(exc)) from None
        raise


def train_options(a) -> TrainOptions:
    """The ``TrainOptions`` of ``train``'s flags (also ``plan``'s), each checked: one line for a bad value."""
    from waveletflow.training import TrainOptions, check_budget, check_workers

    for name in ("steps", "batch_size", "checkpoint_every", "n_bits"):  # flags' own words for a CLI user
        v = getattr(a, name)
        if v is not None and v < 1:
            raise UserInputError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
    if a.time_budget is not None and a.time_budget <= 0:
        raise UserInputError("--time-budget must be positive")
    check_budget(a.steps, a.time_budget)
    check_workers(a.parallel, a.threads, bool(a.joint))
    given = {name: getattr(a, name) for name in _OPTION_FLAGS if getattr(a, name) is not None}
    return TrainOptions(**given, progress=not a.quiet, curves=not a.no_curves)


def _train(a) -> int:
    from waveletflow.training import train

    opts = train_options(a)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    results = train(a.out, a.data, a.model, a.level, a.parallel, opts, read_overrides(a.config), a.n_bits,
                    a.image_size, preset=a.preset, crop=a.crop, allow_other_data=a.allow_other_data,
                    data_parallel=not a.no_data_parallel, threads=a.threads, options=model_options(a))
    if not a.no_curves and not other_rank():  # under torchrun: the first rank speaks for all
        _print_summary(results, time.perf_counter() - t0, a.out)
    return 0


def cmd_evaluate(a) -> int:
    from waveletflow.data import load_dataset
    from waveletflow.rundir import RunDir

    model, solver = load_model(a)
    saved = RunDir(a.run).data_options()
    data = load_dataset(a.data, image_size=a.image_size if a.image_size is not None else saved.get("image_size"),
                        crop=a.crop if a.crop is not None else saved.get("crop"))
    if a.split == "val":  # the training images the run held out for validation, as training validated on them
        from waveletflow.training import split_train_val

        val_size = RunDir(a.run).read_run().get("val_size")
        if not val_size:
            raise UserInputError(f"--split val: {a.run} records no validation images (the run was never trained)")
        images = split_train_val(data, val_size)[1]
    else:
        images = data.x_test if a.split == "test" else data.x_train
    if a.limit is not None:
        if a.limit < 1:
            raise UserInputError("--limit must be at least 1")
        images = images[: a.limit]
    if data.image_shape != model.image_shape:
        raise UserInputError(f"the model takes images of shape {model.image_shape} (C, H, W); the data has {data.image_shape}")
    res = model.bits_per_dim(images, batch_size=a.batch_size, seed=a.seed, data_bits=data.n_bits, solver=solver)
    if a.json:
        print(json.dumps({**res.to_dict(), **({"noise_std": model.noise_std} if model.noise_std else {})}))
        return 0
    names = model.level_names()
    print(f"{model.model_type} on {a.data} ({a.split}, {res.images} images)")
    for i, b in enumerate(res.levels):
        extra = "" if res.nfe is None else f"   ({res.nfe[i]} ODE function evaluations, last batch)"
        print(f"  level {i} ({names[i]}): {b:.4f}{extra}")
    noisy = f" of the images plus Gaussian noise of std {model.noise_std:g} (the model's)" if model.noise_std else ""
    print(f"  total: {res.bits_per_dim:.4f} bits/dim{noisy}")
    return 0


def cmd_quality(a) -> int:
    import numpy as np

    from waveletflow.data import load_dataset, reduce_bits, to_tensor
    from waveletflow.quality import classifier_summary, degraded, quality, train_classifier

    if a.n < 2:
        raise UserInputError("--n must be at least 2")
    if a.out:
        image_out(a.out)
    temperature = parse_temperature(a.temperature)
    mcmc = mcmc_options(a, temperature)
    model, solver = load_model(a)
    if a.denoise:
        model.check_denoise()
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
    x, report, seconds = draw_samples(model, a, temperature, mcmc, solver)
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
    print_mcmc_report(report)
    how = "annealed (MCMC)" if mcmc else "latent temperature"
    print(f"{model.model_type}: {a.n} samples at T = {a.temperature} ({how}), {seconds / a.n:.4f} s per image, "
          f"against {len(reference)} test images of {a.data}")
    print(f"feature classifier: test accuracy {clf.test_accuracy:.3f} ({clf.classes} classes)")
    print(f"{'':24s} {'FD':>9s} {'FD∞':>9s} {'KID':>9s} {'confidence':>10s} {'class entropy':>13s}")
    for name, r in rows.items():
        fd_inf = "–" if r.get("fd_inf") is None else f"{r['fd_inf']:.3f}"
        print(f"{name:24s} {r['fd']:9.3f} {fd_inf:>9s} {r['kid']:9.4f} {r['confidence']:10.3f} "
              f"{r['class_entropy']:13.3f}")
    return 0


def cmd_sample(a) -> int:

    if a.n < 1:
        raise UserInputError("--n must be at least 1")
    image_out(a.out)
    if a.npz:
        if Path(a.npz).suffix != ".npz" or Path(a.npz).is_dir():
            raise UserInputError(f"--npz {a.npz}: give a file name ending in .npz")
        out_folder(Path(a.npz), "--npz")
    temperature = parse_temperature(a.temperature)
    mcmc = mcmc_options(a, temperature)
    model, solver = load_model(a)
    if a.denoise:
        model.check_denoise()
    x, report, seconds = draw_samples(model, a, temperature, mcmc, solver)
    save_samples(model, model.to_uint8(x), a.out, a.npz)
    if a.json:
        print(json.dumps({"samples": a.n, "out": a.out, "npz": a.npz, "seconds": round(seconds, 3),
                          "seconds_per_image": round(seconds / a.n, 4), "redrawn": a.redrawn, "mcmc": report or None}))
        return 0
    print_mcmc_report(report)
    print(f"wrote {a.n} samples to {a.out}" + (f" and {a.npz}" if a.npz else "") + f" in {seconds:.1f} s")
    return 0


def cmd_super_resolve(a) -> int:
    import numpy as np

    from waveletflow.images import from_display, read_image, save_png, to_display

    image_out(a.out)
    temperature = parse_temperature(a.temperature)
    mcmc = mcmc_options(a, temperature)
    if Path(a.input).is_dir():
        raise UserInputError(f"--input {a.input} is a folder; give one image file")
    model, solver = load_model(a)
    dmax = display_max(model)
    image = from_display(read_image(a.input, model.image_shape[0]), dmax)[None]
    low = image
    if a.downsample is not None:
        if a.downsample < 2:
            raise UserInputError(f"--downsample must be at least 2, got {a.downsample}")
        low = model.downsample(image, a.downsample)
    high, report, redrawn, seconds = seeded_draw(
        model, a, mcmc, lambda gen, report, bars, redrawn: sampling.super_resolve(
            model, low, temperature, gen, a.size, mcmc, report, bars, redrawn, solver))
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
    print_mcmc_report(report)
    print(f"wrote {high.shape[2]}x{high.shape[1]} super-resolution of a {low.shape[2]}x{low.shape[1]} image to "
          f"{a.out} in {seconds:.1f} s" + (" (low-res input enlarged | super-resolution | original)"
                                          if out is not high[0] else ""))
    return 0


def cmd_superres_eval(a) -> int:
    import numpy as np

    from waveletflow.data import load_dataset
    from waveletflow.superres import markdown, superres_eval

    model, _ = load_model(a, plain=True)
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


