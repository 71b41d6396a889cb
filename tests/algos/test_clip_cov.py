"""Clip-Cov (arXiv 2505.22617): random high-covariance tokens lose their gradient."""

import pytest
import torch
from algo_testlib import config, grad_of, leaf, token_loss

from rlpost.algos.common import token_covariance


def test_covariance_by_hand():
    # A = [2, 0, -2] (mean 0), logp = [-1, -2, -3] (mean -2): cov = [2 * 1, 0, -2 * -1] = [2, 0, 2]
    cov = token_covariance(
        torch.tensor([[-1.0, -2.0, -3.0]]), torch.tensor([[2.0, 0.0, -2.0]]), torch.ones(1, 3, dtype=torch.bool)
    )
    assert torch.allclose(cov, torch.tensor([[2.0, 0.0, 2.0]]))


def test_detaches_candidates_only_and_zeroes_their_gradient():
    # on-policy (r = 1: nothing PPO-clipped); means A 0, logp -2 -> cov = [2, 0, 2, 0]: candidates (1 < cov < 5)
    # are tokens 0 and 2; ratio 0.5 of 4 valid tokens -> n = 2: both detached; tokens 1 and 3 have A = 0
    logprobs = leaf([[-1.0, -2.0, -3.0, -2.0]])
    advantages = torch.tensor([[2.0, 0.0, -2.0, 0.0]])
    torch.manual_seed(0)
    cfg = config("clip_cov", clip_cov_ratio=0.5)
    loss, metrics = token_loss(
        "clip_cov", logprobs, logprobs.detach(), advantages, torch.ones(1, 4, dtype=torch.bool), cfg
    )
    assert torch.allclose(grad_of(loss.sum(), logprobs), torch.tensor([[0.0, 0.0, 0.0, 0.0]]))
    assert metrics["cov_detached_frac"] == pytest.approx(0.5)
    # with ratio 0.25 only one of the two candidates is detached (n = 1), the other keeps -A
    cfg = config("clip_cov", clip_cov_ratio=0.25)
    loss, _ = token_loss("clip_cov", logprobs, logprobs.detach(), advantages, torch.ones(1, 4, dtype=torch.bool), cfg)
    grad = grad_of(loss.sum(), logprobs)[0]
    assert sorted([abs(float(grad[0])), abs(float(grad[2]))]) == [0.0, 2.0]  # one detached, one keeps -A


def test_ppo_clipped_tokens_are_not_candidates():
    # token 0 (A = 2, r = 2 > 1.2) is PPO-clipped already; token 2 is the only candidate and gets detached
    logprobs = leaf([[-1.0 + 0.6931, -2.0, -3.0]])
    old = torch.tensor([[-1.0, -2.0, -3.0]])
    advantages = torch.tensor([[2.0, 0.0, -2.0]])
    cfg = config("clip_cov", clip_cov_ratio=0.9, clip_cov_lb=0.5)
    loss, metrics = token_loss("clip_cov", logprobs, old, advantages, torch.ones(1, 3, dtype=torch.bool), cfg)
    assert metrics["cov_detached_frac"] == pytest.approx(1 / 3)
    assert float(loss[0, 2].detach()) == 0.0 and float(loss[0, 0].detach()) != 0.0
