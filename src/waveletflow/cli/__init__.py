"""The ``waveletflow`` command line: train, plan, gather, evaluate, sample, quality, super-resolve, superres-eval, info,
pyramid, demo."""

from __future__ import annotations

import logging
import sys

from waveletflow.cli.parser import build_parser
from waveletflow.errors import ReportedElsewhere, UserInputError

__all__ = ["build_parser", "main"]


class _LineHandler(logging.Handler):
    """The library's log as ``note: ...`` / ``warning: ...`` lines on the current stderr, above any progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        prefix = "note: " if record.levelno < logging.WARNING else "warning: "
        tqdm.write(prefix + record.getMessage(), file=sys.stderr)


def _setup_logging() -> None:
    logger = logging.getLogger("waveletflow")
    if not any(isinstance(h, _LineHandler) for h in logger.handlers):
        logger.addHandler(_LineHandler())
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    from waveletflow.cli.commands import (
        cmd_evaluate, cmd_quality, cmd_sample, cmd_super_resolve, cmd_superres_eval, cmd_train,
    )
    from waveletflow.cli.info import cmd_info
    from waveletflow.cli.cluster import cmd_gather, cmd_plan
    from waveletflow.cli.demo import cmd_demo, cmd_pyramid

    commands = {"train": cmd_train, "plan": cmd_plan, "gather": cmd_gather,
                "evaluate": cmd_evaluate, "sample": cmd_sample, "quality": cmd_quality, "super-resolve": cmd_super_resolve, "superres-eval": cmd_superres_eval, "info": cmd_info, "pyramid": cmd_pyramid, "demo": cmd_demo}
    from waveletflow.training.signals import TrainingStopped

    args = build_parser().parse_args(argv)
    _setup_logging()
    try:
        return commands[args.command](args)
    except UserInputError as exc:
        if not isinstance(exc, ReportedElsewhere):
            print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only folder, no permission: the system's reason, in one line
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except TrainingStopped as exc:
        from waveletflow.cli.common import other_rank

        if not other_rank():
            print(str(exc), file=sys.stderr)
        return 128 + exc.signal
    except KeyboardInterrupt:
        from waveletflow.cli.common import other_rank

        if not other_rank():  # under torchrun every rank is interrupted: the first one says it
            print("error: interrupted (checkpoints written so far are kept; rerun the command to resume)",
                  file=sys.stderr)
        return 130
