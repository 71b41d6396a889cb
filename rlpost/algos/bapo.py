"""algo=bapo: Balanced Policy Optimization with Adaptive Clipping.

"BAPO: Stabilizing Off-Policy Reinforcement Learning for LLMs via Balanced Policy Optimization with Adaptive
Clipping", Xi et al. (Fudan), arXiv 2510.18927. The PPO clip bounds are explicit ratio bounds [c_low, c_high],
re-chosen for every batch the loss sees so that positive-advantage tokens carry at least a share rho_0 of the
clipped surrogate's total |contribution|. As implemented (search of the authors' recipe/bapo/policy_loss.py):

    contrib_{i,t} = min(r, c_high) A   if A >= 0   else   max(r, c_low) A
    P = sum_{contrib > 0} contrib,   N = -sum_{contrib < 0} contrib,   share = P / (P + N)   (1 if N = 0)
    start at (low_start, high_start); while share < rho_0 and c_low < low_max: c_low += step;
    then while share < rho_0 and c_high < high_max: c_high += step
    L_{i,t} = -min( r A, clip(r, c_low, c_high) A ),  dual-clipped at -A * dual_clip for A < 0

Paper: rho_0 = 0.5, c_low in [0.6, 0.9], c_high in [1.2, 3.0], step 0.05; token-mean. P and N are totals over the
whole minibatch (the batch one optimizer step sees; the trainer computes the bounds once per minibatch with
`bapo_statistics`; the authors' code all-reduces P and N over data-parallel ranks, i.e. takes them over the
global batch too), so micro_batch_size / micro_batch_tokens do not change the bounds. clip_low / clip_high of the
base schema are unused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.algos import ALGOS, MINIBATCH_STATISTICS
from rlpost.algos.common import AlgoConfig, dual_clip, log_ratio, masked_mean
from rlpost.config import check, in_range


@dataclass
class BAPOConfig(AlgoConfig):
    name: str = "bapo"
    loss_agg: str = "token-mean"
    low_start: float = 0.6  # initial lower ratio bound c_low
    low_max: float = 0.9  # c_low is raised up to this
    high_start: float = 1.2  # initial upper ratio bound c_high
    high_max: float = 3.0  # c_high is raised up to this
    step: float = 0.05  # bound increment per search step
    positive_share: float = 0.5  # rho_0: target share of positive-advantage contribution
    dual_clip: float = 3.0  # c > 1 caps the loss of A < 0 tokens at -c*A; 0 = off

    def __post_init__(self) -> None:
        super().__post_init__()
        in_range(self.low_start, "low_start", 0.0, 1.0)
        in_range(self.low_max, "low_max", self.low_start, 1.0)
        in_range(self.high_start, "high_start", 1.0, 100.0)
        in_range(self.high_max, "high_max", self.high_start, 100.0)
        in_range(self.step, "step", 0.0, 1.0, low_open=True)
        in_range(self.positive_share, "positive_share", 0.0, 1.0)
        check(self.dual_clip == 0 or self.dual_clip > 1, "dual_clip", f"must be 0 (off) or > 1, got {self.dual_clip}")

    @property
    def uses_minibatch_statistics(self) -> bool:
        return True


def positive_share(ratio: Tensor, advantages: Tensor, mask: Tensor, low: float, high: float) -> float:
    """P / (P + N) of the clipped contributions (1 when nothing is negative)."""
    effective = torch.where(advantages >= 0, ratio.clamp(max=high), ratio.clamp(min=low))
    contribution = effective * advantages * mask
    positive = float(contribution.clamp(min=0).sum())
    negative = float(-contribution.clamp(max=0).sum())
    return 1.0 if negative <= 0 else positive / (positive + negative)


def adaptive_bounds(ratio: Tensor, advantages: Tensor, mask: Tensor, cfg: BAPOConfig) -> tuple[float, float, float]:
    """(c_low, c_high, reached share): raise c_low first, then c_high, until the positive share reaches rho_0."""
    low, high = cfg.low_start, cfg.high_start
    share = positive_share(ratio, advantages, mask, low, high)
    while share < cfg.positive_share and low < cfg.low_max - 1e-9:
        low = min(low + cfg.step, cfg.low_max)
        share = positive_share(ratio, advantages, mask, low, high)
    while share < cfg.positive_share and high < cfg.high_max - 1e-9:
        high = min(high + cfg.step, cfg.high_max)
        share = positive_share(ratio, advantages, mask, low, high)
    return low, high, share


@MINIBATCH_STATISTICS.register("bapo")
@torch.no_grad()
def bapo_statistics(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, cfg: BAPOConfig, **_: object
) -> dict[str, Tensor]:
    """{"low", "high", "share": [B]}: the minibatch's bounds and reached share, repeated on every row."""
    ratio = torch.exp(log_ratio(logprobs, old_logprobs))  # [B, T]
    bounds = adaptive_bounds(ratio, advantages, mask, cfg)
    return {
        key: torch.full((len(mask),), value, dtype=torch.float64, device=mask.device)
        for key, value in zip(("low", "high", "share"), bounds)
    }


@ALGOS.register("bapo", BAPOConfig)
def bapo(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    cfg: BAPOConfig,
    *,
    stats: dict[str, Tensor] | None = None,
    **_: object,
) -> tuple[Tensor, dict[str, float]]:
    """Per-token BAPO loss [B, T] and its metrics (the chosen bounds included); `stats`: the minibatch's bounds."""
    ratio = torch.exp(log_ratio(logprobs, old_logprobs))  # [B, T]
    stats = stats or bapo_statistics(logprobs, old_logprobs, advantages, mask, cfg)
    low, high, share = (float(stats[key][0]) for key in ("low", "high", "share"))
    token_loss = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(low, high))
    if cfg.dual_clip:
        token_loss = dual_clip(token_loss, advantages, cfg.dual_clip)
    with torch.no_grad():
        clipped = (ratio > high) & (advantages > 0) | (ratio < low) & (advantages < 0)
        metrics = {
            "bapo_clip_low": low,
            "bapo_clip_high": high,
            "bapo_positive_share": share,
            "clip_frac": float(masked_mean(clipped.float(), mask)),
            "ratio_mean": float(masked_mean(ratio, mask)),
        }
    return token_loss, metrics
