"""advantage=opo: length-weighted group baseline."""

import torch

from tests.advantages.batches import estimate, rollout_batch


def test_opo_length_weighted_baseline():
    # g0 rewards [1,0,1], lengths [4,2,2]: b = (4 + 0 + 2)/8 = 0.75 -> A = [0.25, -0.75, 0.25]
    #   (a plain mean baseline would be 2/3); token-weighted sum 4*0.25 - 2*0.75 + 2*0.25 = 0
    # g1 [1] alone -> 0
    batch = rollout_batch([3, 1], [1.0, 0.0, 1.0, 1.0], lengths=[4, 2, 2, 3])
    advantages, _ = estimate("opo", batch)
    assert torch.allclose(advantages, torch.tensor([0.25, -0.75, 0.25, 0.0]), atol=1e-6)
    assert abs(float((advantages[:3] * torch.tensor([4.0, 2.0, 2.0])).sum())) < 1e-6


def test_opo_equal_lengths_is_dr_grpo():
    batch = rollout_batch([3, 2], [0.2, 0.8, 0.5, 1.0, 0.0])
    opo, _ = estimate("opo", batch)
    dr, _ = estimate("dr_grpo", batch)
    assert torch.allclose(opo, dr, atol=1e-6)
