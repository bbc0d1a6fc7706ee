"""Gathering part runs: the level folders that separate jobs trained (``train --level ...`` into part run folders,
as :mod:`waveletflow.training.planning` lays them out) combined into one run folder, the one a single
``train --level all`` would have left."""

from __future__ import annotations

import errno
import filecmp
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from waveletflow.errors import UserInputError
from waveletflow.models.format import upgrade_model_meta
from waveletflow.models.io import check_model_size, read_model_meta
from waveletflow.rundir import CURVES_FILE, LOCK_FILE, TMP_SUFFIX, WEIGHTS_FILE, RunDir, atomic_write, write_json_atomic
from waveletflow.training.planning import first_difference

log = logging.getLogger("waveletflow")

#: what ``run.json`` of every part (and of an existing run gathered into) must agree on
RUN_KEYS = ("fingerprint", "data_bits", "seed", "val_size", "image_size", "crop")
#: the prefix of a unit folder being copied into the run (removed if a gather stopped while copying)
COPY_PREFIX = ".gather-"

_IGNORE = shutil.ignore_patterns(f"*{TMP_SUFFIX}")  # a temporary file of a save that a kill interrupted


def gather(out: str | Path, parts: Sequence[str | Path],
           report: Callable[[int, Path, bool], None] | None = None) -> list[int]:
    """Copy the level (and joint) folders of the part runs ``parts`` into the run ``out``; returns the levels
    copied.

    Every part must be a run (``model.json`` and ``run.json``) of the same model (identical ``model.json``) on the
    same data (``run.json`` agrees on :data:`RUN_KEYS`), no level may come from two parts, and every level folder
    must hold its weights (its job wrote a checkpoint). ``out`` is created (``model.json`` and ``run.json`` copied
    from the first part), or is a run of the same model and data; a level folder it holds already is refused
    unless it is byte-identical to the part's (then skipped): nothing is overwritten. Everything is checked
    before anything is copied, under ``out``'s lock; if copying fails, what this call copied is removed again.
    The training curves are drawn when the parts have them. ``report(level, part, copied)`` is called for each
    level of the parts after the gathering succeeded (``copied`` False: it was in ``out`` already).
    """
    run = RunDir(out)
    if not parts:
        raise UserInputError("give the part run folders to gather")
    runs = [RunDir(p) for p in parts]
    if run.path.exists() and not run.path.is_dir():
        raise UserInputError(f"{run} is a file, not a folder; choose another --out")
    meta, info, units = _check_parts(run, runs)
    first = runs[0]
    with run.lock():
        _remove_leftovers(run)
        new = not run.is_model()
        if new and not run.is_empty():
            raise UserInputError(f"{run} exists and is not a waveletflow run; choose another --out")
        if not new:
            _check_same(run, meta, info, first)
        todo, there = [], []
        for name, part in units.items():
            dest = run.path / name
            if not (dest.exists() or dest.is_symlink()):
                todo.append((name, part))
            elif dest.is_dir() and not dest.is_symlink() and not any(dest.iterdir()):
                todo.append((name, part))  # an empty folder: nothing is overwritten
            elif _same_tree(part.path / name, dest):
                there.append((name, part))
            else:
                raise UserInputError(f"{dest} exists and differs from {part.path / name}; gather never overwrites "
                                     f"a level: move one of them away")
        _copy(run, first, new, todo)
    if any(p.curves_file.is_file() for p in runs):
        _plot(run)
    copied = sorted(v for name, _ in todo for v in _folder_levels(name))
    if report is not None:
        rows = [(v, part, True) for name, part in todo for v in _folder_levels(name)]
        rows += [(v, part, False) for name, part in there for v in _folder_levels(name)]
        for level, part, was_copied in sorted(rows, key=lambda r: r[0]):
            report(level, part.path, was_copied)
    return copied


def _folder_levels(name: str) -> list[int]:
    """The level of a ``level_XX`` folder (a joint folder's levels are reported by their level folders)."""
    levels = RunDir.unit_levels(name) or []
    return levels if name.startswith("level_") else []


def _check_parts(run: RunDir, runs: list[RunDir]) -> tuple[dict[str, Any], dict[str, Any], dict[str, RunDir]]:
    """The parts' common ``model.json`` and ``run.json``, and each unit folder's part; one line for what is wrong."""
    seen: dict[Path, RunDir] = {}
    for part in runs:
        if not part.path.is_dir():
            raise UserInputError(f"part {part} does not exist or is not a folder")
        key = part.path.resolve()
        if key in seen:
            raise UserInputError(f"part {part} is given twice")
        if run.path.exists() and key == run.path.resolve():
            raise UserInputError(f"part {part} is the run gathered into (--out); give the parts only")
        seen[key] = part
        if not part.is_model():
            raise UserInputError(f"part {part} is not a waveletflow run ({part.model_file.name} is missing)")
        if not part.run_file.is_file():
            raise UserInputError(f"part {part} is not a waveletflow run ({part.run_file.name} is missing; a saved "
                                 f"model cannot be gathered)")
    first = runs[0]
    meta = first.read_model_json()
    info = first.read_run()
    name, config = read_model_meta(first.path)
    n_levels = len(check_model_size(name, config, first.model_file).levels)
    units: dict[str, RunDir] = {}
    for part in runs:
        if part is not first:
            model_diff, run_diff = _differences(part.read_model_json(), part.read_run(), meta, info)
            if model_diff:
                raise UserInputError(f"part {part} holds another model than {first} ({part.model_file.name} differs: "
                                     f"{model_diff}); parts of one run must be trained with the same model options")
            if run_diff:
                raise UserInputError(f"part {part} differs from {first} in {part.run_file.name}'s {run_diff}: other "
                                     f"data or another seed")
        holder = _being_trained(part)
        if holder:
            raise UserInputError(f"part {part} is being trained by {holder}; wait until its job ends")
        dirs = part.unit_dirs()
        if not any(d.name.startswith("level_") for d in dirs):
            raise UserInputError(f"part {part} holds no trained level")
        for d in dirs:
            if d.is_symlink() or not d.is_dir():
                raise UserInputError(f"{d} is a link or a file; gather copies level folders, which must be real "
                                     f"folders")
            bad = [v for v in RunDir.unit_levels(d.name) or [] if not 0 <= v < n_levels]
            if bad:
                raise UserInputError(f"{d}: level {bad[0]} does not exist; the model has levels 0..{n_levels - 1}")
            if d.name.startswith("level_") and not (d / WEIGHTS_FILE).is_file():
                raise UserInputError(f"{d} holds no {WEIGHTS_FILE}: its job has not written its first checkpoint")
            if d.name in units:
                what = f"level {RunDir.unit_levels(d.name)[0]}" if d.name.startswith("level_") else d.name
                raise UserInputError(f"{what} was trained in two parts ({units[d.name]} and {part}); gather one of "
                                     f"them (move the other's {d.name} away)")
            units[d.name] = part
    return meta, info, units


def _being_trained(part: RunDir) -> str | None:
    """Who holds the part's trainer lock (None: nobody), found without writing anything."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    path = part.path / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return os.read(fd, 200).decode(errors="replace").strip() or "another process"
        return None
    finally:
        os.close(fd)  # closing drops a lock taken here
    return None


def _check_same(run: RunDir, meta: dict[str, Any], info: dict[str, Any], first: RunDir) -> None:
    """An existing run gathered into must hold the parts' model and data."""
    model_diff, run_diff = _differences(upgrade_model_meta(run.read_model_json()), run.read_run(),
                                        upgrade_model_meta(meta), info)
    if model_diff:
        raise UserInputError(f"{run} holds another model than the parts ({run.model_file.name} differs from "
                             f"{first.model_file}: {model_diff}); gather them into a new --out")
    if run_diff:
        raise UserInputError(f"{run} differs from the parts in {run.run_file.name}'s {run_diff}: other data or "
                             f"another seed; gather them into a new --out")


def _differences(meta: dict[str, Any], info: dict[str, Any], ref_meta: dict[str, Any],
                 ref_info: dict[str, Any]) -> tuple[str | None, str | None]:
    """Where a run's ``model.json`` (``meta``) and ``run.json`` (``info``) first differ from the reference ones (on
    :data:`RUN_KEYS` for ``run.json``): ``(model difference, run difference)``, None where they agree."""
    run_diff = next((f"{key} ({info.get(key)!r} vs {ref_info.get(key)!r})" for key in RUN_KEYS
                     if info.get(key) != ref_info.get(key)), None)
    return first_difference(meta, ref_meta), run_diff


def _same_tree(a: Path, b: Path) -> bool:
    """Whether two folders hold the same files (temporary files aside) with the same bytes."""
    def files(root: Path) -> dict[Path, Path]:
        return {p.relative_to(root): p for p in root.rglob("*") if not p.name.endswith(TMP_SUFFIX)}

    fa, fb = files(a), files(b)
    if set(fa) != set(fb):
        return False
    for rel, pa in fa.items():
        pb = fb[rel]
        if pa.is_dir() != pb.is_dir() or pa.is_symlink() or pb.is_symlink():
            return False
        if pa.is_file() and not filecmp.cmp(pa, pb, shallow=False):
            return False
    return True


def _copy(run: RunDir, first: RunDir, new: bool, todo: list[tuple[str, RunDir]]) -> None:
    """Copy each unit folder into a hidden folder of the run and rename it into place (a new run's ``model.json``
    and ``run.json`` first); on any failure, remove what was copied."""
    written: list[Path] = []
    try:
        if new:
            atomic_write(run.model_file, lambda tmp: shutil.copyfile(first.model_file, tmp))
            written.append(run.model_file)
            # the record of how a part's last train command trained describes that part, not the gathered run
            info = {k: v for k, v in first.read_run().items() if k != "training"}
            write_json_atomic(run.run_file, info)
            written.append(run.run_file)
        for name, part in todo:
            dest, tmp = run.path / name, run.path / f"{COPY_PREFIX}{name}"
            written.append(tmp)
            # new files, with the permissions the umask allows (not the parts' own modes)
            shutil.copytree(part.path / name, tmp, ignore=_IGNORE, copy_function=shutil.copyfile)
            if dest.is_dir():
                dest.rmdir()  # empty (checked)
            os.replace(tmp, dest)
            written[-1] = dest
    except BaseException:
        for path in reversed(written):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()
        raise


def _remove_leftovers(run: RunDir) -> None:
    """Remove the half-copied folders of a gather that was stopped (only the lock holder may call this)."""
    for p in run.path.iterdir() if run.path.is_dir() else []:
        if p.name.startswith(COPY_PREFIX) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)


def _plot(run: RunDir) -> None:
    """``curves.png`` of the gathered run (a failure is a warning: the levels are gathered)."""
    from waveletflow.models import build_model
    from waveletflow.training.plots import plot_curves

    try:
        name, config = read_model_meta(run.path)
        names = build_model(name, config, device="meta").level_names()
        plot_curves(run.path, names=names)
    except (OSError, ValueError) as exc:
        log.warning("could not draw %s (%s); the levels are gathered", run.path / CURVES_FILE, exc)
