"""Time to quality: Wavelet Flow against the Glows (and MRCNF) at equal wall-clock, the test bits/dim along the
budget, the speed-ups read off the curves, and the per-level training rates of the trained models. A section of
``python -m benchmarks.run``."""

from __future__ import annotations

import copy
import json
import re
import shutil
import sys
from pathlib import Path

import torch

from benchmarks.contenders import (
    GLOWS, NormflowsGlow, Ours, count_params, glow_scales, matched_glow_config, matched_normflows_hidden,
    waveletflow_default,
)
from benchmarks.levers import step_seconds
from benchmarks.paths import DATASETS, SHARED
from waveletflow.data import load_dataset
from waveletflow.errors import Diverged
from waveletflow.files import write_json_atomic
from waveletflow.models import build_model, default_config, waveletflow_config


def time_to_quality(name: str, budget: float, points: int, test_images: int, device: str, out: Path,
                    wf_parallel: int | str, batch_size: int, image_size: int | None = None,
                    keep_best_every: int | None = None, mrcnf: bool = False, tag: str = "",
                    sample_n: int = 64, recipe: dict | None = None, wf_config: dict | None = None,
                    against: list[str] | None = None, seed: int = 0, protocol: str = "chunks",
                    glow_n_scales: int | None = None, resume: bool = False) -> dict:
    """Every contender trained for ``budget`` seconds (see ``protocol``) on dataset ``name`` (:data:`DATASETS`,
    its images resized to ``image_size`` if given), test bits/dim after each chunk, then the median seconds to
    draw ``sample_n`` samples from each trained model. With ``keep_best_every`` every model validates that often
    and is tested with its best validation's weights (early stopping, for small datasets). ``mrcnf`` adds MRCNF
    with its default configuration (not matched in parameters: its preset is the CPU one); runs go to
    ``OUT/runs/NAME{tag}``. ``recipe`` (``lr``, ``warmup``) replaces the library's defaults for every model;
    ``wf_config`` overrides Wavelet Flow's config (the Glows are matched to its parameters); ``against`` names the
    baselines to run (keys of :data:`BASELINES`; default all); ``seed`` seeds every model's training;
    ``glow_n_scales`` gives every Glow (normflows' too) that many scales instead of the library's (at most 3).

    ``protocol`` ``chunks`` trains each model in ``points`` resumed chunks of ``budget / points`` (each ending with
    its own decay) and tests after each; ``runs`` trains each baseline once, a fresh run of the whole budget as a
    user runs ``train --time-budget``, and Wavelet Flow in fresh runs of ``budget / 2**k`` for k = points-1 … 0
    (:func:`sweep_budgets`), each with its own single decay, so that the time Wavelet Flow needs to reach a
    baseline's final bits/dim is read off complete runs. A run of the ``runs`` protocol that diverges is run again,
    fresh, at half the learning rate (:func:`train_retrying`, the same rule for every contender; the curve's point
    records it). With ``resume`` (``runs`` only) a contender whose entry a stopped call finished
    (``OUT/runs/NAME/<contender>.json``, e.g. ``glow-residual-coupling.json``, for the same budget, points, batch,
    seed, test images, recipe, validation, scales, samples, size, config and parameters) is kept, not trained again;
    the others start afresh. In the ``chunks`` protocol a contender that diverges fails the call."""
    recipe = dict(recipe or {})
    options = {**recipe, **({} if not keep_best_every else {"keep_best": True, "eval_every": keep_best_every})}
    path = SHARED / DATASETS[name]
    if not path.exists():
        return {"dataset": name, "skipped": f"{path} not found"}
    data = load_dataset(str(path), image_size=image_size)
    test = data.x_test[:test_images]
    shape = data.image_shape
    wf_cfg = waveletflow_config(tuple(shape), 8, **copy.deepcopy(wf_config)) if wf_config else waveletflow_default(shape, 8)
    target = count_params(build_model("waveletflow", wf_cfg))
    glow_cfgs = {name: matched_glow_config(model_type, shape, 8, target, glow_n_scales)
                 for name, (model_type, _, _) in GLOWS.items()}
    nf_scales, nf_steps = glow_n_scales or glow_scales(shape), glow_cfgs["Glow (residual coupling)"].n_steps
    hidden = matched_normflows_hidden(shape, nf_scales, nf_steps, target)
    runs = out / "runs" / ((name if image_size is None else f"{name}{image_size}") + tag)
    if not (resume and protocol == "runs"):
        shutil.rmtree(runs, ignore_errors=True)
    resume = resume and protocol == "runs"
    contenders = [
        Ours("Wavelet Flow", "waveletflow", wf_cfg, runs / "waveletflow", data, str(path), device, batch_size,
             wf_parallel, seed=seed, options=options),
        *(Ours(name, model_type, glow_cfgs[name], runs / model_type, data, str(path), device, batch_size,
               seed=seed, options=options) for name, (model_type, _, _) in GLOWS.items() if wanted(model_type, against)),
    ]
    if mrcnf:
        contenders.append(Ours("MRCNF", "mrcnf", default_config("mrcnf", shape, 8), runs / "mrcnf", data, str(path),
                               device, batch_size, options=options))
    try:
        if wanted("normflows", against):
            contenders.append(NormflowsGlow(shape, nf_scales, nf_steps, hidden, data, device, batch_size, seed=seed,
                                            keep_best_every=keep_best_every, **recipe))
    except ImportError:
        print("note: normflows is not installed (pip install normflows); its Glow is left out", file=sys.stderr)
    if image_size is not None:
        name = f"{name}{image_size}"
    result = {"dataset": name, "budget_s": budget, "test_images": len(test), "batch": batch_size,
              "glow_n_scales": glow_cfgs["Glow"].n_scales,
              "keep_best_every": keep_best_every, "seed": seed, "protocol": protocol, "models": [],
              **({"wf_config": wf_config} if wf_config else {})}
    # what a kept entry must have been trained and tested with (and each contender's parameters)
    signature = {"budget_s": budget, "points": points, "batch": batch_size, "seed": seed, "test_images": len(test),
                 "recipe": recipe, "keep_best_every": keep_best_every, "glow_n_scales": glow_n_scales,
                 "sample_n": sample_n, "image_size": image_size, "wf_config": wf_config}
    for c in contenders:
        params = c.params()
        done_file = runs / (re.sub(r"[^a-z0-9]+", "-", c.name.lower()).strip("-") + ".json")  # its finished entry
        kept = _finished(done_file, signature | {"params": params}) if resume else None
        if kept is not None:
            print(f"[{name}] {c.name}: kept from {done_file.name}", flush=True)
            result["models"].append(kept)
            continue
        curve = []
        if protocol == "chunks":
            for _ in range(points):
                c.train_for(budget / points)
                curve.append(_tested(c, test, name))
        elif c is contenders[0]:  # Wavelet Flow: fresh runs of growing budgets, the whole budget last
            for b in sweep_budgets(budget, points):
                run = c.fresh(run_folder(runs, c.model_type, b, budget))
                run, tries = train_retrying(run, b)
                c = run if b == budget else c
                curve.append({"budget_s": round(b, 1), **_tested(run, test, name), **tries})
        else:
            c, tries = train_retrying(c.fresh() if resume else c, budget)
            curve.append({"budget_s": round(budget, 1), **_tested(c, test, name), **tries})
        sample_s = c.sample_seconds(sample_n, 3)
        print(f"[{name}] {c.name}: {sample_n} samples in {sample_s:.3f} s", flush=True)
        entry = {"name": c.name, "params": params, "param_ratio": round(params / target, 3),
                 "curve": curve, "sample_n": sample_n, "sample_s": round(sample_s, 4),
                 **({"run": str(c.run_dir.relative_to(out))} if isinstance(c, Ours) else {})}
        result["models"].append(entry)
        if resume:
            write_json_atomic(done_file, {"signature": signature | {"params": params}, "entry": entry})
    wf = result["models"][0]
    for m in result["models"][1:]:
        result.setdefault("speedups", []).append(speedup(wf["curve"], m["curve"], m["name"]))
    plot_curves(result, out / f"time_to_quality_{name}{tag}.png")
    return result


#: how many times a diverged run is run again at half the learning rate before the row fails
RETRIES = 2


def train_retrying(c, seconds: float, retries: int = RETRIES):
    """Train contender ``c`` (untrained) for ``seconds``; if it diverges (:class:`~waveletflow.errors.Diverged`,
    the loss non-finite step after step), train a fresh copy at half the learning rate, at most ``retries``
    times. Returns the trained contender and what to record: ``{}``, or the learning rates that diverged and
    the one that trained (``{"diverged_lr": [...], "lr": ...}``).

    >>> class Toy:
    ...     def __init__(self, lr): self.lr = lr
    ...     def fresh(self, lr): return Toy(lr)
    ...     def train_for(self, s):
    ...         if self.lr > 1e-3: raise Diverged("the loss stayed non-finite")
    >>> train_retrying(Toy(4e-3), 1.0)[1]
    {'diverged_lr': [0.004, 0.002], 'lr': 0.001}
    """
    failed = []
    while True:
        try:
            c.train_for(seconds)
            return c, ({} if not failed else {"diverged_lr": failed, "lr": c.lr})
        except Diverged as exc:
            failed.append(c.lr)
            if len(failed) > retries:
                raise Diverged(f"{exc}; diverged at lr {', '.join(f'{v:g}' for v in failed)}") from None
            print(f"note: {getattr(c, 'name', 'a contender')} diverged at lr {c.lr:g}; run again at {c.lr / 2:g}",
                  file=sys.stderr, flush=True)
            c = c.fresh(lr=c.lr / 2)


def _finished(path: Path, signature: dict) -> dict | None:
    """A contender's entry that a stopped call of :func:`time_to_quality` finished, if it was for ``signature``."""
    try:
        done = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return done.get("entry") if isinstance(done, dict) and done.get("signature") == signature else None


def run_folder(runs: Path, model_type: str, budget_s: float, budget: float) -> Path:
    """The folder of a contender's run of ``budget_s`` seconds in a row of ``budget`` (``runs`` protocol): its own
    (``runs/<model_type>``) for the whole budget, ``runs/<model_type>-<budget_s>s`` for Wavelet Flow's shorter runs.

    >>> run_folder(Path("runs"), "waveletflow", 105.0, 420.0).as_posix()
    'runs/waveletflow-105s'
    """
    return runs / (model_type if budget_s == budget else f"{model_type}-{budget_s:g}s")


def sweep_budgets(budget: float, points: int) -> list[float]:
    """The budgets of Wavelet Flow's fresh runs in the ``runs`` protocol: ``budget / 2**k``, k = points-1 … 0."""
    return [budget / 2 ** k for k in range(points - 1, -1, -1)]


def _tested(c, test, name: str) -> dict:
    """Test bits/dim of contender ``c`` as trained so far, with its training seconds and each level's steps."""
    bpd = c.test_bpd(test, best=True) if isinstance(c, NormflowsGlow) else c.test_bpd(test)
    print(f"[{name}] {c.name}: {c.trained_s:.0f} s, test {bpd:.4f} bits/dim", flush=True)
    return {"train_s": round(c.trained_s, 1), "test_bpd": round(bpd, 4), "steps": c.steps}


#: each contender's model type by its name in the rows (its run folder's name, :func:`run_folder`); normflows' Glow
#: has no run folder
MODEL_TYPES = {"Wavelet Flow": "waveletflow", "MRCNF": "mrcnf", **{n: t for n, (t, _, _) in GLOWS.items()}}


#: the baselines of the time-to-quality runs, by the key ``--against`` takes
BASELINES = ("glow", "glow-residual", "normflows")


def wanted(key: str, against: list[str] | None) -> bool:
    """Whether the baseline ``key`` (one of :data:`BASELINES`) is run: all are when ``against`` is None."""
    return against is None or key in against


def speedup(wf_curve: list[dict], other_curve: list[dict], other: str) -> dict:
    """How much sooner Wavelet Flow reaches the test bits/dim that ``other`` reaches at the end of its budget."""
    goal, t_end = other_curve[-1]["test_bpd"], other_curve[-1]["train_s"]
    prev_t, prev_b = 0.0, None
    for p in wf_curve:
        if p["test_bpd"] <= goal:
            t = p["train_s"]
            if prev_b is not None and prev_b > goal:  # interpolate between the two measured points
                t = prev_t + (prev_b - goal) / (prev_b - p["test_bpd"]) * (p["train_s"] - prev_t)
            return {"against": other, "goal_bpd": goal, "wavelet_flow_s": round(t, 1), "speedup": round(t_end / t, 2)}
        prev_t, prev_b = p["train_s"], p["test_bpd"]
    return {"against": other, "goal_bpd": goal, "wavelet_flow_s": None, "speedup": None,
            "note": f"Wavelet Flow did not reach {goal:.3f} bits/dim within its budget (ended at {wf_curve[-1]['test_bpd']:.3f})"}


def plot_curves(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for m in result["models"]:
        line = ax.plot([p["train_s"] / 60 for p in m["curve"]], [p["test_bpd"] for p in m["curve"]], "o-", ms=3,
                       label=f"{m['name']} ({m['params'] / 1e6:.2f} M)")[0]
        if len(m["curve"]) == 1:  # one run of the whole budget: its figure as a level to reach
            ax.axhline(m["curve"][0]["test_bpd"], color=line.get_color(), ls="--", lw=0.8)
    ax.set_xlabel("training time (min)")
    ax.set_ylabel("test bits/dim")
    ax.set_title(f"{result['dataset']}: {result['test_images']} test images")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def trained_level_rates(out: Path, result: dict, data_name: str, batch: int, repeats: int, device: str) -> list[dict]:
    """Per level of the trained Wavelet Flow and MRCNF of a time-to-quality ``result``: images/s of one training
    step at ``batch`` (forward, backward, Adam step; for MRCNF the loss includes its regularisers) and, for MRCNF,
    the ODE function evaluations (NFE) of that step's forward solve (training solver) and of a test pass of the
    same images (evaluation solver). NFE depend on the trained dynamics, hence measured on trained models."""
    from waveletflow import load
    from waveletflow.metrics import LN2

    data = load_dataset(str(SHARED / DATASETS[data_name]))
    images = data.x_test[:batch]
    rows = []
    for m in result["models"]:
        if m["name"] not in ("Wavelet Flow", "MRCNF"):
            continue
        model = load(out / m["run"], device)
        names = model.level_names()
        test_nfe = model.bits_per_dim(images, data_bits=data.n_bits, batch_size=batch).nfe
        for level in range(len(model.levels)):
            x = model.prepare(images, torch.Generator().manual_seed(level), data.n_bits)
            dims = model.level_dims[level]

            def loss(v, lv=level, d=dims):
                o = model.objective([lv], v)
                return o.nll / (d * LN2) + o.reg

            model.train()
            nfe = model.objective([level], x).nfe
            secs = step_seconds(model, loss, x, repeats)
            row = {"model": m["name"], "level": level, "what": names[level], "params": model.num_parameters(level),
                   "batch": batch, "images_per_s": round(batch / secs, 1), "train_nfe": nfe,
                   "test_nfe": None if test_nfe is None else test_nfe[level]}
            rows.append(row)
            print(f"[levels] {row}", flush=True)
    return rows
