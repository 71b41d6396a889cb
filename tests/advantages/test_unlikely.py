"""advantage=unlikely: likelihood-rank reward shaping, then GRPO."""

import pytest
import torch

from rlpost.config import ConfigError
from tests.advantages.batches import estimate, rollout_batch


def test_unlikely_uneven_groups():
    # g0 rewards [1,1,1,0], l = [-0.2,-2.0,-1.0,-0.5]: ascending l -> r1 (rank 0), r2 (1), r3 (2), r0 (3); /4
    #   R' = [1*(1-0.25*0.75), 1*(1-0), 1*(1-0.25*0.25), 0] = [0.8125, 1, 0.9375, 0]; mean 0.6875
    #   dev [0.125, 0.3125, 0.25, -0.6875], var_u 0.648438/3 = 0.216146, std 0.464916
    #   A = [0.268866, 0.672166, 0.537733, -1.478766]
    # g1 all correct [1,1], l = [-1,-3]: ranks [1,0]/2 -> R' = [0.875, 1]; A = [-0.707107, 0.707107]
    #   (the likely proof is pushed down, the unlikely one up: an all-correct group is no longer zero)
    # g2 alone -> 0
    batch = rollout_batch(
        [4, 2, 1], [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0], seq_logprobs=[-0.2, -2.0, -1.0, -0.5, -1.0, -3.0, -1.0]
    )
    advantages, _ = estimate("unlikely", batch)
    expected = [0.268866, 0.672166, 0.537733, -1.478766, -0.707107, 0.707107, 0.0]
    assert torch.allclose(advantages, torch.tensor(expected), atol=1e-5)


def test_unlikely_zero_beta_is_grpo_and_all_wrong_is_zero():
    batch = rollout_batch([3, 2], [1.0, 0.0, 1.0, 0.0, 0.0], seq_logprobs=[-0.1, -0.2, -0.3, -0.4, -0.5])
    shaped, _ = estimate("unlikely", batch, beta_rank=0.0)
    grpo, _ = estimate("grpo", batch)
    assert torch.allclose(shaped, grpo)
    assert torch.equal(shaped[3:], torch.zeros(2))


def test_unlikely_beta_range():
    with pytest.raises(ConfigError, match="beta_rank"):
        estimate("unlikely", rollout_batch([2], [1.0, 0.0]), beta_rank=1.5)
