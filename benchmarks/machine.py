"""The machine a benchmark ran on, in one line (every result file records it)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads: int | None = None) -> str:
    """``CPU, N cores, torch V (T threads)[, GPU name]``."""
    desc = (f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({threads or torch.get_num_threads()} threads)")
    if torch.cuda.is_available():
        desc += f", GPU {torch.cuda.get_device_name(0)}"
    return desc
