"""CTPO (arXiv 2605.07331): cumulative token ratio with position-adaptive log-space clipping."""

import math

import torch
from algo_testlib import config, grad_of, leaf, token_loss

from rlpost.algos.ctpo import cumulative_log_ratio


def test_cumulative_ratio_value_and_gradient():
    # log-ratios [0.01, 0.02, -0.01] with a masked token between: cumprod log rho = [0.01, 0.03, 0.03, 0.02]
    # geomean: divided by the valid position t = [1, 2, 2, 3]
    logprobs = leaf([[0.01, 0.02, 7.0, -0.01]])
    mask = torch.tensor([[True, True, False, True]])
    cum = cumulative_log_ratio(logprobs, torch.zeros(1, 4), mask, "cumprod")
    assert torch.allclose(cum.detach()[mask], torch.tensor([0.01, 0.03, 0.02]))
    geo = cumulative_log_ratio(logprobs, torch.zeros(1, 4), mask, "geomean")
    assert torch.allclose(geo.detach()[mask], torch.tensor([0.01, 0.015, 0.02 / 3]))
    # gradient of log rho_t is that of logp_t only
    assert torch.equal(grad_of(cum[0, 1], logprobs), torch.tensor([[0.0, 1.0, 0.0, 0.0]]))


def test_position_adaptive_clipping_by_hand():
    # A = 1, clip_high 0.05, p = 0.5: bound at t = 1 is 0.05, at t = 4 it is 0.1.
    # log-ratios [0.06, 0, 0, 0.03]: cumulative [0.06, 0.06, 0.06, 0.09]
    # t=1: 0.06 > 0.05 -> clipped, no gradient; t=2: 0.06 > 0.0707 ? no -> gradient -rho; t=4: 0.09 < 0.1 -> -rho
    logprobs = leaf([[0.06, 0.0, 0.0, 0.03]])
    loss, _ = token_loss("ctpo", logprobs, torch.zeros(1, 4), torch.tensor([1.0]), torch.ones(1, 4, dtype=torch.bool))
    grad = grad_of(loss.sum(), logprobs)
    rho = [math.exp(0.06), math.exp(0.06), math.exp(0.09)]
    assert torch.allclose(grad, torch.tensor([[0.0, -rho[0], -rho[1], -rho[2]]]))
    assert math.isclose(float(loss[0, 0].detach()), -math.exp(0.05), rel_tol=1e-6)


def test_negative_advantage_lower_clip_and_dual_clip():
    # A = -1: t=1 log rho = -0.03 < -0.025 -> clipped below, zero gradient;
    # t=2 log rho = -0.03 + 0.2 = 0.17 > dual bound 0.05 sqrt(2) = 0.0707 -> loss capped at exp(0.0707), no gradient
    logprobs = leaf([[-0.03, 0.2]])
    loss, _ = token_loss("ctpo", logprobs, torch.zeros(1, 2), torch.tensor([-1.0]), torch.ones(1, 2, dtype=torch.bool))
    assert torch.equal(grad_of(loss.sum(), logprobs), torch.zeros(1, 2))
    assert math.isclose(float(loss[0, 1].detach()), math.exp(0.05 * math.sqrt(2)), rel_tol=1e-6)
    # without the dual clip the second token keeps its gradient +rho
    loss, _ = token_loss(
        "ctpo",
        logprobs,
        torch.zeros(1, 2),
        torch.tensor([-1.0]),
        torch.ones(1, 2, dtype=torch.bool),
        config("ctpo", dual_clip=0.0),
    )
    assert math.isclose(float(grad_of(loss.sum(), logprobs)[0, 1]), math.exp(0.17), rel_tol=1e-5)
