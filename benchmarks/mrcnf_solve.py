"""MRCNF training solves with the RNODE integrals inside or outside the ODE solver's error control.

Trains the default MRCNF on MNIST from the same initial weights and batches twice: as before (every ODE state,
the kinetic-energy and Jacobian-norm integrals included, steers the adaptive step size) and as now (only the
state and its log-det do, as in the RNODE and MRCNF code), and reports function evaluations (NFE) per training
step, images/s and the training bits/dim, side by side::

    python -m benchmarks.mrcnf_solve [--steps 40] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from benchmarks.paths import REPO, SHARED
from waveletflow.data import load_dataset
from waveletflow.layers.cnf import CNF
from waveletflow.metrics import LN2, bits_per_dim
from waveletflow.models import build_model, default_config


@contextmanager
def all_states_controlled():
    """The solve as it was: every state under the solver's error control."""
    solve = CNF._solve

    def old(self, dynamics, state, t0, t1, solver, controlled=None):
        return solve(self, dynamics, state, t0, t1, solver, None)

    CNF._solve = old
    try:
        yield
    finally:
        CNF._solve = solve


def measure(steps: int, batch_size: int, seed: int = 0) -> dict:
    """NFE per step, images/s and the mean training bits/dim over ``steps`` optimiser steps of every level."""
    data = load_dataset(str(SHARED / "mnist.npz"))
    torch.manual_seed(seed)
    model = build_model("mrcnf", default_config("mrcnf", data.image_shape, data.n_bits))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out = {}
    for name, ctx in (("all states controlled (before)", all_states_controlled), ("RNODE integrals free (now)", None)):
        model.load_state_dict(state)
        model.train()
        gen = torch.Generator().manual_seed(seed)
        for m in model.modules():
            if isinstance(m, CNF):
                m.noise_generator = gen
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        batches = torch.Generator().manual_seed(seed + 1)
        nfe = secs = bpd = 0.0
        with (ctx() if ctx else _null()):
            for _ in range(steps):
                idx = torch.randint(0, len(data.x_train), (batch_size,), generator=batches).numpy()
                x = model.prepare(data.x_train[idx], batches, data.n_bits)
                t0 = time.perf_counter()
                levels = list(range(len(model.levels)))
                o = model.objective(levels, x)
                loss = o.nll.mean() / (model.num_dims * LN2) + o.reg
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                secs += time.perf_counter() - t0
                nfe += o.nfe
                bpd += float(bits_per_dim(-o.nll.detach().mean(), model.num_dims, model.n_bits))
        out[name] = {"nfe_per_step": nfe / steps, "images_per_s": steps * batch_size / secs,
                     "train_bpd": bpd / steps}
    return out


@contextmanager
def _null():
    yield


RESULTS = REPO / "benchmarks" / "results" / "mrcnf_solve.json"
CASES = ("all states controlled (before)", "RNODE integrals free (now)")


def markdown(result: dict) -> str:
    """One generated sentence: function evaluations per step, images/s and training bits/dim, before and now.

    >>> r = {CASES[0]: {"nfe_per_step": 36.0, "images_per_s": 42.8, "train_bpd": 7.4227},
    ...      CASES[1]: {"nfe_per_step": 37.6, "images_per_s": 44.9, "train_bpd": 7.4234}, "machine": "M"}
    >>> print(markdown(r), end="")
    36.0 → 37.6 function evaluations per step and 42.8 → 44.9 images/s (1.05×), training bits/dim 7.423 → 7.423 (`benchmarks/results/mrcnf_solve.json`; M).
    """
    if not all(c in result for c in CASES):
        return "Not measured yet: `python -m benchmarks mrcnf-solve` writes `benchmarks/results/mrcnf_solve.json`.\n"
    before, now = (result[c] for c in CASES)
    return (f"{before['nfe_per_step']:.1f} → {now['nfe_per_step']:.1f} function evaluations per step and "
            f"{before['images_per_s']:.1f} → {now['images_per_s']:.1f} images/s "
            f"({now['images_per_s'] / before['images_per_s']:.2f}×), training bits/dim {before['train_bpd']:.3f} → "
            f"{now['train_bpd']:.3f} (`benchmarks/results/mrcnf_solve.json`; {result.get('machine', '?')}).\n")


BLOCKS = {"mrcnf-solve": markdown}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks mrcnf-solve", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default=str(RESULTS))
    a = p.parse_args(argv)
    res = measure(a.steps, a.batch_size)
    before, now = res.values()
    res["ratio"] = {"nfe": now["nfe_per_step"] / before["nfe_per_step"],
                    "images_per_s": now["images_per_s"] / before["images_per_s"]}
    res["command"] = f"python -m benchmarks.mrcnf_solve --steps {a.steps} --batch-size {a.batch_size}"
    res["machine"] = f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    for name, r in res.items():
        print(name, r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
