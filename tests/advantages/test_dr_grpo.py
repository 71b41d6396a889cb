"""advantage=dr_grpo (arXiv 2503.20783): hand-computed numbers on uneven groups."""

import torch

from tests.advantages.batches import estimate, rollout_batch

# groups of sizes 3, 2, 1
REWARDS = [1.0, 0.0, 0.0, 2.0, 0.0, 5.0]


def test_dr_grpo_uneven_groups():
    # g0: 1 - 1/3 = 2/3, 0 - 1/3 = -1/3;  g1: 2 - 1 = 1, 0 - 1 = -1;  g2 alone -> 0
    advantages, _ = estimate("dr_grpo", rollout_batch([3, 2, 1], REWARDS))
    assert torch.allclose(advantages, torch.tensor([2 / 3, -1 / 3, -1 / 3, 1.0, -1.0, 0.0]), atol=1e-6)


def test_grpo_without_std_is_dr_grpo():
    batch = rollout_batch([3, 2, 1], REWARDS)
    plain, _ = estimate("grpo", batch, scale_std=False)
    dr, _ = estimate("dr_grpo", batch)
    assert torch.equal(plain, dr)
