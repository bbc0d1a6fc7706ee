"""The ablation of Wavelet Flow's training recipe: one change at a time, the same budget, repeated seeds.

Each variant trains this project's default Wavelet Flow for the dataset through the library's trainer with the
same wall-clock budget, once per seed; the table gives the test bits/dim at the end of the budget, their mean and
their spread across seeds (how far apart repeated runs end).
"""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

from benchmarks.contenders import Ours, waveletflow_default
from waveletflow.data import load_dataset

#: variant name → training options that differ from the defaults (Adam, Polyak averaging 0.99, decay over the last
#: 30% of each level's budget, the budget split up front by dimensions)
VARIANTS: dict[str, dict] = {
    "Adam, no averaging, no decay": {"ema": 0.0, "decay": 0.0},
    "learning-rate decay over the last 30%": {"ema": 0.0},
    "Polyak averaging 0.99": {"decay": 0.0},
    "decay and Polyak averaging (defaults)": {},
    "marginal-gain schedule, no averaging, no decay": {"schedule": "gain", "ema": 0.0, "decay": 0.0},
    "as released: Adamax, Polyak averaging 0.999, decay over the last 20%": {"optimizer": "adamax", "ema": 0.999,
                                                                            "decay": 0.2},
}


def ablation(name: str, path: Path, budget: float, seeds: int, test_images: int, device: str, out: Path,
             batch_size: int = 64, only: list[int] | None = None, recipe: dict | None = None) -> dict:
    """Train every variant of :data:`VARIANTS` (the numbers ``only``, when given) ``seeds`` times for ``budget``
    seconds on dataset ``path``; ``recipe`` (``lr``, ``warmup``) replaces the library's defaults under every variant."""
    if not path.is_file():
        return {"dataset": name, "skipped": f"{path} not found"}
    data = load_dataset(str(path))
    test = data.x_test[:test_images]
    config = waveletflow_default(data.image_shape, 8)
    runs = out / "runs" / f"ablation-{name}"
    shutil.rmtree(runs, ignore_errors=True)
    rows = []
    for i, (variant, options) in enumerate(VARIANTS.items()):
        if only is not None and i not in only:
            continue
        finals = []
        for seed in range(seeds):
            c = Ours(variant, "waveletflow", config, runs / f"{i}-{seed}", data, str(path), device, batch_size,
                     seed=seed, options={**(recipe or {}), **options})
            c.train_for(budget)  # one call: the decay and the schedule see the whole budget
            finals.append(round(c.test_bpd(test), 4))
            print(f"[ablation {name}] {variant}, seed {seed}: test {finals[-1]:.4f} bits/dim", flush=True)
        rows.append({"variant": variant, "options": options, "test_bpd": finals,
                     "mean": round(statistics.fmean(finals), 4), "spread": round(max(finals) - min(finals), 4)})
    return {"dataset": name, "budget_s": budget, "seeds": seeds, "test_images": len(test), "variants": rows}


def markdown(result: dict) -> list[str]:
    """The ablation table as Markdown lines."""
    if "skipped" in result:
        return [f"Ablation on {result['dataset']}: skipped ({result['skipped']})", ""]
    lines = [f"### Ablation: {result['dataset']} ({result['budget_s'] / 60:.0f} min per run, {result['seeds']} seeds, "
             f"{result['test_images']} test images)", "",
             "| variant | test bits/dim per seed | mean | spread |", "| --- | --- | --- | --- |"]
    for r in result["variants"]:
        lines.append(f"| {r['variant']} | {', '.join(f'{b:.3f}' for b in r['test_bpd'])} | {r['mean']:.3f} | "
                     f"{r['spread']:.3f} |")
    return lines + [""]
