"""algo=dhpo: token (GRPO) and sequence (GSPO) importance ratios, each clipped in its own trust region, mixed per token.

"Orchestrating Tokens and Sequences: Dynamic Hybrid Policy Optimization for RLVR", Min, Liu, Wang, Zhang, Zeng,
Zhang, Su, arXiv 2601.05607 (ACL 2026 Findings). No reference code is public and the paper's equations were not
recoverable verbatim; what the abstract fixes is implemented exactly, the rest is a documented config knob.

Fixed by the paper: one clipped surrogate; token ratio r and sequence ratio s clipped in separate trust regions
BEFORE mixing; averaged mixing or entropy-guided mixing with a detached weight. As implemented:

    r_{i,t}  = exp(logp_{i,t} - old_logp_{i,t})                             token branch (GRPO)
    s_{i,t}  = exp(sg(log s_i) + logp_{i,t} - sg(logp_{i,t})),  log s_i = mean_t(logp - old_logp)   (GSPO-token)
    rc = clip(r, 1 - clip_low, 1 + clip_high);   sc = clip(s, 1 - seq_clip_low, 1 + seq_clip_high)
    alpha_{i,t}  (token-branch weight, detached)
        mix=average: alpha = token_weight (0.5: the paper's plain average)
        mix=entropy: h = min-max normalised entropy over entropy_scope (response | batch), h in [0, 1]
                     (batch = the whole minibatch: its min and max come from `dhpo_statistics`, once per minibatch);
                     alpha = h (entropy_direction=token_high) or 1 - h (sequence_high); 0.5 if max == min
    form=A:  L = -min( (alpha r + (1-alpha) s) A,  (alpha rc + (1-alpha) sc) A )              (single surrogate)
    form=B:  L = -alpha min(r A, rc A) - (1-alpha) min(s A, sc A)                          (mix of two surrogates)

Identities: alpha = 1 gives grpo, alpha = 0 gives gspo_token (both forms).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.algos import ALGOS, MINIBATCH_STATISTICS
from rlpost.algos.common import AlgoConfig, log_ratio, masked_mean, token_sequence_log_ratio
from rlpost.algos.grpo import clipped_surrogate
from rlpost.config import check, in_range

MIXES = ("average", "entropy")
FORMS = ("A", "B")
SCOPES = ("response", "batch")
DIRECTIONS = ("token_high", "sequence_high")


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
    sequence = torch.exp(token_sequence_log_ratio(logprobs, old_logprobs, mask))  # [B, T]
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
