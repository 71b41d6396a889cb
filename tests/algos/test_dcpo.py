"""DCPO (arXiv 2509.02333): per-token clip bounds from the old probability q."""

import math

import pytest
import torch
from algo_testlib import grad_of, leaf, token_loss

from rlpost.algos.dcpo import dynamic_bounds


def test_bounds_by_hand():
    # q = 0.5, eps_low 0.16, eps_high 0.2: lo = 0.5 + 0.5 sqrt(1 - 0.64/0.5 -> max(., 0) = 0) = 0.5
    #   hi = 0.5 + 0.5 sqrt(1 + 0.8/0.5) = 0.5 + 0.5 sqrt(2.6)
    # q = 1: lo = 0.5 + 0.5 sqrt(0.36) = 0.8, hi = 0.5 + 0.5 sqrt(1.8)
    # q = 1e-4: hi = 0.5 + 0.5 sqrt(8001) = 45.2 -> capped at ratio_max = 10
    low, high = dynamic_bounds(torch.log(torch.tensor([[0.5, 1.0, 1e-4]])), 0.16, 0.2, 10.0)
    assert torch.allclose(low, torch.tensor([[0.5, 0.8, 0.5]]))
    assert torch.allclose(high, torch.tensor([[0.5 + 0.5 * math.sqrt(2.6), 0.5 + 0.5 * math.sqrt(1.8), 10.0]]))


def test_clipping_on_both_sides_and_the_wide_band_of_rare_tokens():
    # old q = 1 (band [0.8, 1.1708]):
    #   token 0: A > 0, r = 1.3 -> clipped, zero gradient;  token 1: A < 0, r = 0.7 -> clipped, zero gradient
    # old q = 0.01 (band [0.5, 10]): token 2: A > 0, r = 3 -> inside the band, gradient -A r = -3
    old = torch.log(torch.tensor([[1.0, 1.0, 0.01]]))
    logprobs = leaf((old + torch.log(torch.tensor([[1.3, 0.7, 3.0]]))).tolist())
    advantages = torch.tensor([[1.0, -1.0, 1.0]])
    loss, metrics = token_loss("dcpo", logprobs, old, advantages, torch.ones(1, 3, dtype=torch.bool))
    assert torch.allclose(grad_of(loss.sum(), logprobs), torch.tensor([[0.0, 0.0, -3.0]]), atol=1e-5)
    assert metrics["clip_frac"] == pytest.approx(2 / 3)


def test_dual_clip_caps_negative_advantage_loss_at_ratio_max():
    # A = -1, r = exp(3) = 20 > ratio_max = 10: loss = min(20, 10) = 10 and no gradient
    logprobs = leaf([[3.0]])
    loss, _ = token_loss("dcpo", logprobs, torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1, dtype=torch.bool))
    assert float(loss.detach()) == pytest.approx(10.0)
    assert float(grad_of(loss.sum(), logprobs)) == 0.0
