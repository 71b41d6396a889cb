"""Common knobs of every algo: aggregation by hand, micro-batch invariance of every conf/algo option (loss and
gradient, minibatch statistics included), KL, entropy bonus, TIS."""

import functools
import math
from pathlib import Path

import pytest
import torch
from algo_testlib import config, grad_of, leaf, scalar_loss
from omegaconf import OmegaConf

from rlpost.algos import ALGOS, minibatch_statistics
from rlpost.algos.common import AGGREGATIONS, Normalizer, aggregate, kl_penalty
from rlpost.cli import compose_train
from rlpost.config import _as_schema

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


YAMLS = sorted((Path(__file__).parents[2] / "conf" / "algo").glob("*.yaml"))
# knobs that make a minibatch statistic bite on this small batch (defaults select ~1 token or none)
SHARPENED = [
    ("clip_cov", {"clip_cov_ratio": 0.3, "clip_cov_lb": -5.0}),
    ("kl_cov", {"kl_cov_ratio": 0.3}),
    ("dhpo_entropy", {"entropy_scope": "batch"}),
    ("dhpo_entropy", {"entropy_scope": "batch", "entropy_direction": "sequence_high", "form": "B"}),
    ("dhpo_entropy", {"entropy_scope": "batch", "seq_ratio": "sequence"}),
    ("bapo", {"positive_share": 0.9, "high_max": 1.5}),
]
OPTIONS = [(path.stem, {}) for path in YAMLS] + SHARPENED


@functools.cache
def composed(stem: str):
    return compose_train([f"algo={stem}"]).algo


def option_config(stem: str, overrides: dict, **common):
    """conf/algo/<stem>.yaml as composed by Hydra, with overrides, as its schema instance."""
    node = composed(stem)
    return _as_schema(ALGOS.get(node.name).schema, OmegaConf.merge(node, overrides, common), "algo")


def split_loss(cfg, rows_list, norm, logprobs, old, advantages, mask, groups, entropy, ref):
    """Sum of policy_loss over the row subsets, each given its rows of the whole batch's minibatch statistics."""
    stats = minibatch_statistics(
        cfg, logprobs=logprobs, old_logprobs=old, advantages=advantages, mask=mask, entropy=entropy
    )
    total = 0.0
    for r in rows_list:
        part_stats = {key: value[r] for key, value in stats.items()}
        total = total + scalar_loss(
            cfg, logprobs[r], old[r], advantages[r], mask[r], groups[r], norm, ref_logprobs=ref[r], entropy=entropy[r],
            stats=part_stats,
        )  # fmt: skip
    return total


@pytest.mark.parametrize("mode", AGGREGATIONS)
@pytest.mark.parametrize("stem, overrides", OPTIONS, ids=[f"{s}{'-' + '-'.join(o) if o else ''}" for s, o in OPTIONS])
def test_micro_batch_losses_and_gradients_add_up_to_the_minibatch(stem, overrides, mode):
    logprobs, old, advantages, mask, groups, entropy = batch()
    cfg = option_config(stem, overrides, loss_agg=mode, kl_coef=0.1, entropy_coef=0.01)
    norm = Normalizer.of(mask, groups, 5.0, advantages)
    ref = old - 0.1
    torch.manual_seed(0)  # Clip-Cov draws its tokens once per minibatch
    whole = split_loss(cfg, [torch.arange(6)], norm, logprobs, old, advantages, mask, groups, entropy, ref)
    whole_grad = grad_of(whole, logprobs)
    for rows_list in (
        [torch.tensor([0, 3]), torch.tensor([1, 2, 5]), torch.tensor([4])],
        list(torch.arange(6)[:, None]),
    ):
        torch.manual_seed(0)
        parts = split_loss(cfg, rows_list, norm, logprobs, old, advantages, mask, groups, entropy, ref)
        assert float(parts.detach()) == pytest.approx(float(whole.detach()), rel=1e-5, abs=1e-6)
        torch.testing.assert_close(grad_of(parts, logprobs), whole_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("stem, overrides", SHARPENED, ids=[s for s, _ in SHARPENED])
def test_minibatch_statistic_is_not_the_micro_batch_one(stem, overrides):
    # without the minibatch's statistics (each part takes its own), these options give another loss: the test above
    # would catch a trainer that forgot to pass them
    logprobs, old, advantages, mask, groups, entropy = batch()
    cfg = option_config(stem, overrides, loss_agg="token-mean")
    norm = Normalizer.of(mask, groups, 5.0, advantages)
    torch.manual_seed(0)
    whole = scalar_loss(cfg, logprobs, old, advantages, mask, groups, norm, entropy=entropy)
    torch.manual_seed(0)
    rows = list(torch.arange(6)[:, None])
    parts = sum(
        scalar_loss(cfg, logprobs[r], old[r], advantages[r], mask[r], groups[r], norm, entropy=entropy[r]) for r in rows
    )
    assert float(parts.detach()) != pytest.approx(float(whole.detach()), rel=1e-4, abs=1e-6)


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
