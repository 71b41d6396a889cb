"""Identities every algo must satisfy: on-policy (all ratios 1) the loss gradient is the plain policy gradient."""

import pytest
import torch
from algo_testlib import config, grad_of, scalar_loss

from rlpost.algos import ALGOS


@pytest.mark.parametrize("name", ALGOS.names())
def test_on_policy_gradient_is_plain_policy_gradient(name):
    # seq-mean-token-mean: d loss / d logp_{i,t} = -A_i / (|o_i| N) for token-level and sequence-level methods alike
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.1, 0.0], [-0.7, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[True, True, True], [True, True, False], [True, False, False]])
    advantages = torch.tensor([1.0, -0.5, 0.25])
    extra = {"clip_cov_lb": 100.0, "clip_cov_ub": 200.0} if name == "clip_cov" else {}
    cfg = config(name, loss_agg="seq-mean-token-mean", **extra)
    loss = scalar_loss(cfg, logprobs, logprobs.detach(), advantages, mask, entropy=torch.rand(3, 3))
    expected = -advantages[:, None] * mask / mask.sum(1, keepdim=True) / 3
    assert torch.allclose(grad_of(loss, logprobs), expected, atol=1e-6)
