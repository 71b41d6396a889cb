"""DHPO (arXiv 2601.05607): identities with GRPO / GSPO, the entropy weight, forms A and B, and the gradient of the
branch-specific clip (hand-computed, and an analytic formula checked against torch.autograd)."""

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
@pytest.mark.parametrize("seq_ratio", ["token", "sequence"])
def test_weight_zero_is_gspo(form, other, seq_ratio):
    # near-on-policy sequence ratios inside (and the first row outside) the GSPO trust region
    logprobs = leaf([[-1.0001, -1.5001, -0.7], [-0.2, -2.0002, 0.0]])
    cfg = config(
        "dhpo", mix="average", token_weight=0.0, form=form, seq_clip_low=3e-4, seq_clip_high=4e-4, seq_ratio=seq_ratio
    )
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
        # on-policy r = s = 1; with seq_ratio=token (GSPO-token) each token's gradient is -A (alpha r + (1 - alpha) s)
        # = -1 (seq_ratio=sequence spreads the sequence share instead: see test_gradient_by_hand_*)
        grad = grad_of(loss.sum(), logprobs)
        assert torch.allclose(grad, torch.full((1, 2), -1.0))
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
    for key, value in (
        ("mix", "geometric"),
        ("form", "C"),
        ("token_weight", 1.5),
        ("entropy_scope", "group"),
        ("seq_ratio", "geometric"),
    ):
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


# Hand-computed gradient of form A with entropy-guided alpha and each branch clipped on its own.
# Row 0: A = +1, log-ratios d = [0.3, -0.3, 2e-4] -> r = [1.349859, 0.740818, 1.000200], log s = 2e-4 / 3,
#   s = 1.0000667 (inside [1 - 3e-4, 1 + 4e-4]); entropy [0, 2, 1] -> alpha = [0, 1, 0.5] (min-max per response).
#   t0: alpha 0 -> only the sequence branch, unclipped:              token share 0,                 sequence share s
#   t1: alpha 1, r = 0.7408 < 0.8: min(r, rc) = r (unclipped side):  token share r = 0.740818,      sequence share 0
#   t2: alpha .5, r and s inside their bands:                        token share .5 r = 0.500100,   sequence share .5 s
# Row 1: A = -1, d = [0.5, -0.5, 0] -> r = [1.648721, 0.606531, 1], s = 1; entropy flat -> alpha = 0.5 everywhere.
#   L = max(m, mc) (A < 0): t0: m = 1.324361 > mc = 1.14 -> unclipped: token share .5 r = 0.824361, sequence .5 s
#   t1: m = 0.803265 < mc = 0.9 -> clipped mixture: r is clipped (token share 0), s is not (sequence share .5 s)
#   t2: r = s = 1 inside: token share 0.5, sequence share 0.5
# seq_ratio=token: d L_t / d logp_t = -A (token share + sequence share) of token t.
# seq_ratio=sequence: the sequence shares of a row are summed and spread evenly over its 3 tokens
#   (row 0: (1 + .5) s / 3 = .5 s each; row 1: 1.5 / 3 = .5 each, the same as token: alpha is constant there).
S0 = math.exp(2e-4 / 3)
HAND_LOGPROBS = [[0.3, -0.3, 2e-4], [0.5, -0.5, 0.0]]
HAND_ENTROPY = torch.tensor([[0.0, 2.0, 1.0], [3.0, 3.0, 3.0]])
HAND_GRADS = {
    "token": [[-S0, -0.740818, -(0.5001 + 0.5 * S0)], [0.5 * 1.648721 + 0.5, 0.5, 1.0]],
    "sequence": [[-0.5 * S0, -(0.740818 + 0.5 * S0), -(0.5001 + 0.5 * S0)], [0.5 * 1.648721 + 0.5, 0.5, 1.0]],
}


@pytest.mark.parametrize("seq_ratio", ["token", "sequence"])
def test_gradient_by_hand_branch_specific_clip(seq_ratio):
    logprobs = leaf(HAND_LOGPROBS)
    mask = torch.ones(2, 3, dtype=torch.bool)
    cfg = config("dhpo", mix="entropy", seq_ratio=seq_ratio)
    loss, metrics = token_loss("dhpo", logprobs, torch.zeros(2, 3), ADV, mask, cfg, entropy=HAND_ENTROPY)
    assert torch.allclose(grad_of(loss.sum(), logprobs), torch.tensor(HAND_GRADS[seq_ratio]), atol=1e-5)
    # the values do not depend on seq_ratio: row 1, t1 takes the clipped mixture 0.5 * 0.8 + 0.5 * 1 = 0.9
    assert math.isclose(float(loss[1, 1].detach()), 0.9, rel_tol=1e-6)
    assert math.isclose(metrics["token_weight_mean"], (0 + 1 + 0.5 + 1.5) / 6, rel_tol=1e-6)


def analytic_grad(logprobs, old, advantages, mask, alpha, cfg):
    """d sum_t (L * mask) / d logp from the formulas in rlpost/algos/dhpo.py's docstring (no autograd)."""
    d = logprobs.detach() - old
    r = d.exp()
    s = ((d * mask).sum(1) / mask.sum(1)).exp()[:, None].expand_as(r)
    r_in = (r >= 1 - cfg.clip_low) & (r <= 1 + cfg.clip_high)
    s_in = (s >= 1 - cfg.seq_clip_low) & (s <= 1 + cfg.seq_clip_high)
    rc, sc = r.clamp(1 - cfg.clip_low, 1 + cfg.clip_high), s.clamp(1 - cfg.seq_clip_low, 1 + cfg.seq_clip_high)
    a = advantages
    if cfg.form == "A":
        unclipped = (alpha * r + (1 - alpha) * s) * a <= (alpha * rc + (1 - alpha) * sc) * a
        token_share = alpha * r * (unclipped | r_in)
        sequence_share = (1 - alpha) * s * (unclipped | s_in)
    else:
        token_share = alpha * r * ((r * a <= rc * a) | r_in)
        sequence_share = (1 - alpha) * s * ((s * a <= sc * a) | s_in)
    token_part = -a * token_share * mask
    sequence_part = -a * sequence_share * mask
    if cfg.seq_ratio == "sequence":
        sequence_part = sequence_part.sum(1, keepdim=True) / mask.sum(1, keepdim=True) * mask
    return token_part + sequence_part


@pytest.mark.parametrize("form", ["A", "B"])
@pytest.mark.parametrize("seq_ratio", ["token", "sequence"])
@pytest.mark.parametrize("mix", ["average", "entropy"])
def test_gradient_matches_autograd(form, seq_ratio, mix):
    # random log-ratios (a third of the sequences near-on-policy, so the sequence clip is both on and off),
    # per-token advantages of both signs, ragged mask, loose clips so both sides of every minimum occur
    generator = torch.Generator().manual_seed(7)
    old = -torch.rand(6, 5, generator=generator)
    scale = torch.tensor([0.4, 0.4, 0.4, 0.4, 1e-4, 1e-4])[:, None]
    logprobs = leaf((old + scale * torch.randn(6, 5, generator=generator)).tolist())
    advantages = torch.randn(6, generator=generator)[:, None].expand(6, 5).contiguous()
    mask = torch.ones(6, 5, dtype=torch.bool)
    mask[1, 3:] = False
    mask[4, 4:] = False
    entropy = torch.rand(6, 5, generator=generator) * 3
    cfg = config("dhpo", form=form, seq_ratio=seq_ratio, mix=mix, token_weight=0.3)
    loss, _ = token_loss("dhpo", logprobs, old, advantages, mask, cfg, entropy=entropy)
    alpha = token_weight(cfg, mask, entropy)
    expected = analytic_grad(logprobs, old, advantages, mask, alpha, cfg)
    assert torch.allclose(grad_of((loss * mask).sum(), logprobs), expected, atol=1e-6)
