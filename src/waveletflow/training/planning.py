"""Planning cluster jobs: the levels of a run split into jobs that train on their own, without communication.

Levels train independently, so a run can be trained by several jobs at once (a Slurm job array, say), each
training some of its levels into its own *part* run folder; :func:`waveletflow.training.gathering.gather` then
combines the parts into the run. Each job trains into ``RUN.parts/level_L`` (one level) or
``RUN.parts/levels_A-B-C`` (several), since one run folder takes one trainer at a time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from waveletflow.data import ImageDataset, load_dataset
from waveletflow.errors import UserInputError
from waveletflow.models.format import MODEL_FORMAT, upgrade_model_meta
from waveletflow.models.io import check_model_size
from waveletflow.rundir import RunDir
from waveletflow.training.spec import ModelOptions, RunSpec
from waveletflow.training.run import new_config, parse_levels
from waveletflow.training.schedule import budget_shares, group_levels

#: appended to the run folder's name: the folder of the part run folders
PARTS_SUFFIX = ".parts"


def parts_dir(out: str | Path) -> Path:
    """``RUN.parts``: where the jobs of ``RUN`` keep their part run folders."""
    return Path(str(Path(out)) + PARTS_SUFFIX)


def part_name(levels: list[int]) -> str:
    """``level_3`` for one level, ``levels_0-1-2`` for several.

    >>> part_name([3]), part_name([2, 0, 1])
    ('level_3', 'levels_0-1-2')
    """
    levels = sorted(levels)
    return f"level_{levels[0]}" if len(levels) == 1 else "levels_" + "-".join(map(str, levels))


@dataclass(frozen=True)
class Job:
    """One job: the levels it trains, the part run folder it trains them into, its share of the work (the
    levels' shares of a time budget by :func:`~waveletflow.training.schedule.budget_shares`), and whether the
    part exists already (left by an earlier run of the job, which then resumes it)."""

    levels: list[int]
    out: Path
    share: float
    resumes: bool = False


@dataclass(frozen=True)
class Plan:
    """The jobs that train a run's levels, and what they need besides the user's options.

    ``trained`` are the levels the existing run holds already (left out of the jobs), ``started`` those of them
    whose folder holds neither weights nor a checkpoint (a trainer stopped before its first); ``image_size`` and ``crop``
    are how the data must be prepared (from the run's ``run.json`` where not given), to be passed to every job.
    """

    out: Path
    model_type: str
    n_levels: int
    jobs: list[Job]
    trained: list[int] = field(default_factory=list)
    started: list[int] = field(default_factory=list)
    existing: bool = False
    image_size: int | None = None
    crop: int | None = None

    @property
    def levels(self) -> list[int]:
        """The levels the jobs train, in order."""
        return sorted(v for job in self.jobs for v in job.levels)

    @property
    def parts(self) -> list[Path]:
        """The part run folders, in the order of the jobs."""
        return [job.out for job in self.jobs]


def plan_jobs(out: str | Path, level_dims: list[int], levels: list[int], nodes: int | None = None) -> list[Job]:
    """``levels`` of a model whose levels model ``level_dims`` dimensions, grouped into ``nodes`` jobs (default one
    per level) with work as even as :func:`~waveletflow.training.schedule.group_levels` makes it."""
    if not levels:
        raise UserInputError("no levels to plan")
    nodes = len(levels) if nodes is None else nodes
    if not 1 <= nodes <= len(levels):
        raise UserInputError(f"--nodes must be between 1 and {len(levels)} (the levels to train: "
                             f"{','.join(map(str, levels))}), got {nodes}")
    shares = budget_shares(level_dims, levels)
    return [Job(g, parts_dir(out) / part_name(g), sum(shares[v] for v in g)) for g in group_levels(shares, nodes)]


def model_meta(data: ImageDataset, model_type: str | None = None, overrides: dict[str, Any] | None = None,
               n_bits: int | None = None, preset: str | None = None, budget_s: float | None = None,
               device: str = "cpu", options: ModelOptions | None = None) -> dict[str, Any]:
    """The ``model.json`` content that ``train`` writes for a new run on ``data`` with these model options (and
    the capacity a time budget fits, :func:`~waveletflow.training.run.new_config`)."""
    name, config, _ = new_config(data, model_type, overrides, n_bits, preset, budget_s, device, options)
    return {"version": MODEL_FORMAT, "model_type": name, "config": config.to_dict()}


def first_difference(a: Any, b: Any, where: str = "") -> str | None:
    """Where two JSON values first differ (``config.levels[1].width: 8 vs 16``); None when equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{where}{'.' if where else ''}{key}: " + ("absent" if key not in a else "present") + " vs " + (
                    "absent" if key not in b else "present")
            diff = first_difference(a[key], b[key], f"{where}{'.' if where else ''}{key}")
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            diff = first_difference(x, y, f"{where}[{i}]")
            if diff:
                return diff
        return None
    return None if a == b else f"{where or 'the value'}: {json_text(a)} vs {json_text(b)}"


def json_text(value: Any, limit: int = 60) -> str:
    """A JSON value as text, cut to ``limit`` characters."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def held_levels(run: RunDir) -> list[int]:
    """The levels a run holds a folder of (trained, or being trained), by its ``level_XX/`` and joint folders."""
    held = set()
    for d in run.unit_dirs():
        held.update(RunDir.unit_levels(d.name) or [])
    return sorted(held)


def saved_levels(run: RunDir) -> list[int]:
    """The levels of a run that hold weights, or whose unit holds a checkpoint (the others' folders were left by a
    trainer stopped before its first checkpoint)."""
    out = set(v for v in held_levels(run) if run.has_weights(v))
    for d in run.unit_dirs():
        levels = RunDir.unit_levels(d.name) or []
        if levels and run.has_checkpoint(levels):
            out.update(levels)
    return sorted(out)


def plan(out: str | Path, spec: RunSpec, nodes: int | None = None, seed: int = 0, data: ImageDataset | None = None,
         budget_s: float | None = None, device: str = "cpu") -> Plan:
    """Plan the jobs that train the levels ``spec.levels`` of the run ``out`` (a new one made from the data and the
    model options of ``spec``, as ``train`` makes it, or an existing one) in ``nodes`` jobs. Writes nothing.

    Checks what it can before any job runs: the data loads, the model config is valid, the levels exist. For an
    existing run, the parts that the jobs make must hold the run's model and data (else the gathering would be
    refused): the model options must make its ``model.json``, and ``seed`` and the data must be those of its
    ``run.json`` (its ``image_size`` and ``crop`` are used where not given); levels it holds already are left out
    (asking for them is refused: resume them with ``train``). Part folders left by earlier jobs must hold the
    same model (the jobs then resume them). ``budget_s`` and ``device`` fit the capacity of a new run's model as
    each job's ``train`` fits it (an existing run keeps the capacity its ``run.json`` records).
    """
    run = RunDir(out)
    if run.path.name in ("", "..") or run.path.exists() and not run.path.is_dir():
        raise UserInputError(f"--out {out}: give a run folder by its name (not a file, not . or ..)")
    existing = run.is_model()
    info: dict[str, Any] = {}
    if existing:
        info = run.read_run()
        spec = spec.on(run)
    elif not run.is_empty():
        raise UserInputError(f"{run} exists and is not a waveletflow run; choose a new --out")
    image_size, crop, level_spec = spec.image_size, spec.crop, spec.levels
    data = data or load_dataset(spec.data, image_size=image_size, crop=crop)
    if existing:  # the budget that fitted the run's model, if one did
        budget_s = (info.get("capacity") or {}).get("budget_s")
    meta = model_meta(data, spec.model_type, spec.overrides, spec.n_bits, spec.preset, budget_s, device, spec.options)
    model = check_model_size(meta["model_type"], _config(meta), "the model config")
    n = len(model.levels)
    asked = parse_levels(level_spec, n)
    trained: list[int] = []
    started: list[int] = []
    if existing:
        _check_same_run(run, meta, info, data, seed, image_size, crop)
        trained = held_levels(run)
        started = [v for v in trained if v not in saved_levels(run)]
        if level_spec != "all":
            clash = [v for v in asked if v in trained]
            if clash:
                raise UserInputError(f"level {clash[0]} is in {run} already ({run.level_dir(clash[0]).name}/); resume "
                                     f"it there with 'waveletflow train', or move its folder away to train it in a job")
        asked = [v for v in asked if v not in trained]
        if not asked and started:
            raise UserInputError(f"level {started[0]} of {run} has a folder without weights or a checkpoint "
                                 f"({run.level_dir(started[0]).name}/, left by a trainer stopped before its first): "
                                 f"resume it with 'waveletflow train --out {run} ...', or move that folder away to "
                                 f"plan it")
        if not asked:
            raise UserInputError(f"every level of {run} is there already; resume them with 'waveletflow train --out "
                                 f"{run} ...' (one trainer), or move level folders away to train them again in jobs")
    jobs = plan_jobs(out, model.level_dims, asked, nodes)
    for i, job in enumerate(jobs):
        _check_part(RunDir(job.out), meta)
        jobs[i] = replace(job, resumes=RunDir(job.out).is_model())
    return Plan(run.path, meta["model_type"], n, jobs, trained, started, existing, image_size, crop)


def _config(meta: dict[str, Any]) -> Any:
    from waveletflow.models.registry import model_type as model_type_of

    return model_type_of(meta["model_type"]).config_class.from_dict(meta["config"])


def _check_same_run(run: RunDir, meta: dict[str, Any], info: dict[str, Any], data: ImageDataset, seed: int,
                    image_size: int | None, crop: int | None) -> None:
    """Refuse to plan jobs for an existing run whose parts would hold another model or other data."""
    diff = first_difference(upgrade_model_meta(run.read_model_json()), meta)
    if diff:
        raise UserInputError(f"{run} holds another model than these options make ({diff}, in {run.model_file.name} "
                             f"vs here); give plan the --model, --config, --preset, --wavelet, --noise-std, --context and --n-bits it was made with")
    saved = info.get("fingerprint")
    if (saved is not None and saved != data.fingerprint()) or info.get("data_bits", data.n_bits) != data.n_bits:
        raise UserInputError(f"{run} was made with other data ({info.get('data')!r}); give plan the same --data")
    if info.get("seed", seed) != seed:
        raise UserInputError(f"{run} was made with --seed {info.get('seed')}; give plan --seed {info.get('seed')}")
    for key, value in (("image_size", image_size), ("crop", crop)):
        if info.get(key) != value:
            flag = "--" + key.replace("_", "-")
            raise UserInputError(f"{run} was made with {flag} {info.get(key)}; its jobs cannot use {flag} {value}")


def _check_part(part: RunDir, meta: dict[str, Any]) -> None:
    """A job's part folder must be absent, empty, or a run of the same model (the job then resumes it)."""
    if part.path.exists() and not part.path.is_dir():
        raise UserInputError(f"{part} is a file; a job trains into that folder: move it away")
    if part.is_model():
        diff = first_difference(upgrade_model_meta(part.read_model_json()), meta)
        if diff:
            raise UserInputError(f"{part} (a job's part folder, left by an earlier plan) holds another model "
                                 f"({diff}); move it away")
    elif not part.is_empty():
        raise UserInputError(f"{part} (a job's part folder) exists and is not a waveletflow run; move it away")
