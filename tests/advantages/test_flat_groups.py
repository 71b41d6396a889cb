"""A group whose rewards are all equal gets advantage exactly 0, whatever the common value (issue 17).

In float32 the sum of 16 rewards of 0.7 is an ulp off 16 * 0.7, the group std comes out ~1e-7 and dividing the
one-ulp deviation by it gave +-0.106 on every row (grpo). Binary rewards hide this; continuous rewards, multi-reward
gdpo and length penalties do not. Every estimator with a group (or batch) statistic is held to exact zeros here.
"""

import math

import pytest
import torch

from rlpost.advantages import ADVANTAGES
from tests.advantages.batches import estimate, rollout_batch

FLAT_VALUES = [0.7, 1.1, 1e6 + 0.1]
MIXED = [0.0, 1.0, 0.3, 0.5, 0.9]
# ngrpo (virtual max-reward samples), unlikely (rank shaping) and reinforce_pp (no group) are tested below
GROUP_ZERO = [n for n in ADVANTAGES.names() if n not in ("ngrpo", "unlikely", "reinforce_pp", "reinforce_pp_baseline")]
OVERRIDES = {"bnpo": {"max_reward": 2e6}}  # bnpo maps rewards into [min_reward, max_reward]


def flat_and_mixed(value: float):
    """Groups: 16 x value, a mixed group of 5, 3 x value (unequal lengths and likelihoods throughout)."""
    rewards = [value] * 16 + MIXED + [value] * 3
    lengths = [1 + (b * 5) % 8 for b in range(24)]
    likelihoods = [-0.2 - 0.07 * b for b in range(24)]
    return rollout_batch([16, 5, 3], rewards, lengths=lengths, seq_logprobs=likelihoods)


@pytest.mark.parametrize("value", FLAT_VALUES)
@pytest.mark.parametrize("name", GROUP_ZERO)
def test_all_equal_group_gets_exactly_zero(name, value):
    advantages, metrics = estimate(name, flat_and_mixed(value), **OVERRIDES.get(name, {}))
    flat_rows = torch.cat([advantages[:16], advantages[21:]])
    assert torch.equal(flat_rows, torch.zeros(19)), flat_rows
    assert (advantages[16:21] != 0).any()  # the mixed group keeps its signal
    assert metrics["adv_zero_group_frac"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("name", [n for n in GROUP_ZERO if n != "bnpo"])  # bnpo's Beta fit spans the batch
def test_mixed_group_does_not_depend_on_the_flat_groups_value(name):
    # float64 statistics: the mixed group's advantages are the same next to 0.7 or 1e6 + 0.1
    small, _ = estimate(name, flat_and_mixed(0.7), **OVERRIDES.get(name, {}))
    large, _ = estimate(name, flat_and_mixed(1e6 + 0.1), **OVERRIDES.get(name, {}))
    assert torch.allclose(small[16:21], large[16:21], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("value", FLAT_VALUES)
def test_grpo_mixed_group_by_hand(value):
    # mixed group [0, 1, .3, .5, .9]: mean .54, Bessel std sqrt(0.628/4); A = (R - .54) / (std + 1e-6)
    advantages, _ = estimate("grpo", flat_and_mixed(value))
    std = math.sqrt(sum((r - 0.54) ** 2 for r in MIXED) / 4)
    expected = torch.tensor([(r - 0.54) / (std + 1e-6) for r in MIXED])
    assert torch.allclose(advantages[16:21], expected, rtol=1e-6)


@pytest.mark.parametrize("value", FLAT_VALUES)
def test_gdpo_multi_reward_flat_groups(value):
    # group 0 flat in both rewards; group 1 flat in "format" only; group 2 mixed in both
    correct = [value] * 4 + [0.0, 1.0, 1.0, 0.0] + [0.2, 0.4, 0.9]
    formats = [0.25] * 4 + [0.5] * 4 + [0.0, 1.0, 1.0]
    batch = rollout_batch([4, 4, 3], correct, named={"correct": correct, "format": formats})
    advantages, _ = estimate("gdpo", batch, weights={"correct": 1.0, "format": 0.5})
    assert torch.equal(advantages[:4], torch.zeros(4))
    # by hand in float64: S = z(correct) + 0.5 z(format) per group (Bessel std + 1e-6), A = S / (std_batch S + 1e-6)
    total = torch.zeros(11, dtype=torch.float64)
    for weight, values in ((1.0, correct), (0.5, formats)):
        for rows in (range(0, 4), range(4, 8), range(8, 11)):
            group = torch.tensor([values[r] for r in rows], dtype=torch.float64)
            if group.max() > group.min():
                total[list(rows)] += weight * (group - group.mean()) / (group.std() + 1e-6)
    expected = total / (total.std() + 1e-6)
    assert torch.allclose(advantages.double(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("value", FLAT_VALUES)
def test_reinforce_pp_baseline_flat_groups_give_zero(value):
    # every group flat: A' = 0 everywhere, so the batch whitening has nothing to amplify
    batch = rollout_batch([16, 5, 3], [value] * 16 + [0.3] * 5 + [1e6 + 0.1] * 3, lengths=[3] * 16 + [5] * 8)
    advantages, _ = estimate("reinforce_pp_baseline", batch)
    assert torch.equal(advantages, torch.zeros(24))


@pytest.mark.parametrize("value", FLAT_VALUES)
@pytest.mark.parametrize("token_weighted", [True, False])
def test_reinforce_pp_constant_batch_gives_zero(value, token_weighted):
    batch = rollout_batch([16, 5], [value] * 21, lengths=[1 + b % 7 for b in range(21)])
    advantages, _ = estimate("reinforce_pp", batch, token_weighted=token_weighted)
    assert torch.equal(advantages, torch.zeros(21))


def test_ngrpo_all_max_group_is_exactly_zero_and_other_flat_groups_by_hand():
    # all at max_reward: S_g is one value -> 0. 16 x v with one virtual 1.0: mean (16v+1)/17, deviation (v-1)/17,
    # Bessel std |v-1|/sqrt(17) -> A = -1/sqrt(17) for v < 1 and +1/sqrt(17) for v > 1 (eps = 0)
    batch = rollout_batch([16, 16, 16], [1.0] * 16 + [0.7] * 16 + [1.1] * 16)
    advantages, _ = estimate("ngrpo", batch, eps=0.0)
    assert torch.equal(advantages[:16], torch.zeros(16))
    assert torch.allclose(advantages[16:32], torch.full((16,), -1 / math.sqrt(17)), rtol=1e-6)
    assert torch.allclose(advantages[32:], torch.full((16,), 1 / math.sqrt(17)), rtol=1e-6)
    assert len(advantages[16:32].unique()) == 1


@pytest.mark.parametrize("value", FLAT_VALUES)
def test_unlikely_flat_groups(value):
    # beta_rank = 0 is GRPO: exactly 0. beta_rank 0.25 (eps 0): R' = v (1 - rank/64) is a scaled rank, so the z-score is
    # that of the ranks 0..15 (Bessel std sqrt(16*17/12)), the same for every v: most likely -> -7.5 / 4.761
    likelihoods = [-1.0 - 0.01 * b for b in range(16)]  # row 0 most likely (rank 15)
    batch = rollout_batch([16], [value] * 16, seq_logprobs=likelihoods)
    advantages, _ = estimate("unlikely", batch, beta_rank=0.0)
    assert torch.equal(advantages, torch.zeros(16))
    advantages, _ = estimate("unlikely", rollout_batch([16], [value] * 16, seq_logprobs=likelihoods), eps=0.0)
    assert float(advantages[0]) == pytest.approx(-7.5 / math.sqrt(16 * 17 / 12), rel=1e-5)
    assert float(advantages[15]) == pytest.approx(7.5 / math.sqrt(16 * 17 / 12), rel=1e-5)


def test_bnpo_reward_outside_its_range_is_named():
    from rlpost.config import ConfigError

    with pytest.raises(ConfigError, match="advantage.max_reward"):
        estimate("bnpo", rollout_batch([2], [0.5, 1.5]))
