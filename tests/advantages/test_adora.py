"""advantage=adora: GRPO advantages attenuated in groups whose correct completions are not the longer ones."""

import torch

from tests.advantages.batches import estimate, rollout_batch


def test_adora_uneven_groups():
    # g0 rewards [1,0,0], lengths [6,2,4]: longest correct 6 > mean wrong 3 -> TAS, weight 1
    #   GRPO: [1.154701, -0.577350, -0.577350]
    # g1 rewards [1,0,0], lengths [2,4,6]: longest correct 2 < mean wrong 5 -> TDS, weight 0.1
    #   -> [0.115470, -0.057735, -0.057735]
    # g2 rewards [0,0], no correct completion -> TAS, but A = 0
    # g3 alone -> 0
    rewards = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    batch = rollout_batch([3, 3, 2, 1], rewards, lengths=[6, 2, 4, 2, 4, 6, 3, 5, 7])
    advantages, _ = estimate("adora", batch)
    expected = [1.154701, -0.577350, -0.577350, 0.115470, -0.057735, -0.057735, 0.0, 0.0, 0.0]
    assert torch.allclose(advantages, torch.tensor(expected), atol=1e-5)


def test_adora_weight_one_is_grpo():
    batch = rollout_batch([3, 3], [1.0, 0.0, 0.0, 1.0, 0.0, 0.0], lengths=[6, 2, 4, 2, 4, 6])
    adora, _ = estimate("adora", batch, weight=1.0)
    grpo, _ = estimate("grpo", batch)
    assert torch.allclose(adora, grpo)


def test_adora_group_without_wrong_completion_is_attenuated():
    # rewards [1.0, 0.8] both above the threshold: no wrong completion -> TDS (authors' code) -> 0.1 * GRPO
    batch = rollout_batch([2], [1.0, 0.8], lengths=[3, 5])
    advantages, _ = estimate("adora", batch)
    assert torch.allclose(advantages, torch.tensor([0.0707107, -0.0707107]), atol=1e-5)
