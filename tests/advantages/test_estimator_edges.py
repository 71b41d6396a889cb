"""Edge cases every estimator must handle: NaN rewards, all-equal rewards, groups of size 1, registration."""

import pytest
import torch

from rlpost.advantages import ADVANTAGES
from rlpost.config import ConfigError
from tests.advantages.batches import config, estimate, rollout_batch

ESTIMATORS = ADVANTAGES.names()
SHIPPED = [
    "adora", "bnpo", "dr_grpo", "gdpo", "grpo", "mapo", "mc_grpo", "ngrpo", "opo",
    "reinforce_pp", "reinforce_pp_baseline", "rloo", "stratified", "unlikely", "xrpo",
]  # fmt: skip


def test_every_option_is_registered():
    assert set(SHIPPED) <= set(ESTIMATORS)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_nan_reward_names_the_prompt(name):
    batch = rollout_batch([2, 3], [1.0, 0.0, 0.0, float("nan"), 1.0])  # row 3 answers prompt 1*10+7 = 17
    with pytest.raises(ConfigError, match="prompt 17"):
        estimate(name, batch)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_nan_in_a_named_reward_names_it(name):
    batch = rollout_batch([2], [1.0, 0.0], named={"correct": [1.0, 0.0], "format": [float("nan"), 0.0]})
    with pytest.raises(ConfigError, match="reward.format.*prompt 7"):
        estimate(name, batch)


@pytest.mark.parametrize("name", [n for n in ESTIMATORS if n != "ngrpo"])
def test_all_rewards_zero_gives_zero(name):
    # ngrpo is the exception by design (virtual max reward: all-wrong groups get a negative signal)
    advantages, metrics = estimate(name, rollout_batch([3, 2], [0.0] * 5))
    assert torch.equal(advantages, torch.zeros(5))
    assert metrics["adv_zero_group_frac"] == 1.0


@pytest.mark.parametrize("name", [n for n in ESTIMATORS if n != "unlikely"])
def test_all_rewards_max_gives_zero(name):
    # unlikely is the exception by design (rank shaping separates all-correct completions)
    advantages, _ = estimate(name, rollout_batch([3, 2], [1.0] * 5, seq_logprobs=[-1.0, -2.0, -3.0, -1.0, -2.0]))
    assert torch.allclose(advantages, torch.zeros(5), atol=1e-6)


GROUP_RELATIVE = [n for n in ESTIMATORS if n not in ("reinforce_pp", "ngrpo", "gdpo", "reinforce_pp_baseline")]


@pytest.mark.parametrize("name", GROUP_RELATIVE)
def test_group_of_size_one_gets_zero(name):
    # groups 2, 1: the lone completion has no group baseline
    advantages, _ = estimate(name, rollout_batch([3, 1], [1.0, 0.0, 0.5, 1.0]))
    assert float(advantages[3]) == 0.0


def test_group_of_size_one_batch_level_rules():
    # reinforce_pp: no group at all -> batch whitening; the lone reward 1 is above the batch mean
    batch = rollout_batch([3, 1], [1.0, 0.0, 0.0, 1.0])
    advantages, _ = estimate("reinforce_pp", batch)
    assert float(advantages[3]) > 0
    # reinforce_pp_baseline / gdpo: the lone completion's group term is 0, the batch step keeps it at 0 or
    # shifts it by -mean/std (0 here: group-centred terms with equal lengths have batch mean 0)
    for name in ("reinforce_pp_baseline", "gdpo"):
        advantages, _ = estimate(name, batch)
        assert abs(float(advantages[3])) < 1e-6


@pytest.mark.parametrize("name", ESTIMATORS)
def test_min_group_size_allows_debug_runs(name):
    # debug=fast uses n=4: every shipped option must accept it (mc_grpo needs 3 = G+1 with G=2)
    assert 1 <= config(name).min_group_size <= 4


@pytest.mark.parametrize("name", ESTIMATORS)
def test_shapes_and_finite_on_random_rewards(name):
    generator = torch.Generator().manual_seed(0)
    rewards = torch.randint(0, 2, (12,), generator=generator).float().tolist()
    seq = (-torch.rand(12, generator=generator)).tolist()
    batch = rollout_batch([5, 4, 2, 1], rewards, seq_logprobs=seq, lengths=[1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4])
    advantages, _ = estimate(name, batch)
    assert advantages.shape == (12,)
    assert torch.isfinite(advantages).all()
