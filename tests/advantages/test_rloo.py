"""advantage=rloo: leave-one-out baseline on uneven groups."""

import torch

from tests.advantages.batches import estimate, rollout_batch


def test_rloo_uneven_groups():
    # g0 [1,0,0]: 1 - mean(0,0) = 1;  0 - mean(1,0) = -0.5 (twice)    (= 3/2 * (r - 1/3))
    # g1 [2,0]:   2 - 0 = 2;  0 - 2 = -2                               (= 2/1 * (r - 1))
    # g2 [5]:     no other completion -> 0
    advantages, _ = estimate("rloo", rollout_batch([3, 2, 1], [1.0, 0.0, 0.0, 2.0, 0.0, 5.0]))
    assert torch.allclose(advantages, torch.tensor([1.0, -0.5, -0.5, 2.0, -2.0, 0.0]), atol=1e-6)


def test_rloo_is_scaled_dr_grpo():
    batch = rollout_batch([4, 2], [0.3, 0.9, 0.0, 1.0, 0.2, 0.7])
    rloo, _ = estimate("rloo", batch)
    dr, _ = estimate("dr_grpo", batch)
    scale = torch.tensor([4 / 3] * 4 + [2.0] * 2)
    assert torch.allclose(rloo, scale * dr, atol=1e-6)
