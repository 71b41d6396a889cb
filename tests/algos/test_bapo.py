"""BAPO (arXiv 2510.18927): clip bounds raised until positive tokens carry rho_0 of the contribution."""

import pytest
import torch
from algo_testlib import config, grad_of, leaf, token_loss

from rlpost.algos.bapo import adaptive_bounds
from rlpost.config import ConfigError


def test_bound_search_by_hand():
    # ratios / advantages: positive token r = 2.0, A = +1; negative token r = 0.5, A = -1.5.
    # start (0.6, 1.2): P = min(2, 1.2) * 1 = 1.2, N = max(0.5, 0.6) * 1.5 = 0.9 -> share 0.571 >= 0.5: kept.
    ratio = torch.tensor([[2.0, 0.5]])
    advantages = torch.tensor([[1.0, -1.5]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    cfg = config("bapo")
    low, high, share = adaptive_bounds(ratio, advantages, mask, cfg)
    assert (low, high) == (0.6, 1.2) and share == pytest.approx(1.2 / 2.1)
    # with A = -2 for the negative token: N = 1.2 -> share 0.5 exactly at start -> kept; with A = -3: N = 1.8,
    # raising c_low only increases N (worse), so c_low goes to 0.9 (N = 2.7) and c_high to 3.0 (P = 2.0): share < 0.5
    low, high, share = adaptive_bounds(ratio, torch.tensor([[1.0, -3.0]]), mask, cfg)
    assert low == pytest.approx(0.9) and high == pytest.approx(3.0) and share == pytest.approx(2.0 / 4.7)
    # a case where raising c_high suffices: positive r = 1.5, A = +1; negative r = 1.0, A = -1.35
    # start: P = 1.2, N = 1.35 (c_low moves up to 0.9 without changing N: r = 1 > c_low), then c_high 1.2 -> 1.35
    low, high, share = adaptive_bounds(torch.tensor([[1.5, 1.0]]), torch.tensor([[1.0, -1.35]]), mask, cfg)
    assert low == pytest.approx(0.9) and high == pytest.approx(1.35) and share >= 0.5


def test_clipping_uses_the_chosen_bounds_on_both_sides():
    # share is met at start: bounds (0.6, 1.2). Token 0: A > 0, r = 1.3 > 1.2 -> zero gradient;
    # token 1: A < 0, r = 0.5 < 0.6 -> zero gradient; token 2: A > 0, r = 1 -> gradient -A
    logprobs = leaf([[0.2624, -0.6931, 0.0]])
    advantages = torch.tensor([[3.0, -1.0, 1.0]])
    loss, metrics = token_loss("bapo", logprobs, torch.zeros(1, 3), advantages, torch.ones(1, 3, dtype=torch.bool))
    assert (metrics["bapo_clip_low"], metrics["bapo_clip_high"]) == (0.6, 1.2)
    assert torch.allclose(grad_of(loss.sum(), logprobs), torch.tensor([[0.0, 0.0, -1.0]]))


def test_bounds_are_validated():
    with pytest.raises(ConfigError, match="low_max"):
        config("bapo", low_start=0.8, low_max=0.7)
