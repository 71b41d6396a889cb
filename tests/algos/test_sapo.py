"""SAPO (arXiv 2511.20347): sigmoid soft gate with separate temperatures for A > 0 and A <= 0."""

import math

import torch
from algo_testlib import config, grad_of, leaf, token_loss


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_value_and_gradient_by_hand():
    # token 0: A = 1 > 0, tau_pos = 2, r = exp(0.5): f = sigmoid(2 (r - 1)) * 4 / 2; loss = -f
    #   d loss / d logp = -4 sigma (1 - sigma) * r
    # token 1: A = -1, tau_neg = 3, r = 1: f = sigmoid(0) * 4 / 3 = 2/3; loss = +2/3; gradient = +1 * r = 1
    logprobs = leaf([[0.5, 0.0]])
    cfg = config("sapo", tau_pos=2.0, tau_neg=3.0)
    advantages = torch.tensor([[1.0, -1.0]])
    loss, _ = token_loss("sapo", logprobs, torch.zeros(1, 2), advantages, torch.ones(1, 2, dtype=torch.bool), cfg)
    r = math.exp(0.5)
    s = sigmoid(2 * (r - 1))
    assert torch.allclose(loss, torch.tensor([[-s * 2, 2 / 3]]))
    assert torch.allclose(grad_of(loss.sum(), logprobs), torch.tensor([[-4 * s * (1 - s) * r, 1.0]]))


def test_gate_decays_faster_for_negative_advantages_off_policy():
    # the same ratio r = exp(1): the larger temperature (A < 0) gives the smaller gradient magnitude
    logprobs = leaf([[1.0, 1.0]])
    loss, _ = token_loss(
        "sapo", logprobs, torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]), torch.ones(1, 2, dtype=torch.bool)
    )
    grad = grad_of(loss.sum(), logprobs).abs()
    assert 0 < grad[0, 1] < grad[0, 0]
