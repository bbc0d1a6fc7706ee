"""Speed of one training step (images/s) and of sampling, Wavelet Flow against the Glows at matched sizes. A
section of ``python -m benchmarks.run``."""

from __future__ import annotations

import statistics
import time

import torch

from benchmarks.contenders import GLOWS, glow_scales
from benchmarks.levers import step_seconds
from waveletflow.models import build_model, default_config, waveletflow_config


def models_for(size: int, contenders: list[str]) -> dict:
    """Wavelet Flow's default for ``size`` px RGB images, with the Glows (``glow``) and normflows' (``normflows``)."""
    shape = (3, size, size)
    wf_cfg = waveletflow_config(shape, 8)
    wf = build_model("waveletflow", wf_cfg)
    out = {"Wavelet Flow": wf}
    if "glow" in contenders:
        for name, (model_type, _, _) in GLOWS.items():
            out[name] = build_model(model_type, default_config(model_type, shape, 8))
    if "normflows" in contenders:
        try:
            from benchmarks.contenders import normflows_glow

            out["normflows Glow"] = normflows_glow(shape, glow_scales(shape), 8, 64)
        except ImportError:
            pass
    return out


def throughput(sizes: list[int], batches: dict[int, int], repeats: int, device: str) -> list[dict]:
    """Images/s of one training step (forward, backward, Adam) of each model at each size (Wavelet Flow: every
    level once, as a training image passes through them)."""
    rows = []
    for size in sizes:
        b = batches[size]
        x = torch.rand(b, 3, size, size, device=device)
        for name, model in models_for(size, ["glow", "normflows"]).items():
            model = model.to(device).train()
            if name == "Wavelet Flow":  # a training image passes through every level once
                total = 0.0
                for level in range(len(model.levels)):
                    crop = model.level_crop(level)
                    xl = x[:, :, :crop, :crop] if crop else x
                    total += step_seconds(model, lambda v, lv=level: model.objective([lv], v).nll, xl, repeats)
            elif name == "normflows Glow":
                total = step_seconds(model, lambda v: -model.log_prob(v, None), x, repeats)
            else:
                total = step_seconds(model, lambda v: -model.log_prob(v), x, repeats)
            rows.append({"size": size, "model": name, "batch": b, "images_per_s": round(b / total, 2)})
            print(f"[throughput] {size} px {name}: {b / total:.2f} images/s", flush=True)
    return rows



@torch.no_grad()
def sampling_latency(cases: list[tuple[int, int]], repeats: int, device: str) -> list[dict]:
    """Median seconds to draw ``n`` samples of ``size`` px from each (untrained) model, for each (size, n)."""
    rows = []
    for size, n in cases:
        for name, model in models_for(size, ["glow", "normflows"]).items():
            model = model.to(device).eval()
            fn = lambda: model.sample(n)  # noqa: E731 - both libraries name it sample(n)
            times = []
            for i in range(repeats + 1):
                t0 = time.perf_counter()
                fn()
                if device == "cuda":
                    torch.cuda.synchronize()
                if i:
                    times.append(time.perf_counter() - t0)
            rows.append({"size": size, "samples": n, "model": name, "seconds": round(statistics.median(times), 4)})
            print(f"[sampling] {n} × {size} px {name}: {statistics.median(times):.3f} s", flush=True)
    return rows
