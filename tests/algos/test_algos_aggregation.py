"""Common knobs of every algo: aggregation by hand, micro-batch invariance, KL, entropy bonus, TIS."""

import math

import pytest
import torch
from algo_testlib import config, leaf, scalar_loss

from rlpost.algos import ALGOS
from rlpost.algos.common import AGGREGATIONS, Normalizer, aggregate, kl_penalty

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
MASK = torch.tensor([[True, True, True], [True, False, False]])


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("token-mean", (1 + 2 + 3 + 4) / 4),  # 10 / 4 tokens
        ("seq-mean-token-mean", (6 / 3 + 4 / 1) / 2),  # (2 + 4) / 2 sequences
        ("seq-mean-token-sum", (6 + 4) / 2),
        ("seq-mean-token-sum-norm", (6 + 4) / (2 * 5)),  # norm_length 5
    ],
)
def test_aggregation_by_hand(mode, expected):
    norm = Normalizer.of(MASK, torch.tensor([0, 0]), 5.0)
    assert float(aggregate(LOSS, MASK, mode, norm)) == pytest.approx(expected)


def batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logprobs = (-torch.rand(6, 5, generator=generator) * 2).requires_grad_()
    old = logprobs.detach() + 0.3 * torch.randn(6, 5, generator=generator)
    mask = torch.ones(6, 5, dtype=torch.bool)
    mask[1, 3:] = False
    mask[4, 1:] = False
    mask[5, :] = False  # an all-masked row
    advantages = torch.tensor([1.0, -0.5, 0.7, -1.2, 0.3, 0.9])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    entropy = torch.rand(6, 5, generator=generator)
    return logprobs, old, advantages, mask, groups, entropy


SPLIT_ALGOS = [n for n in ALGOS.names() if n not in ("clip_cov", "kl_cov", "bapo")]  # batch-statistic algos below


@pytest.mark.parametrize("mode", AGGREGATIONS)
@pytest.mark.parametrize("name", SPLIT_ALGOS)
def test_micro_batch_losses_add_up_to_the_minibatch_loss(name, mode):
    logprobs, old, advantages, mask, groups, entropy = batch()
    cfg = config(name, loss_agg=mode, kl_coef=0.1, entropy_coef=0.01)
    norm = Normalizer.of(mask, groups, 5.0, advantages)
    ref = old - 0.1
    whole = scalar_loss(cfg, logprobs, old, advantages, mask, groups, norm, ref_logprobs=ref, entropy=entropy)
    parts = sum(
        scalar_loss(
            cfg, logprobs[r], old[r], advantages[r], mask[r], groups[r], norm, ref_logprobs=ref[r], entropy=entropy[r]
        )
        for r in (torch.tensor([0, 3]), torch.tensor([1, 2, 5]), torch.tensor([4]))
    )
    assert float(parts.detach()) == pytest.approx(float(whole.detach()), rel=1e-5, abs=1e-6)


def test_kl_estimators_by_hand_and_added_with_its_coefficient():
    # d = logp - ref = 0.5: k1 = 0.5, k2 = 0.125, k3 = exp(-0.5) + 0.5 - 1
    logprobs, ref = torch.tensor([[0.0]]), torch.tensor([[-0.5]])
    assert float(kl_penalty(logprobs, ref, "k1")) == pytest.approx(0.5)
    assert float(kl_penalty(logprobs, ref, "k2")) == pytest.approx(0.125)
    assert float(kl_penalty(logprobs, ref, "k3")) == pytest.approx(math.exp(-0.5) - 0.5)
    # on-policy grpo with A = 0: the loss is kl_coef * k
    lp = leaf([[0.0]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    for estimator, value in (("k1", 0.5), ("k2", 0.125), ("k3", math.exp(-0.5) - 0.5)):
        cfg = config("grpo", kl_coef=0.2, kl_estimator=estimator)
        loss = scalar_loss(cfg, lp, lp.detach(), torch.zeros(1), mask, ref_logprobs=ref)
        assert float(loss.detach()) == pytest.approx(0.2 * value)
    with pytest.raises(ValueError, match="reference"):
        scalar_loss(config("grpo", kl_coef=0.2), lp, lp.detach(), torch.zeros(1), mask)


def test_entropy_bonus_is_subtracted_and_carries_gradient():
    lp = leaf([[0.0, 0.0]])
    entropy = torch.tensor([[1.0, 3.0]], requires_grad=True)
    cfg = config("sapo", entropy_coef=0.5, loss_agg="token-mean")
    loss = scalar_loss(cfg, lp, lp.detach(), torch.zeros(1), torch.ones(1, 2, dtype=torch.bool), entropy=entropy)
    assert float(loss.detach()) == pytest.approx(-0.5 * 2.0)  # A = 0: only -coef * mean entropy
    (grad,) = torch.autograd.grad(loss, entropy)
    assert torch.allclose(grad, torch.tensor([[-0.25, -0.25]]))


def test_tis_weight_truncates_old_over_sampler_ratio():
    # old - sampler log-ratios [log 3, log 0.5], cap 2 -> weights [2, 0.5]; on-policy grpo token loss = -A = -1
    lp = leaf([[0.0, 0.0]])
    sampling = torch.tensor([[-math.log(3.0), math.log(2.0)]])
    cfg = config("grpo", tis_cap=2.0, loss_agg="token-mean")
    loss = scalar_loss(
        cfg, lp, lp.detach(), torch.ones(1), torch.ones(1, 2, dtype=torch.bool), sampling_logprobs=sampling
    )
    assert float(loss.detach()) == pytest.approx(-(2.0 + 0.5) / 2)
