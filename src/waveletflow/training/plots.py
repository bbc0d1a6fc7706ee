"""Training curves as a PNG: one panel per level, training and validation bits/dim against steps."""

from __future__ import annotations

from pathlib import Path

from waveletflow.rundir import RunDir


def plot_curves(run_dir: str | Path, out: str | Path | None = None, names: list[str] | None = None) -> Path | None:
    """Write ``curves.png`` (or ``out``) for a run from the ``metrics.csv`` of each level and joint unit; returns
    its path (None if no metrics)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = RunDir(run_dir)
    units = run.units_with_metrics()
    if not units:
        return None
    fig, axes = plt.subplots(1, len(units), figsize=(3.2 * len(units), 2.8), squeeze=False)
    for ax, levels in zip(axes[0], units):
        rows = run.read_metrics(levels)
        steps = [int(r["step"]) for r in rows if r["train_bpd"]]
        train = [float(r["train_bpd"]) for r in rows if r["train_bpd"]]
        vsteps = [int(r["step"]) for r in rows if r["val_bpd"]]
        val = [float(r["val_bpd"]) for r in rows if r["val_bpd"]]
        ax.plot(steps, train, lw=1, label="train")
        ax.plot(vsteps, val, "o-", ms=3, label="validation")
        if len(levels) > 1:
            title = f"levels {','.join(map(str, levels))} jointly"
        else:
            title = names[levels[0]] if names and levels[0] < len(names) else f"level {levels[0]}"
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
    out = Path(out) if out else run.curves_file
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
