"""Where a training step's time goes, level by level: the throughput levers of Wavelet Flow against Glow.

For every level of the dataset's default Wavelet Flow and for each matched Glow, one training step (forward,
backward, Adam step) is timed at the training batch (64) and a larger one (256), with ``channels_last`` memory
format and with a single thread at the training batch; ``torch.profiler`` gives the share of the step spent in convolutions (forward and backward).
A step that is mostly convolution is compute-bound: larger batches and fused element-wise code cannot make it
much faster, fewer multiply-adds can.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from benchmarks.contenders import GLOWS, count_params, matched_glow_config, waveletflow_default
from waveletflow.models import build_model

Loss = Callable[[Tensor], Tensor]


def step_seconds(model: nn.Module, loss: Loss, x: Tensor, repeats: int) -> float:
    """Median seconds of one training step (forward, backward, Adam step) after one warm-up step."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    times = []
    for i in range(repeats + 1):
        if x.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        value = loss(x).mean()
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        if x.is_cuda:
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def conv_share(model: nn.Module, loss: Loss, x: Tensor) -> float:
    """The fraction of a training step's self CPU time spent in convolution kernels (forward and backward)."""
    from torch.profiler import ProfilerActivity, profile

    step_seconds(model, loss, x, 1)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step_seconds(model, loss, x, 1)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events if "convolution" in e.key or "conv2d" in e.key)
    return conv / total if total else 0.0


def _rates(model: nn.Module, loss: Loss, shape: tuple[int, ...], batches: tuple[int, int], repeats: int,
           device: str) -> dict:
    small, large = batches
    row: dict = {"batch": {}}
    for batch in batches:
        x = torch.rand(batch, *shape, device=device)
        row["batch"][str(batch)] = round(batch / step_seconds(model, loss, x, repeats), 1)
    x = torch.rand(small, *shape, device=device)
    model.to(memory_format=torch.channels_last)
    try:
        xc = x.contiguous(memory_format=torch.channels_last)
        row["channels_last"] = round(small / step_seconds(model, loss, xc, repeats), 1)
    finally:
        model.to(memory_format=torch.contiguous_format)
    if device == "cpu":
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            row["one_thread"] = round(small / step_seconds(model, loss, x, repeats), 1)
        finally:
            torch.set_num_threads(threads)
        row["conv_share"] = round(conv_share(model, loss, x), 3)
    return row


def levers(image_shape: tuple[int, int, int], repeats: int, device: str,
           batches: tuple[int, int] = (64, 256)) -> dict:
    """Images/s of one training step of every Wavelet Flow level and of each matched Glow, under each lever:
    ``{"batches": [small, large], "rows": [...]}``."""
    torch.manual_seed(0)
    wf = build_model("waveletflow", waveletflow_default(image_shape, 8)).to(device).train()
    target = count_params(wf)
    rows = []
    names = wf.level_names()
    for level in range(len(wf.levels)):
        crop = wf.level_crop(level)
        shape = (image_shape[0], crop, crop) if crop else tuple(image_shape)
        row = {"model": "Wavelet Flow", "level": level, "what": names[level], "params": wf.num_parameters(level),
               **_rates(wf, lambda v, lv=level: wf.objective([lv], v).nll, shape, batches, repeats, device)}
        rows.append(row)
        print(f"[levers] Wavelet Flow level {level}: {row}", flush=True)
    for name, (model_type, _, _) in GLOWS.items():
        glow = build_model(model_type, matched_glow_config(model_type, image_shape, 8, target)).to(device).train()
        row = {"model": name, "level": None, "what": "whole image", "params": count_params(glow),
               **_rates(glow, lambda v, g=glow: -g.log_prob(v), tuple(image_shape), batches, repeats, device)}
        rows.append(row)
        print(f"[levers] {name}: {row}", flush=True)
    return {"batches": list(batches), "rows": rows}


def per_image_ms(rows: list[dict], model: str, batch: int) -> float:
    """Milliseconds per training image of ``model`` at ``batch`` (Wavelet Flow: a step of every level)."""
    return sum(1000.0 / r["batch"][str(batch)] for r in rows if r["model"] == model)


def markdown(result: dict, dataset: str) -> list[str]:
    """The levers table as Markdown lines."""
    (small, large), rows = result["batches"], result["rows"]
    cpu = "one_thread" in rows[0]
    head = f"| model | part | parameters | batch {small} | batch {large} | channels_last, batch {small} |" + (
        " 1 thread | time in convolutions |" if cpu else "")
    lines = [f"### Where a training step goes: {dataset} (images/s of one training step)", "", head,
             "| --- " * (head.count("|") - 1) + "|"]
    for r in rows:
        part = r["what"] if r["level"] is None else f"level {r['level']}: {r['what']}"
        cells = [r["model"], part, f"{r['params'] / 1e3:.0f} k", r["batch"][str(small)], r["batch"][str(large)],
                 r["channels_last"]]
        if cpu:
            cells += [r["one_thread"], f"{100 * r['conv_share']:.0f}%"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    wf_ms = per_image_ms(rows, "Wavelet Flow", small)
    lines += ["", f"- Wavelet Flow, a step of every level: {wf_ms:.2f} ms per training image at batch {small}."]
    for name in GLOWS:
        ms = per_image_ms(rows, name, small)
        lines.append(f"- {name}: {ms:.2f} ms per image; Wavelet Flow's steps take **{wf_ms / ms:.2f}×** its time.")
    return lines + [""]
