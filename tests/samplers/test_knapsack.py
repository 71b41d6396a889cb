"""Knapsack RL: value, exact DP against brute force, the allocation rules, large budgets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rlpost.samplers.knapsack import KnapsackConfig, KnapsackSampler, allocate, knapsack_extras, value
from tests.helpers import make_batch
from tests.samplers.fakes import context


def test_value_is_mixed_probability_times_info_gain():
    assert value(2, 0.5) == pytest.approx((1 - 0.25 - 0.25) * 0.5 * 0.25)
    assert value(8, 0.0) == 0.0 and value(8, 1.0) == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_dp_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.01, 0.99, 4).tolist()
    base, cap, budget = 2, 7, int(rng.integers(0, 16))
    extras = knapsack_extras(rates, base, cap, budget)
    assert sum(extras) <= budget and all(0 <= e <= cap - base for e in extras)
    best = max(
        sum(value(base + k, p) for k, p in zip(combo, rates))
        for combo in itertools.product(range(cap - base + 1), repeat=4)
        if sum(combo) <= budget
    )
    assert sum(value(base + k, p) for k, p in zip(extras, rates)) == pytest.approx(best)


def test_allocation_rules_on_a_small_instance():
    # unseen -> n, p=0 -> 2, p=1 -> 2, effective -> min_n + knapsack extras; all 64 rollouts used
    budgets = allocate([None, 0.0, 1.0, 0.5, 0.1, 0.9, 0.02, None], 8, 64, KnapsackConfig())
    assert budgets[0] == budgets[7] == 8 and budgets[2] == 2
    assert sum(budgets) == 64 and all(b >= 2 for b in budgets)
    assert budgets[4] > budgets[3]  # the harder prompt needs more rollouts for a mixed group


@pytest.mark.parametrize("seed", range(20))
def test_budget_limits_over_random_states(seed):
    rng = np.random.default_rng(seed)
    count, cfg = int(rng.integers(1, 20)), KnapsackConfig(max_n=int(rng.integers(2, 40)))
    rates = [None if u < 0.2 else float(rng.choice([0.0, 1.0, rng.random()])) for u in rng.random(count)]
    total = int(rng.integers(count, 400))
    budgets = allocate(rates, 8, total, cfg)
    assert sum(budgets) <= total and all(1 <= b <= cfg.max_n for b in budgets)


def test_hard_prompts_can_get_ninety_three_rollouts():
    budgets = allocate([0.02, 0.5, 0.3, 0.7], 8, 256, KnapsackConfig())
    assert budgets[0] >= 93 and max(budgets) <= 128


def test_estimate_is_last_visit_then_recent_rewards():
    sampler = KnapsackSampler(KnapsackConfig(buffer_length=4, min_count=4), context(num_prompts=3))
    sampler.update([(0, 2)], make_batch([2], rewards=[1, 0]))
    assert sampler.estimate(0) is None  # 2 < min_count
    sampler.update([(0, 4)], make_batch([4], rewards=[1, 1, 1, 1]))
    assert sampler.estimate(0) == 1.0  # last visit had buffer_length rewards
    sampler.update([(0, 2)], make_batch([2], rewards=[0, 0]))
    assert sampler.estimate(0) == 0.5  # small visit: mean of the last 4 rewards (1, 1, 0, 0)
