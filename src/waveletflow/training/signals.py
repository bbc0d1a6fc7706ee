"""Stopping training gracefully on SIGINT or SIGTERM (what Slurm and Kubernetes send before they preempt a job).

The first signal asks every unit in training to finish its current step, write its checkpoint and stop; a second
one stops at once (a copy arriving within :data:`DEBOUNCE_S` of the first is taken as the same request: a launcher
such as ``torchrun`` forwards the signal its process group received too). Level workers of ``--parallel`` ignore
the signals themselves and follow their parent's request (an event it sets), so that one Ctrl-C is one request.

>>> with graceful_stop():
...     requested() is None
True
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("waveletflow")

#: seconds within which a second signal is the first one delivered again, not a request to stop at once
DEBOUNCE_S = 1.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)

_state: dict[str, Any] = {"signal": None, "at": 0.0, "event": None, "forward": None}


class TrainingStopped(Exception):
    """Training stopped at a signal after writing its checkpoints; ``signal`` is its number (the exit code is
    128 + it), the message says where each unit stopped and how to resume."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signal = signum


def stopped(results: list[Any], signum: int) -> TrainingStopped:
    """The :class:`TrainingStopped` of units that stopped at a signal, from their results
    (:class:`~waveletflow.training.unit.UnitResult`)."""
    where = ", ".join(f"{r.where} at step {r.step}" for r in results)
    return TrainingStopped(f"stopped by {signal.Signals(signum).name}" + (f": {where}" if where else "")
                           + " (checkpoints written); rerun the same command to resume", signum)


def requested() -> int | None:
    """The signal that asked training to stop, or None."""
    if _state["signal"] is None and _state["event"] is not None and _state["event"].is_set():
        _state["signal"] = int(signal.SIGTERM)
    return _state["signal"]


def _handler(signum: int, frame) -> None:
    now = time.monotonic()
    if _state["signal"] is None:
        _state["signal"], _state["at"] = signum, now
        log.warning("%s: stopping after the current step of every level in training, with a checkpoint; "
                    "a second signal stops at once", signal.Signals(signum).name)
        if _state["forward"] is not None:
            _state["forward"](signum)
        return
    if now - _state["at"] < DEBOUNCE_S:
        return
    for s in SIGNALS:  # the second signal: stop at once
        signal.signal(s, signal.SIG_DFL)
    if _state["forward"] is not None:
        _state["forward"](None)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


@contextmanager
def graceful_stop(forward=None) -> Iterator[None]:
    """Inside the block, SIGINT and SIGTERM ask training to stop (see the module). ``forward(signum)`` is called
    with the first signal (and with None at a second one) to pass the request on to worker processes. Outside
    the main thread the signals cannot be caught and the block changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    _state.update(signal=None, at=0.0, forward=forward)
    for s in SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _state.update(signal=None, at=0.0, forward=None)


def set_forward(forward) -> None:
    """Pass later stop requests on through ``forward(signum)`` (None at a second signal; see :func:`graceful_stop`);
    ``forward`` None stops passing them on. A request made already is passed on at once."""
    _state["forward"] = forward
    if forward is not None and _state["signal"] is not None:
        forward(_state["signal"])


def follow(event) -> None:
    """In a level worker: ignore SIGINT and SIGTERM, and stop when the parent sets ``event``."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    _state.update(signal=None, event=event)


def reset() -> None:
    """Forget a request (a new command in the same process starts afresh)."""
    _state.update(signal=None, at=0.0)
