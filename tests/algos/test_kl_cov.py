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


def test_top_k_is_taken_over_the_whole_minibatch_by_hand():
    # A = [[2, 2], [-2, -2]] (mean 0), logp = [[-1, -2], [-2.6, -2.9]] (mean -2.125):
    # cov = [[2 * 1.125, 2 * 0.125], [-2 * -0.475, -2 * -0.775]] = [[2.25, 0.25], [0.95, 1.55]]
    # ratio 0.5 of 4 tokens -> k = 2: tokens (0, 0) and (1, 1). Row by row the means would differ (row 0: cov 0).
    from rlpost.algos import minibatch_statistics

    logprobs = torch.tensor([[-1.0, -2.0], [-2.6, -2.9]])
    advantages = torch.tensor([[2.0, 2.0], [-2.0, -2.0]])
    mask = torch.ones(2, 2, dtype=torch.bool)
    cfg = config("kl_cov", kl_cov_ratio=0.5)
    stats = minibatch_statistics(cfg, logprobs=logprobs, old_logprobs=logprobs, advantages=advantages, mask=mask)
    assert torch.equal(stats["penalised"], torch.tensor([[True, False], [False, True]]))
    # a micro-batch of row 1 alone, given its rows of the minibatch's choice, penalises its second token only
    old = logprobs - 0.5
    row = leaf(logprobs[1:].tolist())
    loss, _ = token_loss(
        "kl_cov", row, old[1:], advantages[1:], mask[1:], cfg, stats={"penalised": stats["penalised"][1:]}
    )
    r = torch.exp(torch.tensor(0.5))
    assert torch.allclose(loss.detach(), torch.tensor([[2 * r, 2 * r + 0.5]]))
