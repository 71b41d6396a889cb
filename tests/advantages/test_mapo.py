"""advantage=mapo: certainty-weighted mix of z-score and advantage percent deviation."""

import torch

from tests.advantages.batches import estimate, rollout_batch


def test_mapo_uneven_groups():
    # g0 [1,0,0,0]: p 1/4, lambda 1 - 4(1/4)(3/4) = 1/4; mu 1/4, sigma_b sqrt(3/16) = 0.433013
    #   A_std = [1.732051, -0.577350 x3]; A_apd = [0.75/0.25, -1 x3] = [3, -1 x3]
    #   A = 0.75 A_std + 0.25 A_apd = [2.049038, -0.683013 x3]
    # g1 [0,0,0]: all zero -> 0 (our eps guard)
    # g2 [1,0]: p 1/2, lambda 0 -> A_std with sigma_b 0.5 -> [1, -1]
    rewards = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    advantages, _ = estimate("mapo", rollout_batch([4, 3, 2], rewards))
    expected = [2.049038, -0.683013, -0.683013, -0.683013, 0.0, 0.0, 0.0, 1.0, -1.0]
    assert torch.allclose(advantages, torch.tensor(expected), atol=1e-5)


def test_mapo_papers_example():
    # the paper: G = 12, p = 1/12 -> lambda 0.694, A*(pos) = 8.65, A*(neg) = -0.79
    advantages, _ = estimate("mapo", rollout_batch([12], [1.0] + [0.0] * 11))
    assert abs(float(advantages[0]) - 8.65) < 0.01
    assert abs(float(advantages[1]) + 0.79) < 0.01


def test_mapo_breaks_the_advantage_mirror():
    # [0,.1,.1,.1] and [.9,1,1,1] get identical GRPO z-scores; MAPO tells them apart (p = 0 vs 3/4)
    batch = rollout_batch([4, 4], [0.0, 0.1, 0.1, 0.1, 0.9, 1.0, 1.0, 1.0])
    grpo, _ = estimate("grpo", batch)
    assert torch.allclose(grpo[:4], grpo[4:], atol=1e-4)
    mapo, _ = estimate("mapo", batch)
    assert not torch.allclose(mapo[:4], mapo[4:], atol=1e-2)
