"""CISPO (MiniMax-M1, arXiv 2506.13585): clipped, detached IS weight times A times logp."""

import pytest
import torch
from algo_testlib import config, grad_of, leaf, token_loss


def test_gradient_is_clipped_weight_times_advantage_times_grad_logp():
    # log-ratios [0.5, 0.0, -0.5] -> r = [1.6487, 1, 0.6065]; clip (1 - 0.1, 1 + 0.2) -> w = [1.2, 1, 0.9]
    # d loss / d logp = -w A  (every token keeps a gradient, even where the weight is clipped)
    logprobs = leaf([[-0.5, -1.0, -1.5]])
    old = torch.tensor([[-1.0, -1.0, -1.0]])
    advantages = torch.tensor([[2.0, -1.0, 3.0]])
    cfg = config("cispo", clip_low=0.1, clip_high=0.2)
    loss, metrics = token_loss("cispo", logprobs, old, advantages, torch.ones(1, 3, dtype=torch.bool), cfg)
    weight = torch.tensor([[1.2, 1.0, 0.9]])
    assert torch.allclose(grad_of(loss.sum(), logprobs), -weight * advantages)
    # value: -w A logp
    assert torch.allclose(loss, -weight * advantages * logprobs.detach())
    assert metrics["clip_frac_upper"] == pytest.approx(1 / 3) and metrics["clip_frac_lower"] == pytest.approx(1 / 3)


def test_default_has_no_lower_bound():
    logprobs = leaf([[-3.0]])
    loss, _ = token_loss("cispo", logprobs, torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1, dtype=torch.bool))
    assert torch.allclose(grad_of(loss.sum(), logprobs), -torch.exp(torch.tensor([[-3.0]])))
