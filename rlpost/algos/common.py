"""Pieces every policy loss shares: the base config, loss aggregation, KL estimators, truncated IS.

Masks are bool [B, T]; per-token losses are float32 [B, T] with zeros outside the mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from rlpost.config import check, in_range

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm", "balanced")
KL_ESTIMATORS = ("k1", "k2", "k3")
LOG_RATIO_LIMIT = 20.0  # exp(20) ~ 5e8: log-ratios are clamped here before exp so ±50 stays finite


@dataclass
class AlgoConfig:
    """Knobs common to every algo; an algo's schema subclasses this and adds its own."""

    name: str = "grpo"
    clip_low: float = 0.2  # ratio lower bound is 1 - clip_low
    clip_high: float = 0.2  # ratio upper bound is 1 + clip_high
    loss_agg: str = "seq-mean-token-mean"  # one of AGGREGATIONS
    norm_length: int = 0  # constant divisor per sequence for seq-mean-token-sum-norm (0: max_new_tokens)
    kl_coef: float = 0.0  # beta of the KL-to-reference penalty in the loss; 0 skips the reference model
    kl_estimator: str = "k3"  # k1 (log-ratio), k2 (squared log-ratio / 2), k3 (low-variance, always >= 0)
    entropy_coef: float = 0.0  # entropy bonus (subtracted from the loss)
    tis_cap: float = 0.0  # truncated importance sampling cap on pi_old / pi_sampler per token; 0 = off

    def __post_init__(self) -> None:
        in_range(self.clip_low, "clip_low", 0.0, 1.0)
        in_range(self.clip_high, "clip_high", 0.0, 100.0)
        check(self.loss_agg in AGGREGATIONS, "loss_agg", f"{self.loss_agg!r} is not one of {', '.join(AGGREGATIONS)}")
        check(
            self.kl_estimator in KL_ESTIMATORS,
            "kl_estimator",
            f"{self.kl_estimator!r} is not one of {', '.join(KL_ESTIMATORS)}",
        )
        check(self.kl_coef >= 0, "kl_coef", f"must be >= 0, got {self.kl_coef}")
        check(self.tis_cap >= 0, "tis_cap", f"must be >= 0 (0 = off), got {self.tis_cap}")
        check(self.norm_length >= 0, "norm_length", f"must be >= 0, got {self.norm_length}")

    @property
    def needs_entropy_grad(self) -> bool:
        return self.entropy_coef != 0.0

    @property
    def uses_minibatch_statistics(self) -> bool:
        """True when the loss, as configured, uses a statistic of the whole minibatch (see algos/__init__.py)."""
        return False


@dataclass(frozen=True)
class Normalizer:
    """Denominators of the whole minibatch, so that micro-batch losses add up to the minibatch loss."""

    num_tokens: float  # loss-carrying tokens in the minibatch
    num_seqs: float  # completions that carry loss in the minibatch
    norm_length: float = 1.0  # constant per-sequence divisor (seq-mean-token-sum-norm)
    num_groups: float = 1.0  # groups present in the minibatch (balanced aggregation)
    # balanced aggregation: per (group, advantage sign) subset key -> tokens / sequences in the minibatch;
    # empty when Normalizer.of got no advantages (balanced then falls back to the micro-batch's own subsets)
    subset_tokens: dict[int, float] = field(default_factory=dict, compare=False)
    subset_seqs: dict[int, float] = field(default_factory=dict, compare=False)

    @staticmethod
    def of(
        mask: Tensor, group_index: Tensor | None = None, norm_length: float = 1.0, advantages: Tensor | None = None
    ) -> Normalizer:
        carries = mask.any(dim=1)
        groups = group_index[carries].unique().numel() if group_index is not None else 1
        subset_tokens: dict[int, float] = {}
        subset_seqs: dict[int, float] = {}
        if advantages is not None and group_index is not None:
            keys = subset_key(group_index, sequence_sign(advantages, mask))  # [B]
            for key, tokens, seqs in zip(*subset_totals(keys, mask)):
                subset_tokens[int(key)] = float(tokens)
                subset_seqs[int(key)] = float(seqs)
        counts = (float(mask.sum()), float(carries.sum()), float(norm_length), float(max(groups, 1)))
        return Normalizer(*counts, subset_tokens, subset_seqs)


def sequence_sign(advantages: Tensor, mask: Tensor) -> Tensor:
    """Sign of each completion's advantage -> [B] long in {-1, 0, 1}; [B, T] advantages use their masked sum."""
    if advantages.dim() == 2:
        advantages = (advantages.float() * mask).sum(dim=1)
    return torch.sign(advantages.float()).long()


def subset_key(group_index: Tensor, sign: Tensor) -> Tensor:
    """One integer per (group, advantage sign) subset of balanced aggregation -> [B]."""
    return group_index.long() * 3 + (sign + 1)


def subset_totals(keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(unique subset keys [S], loss-carrying tokens per subset [S], loss-carrying sequences per subset [S])."""
    unique, inverse = keys.unique(return_inverse=True)
    tokens = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse.cpu(), mask.sum(dim=1).double().cpu())
    carries = mask.any(dim=1).double().cpu()
    seqs = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse.cpu(), carries)
    return unique.cpu(), tokens, seqs


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` where `mask` is True; 0 for an empty mask (never NaN)."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def aggregate(
    token_loss: Tensor,
    mask: Tensor,
    mode: str,
    norm: Normalizer,
    group_index: Tensor | None = None,
    advantages: Tensor | None = None,
) -> Tensor:
    """Reduce per-token losses [B, T] to a scalar.

    token-mean:               sum_{i,t} L / (total tokens)                     (DAPO Eq. 12)
    seq-mean-token-mean:      sum_i (sum_t L / |o_i|) / (num sequences)        (GRPO, GSPO Eq. 5)
    seq-mean-token-sum:       sum_i sum_t L / (num sequences)
    seq-mean-token-sum-norm:  sum_i sum_t L / (num sequences * norm_length)    (Dr. GRPO Listing 1: MAX_TOKENS)

    DAPO's Eq. 12 writes 1 / sum_i |o_i| over one prompt's group inside the expectation over prompts; like verl's
    token-mean, rlpost divides by the tokens of the whole minibatch (the two agree when all groups have equal
    total length).
    balanced:                 token-mean inside each (group, advantage sign) subset, weighted by its sequence count
                              (Balanced Aggregation, arXiv 2605.04077; see balanced.py; needs `advantages`)
    """
    token_loss = token_loss * mask
    if mode == "token-mean":
        return token_loss.sum() / max(norm.num_tokens, 1.0)
    per_sequence = token_loss.sum(dim=1)  # [B]
    if mode == "seq-mean-token-mean":
        return (per_sequence / mask.sum(dim=1).clamp(min=1)).sum() / max(norm.num_seqs, 1.0)
    if mode == "seq-mean-token-sum":
        return per_sequence.sum() / max(norm.num_seqs, 1.0)
    if mode == "seq-mean-token-sum-norm":
        return per_sequence.sum() / (max(norm.num_seqs, 1.0) * norm.norm_length)
    if mode == "balanced":
        from rlpost.algos.balanced import balanced_aggregate

        return balanced_aggregate(token_loss, mask, group_index, norm, advantages)
    raise ValueError(f"loss_agg={mode!r} is not one of {', '.join(AGGREGATIONS)}")


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, estimator: str) -> Tensor:
    """Per-token KL(pi_theta || pi_ref) estimate from sampled tokens (Schulman, "Approximating KL divergence").

    k1 = log pi - log pi_ref;  k2 = (log pi - log pi_ref)^2 / 2;  k3 = exp(ref - logp) - (ref - logp) - 1  (>= 0).
    """
    log_ratio = (logprobs.float() - ref_logprobs.float()).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        return torch.exp(-log_ratio) + log_ratio - 1.0
    raise ValueError(f"kl_estimator={estimator!r} is not one of {', '.join(KL_ESTIMATORS)}")


def log_ratio(logprobs: Tensor, old_logprobs: Tensor) -> Tensor:
    """log pi_theta - log pi_old in float32, clamped to ±LOG_RATIO_LIMIT (finite for any input)."""
    return (logprobs.float() - old_logprobs.float()).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)


def sequence_log_ratio(logprobs: Tensor, old_logprobs: Tensor, mask: Tensor) -> Tensor:
    """Length-normalised sequence log-ratio (GSPO): mean_t (logp - old_logp) over the response -> [B]."""
    token = (logprobs.float() - old_logprobs.float()) * mask
    return (token.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)


def truncated_is_weight(old_logprobs: Tensor, sampling_logprobs: Tensor, cap: float) -> Tensor:
    """Truncated importance sampling (Yao et al., "Your Efficient RL Framework Secretly Brings You Off-Policy RL
    Training", 2025; verl/TRL `tis`): w = min(pi_old / pi_sampler, cap), detached, per token."""
    ratio = torch.exp(log_ratio(old_logprobs, sampling_logprobs))
    return ratio.clamp(max=cap).detach()


def clip_fractions(ratio: Tensor, advantages: Tensor, low: float, high: float, mask: Tensor) -> dict[str, float]:
    """Share of tokens whose gradient the clip removes: above 1+high with A>0, below 1-low with A<0."""
    upper = (ratio > 1.0 + high) & (advantages > 0)
    lower = (ratio < 1.0 - low) & (advantages < 0)
    return {
        "clip_frac": float(masked_mean((upper | lower).float(), mask)),
        "clip_frac_upper": float(masked_mean(upper.float(), mask)),
        "clip_frac_lower": float(masked_mean(lower.float(), mask)),
    }


def dual_clip(token_loss: Tensor, advantages: Tensor, bound: float | Tensor) -> Tensor:
    """Dual-clip PPO (Ye et al., arXiv 1912.09729): for A < 0 the loss is capped at -A * bound (bound > 1)."""
    return torch.where(advantages < 0, torch.minimum(token_loss, -advantages * bound), token_loss)


def token_sequence_log_ratio(logprobs: Tensor, old_logprobs: Tensor, mask: Tensor) -> Tensor:
    """GSPO-token log-ratio [B, T]: value sg(log s_i) on every token, gradient of logp_{i,t} (arXiv 2507.18071)."""
    sequence = sequence_log_ratio(logprobs, old_logprobs, mask).detach()[:, None]  # [B, 1]
    logprobs = logprobs.float()
    return sequence + logprobs - logprobs.detach()


def sequence_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Masked mean of each row -> [B]; 0 for an all-masked row."""
    return (values.float() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def token_covariance(logprobs: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
    """Per-token centred covariance term (A - mean A)(logp - mean logp) over the valid tokens [B, T], detached
    (Cui et al., "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models", arXiv 2505.22617)."""
    logprobs = logprobs.detach().float()
    return (advantages - masked_mean(advantages, mask)) * (logprobs - masked_mean(logprobs, mask))
