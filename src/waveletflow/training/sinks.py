"""Where training metrics go: the unit's ``metrics.csv``, TensorBoard (when installed), and a progress bar on a
terminal or, where stderr is not one (CI, ``nohup``, Slurm, ``2> log``), a plain line every
:data:`PLAIN_LINE_SECONDS`."""

from __future__ import annotations

import csv
import logging
import sys
import time
from collections.abc import Sequence
from typing import IO

from waveletflow.rundir import RunDir

log = logging.getLogger("waveletflow")

#: seconds between a unit's plain progress lines where stderr is not a terminal
PLAIN_LINE_SECONDS = 30.0

METRICS_FIELDS = ["step", "elapsed_s", "train_bpd", "val_bpd", "images_per_s", "lr", "grad_norm", "nfe"]


def _tensorboard(directory):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional
        return None
    return SummaryWriter(str(directory))


def on_terminal(stream: IO | None = None) -> bool:
    """Whether ``stream`` (default: stderr) is a terminal, where progress bars redraw in place.

    >>> import io
    >>> on_terminal(io.StringIO())
    False
    """
    try:
        return (stream or sys.stderr).isatty()
    except (AttributeError, ValueError):  # a stream without a file, or closed
        return False


class MetricsSink:
    """The one place training metrics go, for one unit.

    :meth:`record` takes each optimiser step's training bits/dim; :meth:`log` writes a row averaging the steps
    since the previous row to ``metrics.csv`` (appending; an existing file keeps its columns), to TensorBoard
    and to the progress bar. Where stderr is not a terminal the bar is replaced by a plain line through the
    library's log (``level 2: step 1200/5000, 1.734 bits/dim, validation 1.760, 412 images/s, 143 s left``) at the
    first row, then every :data:`PLAIN_LINE_SECONDS`, and at the end. Use it as a context manager, or call
    :meth:`close`.

    Args:
        run: the run folder.
        levels: the unit's levels.
        desc: the progress bar's label.
        total: the step count to reach (None: unknown).
        initial: the step count the unit starts from.
        progress: show progress on stderr: a bar at row ``position`` on a terminal, plain lines elsewhere.
    """

    def __init__(self, run: RunDir, levels: Sequence[int], desc: str, total: int | None = None, initial: int = 0,
                 progress: bool = True, position: int = 0):
        from tqdm import tqdm

        path = run.metrics_file(levels)
        path.parent.mkdir(parents=True, exist_ok=True)
        fields = run.metrics_columns(levels)
        self._file = open(path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=fields or METRICS_FIELDS, extrasaction="ignore")
        if fields is None:
            self._writer.writeheader()
        self._tb = _tensorboard(run.tensorboard_dir(levels))
        self._plain = progress and not on_terminal()
        self._bar = tqdm(total=total, initial=initial, desc=desc, position=position,
                         disable=not progress or self._plain, leave=True, dynamic_ncols=True, file=sys.stderr)
        self._desc, self._total = desc, total
        self._line_at: float | None = None  # when the last plain line was written
        self._pending: str | None = None  # the latest row's plain line, not yet written
        self.last_val: float | None = None
        self._reset(time.perf_counter())

    def _reset(self, now: float) -> None:
        self._sum, self._steps, self._images, self._since = 0.0, 0, 0, now

    def record(self, train_bpd: float, images: int) -> None:
        """One optimiser step: its training bits/dim and batch size."""
        self._sum += train_bpd
        self._steps += 1
        self._images += images
        self._bar.update(1)

    def log(self, step: int, elapsed_s: float, lr: float, grad_norm: float, nfe: int | None = None,
            val_bpd: float | None = None, left_s: float | None = None) -> float:
        """Write one row: the mean training bits/dim of the steps recorded since the last row (returned,
        rounded), the validation figure when one was computed at this step, and throughput."""
        now = time.perf_counter()
        train_bpd = round(self._sum / max(1, self._steps), 5)
        ips = self._images / max(now - self._since, 1e-9)
        row = {
            "step": step, "elapsed_s": round(elapsed_s, 2), "train_bpd": train_bpd,
            "val_bpd": "" if val_bpd is None else round(val_bpd, 5), "images_per_s": round(ips, 1), "lr": lr,
            "grad_norm": round(grad_norm, 4), "nfe": "" if nfe is None else nfe,
        }
        self._writer.writerow(row)
        self._file.flush()
        if val_bpd is not None:
            self.last_val = val_bpd
        if self._tb is not None:
            self._tb.add_scalar("train_bpd", row["train_bpd"], step)
            if val_bpd is not None:
                self._tb.add_scalar("val_bpd", row["val_bpd"], step)
        post = {"bpd": f"{self._sum / max(1, self._steps):.3f}", "img/s": f"{ips:.0f}"}
        if nfe is not None:
            post["nfe"] = str(nfe)
        if self.last_val is not None:
            post["val"] = f"{self.last_val:.3f}"
        if left_s is not None:
            post["left"] = f"{max(0.0, left_s):.0f}s"
        self._bar.set_postfix(post)
        if self._plain:
            self._pending = (f"{self._desc}: step {step}" + (f"/{self._total}" if self._total else "")
                             + f", {train_bpd:.3f} bits/dim"
                             + ("" if self.last_val is None else f", validation {self.last_val:.3f}")
                             + f", {ips:.0f} images/s"
                             + ("" if left_s is None else f", {max(0.0, left_s):.0f} s left"))
            if self._line_at is None or now - self._line_at >= PLAIN_LINE_SECONDS:
                self._write_line(now)
        self._reset(now)
        return train_bpd

    def _write_line(self, now: float) -> None:
        if self._pending is not None:
            log.info(self._pending)
            self._pending, self._line_at = None, now

    def close(self) -> None:
        self._write_line(time.perf_counter())  # the last row, where it was not written yet
        self._bar.close()
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> MetricsSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NullSink:
    """A sink that keeps nothing: for the ranks of a data-parallel group other than the one that writes."""

    last_val: float | None = None

    def __enter__(self) -> NullSink:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def record(self, train_bpd: float, images: int) -> None:
        return None

    def log(self, *args, **kwargs) -> float | None:
        return None

    def close(self) -> None:
        return None

