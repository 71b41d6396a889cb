"""advantage=reinforce_pp and reinforce_pp_baseline: batch whitening, token- and completion-weighted."""

import torch

from tests.advantages.batches import estimate, rollout_batch


def test_reinforce_pp_per_completion():
    # rewards [1,0,3,0]: mean 1, unbiased var (0+1+4+1)/3 = 2 -> A = (r - 1)/sqrt(2)
    batch = rollout_batch([1, 3], [1.0, 0.0, 3.0, 0.0])
    advantages, _ = estimate("reinforce_pp", batch, token_weighted=False)
    assert torch.allclose(advantages, torch.tensor([0.0, -0.707107, 1.414214, -0.707107]), atol=1e-5)


def test_reinforce_pp_token_weighted():
    # rewards [2,0] with 3 and 1 tokens: N=4, mean 6/4 = 1.5, biased var (3*0.25 + 2.25)/4 = 0.75,
    # unbiased 0.75*4/3 = 1 -> A = [0.5, -1.5]
    batch = rollout_batch([1, 1], [2.0, 0.0], lengths=[3, 1])
    advantages, _ = estimate("reinforce_pp", batch)
    assert torch.allclose(advantages, torch.tensor([0.5, -1.5]), atol=1e-5)


def test_reinforce_pp_constant_batch_is_zero():
    advantages, _ = estimate("reinforce_pp", rollout_batch([2, 1], [0.5, 0.5, 0.5]))
    assert torch.equal(advantages, torch.zeros(3))
