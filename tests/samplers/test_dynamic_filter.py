"""DAPO dynamic sampling: only groups with differing rewards are kept; rounds are capped."""

from __future__ import annotations

import pytest
import torch

from rlpost.batch import RolloutBatch
from rlpost.cli import compose_train
from rlpost.config import ConfigError, validate
from rlpost.samplers.common import informative_groups
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


def test_metric_correct_filters_on_accuracy_not_on_the_shaped_total():
    """DAPO Eq. 11 keeps a group iff 0 < #correct < G. With the soft overlong punishment added, an all-wrong group
    whose lengths differ has a spread in its total reward but none in `correct`; hand-made group of 4:
    correct = [0, 0, 0, 0], overlong = [0, -0.5, 0, -1] -> total [0, -0.5, 0, -1]: metric=reward keeps it,
    metric=correct drops it; a second group correct = [1, 0, 0, 0] is kept by both."""
    correct = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    overlong = torch.tensor([0.0, -0.5, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0])
    ids = torch.ones(8, 1, dtype=torch.long)
    batch = RolloutBatch(
        prompt_index=torch.tensor([0] * 4 + [1] * 4),
        group_index=torch.tensor([0] * 4 + [1] * 4),
        prompt_ids=ids,
        prompt_mask=ids.bool(),
        response_ids=ids,
        response_mask=ids.bool(),
        rewards={"correct": correct, "overlong": overlong},
        reward=correct + overlong,
    )
    by_total = DynamicFilterSampler(DynamicFilterConfig(), context())
    by_accuracy = DynamicFilterSampler(DynamicFilterConfig(metric="correct"), context())
    assert informative_groups(batch, by_total._metric(batch)).tolist() == [True, True]
    assert informative_groups(batch, by_accuracy._metric(batch)).tolist() == [False, True]


def test_metric_names_a_reward_of_the_run():
    cfg = validate(compose_train(["sampler=dynamic_filter", "sampler.metric=correct", "reward=math_verify"]))
    assert cfg.sampler.metric == "correct"  # math_verify writes batch.rewards["correct"] (its reward_name)
    validate(compose_train(["sampler=dynamic_filter", "sampler.metric=overlong", "reward.overlong_buffer=2"]))
    with pytest.raises(ConfigError, match=r"sampler\.metric: 'overlong' is neither 'reward' nor a reward of"):
        validate(compose_train(["sampler=dynamic_filter", "sampler.metric=overlong"]))
