"""GMPO (arXiv 2507.20673): geometric mean of sign-aware log-clipped token ratios."""

import math

import torch
from algo_testlib import config, grad_of, leaf, token_loss

MASK = torch.ones(1, 2, dtype=torch.bool)


def test_value_by_hand_positive_advantage():
    # A = 2 > 0, log-ratios [0.6, -0.6], clip 0.4 in log space: min(d, clip(d)) = [0.4, -0.6]
    # R = exp((0.4 - 0.6) / 2) = exp(-0.1); loss on each token = -2 exp(-0.1)
    logprobs = leaf([[0.6, -0.6]])
    loss, _ = token_loss("gmpo", logprobs, torch.zeros(1, 2), torch.tensor([2.0]), MASK)
    assert torch.allclose(loss, torch.full((1, 2), -2 * math.exp(-0.1)))
    # token 0 is clipped (no gradient); token 1 keeps d/dlogp_1 of -2 exp(mean) = -2 R / 2
    assert torch.allclose(grad_of(loss[0, 0], logprobs), torch.tensor([[0.0, -math.exp(-0.1)]]))


def test_value_by_hand_negative_advantage():
    # A = -1 < 0: sgn = -1, -min(-d, -clip(d)) = max(d, clip(d)) = [0.6, -0.4]; R = exp(0.1); loss = +exp(0.1)
    # token 1 (below -0.4 with A < 0) is clipped: zero gradient; token 0 keeps gradient +R / 2
    logprobs = leaf([[0.6, -0.6]])
    loss, _ = token_loss("gmpo", logprobs, torch.zeros(1, 2), torch.tensor([-1.0]), MASK)
    assert torch.allclose(loss, torch.full((1, 2), math.exp(0.1)))
    assert torch.allclose(grad_of(loss[0, 0], logprobs), torch.tensor([[math.exp(0.1) / 2, 0.0]]))


def test_masked_tokens_do_not_enter_the_mean():
    logprobs = leaf([[0.2, 5.0]])
    mask = torch.tensor([[True, False]])
    loss, _ = token_loss("gmpo", logprobs, torch.zeros(1, 2), torch.tensor([1.0]), mask, config("gmpo"))
    assert math.isclose(float(loss[0, 0].detach()), -math.exp(0.2), rel_tol=1e-6)
