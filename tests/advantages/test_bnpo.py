"""advantage=bnpo: Beta-density normalization with a batch-level Beta fit."""

import math

import torch

from rlpost.advantages.bnpo import beta_parameters, beta_pdf
from tests.advantages.batches import estimate, rollout_batch


def test_bnpo_grpo_like_case():
    # groups of sizes 4, 2, 4 with success rates p = 0.25, 0.5, 0.75: m = 0.5, v_u = (0.0625 + 0 + 0.0625)/2 = 0.0625
    # m(1-m)/v - 1 = 3 -> a = b = 1.5 -> alpha = beta = 1 + 1.5/3 = 1.5
    # BetaPDF(p; 1.5, 1.5) = (8/pi) sqrt(p(1-p)): p=0.25 -> 1.102658 (w 0.906900); p=0.5 -> 4/pi (w pi/4)
    rewards = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    advantages, _ = estimate("bnpo", rollout_batch([4, 2, 4], rewards))
    w_quarter, w_half = 0.906900, math.pi / 4
    expected = [0.75 * w_quarter] + [-0.25 * w_quarter] * 3 + [0.5 * w_half, -0.5 * w_half]
    expected += [0.25 * w_quarter] * 3 + [-0.75 * w_quarter]
    assert torch.allclose(advantages, torch.tensor(expected), atol=1e-5)


def test_bnpo_over_dispersed_batch_is_reinforce():
    # p = 1, 0, 0.5: m = 0.5, v_u = 0.25 -> m(1-m)/v - 1 = 0 -> alpha = beta = 1 -> weight 1 -> A = r - p
    rewards = [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    advantages, _ = estimate("bnpo", rollout_batch([2, 2, 3], rewards))
    expected = [0.0, 0.0, 0.0, 0.0, -1 / 3, 2 / 3, -1 / 3]
    assert torch.allclose(advantages, torch.tensor(expected), atol=1e-6)


def test_bnpo_affine_reward_map():
    # rewards in {-1, 1} with min -1, max 1 map to {0, 1}: the same as the 0/1 case above
    rewards = [1.0, 1.0, -1.0, -1.0, -1.0, 1.0, -1.0]
    advantages, _ = estimate("bnpo", rollout_batch([2, 2, 3], rewards), min_reward=-1.0)
    assert torch.allclose(advantages, torch.tensor([0.0, 0.0, 0.0, 0.0, -1 / 3, 2 / 3, -1 / 3]), atol=1e-6)


def test_bnpo_equal_success_rates_do_not_give_nan():
    # every group all-wrong: v = 0, the Beta fit is undefined -> alpha = beta = 1; all advantages 0
    advantages, _ = estimate("bnpo", rollout_batch([2, 3], [0.0] * 5))
    assert torch.equal(advantages, torch.zeros(5))
    assert beta_parameters(torch.tensor([0.5])) == (1.0, 1.0)


def test_beta_pdf_matches_torch_inside_the_interval():
    values = torch.tensor([0.1, 0.5, 0.8])
    expected = torch.distributions.Beta(torch.tensor(2.5), torch.tensor(1.5)).log_prob(values).exp()
    assert torch.allclose(beta_pdf(values, 2.5, 1.5), expected, atol=1e-5)
    assert torch.equal(beta_pdf(torch.tensor([0.0, 1.0]), 1.0, 1.0), torch.ones(2))
