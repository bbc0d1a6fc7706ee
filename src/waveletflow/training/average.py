"""Polyak averaging: an exponential moving average of a module's parameters (Polyak & Juditsky 1992), as in
Glow's and Wavelet Flow's released training code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class PolyakAverage:
    """Averaged copies of ``module``'s parameters: ``avg ← d·avg + (1 − d)·p`` after each optimiser step, with
    ``d = min(decay, (1 + step) / (10 + step))`` so that the first steps do not weigh the initial weights."""

    def __init__(self, module: nn.Module, decay: float):
        self.module, self.decay = module, decay
        self.params: dict[str, Tensor] = {}
        self._pairs: tuple[list[Tensor], list[Tensor]] | None = None  # (averages, parameters), for update
        self.reset()

    @torch.no_grad()
    def reset(self) -> None:
        """Start the average at the module's current parameters."""
        self.params = {n: p.detach().clone() for n, p in self.module.named_parameters()}
        self._pairs = None

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the parameters after optimiser step ``step`` (counted from 1), all in one ``lerp``."""
        d = min(self.decay, (1 + step) / (10 + step))
        if self._pairs is None:
            own = dict(self.module.named_parameters())
            self._pairs = ([self.params[n] for n in own], [p.detach() for p in own.values()])
        torch._foreach_lerp_(self._pairs[0], self._pairs[1], 1 - d)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The module holds the averaged parameters inside the block, its own ones again after it."""
        own = {n: p.detach().clone() for n, p in self.module.named_parameters()}
        self._copy_in(self.params)
        try:
            yield
        finally:
            self._copy_in(own)

    @torch.no_grad()
    def _copy_in(self, values: dict[str, Tensor]) -> None:
        for n, p in self.module.named_parameters():
            p.copy_(values[n])

    def finite(self) -> bool:
        return all(bool(torch.isfinite(v).all()) for v in self.params.values())

    def state_dict(self) -> dict[str, Tensor]:
        return {n: v.clone() for n, v in self.params.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        missing = set(self.params) - set(state)
        if missing:
            raise KeyError(f"the average lacks {sorted(missing)[0]}")
        self.params = {n: state[n].to(self.params[n]).clone() for n in self.params}
        self._pairs = None
