"""DOTS: attention prediction over the reference set, target-closest selection, rollout replay."""

from __future__ import annotations

import numpy as np
import pytest

from rlpost.samplers import SamplerContext
from rlpost.samplers.dots import DotsConfig, DotsSampler
from tests.samplers.fakes import FakeRollout, context, step


def test_prediction_without_text_is_own_label_or_reference_mean():
    sampler = DotsSampler(DotsConfig(attention_temperature=0.1), context(num_prompts=5))
    predicted = sampler.predict([1, 3], [0.0, 1.0])
    boost = np.expm1(10.0)
    assert predicted[1] == pytest.approx((1.0 + boost * 0.0) / (2 + boost))
    assert predicted[3] == pytest.approx((1.0 + boost) / (2 + boost))
    assert predicted[0] == pytest.approx(0.5)


def test_prediction_with_text_attends_to_similar_questions():
    rows = ({"question": "add 12 and 13"}, {"question": "add 12 and 14"}, {"question": "name a colour of sky"})
    sampler = DotsSampler(DotsConfig(), SamplerContext(3, 1, 4, 0, rows))
    predicted = sampler.predict([1, 2], [0.9, 0.1])
    assert predicted[0] > 0.5


def test_selection_targets_half_and_replays_informative_groups():
    sampler = DotsSampler(DotsConfig(), context(num_prompts=8, prompts_per_step=4, n=4))
    sampler.predicted = np.array([0.0, 0.1, 0.45, 0.9, 1.0, 0.55, 0.3, 0.5])
    assert sorted(sampler.choose(3)) == [2, 5, 7]
    rollout = FakeRollout([0.5] * 8)
    replayed = 0
    for number in range(1, 6):
        plan, batch, metrics = step(sampler, rollout, number)
        assert len(plan) == 4 and batch.group_sizes().tolist() == [n for _, n in plan]
        replayed += metrics["dots_replayed"]
    assert replayed > 0
