"""advantage=ngrpo: virtual maximum-reward sample in the group statistics."""

import torch

from tests.advantages.batches import estimate, rollout_batch


def test_ngrpo_uneven_groups():
    # g0 [1,0] + virtual 1: S = [1,0,1], mean 2/3, std_u sqrt(1/3) -> [0.577350, -1.154701]
    # g1 [0,0,0] + 1: S = [0,0,0,1], mean 1/4, var_u (3/16 + 9/16)/3 = 1/4 -> std 1/2 -> -0.5 each
    # g2 [1] + 1: S = [1,1] constant -> 0
    advantages, _ = estimate("ngrpo", rollout_batch([2, 3, 1], [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]))
    expected = [0.577350, -1.154701, -0.5, -0.5, -0.5, 0.0]
    assert torch.allclose(advantages, torch.tensor(expected), atol=1e-5)


def test_ngrpo_papers_all_wrong_example():
    # G = 8 all wrong: mean 1/9, std_u 1/3 -> A = -(1/9)/(1/3) = -1/3 for every completion
    advantages, _ = estimate("ngrpo", rollout_batch([8], [0.0] * 8))
    assert torch.allclose(advantages, torch.full((8,), -1 / 3), atol=1e-5)


def test_ngrpo_all_correct_is_zero_and_single_completion_gets_a_baseline():
    advantages, _ = estimate("ngrpo", rollout_batch([3, 1], [1.0, 1.0, 1.0, 0.0]))
    # g1 [0] + 1: S = [0,1], mean 0.5, std_u 0.707107 -> -0.707107
    assert torch.allclose(advantages, torch.tensor([0.0, 0.0, 0.0, -0.707107]), atol=1e-5)


def test_ngrpo_two_virtual_samples():
    # [1,0] + [1,1]: S = [1,0,1,1], mean 3/4, var_u (3/16 + 9/16)/3 = 1/4 -> std 1/2 -> [0.5, -1.5]
    advantages, _ = estimate("ngrpo", rollout_batch([2], [1.0, 0.0]), virtual_count=2)
    assert torch.allclose(advantages, torch.tensor([0.5, -1.5]), atol=1e-5)
