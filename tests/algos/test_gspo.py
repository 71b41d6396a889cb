"""GSPO and GSPO-token (arXiv 2507.18071): sequence-ratio values, per-sequence clipping, identities with GRPO."""

import math

import torch
from algo_testlib import config, grad_of, leaf, scalar_loss, token_loss

MASK = torch.tensor([[True, True], [True, False]])


def test_gspo_value_by_hand():
    # seq 0: log-ratios 0.1, 0.3 -> s0 = exp(0.2) = 1.2214 > 1 + 0.5 -> with A=+1: -min(1.2214, 1.5) = -1.2214
    # seq 1: log-ratio -0.4 (one token) -> s1 = exp(-0.4) = 0.6703 < 1 - 0.2 -> with A=-2: -min(-1.3406, -1.6) = 1.6
    logprobs = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]])
    old = torch.tensor([[-1.1, -2.3], [-0.1, 0.0]])
    cfg = config("gspo", clip_low=0.2, clip_high=0.5)
    loss, _ = token_loss("gspo", logprobs, old, torch.tensor([1.0, -2.0]), MASK, cfg)
    assert torch.allclose(loss[0], torch.full((2,), -math.exp(0.2)), atol=1e-5)
    assert math.isclose(float(loss[1, 0]), 1.6, abs_tol=1e-5)


def test_whole_sequence_clipped_on_both_sides():
    # A > 0 and s above 1 + clip_high: every token of the sequence loses its gradient; same for A < 0 below 1 - low
    for name in ("gspo", "gspo_token"):
        logprobs = leaf([[0.01, 0.01], [-0.01, -0.01]])
        old = torch.zeros(2, 2)
        cfg = config(name, clip_low=3e-4, clip_high=4e-4)
        loss, _ = token_loss(name, logprobs, old, torch.tensor([1.0, -1.0]), torch.ones(2, 2, dtype=torch.bool), cfg)
        assert torch.equal(grad_of(loss.sum(), logprobs), torch.zeros(2, 2))
        # the other direction is never clipped: A < 0 with s > 1 keeps its gradient
        loss, _ = token_loss(name, logprobs, old, torch.tensor([-1.0, 1.0]), torch.ones(2, 2, dtype=torch.bool), cfg)
        assert (grad_of(loss.sum(), logprobs) != 0).all()


def test_one_token_responses_equal_grpo():
    logprobs = leaf([[-0.7], [-1.3], [-0.2]])
    old = torch.tensor([[-0.6], [-1.0], [-0.5]])
    mask = torch.ones(3, 1, dtype=torch.bool)
    advantages = torch.tensor([1.0, -1.0, 0.5])
    reference, _ = token_loss("grpo", logprobs, old, advantages, mask, config("grpo", clip_low=0.2, clip_high=0.28))
    for name in ("gspo", "gspo_token"):
        loss, _ = token_loss(name, logprobs, old, advantages, mask, config(name, clip_low=0.2, clip_high=0.28))
        assert torch.allclose(loss, reference)
        assert torch.allclose(grad_of(loss.sum(), logprobs), grad_of(reference.sum(), logprobs))


def test_gspo_and_gspo_token_same_value_and_gradient_under_sequence_mean():
    logprobs = leaf([[-1.0, -2.0, -0.5], [-0.3, -0.9, 0.0]])
    old = torch.tensor([[-1.0002, -2.0001, -0.5], [-0.3, -0.9001, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    advantages = torch.tensor([0.7, -1.2])
    losses = [scalar_loss(config(name), logprobs, old, advantages, mask) for name in ("gspo", "gspo_token")]
    assert torch.allclose(losses[0], losses[1])
    assert torch.allclose(grad_of(losses[0], logprobs), grad_of(losses[1], logprobs), atol=1e-7)


def test_gspo_token_gradient_is_sequence_ratio_times_token_gradient():
    # d/dlogp_t of -s_{i,t} A = -sg(s_i) A (value s_i, gradient of logp_t only), unclipped here
    logprobs = leaf([[-1.0, -2.0]])
    old = torch.tensor([[-1.0001, -2.0001]])
    loss, _ = token_loss("gspo_token", logprobs, old, torch.tensor([2.0]), torch.ones(1, 2, dtype=torch.bool))
    expected = -2.0 * math.exp(1e-4)
    assert torch.allclose(grad_of(loss.sum(), logprobs), torch.full((1, 2), expected), atol=1e-6)
