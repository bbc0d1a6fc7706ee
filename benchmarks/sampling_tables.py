"""The tables of ``docs/guide/sampling.md``, written from their result files (standard library only).

- ``mcmc-pyro``: ``benchmarks/results/mcmc_vs_pyro.json`` (``python -m benchmarks.mcmc RUN --n 64 --pyro-n 2``):
  the batched NUTS sampler against Pyro's, per level;
- ``mcmc-rows``: ``benchmarks/results/mcmc_rows.json`` (``python -m benchmarks.mcmc runs/cifar --n 64 --pyro-n 0``):
  potentials evaluated and seconds per image, moving chains only against every chain of the batch, per level
  and for all levels;
- ``sample-quality``: every ``benchmarks/results/quality/*.json`` (``waveletflow quality ... --json``), loaded by
  :func:`quality_result` (``python -m benchmarks report`` loads the folder the same way): one row per file without a
  seed suffix (``_s1``, ``_s2``: other seeds), and the sanity rows of the file that has them;
- ``sample-quality-seeds``: the same files, every seed: FD and KID per seed of each way of sampling, and generated
  lines comparing annealed sampling (MCMC) with exact sampling and with latent temperature seed by seed.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from benchmarks.paths import REPO

MCMC_VS_PYRO = REPO / "benchmarks" / "results" / "mcmc_vs_pyro.json"
MCMC_ROWS = REPO / "benchmarks" / "results" / "mcmc_rows.json"
QUALITY = REPO / "benchmarks" / "results" / "quality"

#: a quality file's stem prefix (before the first ``_``) → its data set's name in the table, in the table's order
DATASETS = {"mnist": "MNIST", "cifar": "CIFAR-10 subset"}
#: the labels of the sanity rows (``scores`` of a ``--baselines`` file, in its order; other keys are their own label)
BASELINES = {"blur training images": "blurred training images", "noise training images": "noise"}
_SEED = re.compile(r"_s\d+$")


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _level(level: dict) -> str:
    """``0: base 7×7 (49 dims)`` from the level's number, name (``base 7x7``, ``details 7x7 -> 14x14``) and dims."""
    name = re.sub(r"(\d)x(\d)", r"\1×\2", level.get("name", "")).replace("->", "→")
    label = f"{level['level']}: {name}" if name else str(level["level"])
    return f"{label} ({level['dims']} dims)" if "dims" in level else label


def _seconds(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def mcmc_pyro(result: dict) -> str:
    """Seconds per image and adapted step sizes per level: the batched sampler against Pyro's, one chain at a time."""
    levels = result.get("levels") or []
    if not levels:
        return ("Not measured yet: `python -m benchmarks.mcmc RUN --n 64 --pyro-n 2 --out "
                "benchmarks/results/mcmc_vs_pyro.json` measures it.\n")
    lines = [_row(["level", f"ours, {result.get('n', '?')} chains in one batch: s per image",
                   "Pyro, one chain after another: s per image", "ratio", "step sizes (ours / Pyro)"]),
             _row(["---"] * 5)]
    for lv in levels:
        ours, pyro = lv["ours_s_per_image"], lv.get("pyro_s_per_image")
        ratio = "–" if pyro is None else f"{pyro / ours:.1f}×"
        steps = f"{lv['ours_step_size']:.2f} / " + ("–" if lv.get("pyro_step_size") is None
                                                     else f"{lv['pyro_step_size']:.2f}")
        lines.append(_row([_level(lv), _seconds(ours, 2), _seconds(pyro, 2), ratio, steps]))
    return "\n".join(lines) + "\n"


def mcmc_rows(result: dict) -> str:
    """Potentials evaluated and seconds per image per level, moving chains only against every chain, and in all."""
    levels = result.get("levels") or []
    if not levels:
        return ("Not measured yet: `python -m benchmarks.mcmc runs/cifar --n 64 --pyro-n 0 --out "
                "benchmarks/results/mcmc_rows.json` measures it.\n")
    lines = [_row(["level", "chains' potentials evaluated: moving chains / every chain", "s per image: moving chains",
                   "every chain", "ratio"]),
             _row(["---"] * 5)]
    for lv in levels:
        ours, every = lv["ours_s_per_image"], lv["all_chains_s_per_image"]
        lines.append(_row([_level(lv), f"{lv['ours_chain_evals']:,} / {lv['all_chains_chain_evals']:,}",
                           f"{ours:.3f}", f"{every:.3f}", f"{every / ours:.2f}×"]))
    ours = sum(lv["ours_s_per_image"] for lv in levels)
    every = sum(lv["all_chains_s_per_image"] for lv in levels)
    lines.append(_row(["all levels", "", f"{ours:.2f}", f"{every:.2f}", f"{every / ours:.2f}×"]))
    return "\n".join(lines) + "\n"


def quality_result(folder: Path = QUALITY) -> dict:
    """Every quality file of ``folder``, by stem (what ``python -m benchmarks report`` gives ``sample_quality``)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))}


def _fixed(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def _significant(value: float, figures: int = 3) -> str:
    """``value`` to ``figures`` significant figures, trailing zeros kept (0.00600, 1.30, 4.21)."""
    digits = figures - 1 - math.floor(math.log10(abs(value))) if value else figures - 1
    return f"{value:.{max(0, digits)}f}"


def _method(run: dict) -> str:
    t = f"{run['temperature']:g}"
    if run.get("mcmc"):
        return f"Wavelet Flow: MCMC, T = {t}"
    return "Wavelet Flow: exact, T = 1" if run["temperature"] == 1 else f"Wavelet Flow: latent temperature, T = {t}"


def _order(run: dict) -> tuple:
    return (bool(run.get("mcmc")), run["temperature"] != 1, -run["temperature"])


def sample_quality(result: dict) -> str:
    """One row per quality file (seed 0), then the sanity rows, per data set; the best FD and KID of the samples of
    each data set in bold."""
    runs = {stem: r for stem, r in result.items() if isinstance(r, dict) and "samples" in r.get("scores", {})}
    if not runs:
        return ("Not measured yet: `waveletflow quality RUN --data DATA --n 200 --json` (`--baselines` for the sanity "
                "rows, `--temperature`, `--mcmc`) gives each file of `benchmarks/results/quality/`.\n")
    prefixes = {stem.split("_")[0] for stem in runs}
    lines = [_row(["data", "images", "FD", "KID", "confidence", "class entropy (bits)", "s per image",
                   "acceptance per level"]),
             _row(["---"] * 8)]
    for prefix in [*[p for p in DATASETS if p in prefixes], *sorted(prefixes - set(DATASETS))]:
        data = DATASETS.get(prefix, prefix)
        mine = sorted((r for stem, r in runs.items() if stem.split("_")[0] == prefix and not _SEED.search(stem)),
                      key=_order)
        best_fd = min(r["scores"]["samples"]["fd"] for r in mine) if mine else None
        best_kid = min(r["scores"]["samples"]["kid"] for r in mine) if mine else None

        def cells(s: dict, bold: bool = False) -> list[str]:
            fd, kid = f"{s['fd']:.1f}", f"{_fixed(s['kid'], 2)} ± {s['kid_std']:.2f}"
            if bold and s["fd"] == best_fd:
                fd = f"**{fd}**"
            if bold and s["kid"] == best_kid:
                kid = f"**{kid}**"
            return [fd, kid, f"{s['confidence']:.3f}", _fixed(s["class_entropy"], 2)]

        for r in mine:
            accept = " / ".join(f"{lv['accept_rate']:.2f}" for lv in r.get("mcmc") or [])
            lines.append(_row([data, _method(r), *cells(r["scores"]["samples"], bold=True),
                               _significant(r["seconds_per_image"]), accept]))
        for r in mine:
            for key, scores in r["scores"].items():
                if key != "samples":
                    lines.append(_row([data, BASELINES.get(key, key), *cells(scores), "", ""]))
    return "\n".join(lines) + "\n"


def _seed(stem: str) -> int:
    m = _SEED.search(stem)
    return int(m.group()[2:]) if m else 0


def _by_method(runs: dict, prefix: str) -> dict[str, dict[int, dict]]:
    """Method label → seed → the run, for the data set of ``prefix``, in the table's order."""
    mine = sorted(((stem, r) for stem, r in runs.items() if stem.split("_")[0] == prefix), key=lambda sr: _order(sr[1]))
    out: dict[str, dict[int, dict]] = {}
    for stem, r in mine:
        out.setdefault(_method(r), {})[_seed(stem)] = r
    return out


def _against(data: str, methods: dict[str, dict[int, dict]], mine: str, other: str) -> str | None:
    """A generated line: ``mine`` against ``other``, seed by seed (the seeds both ran), FD and KID lower or not, and
    the cost per image as a ratio."""
    if mine not in methods or other not in methods:
        return None
    seeds = sorted(set(methods[mine]) & set(methods[other]))
    if not seeds:
        return None

    def lower(what: str) -> int:
        return sum(methods[mine][s]["scores"]["samples"][what] < methods[other][s]["scores"]["samples"][what]
                   for s in seeds)

    cost = [methods[mine][s]["seconds_per_image"] / methods[other][s]["seconds_per_image"] for s in seeds]
    ratio = f"{min(cost):.0f}×" if round(min(cost)) == round(max(cost)) else f"{min(cost):.0f}–{max(cost):.0f}×"
    return (f"- {data}, {mine.removeprefix('Wavelet Flow: ')} against {other.removeprefix('Wavelet Flow: ')}: FD lower "
            f"in {lower('fd')} of {len(seeds)} seeds, KID lower in {lower('kid')} of {len(seeds)}, at {ratio} the "
            "seconds per image.")


def sample_quality_seeds(result: dict) -> str:
    """FD and KID of every seed of every way of sampling (``seed 0 / 1 / 2``; – where a seed was not run), then
    annealed sampling against exact sampling and against latent temperature at the same T, seed by seed."""
    runs = {stem: r for stem, r in result.items() if isinstance(r, dict) and "samples" in r.get("scores", {})}
    if not runs:
        return "Not measured yet: the files of `benchmarks/results/quality/` give this table.\n"
    seeds = sorted({_seed(stem) for stem in runs})
    head = " / ".join(map(str, seeds))
    lines = [_row(["data", "sampling", f"FD, seed {head}", f"KID, seed {head}", "s per image (lowest–highest)"]),
             _row(["---"] * 5)]
    verdicts = []
    prefixes = {stem.split("_")[0] for stem in runs}
    for prefix in [*[p for p in DATASETS if p in prefixes], *sorted(prefixes - set(DATASETS))]:
        data = DATASETS.get(prefix, prefix)
        methods = _by_method(runs, prefix)
        for label, by_seed in methods.items():
            def per_seed(what: str, digits: int, by_seed=by_seed) -> str:
                return " / ".join(f"{by_seed[s]['scores']['samples'][what]:.{digits}f}" if s in by_seed else "–"
                                  for s in seeds)

            secs = [r["seconds_per_image"] for r in by_seed.values()]
            lines.append(_row([data, label.removeprefix("Wavelet Flow: "), per_seed("fd", 1), per_seed("kid", 2),
                               f"{_significant(min(secs))}–{_significant(max(secs))}" if min(secs) != max(secs)
                               else _significant(secs[0])]))
        for label in methods:
            if "MCMC" in label:
                t = label.rsplit("= ", 1)[1]
                verdicts += [_against(data, methods, label, "Wavelet Flow: exact, T = 1"),
                             _against(data, methods, label, f"Wavelet Flow: latent temperature, T = {t}")]
    return "\n".join(lines + [""] + [v for v in verdicts if v]) + "\n"


#: block name → what makes the block from its result (``report.SOURCES`` pairs them with the paths above)
BLOCKS = {"mcmc-pyro": mcmc_pyro, "mcmc-rows": mcmc_rows, "sample-quality": sample_quality,
          "sample-quality-seeds": sample_quality_seeds}
#: block name → its result file (a folder for ``sample-quality``: every JSON in it, by stem)
RESULTS = {"mcmc-pyro": MCMC_VS_PYRO, "mcmc-rows": MCMC_ROWS, "sample-quality": QUALITY,
           "sample-quality-seeds": QUALITY}
