"""DAPO dynamic sampling: only groups with differing rewards are kept; rounds are capped."""

from __future__ import annotations

from rlpost.samplers.dynamic_filter import DynamicFilterConfig, DynamicFilterSampler
from tests.samplers.fakes import FakeRollout, context, step


def test_keeps_only_mixed_groups_and_fills_the_batch():
    rollout = FakeRollout([0.0, 1.0, 0.5, 0.5] * 10)
    sampler = DynamicFilterSampler(DynamicFilterConfig(), context(num_prompts=40, prompts_per_step=4, n=8))
    plan, batch, metrics = step(sampler, rollout, 1)
    assert len(plan) == 4 and len(batch) == 32
    for g in range(4):
        rewards = batch.reward[batch.group_index == g]
        assert rewards.min() != rewards.max()
    assert metrics["rollouts_generated"] == 8 * 12 * metrics["filter_rounds"] and metrics["filter_exhausted"] == 0


def test_gives_up_after_max_rounds():
    rollout = FakeRollout([1.0] * 40)
    sampler = DynamicFilterSampler(DynamicFilterConfig(max_rounds=2), context(num_prompts=40))
    plan, batch, metrics = step(sampler, rollout, 1)
    assert metrics["filter_rounds"] == 2 and metrics["filter_exhausted"] == 1 and len(plan) == 4
