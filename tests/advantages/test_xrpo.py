"""advantage=xrpo: novelty bonus for correct completions less likely than their group."""

import pytest
import torch

from rlpost.config import ConfigError
from tests.advantages.batches import estimate, rollout_batch


def test_xrpo_uneven_groups():
    # g0 rewards [1,1,0], s = [-0.5,-1.5,-1.0]: s_bar -1 -> eta [e^0.5, e^-0.5, 1] = [1.648721, 0.606531, 1]
    #   GRPO A = [0.577350, 0.577350, -1.154701]
    #   r0: 2.5*(1-1.648721) < 0 -> no bonus; r1: 2.5*0.393469 = 0.983673 capped at 0.5*0.577350 -> A = 0.866025
    #   r2: A < 0 -> unchanged
    # g1 rewards [0,1], s = [-1.0,-1.1]: s_bar -1.05, eta(r4) = e^-0.05 = 0.951229
    #   GRPO A = [-0.707107, 0.707107]; bonus 2.5*0.048771 = 0.121928 < cap 0.353553 -> A(r4) = 0.829035
    # g2 alone -> 0
    batch = rollout_batch([3, 2, 1], [1.0, 1.0, 0.0, 0.0, 1.0, 1.0], seq_logprobs=[-0.5, -1.5, -1.0, -1.0, -1.1, -3.0])
    advantages, _ = estimate("xrpo", batch)
    expected = [0.577350, 0.866025, -1.154701, -0.707107, 0.829035, 0.0]
    assert torch.allclose(advantages, torch.tensor(expected), atol=1e-5)


def test_xrpo_without_bonus_is_grpo():
    batch = rollout_batch([3, 2], [1.0, 1.0, 0.0, 0.0, 1.0], seq_logprobs=[-0.5, -1.5, -1.0, -1.0, -1.1])
    xrpo, _ = estimate("xrpo", batch, lambda_novelty=0.0)
    grpo, _ = estimate("grpo", batch)
    assert torch.allclose(xrpo, grpo)


def test_xrpo_length_normalizes_the_likelihood():
    # same per-token log-prob, different lengths: s equal -> eta = 1 -> no bonus
    batch = rollout_batch([2], [1.0, 0.0], lengths=[2, 8], seq_logprobs=[-1.0, -1.0])
    advantages, _ = estimate("xrpo", batch)
    assert torch.allclose(advantages, torch.tensor([0.707107, -0.707107]), atol=1e-5)


def test_xrpo_needs_sampling_logprobs():
    batch = rollout_batch([2], [1.0, 0.0])
    batch.sampling_logprobs = None
    with pytest.raises(ConfigError, match="sampling_logprobs"):
        estimate("xrpo", batch)
