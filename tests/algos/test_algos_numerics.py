"""Numerics of every algo: extreme log-ratios, empty responses, all-masked rows, bf16 inputs."""

import pytest
import torch
from algo_testlib import config, grad_of, scalar_loss, token_loss

from rlpost.algos import ALGOS
from rlpost.algos.common import AGGREGATIONS


@pytest.mark.parametrize("mode", AGGREGATIONS)
@pytest.mark.parametrize("name", ALGOS.names())
def test_extreme_log_ratios_and_masked_rows_stay_finite(name, mode):
    logprobs = torch.tensor([[-60.0, -0.1, -5.0], [-0.1, -70.0, -0.2], [-1.0, -1.0, -1.0]], requires_grad=True)
    old = torch.tensor([[-10.0, -50.1, -5.0], [-50.1, -20.0, -0.2], [-1.0, -1.0, -1.0]])  # log-ratios of +-50
    mask = torch.tensor([[True, True, True], [True, True, False], [False, False, False]])  # row 2: empty response
    for sign in (1.0, -1.0):
        advantages = sign * torch.tensor([1.0, -2.0, 0.5])
        loss = scalar_loss(config(name, loss_agg=mode), logprobs, old, advantages, mask, entropy=torch.rand(3, 3))
        assert torch.isfinite(loss)
        assert torch.isfinite(grad_of(loss, logprobs)).all()


@pytest.mark.parametrize("name", ALGOS.names())
def test_all_masked_batch_gives_zero_loss(name):
    logprobs = torch.zeros(2, 3, requires_grad=True)
    mask = torch.zeros(2, 3, dtype=torch.bool)
    loss = scalar_loss(config(name), logprobs, logprobs.detach(), torch.ones(2), mask, entropy=torch.rand(2, 3))
    assert float(loss.detach()) == 0.0


@pytest.mark.parametrize("name", ALGOS.names())
def test_bf16_inputs_give_float32_token_losses(name):
    logprobs = torch.tensor([[-1.0, -2.0], [-0.5, -0.25]], dtype=torch.bfloat16, requires_grad=True)
    old = (logprobs.detach().float() - 0.05).to(torch.bfloat16)
    loss, _ = token_loss(
        name,
        logprobs,
        old,
        torch.tensor([1.0, -1.0]),
        torch.ones(2, 2, dtype=torch.bool),
        entropy=torch.rand(2, 2, dtype=torch.bfloat16),
    )
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss).all()
