"""Training on a cluster without rendezvous: ``plan`` prints one ``train`` command per job (and a Slurm job
array), ``gather`` combines the jobs' part runs into the run."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from waveletflow.cli.parser import add_train
from waveletflow.errors import UserInputError
from waveletflow.rundir import RunDir

if TYPE_CHECKING:
    from waveletflow.training import TrainOptions

PROG = "waveletflow"
#: train flags that plan sets itself for each job
_SET_BY_PLAN = ("data", "out", "level")


def _train_options(a: argparse.Namespace) -> TrainOptions:
    """The TrainOptions of the train flags, checked as ``train`` checks them (the device by its name only: the
    jobs run elsewhere)."""
    from waveletflow.cli.commands import train_options

    if a.joint:
        raise UserInputError("--joint trains levels together in one process; plan splits them into jobs (use "
                             "'waveletflow train --joint')")
    device = a.device or "auto"
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise UserInputError(f"unknown device {device!r}; use auto, cpu or cuda")
    return train_options(a)


def _train_flags(a: argparse.Namespace) -> list[str]:
    """The train flags given (those :func:`~waveletflow.cli.parser.add_train` defines, but the ones plan sets per
    job), as arguments."""
    out: list[str] = []
    for action in add_train(argparse.ArgumentParser(add_help=False)):
        if action.dest in _SET_BY_PLAN or not action.option_strings:
            continue
        value = getattr(a, action.dest, None)
        if isinstance(action, argparse.BooleanOptionalAction):  # --flag / --no-flag
            if value is not None:
                out.append(action.option_strings[0 if value else 1])
        elif action.nargs == 0:  # a switch
            if value:
                out.append(action.option_strings[0])
        elif value is not None and value != action.default:
            out += [action.option_strings[0], _number(value) if isinstance(value, float) else str(value)]
    return out


def _number(value: float) -> str:
    """A float as it reads back exactly: ``600`` for 600.0, ``0.0003`` for 3e-4."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _slurm_path(path: str | None) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise UserInputError(f"--slurm {path} is a folder; give a new file name such as {p / 'train.sbatch'}")
    if p.exists() or p.is_symlink():
        raise UserInputError(f"--slurm {path} exists; give a new file name (plan does not overwrite files)")
    if not p.parent.is_dir():
        raise UserInputError(f"--slurm {path}: folder {p.parent} does not exist")
    return p


def cmd_plan(a: argparse.Namespace) -> int:
    from waveletflow.cli.common import model_options, read_overrides
    from waveletflow.training import RunSpec, plan, resolve_device

    opts = _train_options(a)
    slurm = _slurm_path(a.slurm)
    spec = RunSpec(a.data, a.level, a.model, read_overrides(a.config), a.preset, a.n_bits, a.image_size, a.crop,
                   options=model_options(a))
    p = plan(a.out, spec, a.nodes, opts.seed, budget_s=opts.time_budget,
             device=resolve_device("auto") if opts.device == "auto" else opts.device)
    a = argparse.Namespace(**{**vars(a), "image_size": p.image_size, "crop": p.crop})
    flags = _train_flags(a)
    jobs = [[PROG, "train", "--data", a.data, "--out", str(job.out), "--level", ",".join(map(str, job.levels)), *flags]
            for job in p.jobs]
    gather = [PROG, "gather", "--out", a.out, *map(str, p.parts)]
    levels = ",".join(map(str, p.levels))
    lines = [f"# level{'s' if len(p.levels) > 1 else ''} {levels} of {a.out} ({p.model_type}, {p.n_levels} "
             f"level{'s' if p.n_levels > 1 else ''}) in {len(p.jobs)} job{'s' if len(p.jobs) > 1 else ''}, each "
             f"into its own part run folder in {p.parts[0].parent}"]
    done = [v for v in p.trained if v not in p.started]
    if done:
        lines.append(f"# {a.out} holds level{'s' if len(done) > 1 else ''} {','.join(map(str, done))} "
                     f"already: not planned")
    for v in p.started:
        lines.append(f"# {a.out} holds a folder of level {v} without weights or a checkpoint (a trainer stopped "
                     f"before its first): not planned; resume it with 'waveletflow train --out {a.out} --level {v} "
                     f"...', or move that folder away to plan it")
    lines.append("# run the jobs at the same time (they need no communication) from this folder, then the gather "
                 "command")
    if opts.time_budget is not None:
        lines.append(f"# --time-budget {a.time_budget:g}: every job gets the whole budget (the jobs run at the same "
                     f"time), shared among its own levels")
    else:
        lines.append(f"# --steps {opts.steps}: the gathered levels equal those of one 'waveletflow train' with these "
                     f"options (levels train independently)")
    for i, (job, cmd) in enumerate(zip(p.jobs, jobs)):
        what = f"level {job.levels[0]}" if len(job.levels) == 1 else f"levels {','.join(map(str, job.levels))}"
        again = f"; {job.out} exists: the job resumes it" if job.resumes else ""
        lines += [f"# job {i}: {what} ({100 * job.share:.0f}% of the work{again})", shlex.join(cmd)]
    lines += ["# when every job has ended:", shlex.join(gather)]
    if slurm is not None:
        with open(slurm, "x") as fh:  # never overwrites
            fh.write(_slurm_script(jobs, gather, slurm, Path(a.out).name, opts.time_budget))
        lines.append(f"# the jobs as a Slurm job array: {slurm} (its head says how to submit it and the gather step)")
    print("\n".join(lines))
    return 0


def _slurm_script(jobs: list[list[str]], gather: list[str], path: Path, name: str, budget: float | None) -> str:
    """A bash script for ``sbatch``: a job array whose task i runs job i."""
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name={shlex.quote(f'{PROG}-{name}')}",
             f"#SBATCH --array=0-{len(jobs) - 1}",
             f"# Made by '{PROG} plan': task i of this job array trains the levels of job i into its own part",
             "# run folder. Add the #SBATCH lines your cluster needs above: partition, GPUs (--gres=gpu:1), time",
             "# limit (--time" + (f", more than the {budget:g} s budget: loading the data and saving take time too"
                                 if budget else "") + ").",
             "# Submit it from the folder plan ran in (the paths are relative to it), then gather the parts once",
             "# every task has succeeded:",
             f"#   jobid=$(sbatch --parsable {shlex.quote(str(path))})",
             f"#   sbatch --dependency=afterok:$jobid --wrap {shlex.quote(shlex.join(gather))}",
             "set -euo pipefail",
             'case "$SLURM_ARRAY_TASK_ID" in']
    lines += [f"  {i}) exec {shlex.join(cmd)} ;;" for i, cmd in enumerate(jobs)]
    lines += ['  *) echo "no job $SLURM_ARRAY_TASK_ID in this plan" >&2; exit 1 ;;', "esac", ""]
    return "\n".join(lines)


def cmd_gather(a: argparse.Namespace) -> int:
    from waveletflow.training import gather
    from waveletflow.training.planning import held_levels

    rows: list[tuple[int, Path, bool]] = []
    copied = gather(a.out, a.parts, report=lambda level, part, was_copied: rows.append((level, part, was_copied)))
    run = RunDir(a.out)
    held = [v for v in held_levels(run) if run.has_weights(v)]
    if a.json:
        print(json.dumps({"run": a.out, "copied": copied, "already": [v for v, _, c in rows if not c],
                          "from": {str(v): str(p) for v, p, _ in rows}, "levels": held}))
        return 0
    for level, part, was_copied in rows:
        print(f"level {level}: copied from {part}" if was_copied else f"level {level}: in {a.out} already "
              f"(identical to {part})")
    print(f"run folder {a.out} now holds levels {','.join(map(str, held))}")
    return 0
