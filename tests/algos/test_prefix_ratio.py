"""MinPRO (arXiv 2601.22718): GRPO token loss weighted by the detached minimum prefix ratio."""

import math

import torch
from algo_testlib import config, grad_of, leaf, token_loss

from rlpost.algos.prefix_ratio import exclusive_prefix_log_weight


def test_prefix_weights_by_hand():
    # log-ratios [0.1, -0.3, 0.2, -0.1], positions 0..3 valid except position 2 (masked)
    # min over the preceding valid prefix: t0 -> empty (1), t1 -> 0.1, t2 -> min(0.1, -0.3), t3 -> -0.3 (2 skipped)
    # product: t0 -> 0, t1 -> 0.1, t2 -> -0.2, t3 -> -0.2 (masked 0.2 skipped)
    log_ratio = torch.tensor([[0.1, -0.3, 0.2, -0.1]])
    mask = torch.tensor([[True, True, False, True]])
    assert torch.allclose(exclusive_prefix_log_weight(log_ratio, mask, "min"), torch.tensor([[0.0, 0.1, -0.3, -0.3]]))
    assert torch.allclose(
        exclusive_prefix_log_weight(log_ratio, mask, "product"), torch.tensor([[0.0, 0.1, -0.2, -0.2]])
    )


def test_leading_padding_does_not_count_as_prefix():
    weight = exclusive_prefix_log_weight(torch.tensor([[9.0, 0.5, 0.1]]), torch.tensor([[False, True, True]]), "min")
    assert torch.allclose(weight, torch.tensor([[0.0, 0.0, 0.5]]))


def test_loss_and_gradient_by_hand():
    # log-ratios [-0.5, 0.1], A = 1, clip 0.2: token 0: w = 1, r = 0.6065 (A > 0: unclipped below) -> loss -r,
    # gradient -r; token 1: w = exp(-0.5) (detached), r = 1.1052 inside -> loss -w r, gradient -w r
    logprobs = leaf([[-0.5, 0.1]])
    cfg = config("prefix_ratio")
    loss, _ = token_loss(
        "prefix_ratio", logprobs, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2, dtype=torch.bool), cfg
    )
    r0, r1, w1 = math.exp(-0.5), math.exp(0.1), math.exp(-0.5)
    assert torch.allclose(loss.detach(), torch.tensor([[-r0, -w1 * r1]]))
    assert torch.allclose(grad_of(loss.sum(), logprobs), torch.tensor([[-r0, -w1 * r1]]))


def test_clipped_token_keeps_zero_gradient_and_prefix_weight_has_none():
    # token 1: A > 0 with r = exp(0.5) > 1.2 -> clipped: no gradient through r_1, and none through the prefix weight
    logprobs = leaf([[0.3, 0.5]])
    loss, _ = token_loss(
        "prefix_ratio", logprobs, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2, dtype=torch.bool)
    )
    assert torch.equal(grad_of(loss[0, 1], logprobs), torch.zeros(1, 2))
