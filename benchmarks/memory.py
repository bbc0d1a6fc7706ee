"""Peak memory of one training step, decomposed: what the wavelet split saves, what patches save, and what
gradient checkpointing saves Glow.

    python -m benchmarks memory                    # 256, 512 and 1024 px at batch 4 (resumable: rows are kept)
    python -m benchmarks memory --report           # the table, from the result file

Every probe is a fresh process that measures the growth of its resident set during one training step (forward
and backward, float32, random images; on CUDA the allocator's peak). Per image side:

- ``wf-whole``: every level of Wavelet Flow's preset for the side, each on whole images (the preset's crops
  removed), its input drawn at its own resolution as training draws it; the costliest level is the figure;
- ``wf-crops``: the same levels as the preset trains them, its finest levels on crops;
- ``glow``: Glow as published (its coupling network) at the published number of scales, log2(side) − 2 (6 at
  256 px, as Glow's CelebA-HQ model), with the library's steps per scale and width;
- ``glow-ckpt``: the same Glow with gradient checkpointing (each step recomputed in the backward pass).

The wavelet split's factor is Glow over ``wf-whole``; the patches' factor is ``wf-whole`` over ``wf-crops``.
A Glow whose peak, extrapolated from the previous side by the pixel ratio, passes ``--cap-gb`` is not attempted
(its row says so). Writes ``benchmarks/results/memory.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time

import torch

from benchmarks import rows as rowfile
from benchmarks.machine import machine
from benchmarks.paths import REPO
from waveletflow.models import build_model, default_config, waveletflow_config

RESULTS = REPO / "benchmarks" / "results" / "memory.json"
SIDES = (256, 512, 1024)
BATCH = 4
WHATS = ("wf-whole", "wf-crops", "glow", "glow-ckpt")


def glow_scales(side: int) -> int:
    """Glow's published number of scales for a square image: down to 4×4 (6 at 256 px)."""
    return max(1, int(math.log2(side)) - 2)


# ----- one probe, in its own process ---------------------------------------------------------------------
def probe(spec: dict) -> dict:
    """Peak bytes of one training step described by ``spec``: ``size``, ``batch``, ``device`` and either
    ``model: waveletflow`` with ``level`` and ``crop`` (-1: the preset's; 0: whole images; > 0: that side) or
    ``model: glow`` / ``glow-residual`` with ``n_scales`` (None: the library's default) and ``checkpoint``.
    Run it in a fresh process (:func:`measure`): the resident set is that of the whole process."""
    size, batch, device = spec["size"], spec["batch"], spec["device"]
    shape = (3, size, size)
    if spec["model"] == "waveletflow":
        levels = [lc.to_dict() for lc in waveletflow_config(shape, 8).levels]
        level, crop = spec["level"], spec["crop"]
        if crop >= 0:
            levels[level]["crop"] = crop or None
        model = build_model("waveletflow", waveletflow_config(shape, 8, levels=levels)).to(device)
        steps = model.input_steps([level])  # as training draws it: the low-pass the level refines
        side = (model.level_crop(level) or size) >> steps
        params = model.num_parameters(level)

        def loss(v):
            return model.objective([level], v, steps=steps).nll
    else:
        overrides = {"checkpoint": bool(spec.get("checkpoint"))}
        if spec.get("n_scales"):
            overrides["n_scales"] = spec["n_scales"]
        cfg = default_config(spec["model"], shape, 8, overrides)
        model = build_model(spec["model"], cfg).to(device)
        side, params = size, model.num_parameters()

        def loss(v):
            return -model.log_prob(v)
    x = torch.rand(batch, 3, side, side, device=device)
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * page

    peak, running = [rss()], [True]

    def sample() -> None:  # the CPU allocator keeps no peak statistic: sample the resident set during the step
        while running[0]:
            peak[0] = max(peak[0], rss())
            time.sleep(0.0005)

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
    else:
        base = rss()
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
    loss(x).mean().backward()
    if device.startswith("cuda"):
        used = torch.cuda.max_memory_allocated() - start
    else:
        running[0] = False
        thread.join()
        used = max(peak[0], rss()) - base
    return {"peak_bytes": used, "params": params, "input_side": side}


def measure(spec: dict) -> dict | None:
    """:func:`probe` in a fresh process; None when it failed (killed for memory, or could not allocate)."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--probe", json.dumps(spec)],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def mb(b: float | None) -> float | None:
    return None if b is None else round(b / 2**20, 1)


# ----- the sections of ``python -m benchmarks.run`` (earlier tables) ---------------------------------------
def peak_bytes(size: int, what: str, level: int, crop: int, batch: int, device: str) -> int | None:
    """Peak bytes of one training step: ``what`` ``wf`` (a Wavelet Flow level; ``crop`` as in :func:`probe`) or a
    Glow model type with its default config; None when the probe failed."""
    spec = {"model": "waveletflow", "level": level, "crop": crop} if what == "wf" else {"model": what}
    got = measure({**spec, "size": size, "batch": batch, "device": device})
    return None if got is None else got["peak_bytes"]


def memory(sizes: list[int], batch: int, device: str, cap_gb: float) -> list[dict]:
    """Peak memory of one training step: the costliest Wavelet Flow level, with and without patch-wise training
    (top level on half-size crops), against a full-image Glow, for growing sizes until Glow no longer fits."""
    rows, glow_fits = [], True
    for size in sizes:
        wf = build_model("waveletflow", waveletflow_config((3, size, size), 8))
        n = len(wf.levels)
        per_level = [peak_bytes(size, "wf", lv, 0, batch, device) for lv in range(n)]  # every level on whole images
        top_patch = peak_bytes(size, "wf", n - 1, size // 2, batch, device)
        patched = per_level[:-1] + [top_patch]
        glow = peak_bytes(size, "glow-residual", 0, 0, batch, device) if glow_fits else None
        if glow is None or glow > cap_gb * 2**30:
            glow_fits = False
        row = {"size": size, "batch": batch,
               "wavelet_flow_max_level_mb": mb(_peak(per_level)),
               "wavelet_flow_patch_max_level_mb": mb(_peak(patched)),
               "wavelet_flow_levels_mb": [mb(p) for p in per_level],
               "glow_mb": mb(glow) if glow_fits or glow is not None else None}
        rows.append(row)
        print(f"[memory] {size} px: Wavelet Flow max level {row['wavelet_flow_max_level_mb']} MB "
              f"(patches {row['wavelet_flow_patch_max_level_mb']} MB), Glow {row['glow_mb']} MB", flush=True)
    return rows


def highres_memory(side: int, batch: int, glow_sizes: list[int], device: str, cap_gb: float) -> dict:
    """Peak memory of one training step of every level of the ``side`` px preset as it trains (its crops, its
    input drawn at its own resolution), and of both Glows on whole images of ``glow_sizes`` at the same batch.
    A Glow whose measured peak at the previous size, times the pixel ratio, passes ``cap_gb`` is not attempted:
    its row gives that extrapolation."""
    model = build_model("waveletflow", waveletflow_config((3, side, side), 8))
    names = model.level_names()
    levels = []
    for lv in range(len(model.levels)):
        peak = peak_bytes(side, "wf", lv, -1, batch, device)
        levels.append({"level": lv, "name": names[lv], "crop": model.level_crop(lv), "mb": mb(peak)})
        print(f"[highres memory] {side} px level {lv}: {levels[-1]['mb']} MB", flush=True)
    glows = []
    for model_type in ("glow", "glow-residual"):
        prev = None
        for size in glow_sizes:
            row = {"model": model_type, "size": size, "mb": None, "extrapolated_mb": None}
            guess = None if prev is None else prev[1] * (size / prev[0]) ** 2
            if guess is not None and guess > cap_gb * 2**30:
                row["extrapolated_mb"] = mb(guess)
                row["note"] = f"not attempted: {guess / 2**30:.1f} GB extrapolated from {prev[0]} px exceeds {cap_gb:g} GB"
            else:
                peak = peak_bytes(size, model_type, 0, 0, batch, device)
                row["mb"] = mb(peak)
                if peak is None:
                    row["note"] = "failed to allocate"
                    if guess is not None:
                        row["extrapolated_mb"] = mb(guess)
                else:
                    prev = (size, peak)
            glows.append(row)
            print(f"[highres memory] {model_type} {size} px: {row['mb']} MB {row.get('note', '')}", flush=True)
    return {"side": side, "batch": batch, "levels": levels, "glow": glows}


def _peak(per_level):
    """The largest peak of the levels; None when a level's probe failed (so a failure never looks like a fit)."""
    return None if any(p is None for p in per_level) else max(per_level)


# ----- the rows --------------------------------------------------------------------------------------------
def key(side: int, what: str) -> str:
    return f"{side}/{what}"


def row(side: int, what: str, batch: int, device: str, previous: dict | None, cap_gb: float) -> dict:
    """One row: the levels' peaks for ``wf-*``, the whole model's for a Glow (``previous``: the same Glow's row
    at the side before, for the extrapolation that may skip it)."""
    out = {"key": key(side, what), "side": side, "what": what, "batch": batch, "device": device}
    if what.startswith("wf"):
        crops = [lc.crop for lc in waveletflow_config((3, side, side), 8).levels]
        levels = []
        for level, crop in enumerate(crops):
            got = measure({"model": "waveletflow", "size": side, "batch": batch, "device": device, "level": level,
                           "crop": 0 if what == "wf-whole" else -1})
            levels.append({"level": level, "crop": crop if what == "wf-crops" else None,
                           "mb": mb(got and got["peak_bytes"]), "params": got and got["params"]})
        peaks = [lv["mb"] for lv in levels]
        out.update(levels=levels, mb=None if None in peaks else max(peaks),
                   params=sum(lv["params"] or 0 for lv in levels))
        return out
    n_scales = glow_scales(side)
    out.update(n_scales=n_scales, checkpoint=what == "glow-ckpt")
    guess = None
    if previous is not None and previous.get("mb") is not None:
        guess = previous["mb"] * (side / previous["side"]) ** 2
    if guess is not None and guess > cap_gb * 1024:
        out.update(mb=None, extrapolated_mb=round(guess, 1),
                   note=f"not attempted: {guess / 1024:.1f} GB extrapolated from {previous['side']} px exceeds "
                        f"{cap_gb:g} GB")
        return out
    got = measure({"model": "glow", "size": side, "batch": batch, "device": device, "n_scales": n_scales,
                   "checkpoint": what == "glow-ckpt"})
    out.update(mb=mb(got and got["peak_bytes"]), params=got and got["params"])
    if got is None:
        out["note"] = "failed to allocate"
    return out


def run_all(sides: list[int], batch: int, device: str, cap_gb: float) -> None:
    for side in sides:
        for what in WHATS:
            done = {r["key"]: r for r in rowfile.load(RESULTS)["rows"]}
            if key(side, what) in done:
                continue
            prev_sides = [s for s in sides if s < side]
            previous = done.get(key(prev_sides[-1], what)) if prev_sides else None
            r = row(side, what, batch, device, previous, cap_gb)
            rowfile.add(RESULTS, r, machine())
            print(f"[memory] {side} px {what}: {r['mb']} MB {r.get('note', '')}", flush=True)


# ----- the report ------------------------------------------------------------------------------------------
def _ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None or b <= 0 else f"{a / b:.1f}×"


def markdown(result: dict) -> str:
    rows = {r["key"]: r for r in result.get("rows", [])}
    if not rows:
        return ("Not measured yet: `python -m benchmarks memory` probes every level and both Glows at 256, 512 and "
                "1024 px (about 15 minutes on two CPU cores), and this table is then generated from "
                "`benchmarks/results/memory.json`.\n")
    sides = sorted({r["side"] for r in rows.values()})
    batch = next(iter(rows.values()))["batch"]

    def fig(side: int, what: str) -> float | None:
        return (rows.get(key(side, what)) or {}).get("mb")

    def shown(side: int, what: str) -> str:
        r = rows.get(key(side, what))
        if r is None:
            return "–"
        if r.get("mb") is None:
            extra = r.get("extrapolated_mb")
            return "did not fit" + (f" (≈ {extra / 1024:.0f} GB extrapolated)" if extra else "")
        return f"{r['mb']:,.0f}" if r["mb"] >= 100 else f"{r['mb']:.1f}"

    lines = [f"Machine: {result.get('machine', '?')}  ",
             f"Command: `python -m benchmarks memory` (peak resident memory of one training step, float32, batch "
             f"{batch}; MB). Glow at the published number of scales (log2(side) − 2); Wavelet Flow's figure is its "
             "costliest level, since its levels train separately.", "",
             "| side | Glow | Glow, checkpointed | Wavelet Flow, whole images | Wavelet Flow, the preset's crops | "
             "wavelet split (Glow ÷ whole) | split against checkpointed Glow | patches (whole ÷ crops) |",
             "| --- " * 8 + "|"]
    for side in sides:
        g, gc, w, c = (fig(side, what) for what in ("glow", "glow-ckpt", "wf-whole", "wf-crops"))
        lines.append(f"| {side} px ({glow_scales(side)} scales) | {shown(side, 'glow')} | {shown(side, 'glow-ckpt')} "
                     f"| {shown(side, 'wf-whole')} | {shown(side, 'wf-crops')} | {_ratio(g, w)} | {_ratio(gc, w)} | "
                     f"{_ratio(w, c)} |")
    return "\n".join(lines) + "\n"


BLOCKS = {"memory": markdown}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks memory", description=__doc__.splitlines()[0])
    p.add_argument("--probe", help=argparse.SUPPRESS)  # one probe (JSON), in this process: used by measure()
    p.add_argument("--report", action="store_true", help="only print the table of the result file")
    p.add_argument("--sides", default=",".join(map(str, SIDES)))
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--device", default="cpu")
    p.add_argument("--cap-gb", type=float, default=20.0, help="skip a Glow whose extrapolated peak passes this")
    a = p.parse_args(argv)
    if a.probe:
        print(json.dumps(probe(json.loads(a.probe))))
        return 0
    if not a.report:
        run_all([int(s) for s in a.sides.split(",")], a.batch, a.device, a.cap_gb)
    print(markdown(rowfile.load(RESULTS)), end="")  # python -m benchmarks report writes it into the pages
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
