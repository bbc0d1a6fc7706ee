"""Annealed sampling's cost: this library's vectorised NUTS against Pyro's NUTS on the same targets, and its
passes over only the chains still moving against passes over every chain.

For every level of a trained run, both samplers draw from the same annealed target
(``waveletflow.sampling.annealed_potential``: ``p(level | low)^(1/T²)`` in the level's latent space, the low-pass drawn once by
exact sampling), with the same settings (10 warm-up iterations of dual-averaging step-size adaptation towards an
acceptance of 0.6, 30 sampling iterations, maximum tree depth 10, identity mass matrix, one chain per image,
started from temperature-scaled noise). Ours runs all chains in one batch; Pyro's ``MCMC`` runs one chain per
call (several chains only as separate processes), so its images go one after another. Ours runs twice, with
the same seed: evaluating at each leapfrog step only the chains whose trajectories still grow (the default), and
evaluating every chain at every step (as before; the chains are the same up to rounding)::

    python -m benchmarks.mcmc RUN [--n 64] [--pyro-n 4] [--temperature 0.97] [--steps 30] [--warmup 10] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from waveletflow import load
from waveletflow.mcmc import MCMCOptions, nuts, potential_and_grad
from waveletflow.sampling import annealed_potential


def _pyro_chain(potential, z0: torch.Tensor, opts: MCMCOptions, seed: int) -> tuple[torch.Tensor, float]:
    """One Pyro NUTS chain; the last sample and the adapted step size."""
    import pyro
    from pyro.infer import MCMC, NUTS

    pyro.set_rng_seed(seed)
    kernel = NUTS(potential_fn=lambda p: potential(p["z"][None])[0], adapt_step_size=True, adapt_mass_matrix=False,
                  target_accept_prob=opts.target_accept, max_tree_depth=opts.max_tree_depth)
    mcmc = MCMC(kernel, num_samples=opts.steps, warmup_steps=opts.warmup, initial_params={"z": z0},
                disable_progbar=True)
    mcmc.run()
    return mcmc.get_samples()["z"][-1], float(kernel.step_size)


def measure(run: str, n: int, pyro_n: int, temperature: float, seed: int = 0,
            opts: MCMCOptions = MCMCOptions()) -> dict:
    """Seconds per image of every level's annealed sampling by each sampler, with their step sizes."""
    model = load(run, "cpu").eval()
    gen = torch.Generator().manual_seed(seed)
    low = None
    rows = []
    names = model.level_names()
    for level in range(len(model.levels)):
        dim = model.level_dims[level]
        z0 = temperature * torch.randn(n, dim, generator=gen)
        x = None if low is None else low

        def potential(z, idx, x=x, level=level):  # the chains idx are images: rows of the low-pass
            return annealed_potential(model, level, z, None if x is None else x[idx], temperature)

        row = {"level": level, "name": names[level], "dims": dim}
        half = torch.arange(0, n, 2)
        potential_and_grad(lambda z: potential(z, half), z0[half])  # warm-up: no first-call costs in the timings
        for key, by_rows in (("ours", True), ("all_chains", False)):
            fn = potential if by_rows else (lambda z, f=potential: f(z, torch.arange(z.shape[0])))
            t0 = time.perf_counter()
            _, stats = nuts(fn, z0, opts, generator=torch.Generator().manual_seed(seed + level), rows=by_rows)
            row.update({f"{key}_s_per_image": round((time.perf_counter() - t0) / n, 4),
                        f"{key}_step_size": round(stats.step_size, 4), f"{key}_accept": round(stats.accept_rate, 3),
                        f"{key}_leapfrog_steps": round(stats.leapfrog_steps, 2), f"{key}_passes": stats.gradient_evals,
                        f"{key}_chain_evals": stats.row_evals})
        row["moving_chains_speedup"] = round(row["all_chains_s_per_image"] / row["ours_s_per_image"], 2)
        ours = row["ours_s_per_image"]
        try:
            if pyro_n < 1:
                raise ImportError  # Pyro left out
            t0 = time.perf_counter()
            steps = []
            for i in range(pyro_n):
                def one(z, i=i, f=potential):  # chain i alone: image i's low-pass
                    return f(z, torch.tensor([i]))

                _, step = _pyro_chain(one, z0[i].clone(), opts, seed + i)
                steps.append(step)
            row["pyro_s_per_image"] = round((time.perf_counter() - t0) / pyro_n, 4)
            row["pyro_step_size"] = round(sum(steps) / len(steps), 4)
            row["speedup"] = round(row["pyro_s_per_image"] / ours, 1)
        except ImportError:
            row["pyro_s_per_image"] = None
        rows.append(row)
        print(row, flush=True)
        with torch.no_grad():  # the next level's context: this level drawn exactly
            zl = temperature * torch.randn(n, dim, generator=gen)
            low = model.invert_level(level, zl, low)[0]
    return {"run": run, "n": n, "pyro_n": pyro_n, "temperature": temperature, "steps": opts.steps,
            "warmup": opts.warmup, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "levels": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks mcmc", description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--n", type=int, default=64, help="chains (images) of the vectorised sampler")
    p.add_argument("--pyro-n", type=int, default=4, help="chains run one after another with Pyro (0: Pyro left out)")
    p.add_argument("--temperature", type=float, default=0.97)
    p.add_argument("--steps", type=int, default=MCMCOptions.steps, help="NUTS iterations after the warm-up")
    p.add_argument("--warmup", type=int, default=MCMCOptions.warmup, help="step-size adaptation iterations")
    p.add_argument("--out", help="write the JSON here")
    a = p.parse_args(argv)
    res = measure(a.run, a.n, a.pyro_n, a.temperature, opts=MCMCOptions(steps=a.steps, warmup=a.warmup))
    res["command"] = (f"python -m benchmarks.mcmc RUN --n {a.n} --pyro-n {a.pyro_n} --temperature {a.temperature} "
                      f"--steps {a.steps} --warmup {a.warmup}")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
