"""Training curves as a PNG: one panel per level, training and validation bits/dim against steps."""

from __future__ import annotations

import csv
from pathlib import Path


def read_metrics(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def plot_curves(run_dir: str | Path, out: str | Path | None = None, names: list[str] | None = None) -> Path | None:
    """Write ``curves.png`` for a run from the ``metrics.csv`` of each level and joint unit; returns its path
    (None if no metrics)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    level_dirs = sorted(p for p in [*run_dir.glob("level_*"), *run_dir.glob("joint_*")] if (p / "metrics.csv").is_file())
    if not level_dirs:
        return None
    fig, axes = plt.subplots(1, len(level_dirs), figsize=(3.2 * len(level_dirs), 2.8), squeeze=False)
    for ax, d in zip(axes[0], level_dirs):
        rows = read_metrics(d / "metrics.csv")
        steps = [int(r["step"]) for r in rows if r["train_bpd"]]
        train = [float(r["train_bpd"]) for r in rows if r["train_bpd"]]
        vsteps = [int(r["step"]) for r in rows if r["val_bpd"]]
        val = [float(r["val_bpd"]) for r in rows if r["val_bpd"]]
        ax.plot(steps, train, lw=1, label="train")
        ax.plot(vsteps, val, "o-", ms=3, label="validation")
        if d.name.startswith("joint_"):
            title = f"levels {d.name[6:].replace('-', ',')} jointly"
        else:
            level = int(d.name.split("_")[1])
            title = names[level] if names and level < len(names) else f"level {level}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if val or train:
            lo = min(val + train)
            hi = sorted(train)[int(0.9 * (len(train) - 1))] if train else max(val)
            ax.set_ylim(lo - 0.05 * abs(lo) - 0.05, max(hi, max(val) if val else hi) + 0.1)
    axes[0][0].set_ylabel("bits/dim of the level(s)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    out = Path(out) if out else run_dir / "curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
