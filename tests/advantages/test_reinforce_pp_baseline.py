"""advantage=reinforce_pp_baseline (REINFORCE++, arXiv 2501.03262): group mean subtracted, then batch whitening."""

import torch

from tests.advantages.batches import estimate, rollout_batch


def test_reinforce_pp_baseline_per_completion():
    # A' = r - group mean: g0 [1,0] -> [0.5,-0.5]; g1 [1,1,1] -> 0. mean 0, unbiased var 0.5/4 = 0.125
    # std 0.353553 -> A = [1.414214, -1.414214, 0, 0, 0]
    batch = rollout_batch([2, 3], [1.0, 0.0, 1.0, 1.0, 1.0])
    advantages, _ = estimate("reinforce_pp_baseline", batch, token_weighted=False)
    assert torch.allclose(advantages, torch.tensor([1.414214, -1.414214, 0.0, 0.0, 0.0]), atol=1e-5)


def test_reinforce_pp_baseline_all_equal_group_gets_batch_offset():
    # The paper's rule: an all-equal group is re-centred by the batch. A' = [0.5,-0.5,0,0,0] with 4,2,2,2,2 tokens:
    # mean (4*0.5 - 2*0.5)/12 = 1/12; biased var (4*(5/12)^2 + 2*(7/12)^2 + 6*(1/12)^2)/12 = 204/1728,
    # unbiased *12/11 -> 0.128788, std 0.358871 -> all-equal group: -(1/12)/0.358871 = -0.232210
    batch = rollout_batch([2, 3], [1.0, 0.0, 1.0, 1.0, 1.0], lengths=[4, 2, 2, 2, 2])
    advantages, _ = estimate("reinforce_pp_baseline", batch)
    expected = torch.tensor([(0.5 - 1 / 12) / 0.358871, (-0.5 - 1 / 12) / 0.358871] + [-0.232210] * 3)
    assert torch.allclose(advantages, expected, atol=1e-5)
