"""sampler=knapsack: per-prompt rollout budgets from a knapsack over the step's total budget.

Paper: "Knapsack RL: Unlocking Exploration of LLMs via Optimizing Budget Allocation", Li et al., arXiv 2509.25849
(rule as in the official code, liziniu/KnapsackRL exploration_utils.sampling_budget_by_knapsack).

Prompts: the next B of a seeded shuffled stream (the usual dataloader). Per prompt i, p_i = success rate of its
last visit, or of its last `buffer_length` rewards when that visit had fewer; valid once >= min_count rewards seen.
Allocation of N_total = B * n rollouts:
    never seen: N_i = n;   valid p_i = 0: negative_n;   p_i = 1: positive_n;   0 < p_i < 1: min_n  ("effective")
    R = N_total - sum N_i.  Fallback: c_i = log(1 - fallback_alpha) / log(max(p_i, 1 - p_i)) rollouts give a mixed
    group with probability fallback_alpha; the knapsack gets min(R, sum_i (min(max_n, c_i) - min_n)) extras and
    the surplus explores (below).
    Knapsack: maximise sum_i Value(N_i, p_i) over effective prompts, N_i in [min_n, max_n], sum of extras <= R,
        Value(N, p) = (1 - p^N - (1 - p)^N) * p (1 - p)^2      (P(non-zero gradient) x InfoGain)
    solved exactly by dynamic programming over (prompt, budget). What is left goes evenly to the p_i = 0 prompts,
    and only past their max_n to never-seen, then effective, then solved prompts (the paper does not cap the
    spread; the cap keeps every N_i <= max_n).
Every N_i stays within [1, max_n] and sum N_i <= N_total, so a large budget can give a hard prompt e.g. 93.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rlpost.config import check, in_range
from rlpost.samplers import SAMPLERS, Plan, SamplerContext
from rlpost.samplers.common import PromptStream, StatefulConfig, to_numpy, to_tensor


@dataclass
class KnapsackConfig(StatefulConfig):
    name: str = "knapsack"
    min_n: int = 2  # rollouts for a prompt with 0 < p < 1 before the knapsack adds more (MIN_N)
    max_n: int = 128  # cap per prompt (MAX_N)
    negative_n: int = 2  # rollouts for a prompt whose last estimate is p = 0 (NEGATIVE_N)
    positive_n: int = 2  # rollouts for a prompt whose last estimate is p = 1 (POSITIVE_N)
    buffer_length: int = 16  # rewards kept per prompt; p falls back to their mean after a small visit
    min_count: int = 8  # rewards seen before a prompt's estimate is trusted (MIN_BUFFER_LENGTH)
    fallback_alpha: float = 0.9  # target probability of a mixed group when capping the knapsack's budget

    def __post_init__(self) -> None:
        for key in ("min_n", "negative_n", "positive_n", "buffer_length"):
            check(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        check(self.max_n >= self.min_n, "max_n", f"must be >= min_n={self.min_n}, got {self.max_n}")
        check(self.min_count >= 0, "min_count", f"must be >= 0, got {self.min_count}")
        in_range(self.fallback_alpha, "fallback_alpha", 0.0, 1.0, low_open=True)


def value(count: np.ndarray | int, p: np.ndarray | float) -> np.ndarray:
    """Value(N, p) = P(group of N is not all-same) * InfoGain(p)."""
    return (1.0 - p**count - (1.0 - p) ** count) * p * (1.0 - p) ** 2


def knapsack_extras(rates: list[float], base: int, cap: int, budget: int) -> list[int]:
    """Extras k_i in [0, cap - base] with sum <= budget maximising sum_i value(base + k_i, rates_i): exact DP."""
    width = max(0, min(budget, len(rates) * (cap - base)))
    choices = np.arange(min(cap - base, width) + 1)  # [K]
    source = np.arange(width + 1)[:, None] - choices[None, :] + len(choices)  # [W+1, K] index into padded best
    best = np.zeros(width + 1)  # best[w]: max total value of the items so far with <= w extras
    picks = []
    for p in rates:
        gains = value(base + choices, p)  # [K]
        padded = np.concatenate([np.full(len(choices), -np.inf), best])
        candidate = padded[source] + gains[None, :]  # [W+1, K]: best[w - k] + gain of k extras
        choice = np.argmax(candidate, axis=1)  # ties -> fewest extras
        best = candidate[np.arange(width + 1), choice]
        picks.append(choice)
    extras, remaining = [0] * len(rates), width
    for item in range(len(rates) - 1, -1, -1):
        extras[item] = int(picks[item][remaining])
        remaining -= extras[item]
    return extras


def allocate(rates: list[float | None], n: int, total: int, cfg: KnapsackConfig) -> list[int]:
    """Rollouts per prompt for estimated success rates (None: not yet valid) under `total` rollouts."""
    budgets, effective, zero, one = [], [], [], []
    for i, p in enumerate(rates):
        if p is None:
            budgets.append(n)
        elif p <= 0.0:
            budgets.append(cfg.negative_n)
            zero.append(i)
        elif p >= 1.0:
            budgets.append(cfg.positive_n)
            one.append(i)
        else:
            budgets.append(cfg.min_n)
            effective.append(i)
    budgets = [min(b, cfg.max_n) for b in budgets]
    remaining = total - sum(budgets)
    if remaining < 0:  # more prompts than the budget covers at their floor: shrink the largest first
        for i in np.argsort(budgets, kind="stable")[::-1]:
            while remaining < 0 and budgets[i] > 1:
                budgets[i] -= 1
                remaining += 1
        return budgets
    if effective:
        needs = sum(
            max(
                min(cfg.max_n, math.ceil(math.log(1 - cfg.fallback_alpha) / math.log(max(rates[i], 1 - rates[i]))))
                - cfg.min_n,
                0,
            )
            for i in effective
        )
        # enough to make every effective group likely mixed: the knapsack gets that much, the rest explores
        knapsack_budget = min(needs, remaining)
        extras = knapsack_extras([rates[i] for i in effective], cfg.min_n, cfg.max_n, knapsack_budget)
        for i, extra in zip(effective, extras):
            budgets[i] += extra
        remaining -= sum(extras)
    unseen = [i for i, p in enumerate(rates) if p is None]
    for targets in (zero, unseen, effective, list(range(len(rates)))):  # solved prompts (p = 1) last
        remaining = _spread(budgets, targets, remaining, cfg.max_n)
    return budgets


def _spread(budgets: list[int], targets: list[int], remaining: int, cap: int) -> int:
    """Give `remaining` rollouts evenly to `targets` (round-robin, lowest index first) without passing `cap`."""
    open_targets = [i for i in targets if budgets[i] < cap]
    while remaining > 0 and open_targets:
        share, extra = divmod(remaining, len(open_targets))
        for rank, i in enumerate(open_targets):
            add = min(share + (1 if rank < extra else 0), cap - budgets[i])
            budgets[i] += add
            remaining -= add
        open_targets = [i for i in open_targets if budgets[i] < cap]
    return remaining


@SAMPLERS.register("knapsack", KnapsackConfig)
class KnapsackSampler:
    def __init__(self, cfg: KnapsackConfig, context: SamplerContext) -> None:
        self.cfg, self.context = cfg, context
        size = context.num_prompts
        self.recent = np.full((size, cfg.buffer_length), np.nan)  # newest last; NaN = empty slot
        self.last_visit_rate = np.full(size, np.nan)
        self.last_visit_count = np.zeros(size, dtype=np.int64)
        self.seen = np.zeros(size, dtype=np.int64)  # rewards seen in total
        self.stream = PromptStream(size, context.seed)

    def estimate(self, index: int) -> float | None:
        """p_i: last visit's success rate (recent-rewards mean after a small visit); None until valid."""
        if self.seen[index] < max(self.cfg.min_count, 1):
            return None
        if self.last_visit_count[index] >= self.cfg.buffer_length:
            return float(self.last_visit_rate[index])
        row = self.recent[index]
        return float(np.nanmean(row))

    def select(self, step: int) -> Plan:
        prompts = self.stream.take(self.context.prompts_per_step)
        budgets = allocate([self.estimate(i) for i in prompts], self.context.n, self.context.budget, self.cfg)
        return list(zip(prompts, budgets))

    def update(self, plan: Plan, batch) -> None:
        solved = (batch.reward > self.cfg.success_threshold).double().numpy()  # [B]
        prompt_of = batch.prompt_index.numpy()
        for index in np.unique(prompt_of):
            rewards = solved[prompt_of == index]
            self.last_visit_rate[index] = rewards.mean()
            self.last_visit_count[index] = len(rewards)
            self.seen[index] += len(rewards)
            keep = min(len(rewards), self.cfg.buffer_length)
            self.recent[index] = np.concatenate([self.recent[index], rewards[-keep:]])[-self.cfg.buffer_length :]

    def state_dict(self) -> dict:
        return {
            "recent": to_tensor(self.recent),
            "last_visit_rate": to_tensor(self.last_visit_rate),
            "last_visit_count": to_tensor(self.last_visit_count),
            "seen": to_tensor(self.seen),
            "stream_position": int(self.stream.position),
        }

    def load_state_dict(self, state: dict) -> None:
        self.recent = to_numpy(state["recent"])
        self.last_visit_rate = to_numpy(state["last_visit_rate"])
        self.last_visit_count = to_numpy(state["last_visit_count"])
        self.seen = to_numpy(state["seen"])
        self.stream.position = int(state["stream_position"])
