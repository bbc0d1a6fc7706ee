"""Commands that show the method: the Haar pyramid of a few images, and the quick-start demo."""

from __future__ import annotations

from pathlib import Path

from waveletflow.cli.common import display_max, image_out, save_samples
from waveletflow.errors import UserInputError
from waveletflow.rundir import RunDir, write_json_atomic


def cmd_pyramid(a) -> int:
    import numpy as np
    import torch

    from waveletflow.data import load_dataset, to_tensor
    from waveletflow.images import image_grid, save_png
    from waveletflow.wavelets import wavelet_pyramid

    if a.n < 1:
        raise UserInputError(f"--n must be at least 1, got {a.n}")
    image_out(a.out)
    data = load_dataset(a.data, image_size=a.image_size)
    k = to_tensor(data.x_test[: a.n]).double() / max(1, data.max_value)
    pyr = wavelet_pyramid(k, a.base_size, a.wavelet, a.convention)
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
    name = "Haar" if a.wavelet == "haar" else a.wavelet.upper()
    print(f"wrote the {a.convention} {name} pyramid of {n} images ({h}x{w} down to {a.base_size}x{a.base_size}) to {a.out}")
    return 0


def cmd_demo(a) -> int:
    """Train a small Wavelet Flow on the embedded digits, then evaluate, sample, super-resolve and plot."""
    import numpy as np
    import torch

    from waveletflow.data import load_dataset, to_tensor
    from waveletflow.images import image_grid, save_png, to_display
    from waveletflow.models import load
    from waveletflow.training import TrainOptions, resolve_device, train
    from waveletflow.wavelets import haar

    out = Path(a.out)
    run = RunDir(out)
    data = load_dataset(a.data)
    # the defaults, as `train --time-budget` has them (keeping each level's best validation matters here: the digits
    # are few, and the finest levels validate best about halfway through the budget)
    opts = TrainOptions(time_budget=a.time_budget, device=resolve_device(a.device), progress=not a.quiet)
    print(f"training a Wavelet Flow on {a.data} for {a.time_budget:.0f} s into {out}")
    train(out, a.data, "waveletflow", "all", "auto", opts, data=data)
    model = load(out, opts.device)
    res = model.bits_per_dim(data.x_test, data_bits=data.n_bits)
    write_json_atomic(run.evaluation_file, res.to_dict())
    names = model.level_names()
    print(f"test bits/dim ({res.images} images): {res.bits_per_dim:.4f}")
    for i, b in enumerate(res.levels):
        print(f"  level {i} ({names[i]}): {b:.4f}")
    gen = torch.Generator().manual_seed(0)
    save_samples(model, model.to_uint8(model.sample(64, 1.0, generator=gen)), str(run.samples_file))
    # super-resolution: 2×2 block averages of test digits → full size, three draws each
    real = data.x_test[:8]
    low = haar(to_tensor(real).double(), "average")[0]
    low = low.round().clamp(0, 2**model.n_bits - 1).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    draws = [model.super_resolve(low, 1.0, generator=gen) for _ in range(3)]
    grid = np.concatenate([low.repeat(2, axis=1).repeat(2, axis=2), *draws, real])
    save_png(run.super_resolution_file, image_grid(to_display(grid, display_max(model)), ncols=8, scale=8))
    print(f"wrote {run.samples_file}, {run.super_resolution_file} (rows: input, 3 draws, original), {run.curves_file}")
    return 0
