"""algo=grpo (arXiv 2402.03300): hand-computed values, clipping on both sides, dual clip, KL estimators, TIS."""

from __future__ import annotations

import math

import pytest
import torch

from rlpost.algos import policy_loss
from rlpost.algos.common import Normalizer, kl_penalty
from rlpost.algos.grpo import GRPOConfig, grpo


def test_value_by_hand():
    # one sequence, three tokens; log-ratios ln(1.5), ln(0.5), 0; advantages +1, -1, +2; clip 0.2
    # token 1: r=1.5, A=+1: min(1.5, 1.2) = 1.2        -> loss -1.2
    # token 2: r=0.5, A=-1: min(-0.5, -0.8) = -0.8     -> loss +0.8
    # token 3: r=1.0, A=+2: 2                          -> loss -2
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.0]]))
    advantages = torch.tensor([[1.0, -1.0, 2.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    token_loss, metrics = grpo(new, old, advantages, mask, GRPOConfig())
    assert torch.allclose(token_loss, torch.tensor([[-1.2, 0.8, -2.0]]))
    assert metrics["clip_frac"] == pytest.approx(2 / 3)
    assert metrics["clip_frac_upper"] == pytest.approx(1 / 3) and metrics["clip_frac_lower"] == pytest.approx(1 / 3)


def test_clipped_tokens_get_zero_gradient_on_both_sides():
    # A>0 with r above 1+eps_high and A<0 with r below 1-eps_low are clipped: zero gradient.
    # A>0 with r below 1-eps_low and A<0 with r above 1+eps_high are NOT clipped (pessimistic bound).
    log_ratio = torch.log(torch.tensor([[1.5, 0.5, 0.5, 1.5, 1.1]]))
    advantages = torch.tensor([[1.0, -1.0, 1.0, -1.0, 1.0]])
    logprobs = log_ratio.clone().requires_grad_(True)
    token_loss, _ = grpo(
        logprobs,
        torch.zeros(1, 5),
        advantages,
        torch.ones(1, 5, dtype=torch.bool),
        GRPOConfig(clip_low=0.2, clip_high=0.28),
    )
    token_loss.sum().backward()
    ratio = log_ratio.exp()
    expected = torch.tensor([[0.0, 0.0, -1.0, 1.0, -1.0]]) * ratio  # d(-A r)/d logp = -A r
    assert torch.allclose(logprobs.grad, expected)


def test_dual_clip_bounds_negative_advantage_loss():
    # r = 5, A = -1: PPO loss max(5, 0.8) = 5; dual clip c=3 caps it at -c*A = 3 and the gradient vanishes
    logprobs = torch.log(torch.tensor([[5.0]])).requires_grad_(True)
    token_loss, _ = grpo(
        logprobs,
        torch.zeros(1, 1),
        torch.tensor([[-1.0]]),
        torch.ones(1, 1, dtype=torch.bool),
        GRPOConfig(dual_clip=3.0),
    )
    assert token_loss.item() == pytest.approx(3.0)
    token_loss.sum().backward()
    assert logprobs.grad.item() == 0.0


def test_kl_estimators_by_hand():
    # log pi - log pi_ref = d = 0.5: k1 = 0.5, k2 = 0.125, k3 = exp(-0.5) + 0.5 - 1
    logprobs, ref = torch.tensor([[0.5]]), torch.tensor([[0.0]])
    assert kl_penalty(logprobs, ref, "k1").item() == pytest.approx(0.5)
    assert kl_penalty(logprobs, ref, "k2").item() == pytest.approx(0.125)
    assert kl_penalty(logprobs, ref, "k3").item() == pytest.approx(math.exp(-0.5) - 0.5)
    assert kl_penalty(torch.tensor([[-50.0]]), torch.tensor([[50.0]]), "k3").isfinite().all()


def test_policy_loss_adds_kl_and_entropy_with_aggregation():
    # two sequences (lengths 2 and 1) on-policy (r = 1), A = [1, -1]; seq-mean-token-mean:
    # pg = ((-1 - 1)/2 + (+1)/1) / 2 = 0; KL k1 = 0.1 per token -> 0.1; entropy 0.3 per token -> 0.3
    # loss = 0 + 0.5 * 0.1 - 0.01 * 0.3 = 0.047
    logprobs = torch.tensor([[-1.0, -1.0], [-1.0, 0.0]])
    mask = torch.tensor([[True, True], [True, False]])
    cfg = GRPOConfig(kl_coef=0.5, kl_estimator="k1", entropy_coef=0.01)
    loss, metrics = policy_loss(
        cfg,
        logprobs=logprobs,
        old_logprobs=logprobs,
        advantages=torch.tensor([1.0, -1.0]),
        mask=mask,
        norm=Normalizer.of(mask),
        group_index=torch.tensor([0, 0]),
        ref_logprobs=logprobs - 0.1,
        entropy=torch.full((2, 2), 0.3),
    )
    assert loss.item() == pytest.approx(0.047, abs=1e-6)
    assert metrics["kl"] == pytest.approx(0.1) and metrics["entropy"] == pytest.approx(0.3)


def test_tis_weights_tokens_by_capped_old_over_sampler_ratio():
    # pi_old/pi_sampler = e^1 (capped at 2) and e^-1: token losses -A*r scaled by 2 and e^-1; token-mean
    logprobs = torch.zeros(1, 2)
    mask = torch.ones(1, 2, dtype=torch.bool)
    sampling = torch.tensor([[-1.0, 1.0]])
    cfg = GRPOConfig(tis_cap=2.0, loss_agg="token-mean")
    loss, metrics = policy_loss(
        cfg,
        logprobs=logprobs,
        old_logprobs=logprobs,
        advantages=torch.tensor([1.0]),
        mask=mask,
        norm=Normalizer.of(mask),
        group_index=torch.tensor([0]),
        sampling_logprobs=sampling,
    )
    assert loss.item() == pytest.approx(-(2.0 + math.exp(-1.0)) / 2)
    assert metrics["tis_weight_mean"] == pytest.approx((2.0 + math.exp(-1.0)) / 2)


def test_log_ratios_are_float32_and_finite_under_bf16():
    logprobs = torch.tensor([[50.0, -50.0]], dtype=torch.bfloat16)
    token_loss, _ = grpo(
        logprobs,
        torch.zeros(1, 2, dtype=torch.bfloat16),
        torch.ones(1, 2),
        torch.ones(1, 2, dtype=torch.bool),
        GRPOConfig(),
    )
    assert token_loss.dtype == torch.float32 and token_loss.isfinite().all()
