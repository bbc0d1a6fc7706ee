"""Beyond the paper, on the photographs at 256 px: do patches cause the blur, and does a lifted wavelet end the
blocks? Three runs of one seed at the same budget, each one flag away from the default command:

    waveletflow train --data DATA/photos/photos512 --image-size 256 --out RUN --time-budget 900 --seed 0 [FLAGS]

Haar on the preset's patches (the default; no flags), Haar with the top level on whole images (``--config
whole-top.json``: the preset with the top level's crop removed), and the lifted wavelet whose samples scored the
lower KID in ``python -m benchmarks beyond`` (``--wavelet cdf53`` or ``cdf97``). Each run's test bits/dim, 16 samples
as a grid in ``docs/results/beyond/``, and the samples' blockiness against the test photographs'.

    python -m benchmarks beyond-photos              # the three runs (resumable: rows in the result file are kept)
    python -m benchmarks beyond-photos --report     # the table, from the result file

Writes ``benchmarks/results/beyond_photos.json``; the run folders go to ``--work`` (default ``runs/beyond``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

from benchmarks import beyond
from benchmarks import rows as rowfile
from benchmarks.beyond import GRIDS
from benchmarks.machine import machine
from benchmarks.paths import REPO, SHARED

#: photographs resized to 256 px; one seed of a longer budget (grids to look at, test bits/dim, the blocks measured)
PHOTOS = {"data": "photos/photos512", "size": 256, "budget": 900, "seed": 0, "samples": 16}
RESULTS = REPO / "benchmarks" / "results" / "beyond_photos.json"
#: variant → the question: patches (the preset's crops) against whole images for the top level, and the wavelet
VARIANTS = {"haar-patches": "the default: Haar, the largest levels on the preset's crops",
            "haar-whole-top": "Haar, the top level on whole images (do patches cause the blur?)",
            "best-wavelet-patches": "the best lifted wavelet on MNIST and the CIFAR-10 subset (by KID), on the "
                                    "preset's crops"}


def best_wavelet(rows: list[dict]) -> str:
    """The lifted wavelet whose samples scored the lower mean KID over the small data sets' rows (``cdf97`` before
    any were measured)."""
    kids = {w: [r["scores"]["quality"]["kid"] for r in rows if r["variant"] == w and "quality" in r["scores"]]
            for w in ("cdf53", "cdf97")}
    scored = {w: statistics.mean(k) for w, k in kids.items() if k}
    return min(scored, key=scored.get) if scored else "cdf97"


def whole_top_config(size: int) -> dict:
    """The preset of ``size`` px with its top level on whole images (its crop removed)."""
    from waveletflow.models.presets import PRESETS as WF_PRESETS

    preset = json.loads(json.dumps(WF_PRESETS[f"{size}x{size}"]))
    preset["levels"][-1].pop("crop", None)
    return preset


def commands(variant: str, run: Path, wavelet: str) -> dict[str, list[str]]:
    data, size, seed = str(SHARED / PHOTOS["data"]), str(PHOTOS["size"]), str(PHOTOS["seed"])
    flags = {"haar-patches": [], "haar-whole-top": ["--config", str(run.parent / "whole-top.json")],
             "best-wavelet-patches": ["--wavelet", wavelet]}[variant]
    return {"train": ["waveletflow", "train", "--data", data, "--image-size", size, "--out", str(run),
                      "--time-budget", str(PHOTOS["budget"]), "--seed", seed, *flags],
            "evaluate": ["waveletflow", "evaluate", str(run), "--data", data, "--image-size", size, "--json"],
            "sample": ["waveletflow", "sample", str(run), "--n", str(PHOTOS["samples"]), "--seed", seed,
                       "--out", str(GRIDS / f"photos256-{variant}.jpg"), "--npz", str(run / "samples.npz")]}


def blockiness(images, block: int) -> float:
    """How much larger the steps between pixels are across the edges of a ``block``-pixel grid than elsewhere (mean
    absolute difference of neighbours, across grid edges over inside blocks): about 1 for photographs, above 1 where
    an upsampled coarse image shows its blocks.

    >>> import numpy as np
    >>> flat = np.kron(np.arange(16.0).reshape(1, 4, 4, 1), np.ones((1, 8, 8, 1)))  # 8-px blocks
    >>> round(blockiness(flat + np.random.default_rng(0).normal(0, 1, flat.shape), 8), 1) > 2
    True
    """
    import numpy as np

    x = np.asarray(images, dtype=np.float64)
    dx, dy = np.abs(np.diff(x, axis=2)), np.abs(np.diff(x, axis=1))
    edge = (np.arange(dx.shape[2]) + 1) % block == 0
    across = np.concatenate([dx[:, :, edge].ravel(), dy[:, edge].ravel()]).mean()
    inside = np.concatenate([dx[:, :, ~edge].ravel(), dy[:, ~edge].ravel()]).mean()
    return float(across / inside)


def run_one(variant: str, wavelet: str, work: Path) -> dict:
    import numpy as np

    run = work / f"photos256_{variant}_seed{PHOTOS['seed']}"
    shutil.rmtree(run, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    (work / "whole-top.json").write_text(json.dumps(whole_top_config(PHOTOS["size"])))
    GRIDS.mkdir(parents=True, exist_ok=True)
    cmds = commands(variant, run, wavelet)
    env, wall, res = beyond.train_and_evaluate(cmds, "[beyond photos]")
    beyond.run_command(cmds["sample"], env)
    x = np.load(run / "samples.npz")["x"]
    shown = [{str(run): "RUN", str(work / "whole-top.json"): "whole-top.json"}.get(c, c).replace(str(SHARED), "DATA")
             for c in cmds["train"]]
    return {"key": f"photos256/{variant}/seed{PHOTOS['seed']}", "variant": variant, "seed": PHOTOS["seed"],
            "wavelet": wavelet if variant.startswith("best") else "haar", "budget_s": PHOTOS["budget"],
            "test_bpd": round(res["bits_per_dim"], 5), "levels_bpd": [round(lv["bits_per_dim"], 5) for lv in res["levels"]],
            "wall_s": round(wall, 1), "steps": beyond.steps_trained(run),
            "blockiness": {str(b): round(blockiness(x, b), 4) for b in (4, 8, 16, 32)}, "command": " ".join(shown)}


def reference_blockiness() -> dict[str, float]:
    """The blockiness of the test photographs themselves at 256 px, the figure a sample should reach."""
    from waveletflow.data import load_dataset

    x = load_dataset(str(SHARED / PHOTOS["data"]), image_size=PHOTOS["size"]).x_test
    return {str(b): round(blockiness(x, b), 4) for b in (4, 8, 16, 32)}


def run_all(work: Path) -> None:
    wavelet = best_wavelet(rowfile.load(beyond.RESULTS)["rows"])
    result = rowfile.load(RESULTS)
    done = {r["key"] for r in result["rows"]}
    if "reference_blockiness" not in result:
        result["reference_blockiness"] = reference_blockiness()
        result.setdefault("machine", machine())
        RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    for variant in VARIANTS:
        if f"photos256/{variant}/seed{PHOTOS['seed']}" in done:
            continue
        row = run_one(variant, wavelet, work)
        rowfile.add(RESULTS, row, machine())
        print(f"[beyond photos] {row['key']}: {row['test_bpd']:.4f} bits/dim, blockiness {row['blockiness']}",
              flush=True)


def markdown(result: dict) -> str:
    rows = {r["variant"]: r for r in result.get("rows", [])}
    if not rows:
        return ("Not measured yet: `python -m benchmarks beyond-photos` trains the three runs (about 50 minutes on "
                "two CPU cores) and writes `benchmarks/results/beyond_photos.json` and the grids.\n")
    ref = result.get("reference_blockiness", {})
    lines = [f"Machine: {result.get('machine', '?')}  ",
             f"Command: `python -m benchmarks beyond-photos` (the photographs of `photos512` at "
             f"{PHOTOS['size']} px, {PHOTOS['budget']} s per run, seed {PHOTOS['seed']}; one seed: the grids are to "
             "look at, the figures are not a ranking). Blockiness: neighbouring pixels' steps across the edges of an "
             "8 / 16 px grid over those inside it, on the samples (the test photographs: "
             f"{ref.get('8', float('nan')):.2f} / {ref.get('16', float('nan')):.2f}); above the photographs' figure, "
             "blocks show. The top level's steps: how many optimiser steps the finest level made in its share of the "
             "budget.", "",
             "| variant | wavelet | test bits/dim | blockiness 8 px | blockiness 16 px | top level's steps | grid |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for v, what in VARIANTS.items():
        if v in rows:
            r = rows[v]
            steps = r.get("steps") or {}
            top = f"{steps[max(steps)]:,}" if steps else "–"
            lines.append(f"| {v}: {what} | {r['wavelet']} | {r['test_bpd']:.3f} | {r['blockiness']['8']:.2f} | "
                         f"{r['blockiness']['16']:.2f} | {top} | [photos256-{v}.jpg](beyond/photos256-{v}.jpg) |")
    return "\n".join(lines) + "\n"


BLOCKS = {"beyond-photos": markdown}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks beyond-photos", description=__doc__.splitlines()[0])
    p.add_argument("--report", action="store_true", help="only print the table of the result file")
    p.add_argument("--work", default="runs/beyond")
    a = p.parse_args(argv)
    if not a.report:
        run_all(Path(a.work))
    print(markdown(rowfile.load(RESULTS)), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
