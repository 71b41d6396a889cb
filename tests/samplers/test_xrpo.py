"""XRPO: t-interval half-width, priority order, phased allocation, in-context seeding."""

from __future__ import annotations

import math

import pytest

from rlpost.samplers.xrpo import XrpoConfig, XrpoSampler, allocate_phase, half_width, priority
from tests.samplers.fakes import FakeRollout, context, step


def test_half_width_uses_student_t():
    assert half_width(4, 0.5, 0.95) == pytest.approx(3.1824463 * 0.5 / 2)
    assert half_width(1, 0.5, 0.95) == math.inf


def test_allocation_order():
    cfg = XrpoConfig(exploration=0.0)
    # uncertain prompt (std 0.5, n 4) before a less uncertain one (std 0.3), all-same prompts (std 0) last
    assert priority(4, 0.5, 10, cfg) > priority(4, 0.3, 10, cfg) > priority(4, 0.0, 10, cfg) == 0.0
    assert allocate_phase([4, 4, 4], [0.0, 0.5, 0.3], 1, 10, cfg) == [0, 1, 0]
    extra = allocate_phase([4, 4, 4], [0.0, 0.5, 0.3], 6, 10, cfg)
    assert sum(extra) == 6 and extra[0] == 0 and extra[1] >= extra[2] > 0
    # the bonus reaches all-same prompts, the fewest-sampled first
    bonus = XrpoConfig(exploration=1.0)
    assert allocate_phase([6, 2], [0.0, 0.0], 1, 10, bonus) == [0, 1]


def test_seeded_prompt_is_exemplar_turns_then_question_with_one_bos():
    sampler = XrpoSampler(XrpoConfig(icl_examples=1), context(num_prompts=3))
    sampler.bank = {1: [7, 2]}  # a correct completion of prompt 1, ending with EOS=2
    prompts = [[1, 50, 51, 9], [1, 60, 9], [1, 70, 9]]
    assert sampler.seeded_prompt(0, prompts) == [1, 60, 9, 7, 2, 50, 51, 9]
    assert XrpoSampler(XrpoConfig(max_prompt_tokens=5), context(3)).seeded_prompt(0, prompts) is None


def test_all_failed_prompts_get_a_seeded_group_within_budget():
    rollout = FakeRollout([0.0, 1.0, 0.5, 0.0] * 5)
    sampler = XrpoSampler(XrpoConfig(), context(num_prompts=20, prompts_per_step=4, n=8))
    seeded = 0
    for number in range(1, 8):
        plan, batch, metrics = step(sampler, rollout, number)
        assert sum(n for _, n in plan) <= 32 and metrics["rollouts_generated"] <= 32
        seeded += metrics["icl_seeded"]
        longer = batch.prompt_mask.sum(dim=1) > 2
        assert int(longer.sum()) == metrics["icl_seeded"] * 4  # seeded groups: icl_n rollouts on longer prompts
    assert seeded > 0 and 1 in sampler.bank
