"""KL-Cov (arXiv 2505.22617): |log-ratio| penalty on the top-covariance tokens, no clipping."""

import pytest
import torch
from algo_testlib import config, grad_of, leaf, token_loss


def test_penalty_on_top_covariance_token_by_hand():
    # old logp [-1, -2, -3], current = old + [0.5, 0.5, 0.5]; A = [2, 0, -2]
    # cov (with current logp, means A 0, logp -1.5) = [2 * 1, 0, -2 * -1] = [2, 0, 2] -> top-1 (ratio 1/3): a tie,
    # topk picks one of tokens 0 / 2. Make token 0 larger: A = [3, 0, -2] -> mean 1/3, cov0 = (8/3)(1) > cov2
    old = torch.tensor([[-1.0, -2.0, -3.0]])
    logprobs = leaf((old + 0.5).tolist())
    advantages = torch.tensor([[3.0, 0.0, -2.0]])
    cfg = config("kl_cov", kl_cov_ratio=0.34, kl_cov_coef=2.0)
    loss, metrics = token_loss("kl_cov", logprobs, old, advantages, torch.ones(1, 3, dtype=torch.bool), cfg)
    r = torch.exp(torch.tensor(0.5))
    # token 0: -3 r + 2 * 0.5; token 1: 0; token 2: +2 r (no clip at any ratio)
    assert torch.allclose(loss.detach(), torch.tensor([[-3 * r + 1.0, 0.0, 2 * r]]))
    # gradients: token 0: -3 r + 2 * sign(0.5); token 2: 2 r
    assert torch.allclose(grad_of(loss.sum(), logprobs), torch.tensor([[-3 * r + 2.0, 0.0, 2 * r]]))
    assert metrics["kl_cov_frac"] == pytest.approx(1 / 3)


def test_at_least_one_token_penalised_and_masked_tokens_never():
    old = torch.zeros(2, 2)
    logprobs = leaf([[0.1, 0.2], [5.0, 0.3]])
    mask = torch.tensor([[True, True], [False, True]])
    _, metrics = token_loss("kl_cov", logprobs, old, torch.tensor([[1.0, -1.0], [9.0, 1.0]]), mask)
    assert metrics["kl_cov_frac"] == pytest.approx(1 / 3)
