"""sampler=uniform: shuffled epochs over the prompt pool, a fixed n per prompt (the baseline; no paper).

Step s takes prompts s*k .. s*k+k-1 of an endless sequence of seeded permutations, so the plan of any step is
a function of (seed, step) alone and resuming needs no state. Reference point for budget allocators, e.g.
Knapsack RL (arXiv 2509.25849) compares against exactly this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlpost.samplers import SAMPLERS, Plan, SamplerContext


@dataclass
class UniformConfig:
    name: str = "uniform"


@SAMPLERS.register("uniform", UniformConfig)
class UniformSampler:
    def __init__(self, cfg: UniformConfig, context: SamplerContext) -> None:
        self.cfg, self.context = cfg, context
        self._order: tuple[int, np.ndarray] = (-1, np.empty(0, dtype=np.int64))

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._order[0] != epoch:
            self._order = (
                epoch,
                np.random.default_rng([self.context.seed, epoch]).permutation(self.context.num_prompts),
            )
        return self._order[1]

    def select(self, step: int) -> Plan:
        k, size = self.context.prompts_per_step, self.context.num_prompts
        positions = range(step * k, step * k + k)
        return [(int(self._epoch_order(p // size)[p % size]), self.context.n) for p in positions]

    def update(self, plan: Plan, batch) -> None:
        """Uniform sampling learns nothing from results."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore: the plan is a function of (seed, step)."""
