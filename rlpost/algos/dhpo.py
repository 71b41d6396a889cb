"""algo=dhpo: token (GRPO) and sequence (GSPO) importance ratios, each clipped in its own trust region, mixed per token.

"Orchestrating Tokens and Sequences: Dynamic Hybrid Policy Optimization for RLVR", Min, Liu, Wang, Zhang, Zeng,
Zhang, Su, arXiv 2601.05607 (v1, Jan 2026; ACL 2026 Findings, pp. 37782-37795). No reference code is public.

Verification status (2026-12-03). Only the abstract of the paper could be read: the stored copies of the arXiv HTML
page (https://arxiv.org/html/2601.05607v1), the ACL Anthology and OpenReview pages reach no further than the abstract
and author block, so the paper's objective (v1 Eq. 8-11) and its setup (v1 Sec. 4.1, Table 1) were NOT checked
against this code. What the abstract fixes is implemented exactly: one clipped surrogate; the token ratio r and the
sequence ratio s are clipped in separate trust regions BEFORE they are mixed; averaged or entropy-guided mixing.
Everything else below is a reconstruction (shared/papers/losses.md) and each unverified choice is a config knob.

As implemented, per token t of response i, with A = A_{i,t} and sg = stop-gradient (detach):

    r_{i,t} = exp(logp_{i,t} - old_logp_{i,t})                                              token branch (GRPO)
    log s_i = (1/|o_i|) sum_t (logp_{i,t} - old_logp_{i,t})                s_i: geometric-mean ratio (GSPO)
    s_{i,t} = sg(s_i) * pi_theta(o_{i,t}) / sg(pi_theta(o_{i,t}))          seq_ratio=token (default, GSPO-token)
            = s_i                                                          seq_ratio=sequence (GSPO's s_i itself)
    rc = clip(r, 1 - clip_low, 1 + clip_high)        sc = clip(s, 1 - seq_clip_low, 1 + seq_clip_high)
    alpha_{i,t}  (token-branch weight, detached; the sequence branch gets 1 - alpha)
        mix=average: alpha = token_weight (0.5: the abstract's averaged mixing)
        mix=entropy: h = (H - min H) / (max H - min H) over entropy_scope (response | batch), H the full-vocabulary
                     entropy of the current policy at each position; batch = the whole minibatch (its min and max come
                     from `dhpo_statistics`, once per minibatch); h = 0.5 where max == min;
                     alpha = h (entropy_direction=token_high) or 1 - h (sequence_high)
    form=A:  L_{i,t} = -min( (alpha r + (1-alpha) s) A,  (alpha rc + (1-alpha) sc) A )        (one clipped surrogate)
    form=B:  L_{i,t} = -alpha min(r A, rc A) - (1-alpha) min(s A, sc A)                   (mix of two surrogates)

Gradient (what the branch-specific clip does), form A, seq_ratio=token, w.r.t. logp_{i,t}:
    -A (alpha r + (1-alpha) s)                                       where the unclipped mixture is the minimum
    -A (alpha r [r inside its band] + (1-alpha) s [s inside its band])  where the clipped mixture is the minimum
so a branch that leaves its own trust region loses only its share; the other branch still moves the token.
With seq_ratio=sequence the sequence share (1-alpha_{i,t}) s_i A is spread as s_i / |o_i| over every token of
response i (d s_i / d logp_{i,k} = s_i / |o_i|). Both readings give the same gradient when alpha is one constant and
every token of a response takes the same side of the minimum; they differ under per-token alpha (mix=entropy) or
per-token clipping. Identities (tested): alpha = 1 gives grpo, alpha = 0 gives gspo_token / gspo (both forms).
The loss is aggregated by `loss_agg` (default seq-mean-token-mean, as GRPO and GSPO; the paper's is not verified).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.algos import ALGOS, MINIBATCH_STATISTICS
from rlpost.algos.common import AlgoConfig, log_ratio, masked_mean, sequence_log_ratio, token_sequence_log_ratio
from rlpost.algos.grpo import clipped_surrogate
from rlpost.config import check, in_range

MIXES = ("average", "entropy")
FORMS = ("A", "B")
SCOPES = ("response", "batch")
DIRECTIONS = ("token_high", "sequence_high")
SEQ_RATIOS = ("token", "sequence")


@dataclass
class DHPOConfig(AlgoConfig):
    name: str = "dhpo"
    clip_low: float = 0.2  # token ratio >= 1 - clip_low
    clip_high: float = 0.28  # token ratio <= 1 + clip_high
    seq_clip_low: float = 3e-4  # sequence ratio >= 1 - seq_clip_low (GSPO's trust region)
    seq_clip_high: float = 4e-4  # sequence ratio <= 1 + seq_clip_high
    mix: str = "average"  # average | entropy
    token_weight: float = 0.5  # token-branch weight alpha for mix=average
    form: str = "A"  # A: mix the ratios inside one clipped surrogate; B: mix two clipped surrogates
    entropy_scope: str = "response"  # min-max normalisation of entropy over: response | batch
    entropy_direction: str = "token_high"  # token_high: high-entropy tokens lean on the token ratio
    seq_ratio: str = "token"  # token: GSPO-token s_{i,t} (gradient per token) | sequence: GSPO's s_i (spread over o_i)

    def __post_init__(self) -> None:
        super().__post_init__()
        in_range(self.seq_clip_low, "seq_clip_low", 0.0, 1.0)
        in_range(self.seq_clip_high, "seq_clip_high", 0.0, 100.0)
        in_range(self.token_weight, "token_weight", 0.0, 1.0)
        check(self.mix in MIXES, "mix", f"{self.mix!r} is not one of {', '.join(MIXES)}")
        check(self.form in FORMS, "form", f"{self.form!r} is not one of {', '.join(FORMS)}")
        check(self.entropy_scope in SCOPES, "entropy_scope", f"{self.entropy_scope!r} is not one of {SCOPES}")
        check(
            self.entropy_direction in DIRECTIONS,
            "entropy_direction",
            f"{self.entropy_direction!r} is not one of {', '.join(DIRECTIONS)}",
        )
        check(self.seq_ratio in SEQ_RATIOS, "seq_ratio", f"{self.seq_ratio!r} is not one of {', '.join(SEQ_RATIOS)}")

    @property
    def uses_minibatch_statistics(self) -> bool:
        return self.mix == "entropy" and self.entropy_scope == "batch"


def min_max_normalise(values: Tensor, mask: Tensor, per_row: bool) -> Tensor:
    """(v - min) / (max - min) over masked entries, per row or over the whole tensor; 0.5 where max == min."""
    values = values.detach().float()
    dims = dict(dim=1, keepdim=True) if per_row else {}
    low = torch.where(mask, values, torch.inf).amin(**dims)
    high = torch.where(mask, values, -torch.inf).amax(**dims)
    spread = high - low
    flat = ~(spread > 0)  # also True for an all-masked row (inf - inf)
    normalised = (values - torch.where(flat, 0.0, low)) / torch.where(flat, 1.0, spread)
    return torch.where(flat, torch.full_like(values, 0.5), normalised.clamp(0.0, 1.0))


def token_weight(cfg: DHPOConfig, mask: Tensor, entropy: Tensor | None) -> Tensor:
    """Detached token-branch weight alpha [B, T] (or a 0-dim tensor for mix=average)."""
    if cfg.mix == "average":
        return torch.tensor(cfg.token_weight)
    if entropy is None:
        raise ValueError("algo=dhpo with mix=entropy needs the per-token entropy")
    normalised = min_max_normalise(entropy, mask, per_row=cfg.entropy_scope == "response")
    return normalised if cfg.entropy_direction == "token_high" else 1.0 - normalised


@MINIBATCH_STATISTICS.register("dhpo")
def dhpo_statistics(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, cfg: DHPOConfig, *, entropy: Tensor | None
) -> dict[str, Tensor]:
    """{"alpha": [B, T]}: token-branch weights with the entropy normalised over the whole minibatch (scope=batch)."""
    return {"alpha": token_weight(cfg, mask, entropy).expand_as(mask).float()}


def sequence_ratio(logprobs: Tensor, old_logprobs: Tensor, mask: Tensor, cfg: DHPOConfig) -> Tensor:
    """Sequence-branch ratio [B, T]: value s_i on every token; gradient per token (GSPO-token) or of s_i (GSPO)."""
    if cfg.seq_ratio == "token":
        return torch.exp(token_sequence_log_ratio(logprobs, old_logprobs, mask))
    return torch.exp(sequence_log_ratio(logprobs, old_logprobs, mask))[:, None].expand_as(mask).float()


def hybrid_loss(token: Tensor, sequence: Tensor, alpha: Tensor, advantages: Tensor, cfg: DHPOConfig) -> Tensor:
    """Per-token loss of form A or B from the two (unclipped) ratios [B, T]."""
    token_clipped = token.clamp(1.0 - cfg.clip_low, 1.0 + cfg.clip_high)
    sequence_clipped = sequence.clamp(1.0 - cfg.seq_clip_low, 1.0 + cfg.seq_clip_high)
    if cfg.form == "A":
        mixed = alpha * token + (1.0 - alpha) * sequence
        mixed_clipped = alpha * token_clipped + (1.0 - alpha) * sequence_clipped
        return torch.maximum(-advantages * mixed, -advantages * mixed_clipped)
    token_loss = clipped_surrogate(token, advantages, cfg.clip_low, cfg.clip_high)
    sequence_loss = clipped_surrogate(sequence, advantages, cfg.seq_clip_low, cfg.seq_clip_high)
    return alpha * token_loss + (1.0 - alpha) * sequence_loss


@ALGOS.register("dhpo", DHPOConfig)
def dhpo(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    cfg: DHPOConfig,
    *,
    entropy: Tensor | None = None,
    stats: dict[str, Tensor] | None = None,
    **_: object,
) -> tuple[Tensor, dict[str, float]]:
    """Per-token DHPO loss [B, T] and its metrics; `stats`: this micro-batch's rows of the minibatch's weights."""
    token = torch.exp(log_ratio(logprobs, old_logprobs))  # [B, T]
    sequence = sequence_ratio(logprobs, old_logprobs, mask, cfg)  # [B, T]
    alpha = (stats["alpha"] if stats else token_weight(cfg, mask, entropy)).to(token.device)
    token_loss = hybrid_loss(token, sequence, alpha, advantages, cfg)
    with torch.no_grad():
        token_clipped = (token > 1 + cfg.clip_high) & (advantages > 0) | (token < 1 - cfg.clip_low) & (advantages < 0)
        seq_clipped = (sequence > 1 + cfg.seq_clip_high) & (advantages > 0) | (sequence < 1 - cfg.seq_clip_low) & (
            advantages < 0
        )
        metrics = {
            "clip_frac_token": float(masked_mean(token_clipped.float(), mask)),
            "clip_frac_seq": float(masked_mean(seq_clipped.float(), mask)),
            "token_weight_mean": float(masked_mean(alpha.expand_as(token), mask)),
            "ratio_mean": float(masked_mean(token, mask)),
            "seq_ratio_mean": float(masked_mean(sequence, mask)),
        }
    return token_loss, metrics
