"""advantage=gdpo: per-reward group normalization, weighted sum, batch normalization."""

import pytest
import torch

from rlpost.config import ConfigError
from tests.advantages.batches import estimate, rollout_batch


def test_gdpo_two_rewards_by_hand():
    # g0 (size 2): correct [1,0] -> z [0.707107, -0.707107]; format [1,1] -> constant -> 0
    # g1 (size 3): correct [0,0,1] mean 1/3 std_u sqrt(1/3) -> [-0.577350, -0.577350, 1.154701]
    #              format  [1,0,1] mean 2/3 std_u sqrt(1/3) -> [0.577350, -1.154701, 0.577350]
    # S = correct + 0.5 format = [0.707107, -0.707107, -0.288675, -1.154701, 1.443376]; mean 0
    # std_u: (0.5 + 0.5 + 0.083333 + 1.333333 + 2.083333)/4 = 1.125 -> 1.060660; A = S / 1.060660
    named = {"correct": [1.0, 0.0, 0.0, 0.0, 1.0], "format": [1.0, 1.0, 1.0, 0.0, 1.0]}
    total = [2.0, 1.0, 1.0, 0.0, 2.0]
    batch = rollout_batch([2, 3], total, named=named)
    advantages, _ = estimate("gdpo", batch, weights={"format": 0.5})
    expected = [0.666667, -0.666667, -0.272166, -1.088662, 1.360828]
    assert torch.allclose(advantages, torch.tensor(expected), atol=1e-5)


def test_gdpo_keeps_reward_combinations_apart():
    # The paper's example: with GRPO on the summed reward, sums [0,1] and [0,2] give the same advantages;
    # GDPO keeps them apart (here: two groups of 2, rewards a and b)
    named = {"a": [0.0, 1.0, 0.0, 1.0], "b": [0.0, 0.0, 0.0, 1.0]}
    batch = rollout_batch([2, 2], [0.0, 1.0, 0.0, 2.0], named=named)
    grpo, _ = estimate("grpo", batch)
    assert torch.allclose(grpo[:2], grpo[2:])
    gdpo, _ = estimate("gdpo", batch)
    assert not torch.allclose(gdpo[:2], gdpo[2:])


def test_gdpo_one_reward_is_batch_normalized_grpo():
    # The paper's reduction with K=1: A = batchnorm(grpo(r)), both with Bessel-corrected std + eps
    rewards = [1.0, 0.0, 0.0, 0.5, 1.0, 0.0, 0.3]
    batch = rollout_batch([3, 3, 1], rewards)
    grpo, _ = estimate("grpo", batch)
    expected = (grpo - grpo.mean()) / (grpo.std() + 1e-6)
    gdpo, _ = estimate("gdpo", batch)
    assert torch.allclose(gdpo, expected, atol=1e-6)


def test_gdpo_all_constant_group_stays_zero():
    # z-scores sum to 0 within every group, so mean_batch(S) = 0 and the batch step only rescales: a group whose
    # rewards are all constant keeps A = 0 (verl-GDPO's token-weighted whitening would shift it; we do not).
    # g0 [1,0,0] -> S [1.154701, -0.577350, -0.577350]; g1 [1,1] -> S [0, 0]; std_u(S) = sqrt(2/4) = 0.707107
    batch = rollout_batch([3, 2], [1.0, 0.0, 0.0, 1.0, 1.0])
    gdpo, _ = estimate("gdpo", batch)
    assert torch.allclose(gdpo, torch.tensor([1.632993, -0.816497, -0.816497, 0.0, 0.0]), atol=1e-5)


def test_gdpo_unknown_weight_names_the_key():
    batch = rollout_batch([2], [1.0, 0.0])
    with pytest.raises(ConfigError, match="advantage.weights"):
        estimate("gdpo", batch, weights={"formatt": 1.0})
