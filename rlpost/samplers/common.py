"""Pieces shared by the stateful samplers: seeded RNG state as plain data, the shuffled prompt stream, per-group
success counts, state-dict conversion, and Student-t quantiles (no scipy dependency)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from rlpost.config import check
from rlpost.samplers import Plan


@dataclass
class StatefulConfig:
    """Keys every learning sampler has."""

    name: str = ""
    success_threshold: float = 0.5  # a completion whose total reward is above this counts as solved


def make_rng(seed: int, *keys: int) -> np.random.Generator:
    """The sampler's own generator (never a global RNG), seeded by (run seed, keys)."""
    return np.random.default_rng([seed, *keys])


def rng_state(rng: np.random.Generator) -> dict:
    """The generator's state as plain ints/strings (torch.load(weights_only=True) reads it)."""
    state = rng.bit_generator.state
    return {
        "bit_generator": str(state["bit_generator"]),
        "state": int(state["state"]["state"]),
        "inc": int(state["state"]["inc"]),
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = {
        "bit_generator": state["bit_generator"],
        "state": {"state": state["state"], "inc": state["inc"]},
        "has_uint32": state["has_uint32"],
        "uinteger": state["uinteger"],
    }


def to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array).copy())


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


class PromptStream:
    """An endless sequence of seeded permutations of the pool; `take(k)` returns the next k distinct-in-epoch
    prompts. The state is one int (the position), so resuming replays the stream exactly."""

    def __init__(self, num_prompts: int, seed: int, salt: int = 0) -> None:
        self.num_prompts, self.seed, self.salt = num_prompts, seed, salt
        self.position = 0
        self._order: tuple[int, np.ndarray] = (-1, np.empty(0, dtype=np.int64))

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._order[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch] + ([self.salt] if self.salt else []))
            self._order = (epoch, rng.permutation(self.num_prompts))
        return self._order[1]

    def take(self, count: int) -> list[int]:
        size = self.num_prompts
        out = [int(self._epoch_order(p // size)[p % size]) for p in range(self.position, self.position + count)]
        self.position += count
        return out


def group_outcomes(batch, threshold: float) -> tuple[list[int], list[int], list[int]]:
    """Per group of `batch`: (prompt index, successes, size) lists, groups in group_index order."""
    group_index = batch.group_index
    count = int(group_index.max()) + 1 if len(batch) else 0
    sizes = torch.bincount(group_index, minlength=count)
    solved = (batch.reward > threshold).long()
    successes = torch.zeros(count, dtype=torch.long).index_add_(0, group_index, solved)
    prompts = torch.zeros(count, dtype=torch.long).index_copy_(0, group_index, batch.prompt_index)
    return prompts.tolist(), successes.tolist(), sizes.tolist()


def informative_groups(batch, values: torch.Tensor | None = None) -> torch.Tensor:
    """[G] bool: groups whose `values` ([B], default the total reward) are not all equal (for the total reward: a
    group-relative advantage is non-zero)."""
    values = (batch.reward if values is None else values).float()
    count = int(batch.group_index.max()) + 1
    low = torch.full((count,), float("inf")).scatter_reduce(0, batch.group_index, values, "amin")
    high = torch.full((count,), float("-inf")).scatter_reduce(0, batch.group_index, values, "amax")
    return high > low


def check_plan(plan: Plan, budget: int, num_prompts: int) -> None:
    """Every allocator's contract: known prompts, >= 1 completion each, total within the step budget."""
    total = sum(n for _, n in plan)
    check(total <= budget, "sampler", f"plan asks for {total} rollouts, over the step budget {budget}")
    for index, n in plan:
        check(0 <= index < num_prompts and n >= 1, "sampler", f"bad plan entry ({index}, {n})")


def _t_two_sided_mass(t: float, dof: int) -> float:
    """P(|T| < t) for Student's t with integer `dof` (closed form series, Abramowitz & Stegun 26.7.3/4)."""
    theta = math.atan(t / math.sqrt(dof))
    cos2, sin = math.cos(theta) ** 2, math.sin(theta)
    if dof % 2 == 0:
        term, total = 1.0, 1.0
        for k in range(2, dof - 1, 2):
            term *= cos2 * (k - 1) / k
            total += term
        return sin * total
    if dof == 1:
        return 2 * theta / math.pi
    term, total = 1.0, 1.0
    for k in range(3, dof - 1, 2):
        term *= cos2 * (k - 1) / k
        total += term
    return 2 / math.pi * (theta + sin * math.cos(theta) * total)


@lru_cache(maxsize=4096)
def t_quantile(confidence: float, dof: int) -> float:
    """t_{(1+confidence)/2, dof}: the two-sided `confidence` critical value (e.g. 0.95, 3 -> 3.182)."""
    low, high = 0.0, 1e4
    for _ in range(200):
        mid = (low + high) / 2
        if _t_two_sided_mass(mid, dof) < confidence:
            low = mid
        else:
            high = mid
    return (low + high) / 2
