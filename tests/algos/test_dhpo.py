"""DHPO (arXiv 2601.05607): identities with GRPO / GSPO-token, the entropy weight, forms A and B."""

import math

import pytest
import torch
from algo_testlib import config, grad_of, leaf, token_loss

from rlpost.algos.dhpo import min_max_normalise, token_weight
from rlpost.config import ConfigError

MASK = torch.tensor([[True, True, True], [True, True, False]])
OLD = torch.tensor([[-1.0, -1.5, -0.7], [-0.2, -2.0, 0.0]])
ADV = torch.tensor([1.0, -1.0])


def metrics_weight(cfg, entropy):
    return token_weight(cfg, torch.ones_like(entropy, dtype=torch.bool), entropy)


def off_policy_logprobs():
    # token log-ratios far outside both trust regions so that every clip is exercised
    return leaf([[-0.7, -1.6, -0.4], [-0.5, -1.6, 0.0]])


@pytest.mark.parametrize("form", ["A", "B"])
def test_weight_one_is_grpo(form):
    logprobs = off_policy_logprobs()
    cfg = config("dhpo", mix="average", token_weight=1.0, form=form, clip_low=0.2, clip_high=0.28)
    loss, _ = token_loss("dhpo", logprobs, OLD, ADV, MASK, cfg)
    reference, _ = token_loss("grpo", logprobs, OLD, ADV, MASK, config("grpo", clip_low=0.2, clip_high=0.28))
    assert torch.allclose(loss, reference)
    assert torch.allclose(grad_of((loss * MASK).sum(), logprobs), grad_of((reference * MASK).sum(), logprobs))


@pytest.mark.parametrize("form", ["A", "B"])
@pytest.mark.parametrize("other", ["gspo_token", "gspo"])
def test_weight_zero_is_gspo(form, other):
    # near-on-policy sequence ratios inside (and the first row outside) the GSPO trust region
    logprobs = leaf([[-1.0001, -1.5001, -0.7], [-0.2, -2.0002, 0.0]])
    cfg = config("dhpo", mix="average", token_weight=0.0, form=form, seq_clip_low=3e-4, seq_clip_high=4e-4)
    loss, _ = token_loss("dhpo", logprobs, OLD, ADV, MASK, cfg)
    reference, _ = token_loss(other, logprobs, OLD, ADV, MASK, config(other, clip_low=3e-4, clip_high=4e-4))
    assert torch.allclose(loss, reference)
    # with a constant per-sequence advantage and per-sequence token means the gradients agree too
    per_sequence = MASK / MASK.sum(1, keepdim=True)
    assert torch.allclose(
        grad_of((loss * per_sequence).sum(), logprobs), grad_of((reference * per_sequence).sum(), logprobs), atol=1e-7
    )


def test_average_form_a_by_hand():
    # one token, r = exp(0.5) = 1.6487, s = r (one-token sequence), A = 1, alpha = 0.5,
    # token clip 1.28, sequence clip 1.0004: mixed = 1.6487, mixed_clipped = 0.5*1.28 + 0.5*1.0004 = 1.1402
    # L = -min(1.6487, 1.1402) = -1.1402; the clipped branch is active so the gradient is 0
    logprobs = leaf([[0.5]])
    cfg = config("dhpo", clip_low=0.2, clip_high=0.28, seq_clip_low=3e-4, seq_clip_high=4e-4)
    loss, _ = token_loss(
        "dhpo", logprobs, torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1, dtype=torch.bool), cfg
    )
    assert math.isclose(float(loss.detach()), -(0.5 * 1.28 + 0.5 * 1.0004), rel_tol=1e-6)
    assert float(grad_of(loss.sum(), logprobs)) == 0.0


def test_forms_a_and_b_differ_where_the_branches_clip_on_opposite_sides():
    # A = 1, alpha = 0.5, two tokens with log-ratios log 0.5 and 2 log 1.5 - log 0.5, so s = exp(mean) = 1.5.
    # token 0: r = 0.5 (below 0.8, unclipped side for A > 0), s = 1.5 (clipped above 1.0004).
    #   form A: mixed = 0.25 + 0.75 = 1.0 > clipped mix = 0.4 + 0.5002 = 0.9002 -> the clipped mix wins, gradient 0
    #   form B: 0.5 * min(r, rc) = 0.5 r keeps gradient -A * 0.5 * r = -0.25; the sequence branch is clipped
    # token 1: r = 4.5 and s = 1.5 are both clipped for A > 0 in both forms -> gradient 0
    logprobs = leaf([[math.log(0.5), 2 * math.log(1.5) - math.log(0.5)]])
    old = torch.zeros(1, 2)
    mask = torch.ones(1, 2, dtype=torch.bool)
    grads = {}
    for form in ("A", "B"):
        loss, _ = token_loss("dhpo", logprobs, old, torch.tensor([1.0]), mask, config("dhpo", form=form))
        grads[form] = grad_of(loss.sum(), logprobs)
    assert torch.allclose(grads["A"], torch.zeros(1, 2), atol=1e-7)
    assert torch.allclose(grads["B"], torch.tensor([[-0.25, 0.0]]), atol=1e-6)


def test_entropy_weight_min_max_per_response_and_batch():
    entropy = torch.tensor([[1.0, 3.0, 2.0], [4.0, 4.0, 9.0]])
    # response scope: row 0 -> (H - 1) / 2 = [0, 1, 0.5]; row 1 has max == min over its valid tokens -> 0.5
    per_row = min_max_normalise(entropy, MASK, per_row=True)
    assert torch.allclose(per_row[0], torch.tensor([0.0, 1.0, 0.5]))
    assert torch.allclose(per_row[1, :2], torch.tensor([0.5, 0.5]))
    # batch scope over valid tokens {1, 3, 2, 4, 4}: (H - 1) / 3
    batch = min_max_normalise(entropy, MASK, per_row=False)
    assert torch.allclose(batch[0], torch.tensor([0.0, 2 / 3, 1 / 3]))
    assert torch.allclose(batch[1, :2], torch.tensor([1.0, 1.0]))


def test_entropy_direction_and_detached_weight():
    # one response, entropy [0, 1] -> alpha = [0, 1] (token_high): token 0 uses only the sequence ratio,
    # token 1 only the token ratio; sequence_high swaps them. The weight never carries a gradient.
    logprobs = leaf([[-1.0, -2.0]])
    old = torch.tensor([[-1.0, -2.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    entropy = torch.tensor([[0.0, 1.0]], requires_grad=True)
    for direction, expected in (("token_high", [0.0, 1.0]), ("sequence_high", [1.0, 0.0])):
        cfg = config("dhpo", mix="entropy", entropy_direction=direction)
        loss, metrics = token_loss("dhpo", logprobs, old, torch.tensor([1.0]), mask, cfg, entropy=entropy)
        assert math.isclose(metrics["token_weight_mean"], 0.5)
        assert torch.equal(grad_of(loss.sum(), entropy), torch.zeros(1, 2))
        # on-policy, the gradient is -A * (alpha * 1 + (1 - alpha) * 1 / |o|)  (sequence ratio spreads over tokens)
        grad = grad_of(loss.sum(), logprobs)
        assert torch.allclose(grad, torch.full((1, 2), -1.0))  # alpha * 1 + (1 - alpha) * 1: both branches on-policy
        assert torch.allclose(metrics_weight(cfg, entropy), torch.tensor([expected]))


def test_entropy_mix_needs_entropy_and_bad_values_name_the_key():
    with pytest.raises(ValueError, match="entropy"):
        token_loss(
            "dhpo",
            leaf([[0.0]]),
            torch.zeros(1, 1),
            torch.ones(1),
            torch.ones(1, 1, dtype=torch.bool),
            config("dhpo", mix="entropy"),
        )
    for key, value in (("mix", "geometric"), ("form", "C"), ("token_weight", 1.5), ("entropy_scope", "group")):
        with pytest.raises(ConfigError, match=key):
            config("dhpo", **{key: value})


def test_batch_scope_weights_span_the_whole_minibatch_by_hand():
    # entropy [[0, 1], [2, 4]]: min 0, max 4 over the minibatch -> alpha = [[0, .25], [.5, 1]] (token_high);
    # response scope would give [[0, 1], [0, 1]]
    from rlpost.algos import minibatch_statistics

    entropy = torch.tensor([[0.0, 1.0], [2.0, 4.0]])
    zeros, mask = torch.zeros(2, 2), torch.ones(2, 2, dtype=torch.bool)
    cfg = config("dhpo", mix="entropy", entropy_scope="batch")
    stats = minibatch_statistics(cfg, logprobs=zeros, old_logprobs=zeros, advantages=zeros, mask=mask, entropy=entropy)
    assert torch.allclose(stats["alpha"], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    response = config("dhpo", mix="entropy", entropy_scope="response")
    assert minibatch_statistics(response, logprobs=zeros, old_logprobs=zeros, advantages=zeros, mask=mask) == {}
