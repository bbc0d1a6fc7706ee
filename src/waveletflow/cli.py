"""The ``waveletflow`` command line: train, evaluate, sample, super-resolve, info, pyramid, demo."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from waveletflow import __version__
from waveletflow.errors import UserInputError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def _add_common_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="digits, mnist, fashion-mnist, cifar10, an .npz file or an image folder")
    p.add_argument("--out", required=True, help="run folder (created, or resumed when it exists)")
    p.add_argument("--model", choices=["waveletflow", "glow", "mrcnf"], default=None, help="model type (default waveletflow)")
    p.add_argument("--level", default="all", help="'all' or level numbers, e.g. 2 or 0,3")
    p.add_argument("--parallel", type=int, default=1, help="train levels in this many processes sharing the cores")
    p.add_argument("--joint", action="store_true",
                   help="train the levels together: one optimiser on the image's bits/dim (default: each on its own)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, help="optimiser steps per level (total, counting resumed steps)")
    g.add_argument("--time-budget", type=float, help="wall-clock seconds for the whole command")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200, help="linear learning-rate warm-up steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--config", help="JSON file overriding the model config (e.g. levels, widths, crops)")
    p.add_argument("--preset", help="named Wavelet Flow preset (8x8, 28x28, 32x32, 64x64)")
    p.add_argument("--n-bits", type=int, help="model bit depth (default: the data's)")
    p.add_argument("--image-size", type=int, help="image side for folder datasets")
    p.add_argument("--flip", action="store_true", help="random horizontal flips")
    p.add_argument("--eval-every", type=int, default=250, help="validation every this many steps")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-curves", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--options-json", help=argparse.SUPPRESS)  # all training options, for level workers


def _add_solver(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ode-solver", help="continuous models: the ODE solver to evaluate with (default: the model's, dopri5)")
    p.add_argument("--ode-tol", type=float, help="continuous models: its atol = rtol (default: the model's, 1e-5)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="waveletflow", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"waveletflow {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, required=True)

    p = sub.add_parser("train", help="train or resume a model, level by level")
    _add_common_train(p)

    p = sub.add_parser("evaluate", help="test bits/dim with the per-level breakdown")
    p.add_argument("run")
    p.add_argument("--data", required=True)
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--limit", type=int, help="evaluate the first N images")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="seed of the dequantisation noise")
    p.add_argument("--device", default="auto")
    p.add_argument("--image-size", type=int)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_solver(p)

    p = sub.add_parser("sample", help="draw samples into a PNG grid")
    p.add_argument("run")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--out", required=True, help="PNG file")
    p.add_argument("--temperature", default="1.0", help="one value, or one per level separated by commas")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--npz", help="also save the samples (uint8 NHWC, key x)")
    p.add_argument("--device", default="auto")
    _add_solver(p)

    p = sub.add_parser("super-resolve", help="sample a full-size image whose low-pass is the input")
    p.add_argument("run")
    p.add_argument("--input", required=True, help="PNG at one of the model's level sizes")
    p.add_argument("--out", required=True, help="PNG file")
    p.add_argument("--temperature", default="1.0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    _add_solver(p)

    p = sub.add_parser("info", help="model type, sizes, parameters and training state per level")
    p.add_argument("run")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("pyramid", help="write the Haar pyramid of a few images as a PNG")
    p.add_argument("--data", default="digits")
    p.add_argument("--out", required=True)
    p.add_argument("--base-size", type=int, default=1)
    p.add_argument("--convention", default="average", choices=["orthonormal", "average", "unimodular"])
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--image-size", type=int)

    p = sub.add_parser("demo", help="the quick start: train on digits, evaluate, sample, super-resolve, curves")
    p.add_argument("--out", default="runs/digits")
    p.add_argument("--data", default="digits")
    p.add_argument("--time-budget", type=float, default=150.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    return parser


def _temperature(text: str):
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise UserInputError(f"--temperature must be a number or numbers separated by commas, got {text!r}") from None
    if any(v < 0 for v in vals):
        raise UserInputError("--temperature must not be negative")
    return vals[0] if len(vals) == 1 else vals


def _load(a):
    from waveletflow.models import load
    from waveletflow.training.trainer import resolve_device

    model = load(a.run, resolve_device(a.device))
    if a.ode_solver is not None or a.ode_tol is not None:
        if not hasattr(model, "set_eval_solver"):
            raise UserInputError(f"--ode-solver and --ode-tol apply to continuous models (mrcnf), not {model.model_type}")
        model.set_eval_solver(a.ode_solver, a.ode_tol)
    return model


def cmd_train(a) -> int:
    from waveletflow.training import TrainOptions, train
    from waveletflow.training.trainer import resolve_device

    for name in ("steps", "batch_size", "parallel"):
        v = getattr(a, name)
        if v is not None and v < 1:
            raise UserInputError(f"--{name.replace('_', '-')} must be at least 1")
    if a.time_budget is not None and a.time_budget <= 0:
        raise UserInputError("--time-budget must be positive")
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    overrides = {}
    if a.config:
        try:
            overrides = json.loads(Path(a.config).read_text())
        except OSError:
            raise UserInputError(f"config file {a.config} cannot be read") from None
        except ValueError as exc:
            raise UserInputError(f"config file {a.config} is not valid JSON ({exc})") from None
        if not isinstance(overrides, dict):
            raise UserInputError(f"config file {a.config} must hold a JSON object")
    if a.preset:
        overrides["preset"] = a.preset
    if a.options_json:
        opts = TrainOptions(**json.loads(a.options_json))
    else:
        opts = TrainOptions(
            steps=a.steps, time_budget=a.time_budget, batch_size=a.batch_size, lr=a.lr, warmup=a.warmup, seed=a.seed,
            device=resolve_device(a.device), flip=a.flip, eval_every=a.eval_every, progress=not a.quiet, joint=a.joint,
        )
    if opts.steps is None and opts.time_budget is None:
        raise UserInputError("give --steps N or --time-budget SECONDS")
    t0 = time.perf_counter()
    results = train(a.out, a.data, a.model, a.level, a.parallel, opts, overrides, a.n_bits, a.image_size)
    if not a.no_curves or a.parallel > 1:
        for r in results:
            val = r.get("val_bpd")
            if isinstance(r["level"], list):
                per = ", ".join(f"{b:.4f}" for b in r["levels_val_bpd"])
                print(f"levels {','.join(map(str, r['level']))} (joint): step {r['step']}, validation {val:.4f} bits/dim "
                      f"of their dimensions (per level, of its own: {per})")
            else:
                print(f"level {r['level']}: step {r['step']}, validation {val:.4f} bits/dim of the level"
                      if val is not None else f"level {r['level']}: step {r['step']}")
        print(f"trained in {time.perf_counter() - t0:.0f} s; run folder {a.out}")
    return 0


def _evaluate(model, data, split: str, limit: int | None, batch_size: int, seed: int):
    images = data.x_test if split == "test" else data.x_train
    if limit is not None:
        if limit < 1:
            raise UserInputError("--limit must be at least 1")
        images = images[: limit]
    if data.image_shape != model.image_shape:
        raise UserInputError(f"the model takes images of shape {model.image_shape} (C, H, W); the data has {data.image_shape}")
    return model.bits_per_dim(images, batch_size=batch_size, seed=seed, data_bits=data.n_bits)


def cmd_evaluate(a) -> int:
    from waveletflow.data import load_dataset

    model = _load(a)
    data = load_dataset(a.data, image_size=a.image_size)
    res = _evaluate(model, data, a.split, a.limit, a.batch_size, a.seed)
    nfe = [model.nfe([i]) for i in range(len(model.levels))]
    if a.json:
        out = res.to_dict()
        if nfe[0] is not None:
            for lv, n in zip(out["levels"], nfe):
                lv["nfe"] = n
        print(json.dumps(out))
    else:
        names = model.level_names()
        print(f"{model.model_type} on {a.data} ({a.split}, {res.images} images)")
        for i, b in enumerate(res.levels):
            extra = "" if nfe[i] is None else f"   ({nfe[i]} ODE function evaluations, last batch)"
            print(f"  level {i} ({names[i]}): {b:.4f}{extra}")
        print(f"  total: {res.bits_per_dim:.4f} bits/dim")
    return 0


def _save_images(model, images, out: str, npz: str | None = None) -> None:
    import numpy as np

    from waveletflow.images import image_grid, save_png, to_display

    disp = to_display(images, int(model.config.get("display_max", 2**model.n_bits - 1)))
    scale = max(1, 128 // images.shape[1]) if images.shape[1] < 64 else 1
    save_png(out, image_grid(disp, scale=scale))
    if npz:
        np.savez_compressed(npz, x=images)


def cmd_sample(a) -> int:
    import torch

    if a.n < 1:
        raise UserInputError("--n must be at least 1")
    model = _load(a)
    gen = torch.Generator().manual_seed(a.seed)
    x = model.sample(a.n, _temperature(a.temperature), generator=gen)
    _save_images(model, model.to_uint8(x), a.out, a.npz)
    print(f"wrote {a.n} samples to {a.out}" + (f" and {a.npz}" if a.npz else ""))
    return 0


def cmd_super_resolve(a) -> int:
    import torch

    from waveletflow.images import from_display, read_image, save_png, to_display

    model = _load(a)
    dmax = int(model.config.get("display_max", 2**model.n_bits - 1))
    low = from_display(read_image(a.input, model.image_shape[0]), dmax)[None]
    gen = torch.Generator().manual_seed(a.seed)
    high = model.super_resolve(low, _temperature(a.temperature), generator=gen)
    save_png(a.out, to_display(high[0], dmax))
    print(f"wrote {high.shape[2]}x{high.shape[1]} image to {a.out}")
    return 0


def cmd_info(a) -> int:
    from waveletflow.models import load
    from waveletflow.models.base import level_dir

    model = load(a.run, allow_untrained=True)
    info = model.describe()
    for lv in info["levels"]:
        state_path = level_dir(a.run, lv["level"]) / "state.json"
        lv["trained"] = state_path.is_file()
        if state_path.is_file():
            try:
                lv["state"] = json.loads(state_path.read_text())
            except ValueError:
                lv["state"] = "corrupt state.json"
    if a.json:
        print(json.dumps(info, indent=2))
        return 0
    c, h, w = info["image_shape"]
    print(f"{info['model_type']} model for {h}x{w}x{c} images, {info['n_bits']} bits, {info['parameters']:,} parameters")
    conv = model.config.get("convention")
    if conv:
        print(f"Haar convention: {conv}")
    for lv in info["levels"]:
        st = lv.get("state")
        state = "not trained"
        if isinstance(st, dict):
            val = st.get("val_bpd")
            state = f"step {st['step']}, {st['elapsed_s']:.0f} s" + (f", validation {val:.4f} bits/dim" if val is not None else "")
            if str(st.get("unit", "")).startswith("joint_"):
                state += f" (trained in {st['unit']})"
        print(f"  level {lv['level']} ({lv['name']}): {lv['dims']} dims, {lv['parameters']:,} parameters; {state}")
    return 0


def cmd_pyramid(a) -> int:
    import numpy as np
    import torch

    from waveletflow.data import load_dataset, to_tensor
    from waveletflow.images import image_grid, save_png
    from waveletflow.wavelets import haar_pyramid

    data = load_dataset(a.data, image_size=a.image_size)
    k = to_tensor(data.x_test[: a.n]).double() / max(1, data.max_value)
    pyr = haar_pyramid(k, a.base_size, a.convention)
    n, c, h, w = k.shape
    rows = []
    for i in range(n):  # the classic layout: base in the corner, details around it, coarse to fine
        canvas = pyr.base[i]
        for d in pyr.details:
            dd = d[i].reshape(c, 3, d.shape[2], d.shape[3])
            dd = 0.5 + dd / (2 * max(float(dd.abs().max()), 1e-8))
            lo = canvas / max(float(canvas.max()), 1e-8)
            top = torch.cat([lo, dd[:, 1]], dim=2)
            bottom = torch.cat([dd[:, 0], dd[:, 2]], dim=2)
            canvas = torch.cat([top, bottom], dim=1)
        rows.append(canvas)
    img = (torch.stack(rows).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    save_png(a.out, image_grid(np.concatenate([data.x_test[: a.n] * (255 // max(1, data.max_value)), img]), ncols=n, scale=max(1, 64 // h)))
    print(f"wrote the {a.convention} Haar pyramid of {n} images ({h}x{w} down to {a.base_size}x{a.base_size}) to {a.out}")
    return 0


def cmd_demo(a) -> int:
    """Train a small Wavelet Flow on the embedded digits, then evaluate, sample, super-resolve and plot."""
    import numpy as np
    import torch

    from waveletflow.data import load_dataset
    from waveletflow.images import image_grid, save_png, to_display
    from waveletflow.training import TrainOptions, train
    from waveletflow.training.trainer import resolve_device
    from waveletflow.models import load

    out = Path(a.out)
    data = load_dataset(a.data)
    opts = TrainOptions(time_budget=a.time_budget, device=resolve_device(a.device), progress=not a.quiet, eval_every=200)
    print(f"training a Wavelet Flow on {a.data} for {a.time_budget:.0f} s into {out}")
    train(out, a.data, "waveletflow", "all", 1, opts, data=data)
    model = load(out, opts.device)
    res = model.bits_per_dim(data.x_test, data_bits=data.n_bits)
    (out / "evaluation.json").write_text(json.dumps(res.to_dict(), indent=2) + "\n")
    names = model.level_names()
    print(f"test bits/dim ({res.images} images): {res.bits_per_dim:.4f}")
    for i, b in enumerate(res.levels):
        print(f"  level {i} ({names[i]}): {b:.4f}")
    gen = torch.Generator().manual_seed(0)
    _save_images(model, model.to_uint8(model.sample(64, 1.0, generator=gen)), str(out / "samples.png"))
    # super-resolution: 4×4 block averages of test digits → 8×8, three draws each
    dmax = int(model.config.get("display_max", 255))
    size = model.sizes[-2] if hasattr(model, "sizes") else None
    if size is not None:
        from waveletflow.data import to_tensor
        from waveletflow.wavelets import haar

        real = data.x_test[:8]
        k = to_tensor(real).double()
        low = haar(k, "average")[0].round().clamp(0, 2**model.n_bits - 1).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        draws = [model.super_resolve(low, 1.0, generator=gen) for _ in range(3)]
        low_up = low.repeat(2, axis=1).repeat(2, axis=2)
        grid = np.concatenate([low_up, *draws, real])
        save_png(out / "super_resolution.png", image_grid(to_display(grid, dmax), ncols=8, scale=8))
    print(f"wrote {out}/samples.png, {out}/super_resolution.png (rows: input, 3 draws, original), {out}/curves.png")
    return 0


COMMANDS = {
    "train": cmd_train, "evaluate": cmd_evaluate, "sample": cmd_sample, "super-resolve": cmd_super_resolve,
    "info": cmd_info, "pyramid": cmd_pyramid, "demo": cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (checkpoints written so far are kept; rerun the command to resume)", file=sys.stderr)
        return 130
