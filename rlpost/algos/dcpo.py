"""algo=dcpo: Dynamic Clipping Policy Optimization, per-token clip bounds from the old token probability.

"DCPO: Dynamic Clipping Policy Optimization", Yang et al. (Baichuan), arXiv 2509.02333. The trust region
|(r - 1) q| <= eps, with q = pi_old(o_{i,t}), gives a band that widens for low-probability tokens. As implemented:

    q       = exp(old_logp_{i,t})
    lo_{i,t} = 0.5 + 0.5 sqrt( max(1 - 4 clip_low / q, 0) )
    hi_{i,t} = min( 0.5 + 0.5 sqrt(1 + 4 clip_high / q), ratio_max )
    L_{i,t}  = -min( r A, clip(r, lo, hi) A ),  dual-clipped at -A * ratio_max for A < 0

Paper: eps_low 0.16, eps_high 0.2, ratio_max 10, no KL. The paper's Smooth Advantage Standardization is an advantage
estimator (advantage group), not part of this loss; its "only-token-mean" loss is the token mean (loss_agg=token-mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.algos import ALGOS
from rlpost.algos.common import AlgoConfig, dual_clip, log_ratio, masked_mean
from rlpost.config import check

MIN_PROBABILITY = 1e-30  # keeps 4 eps / q finite for tokens with q ~ 0 (their band is then [0.5, ratio_max])


@dataclass
class DCPOConfig(AlgoConfig):
    name: str = "dcpo"
    clip_low: float = 0.16  # eps_low of |(r - 1) q| <= eps below the ratio 1
    clip_high: float = 0.2  # eps_high above the ratio 1
    ratio_max: float = 10.0  # hard ceiling of the upper bound and dual-clip bound for A < 0
    loss_agg: str = "token-mean"

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.ratio_max > 1, "ratio_max", f"must be > 1, got {self.ratio_max}")


def dynamic_bounds(old_logprobs: Tensor, eps_low: float, eps_high: float, ratio_max: float) -> tuple[Tensor, Tensor]:
    """Per-token ratio bounds (lo, hi) [B, T] from the old probabilities."""
    probability = torch.exp(old_logprobs.float()).clamp(min=MIN_PROBABILITY)
    low = 0.5 + 0.5 * torch.sqrt((1.0 - 4.0 * eps_low / probability).clamp(min=0.0))
    high = (0.5 + 0.5 * torch.sqrt(1.0 + 4.0 * eps_high / probability)).clamp(max=ratio_max)
    return low.detach(), high.detach()


@ALGOS.register("dcpo", DCPOConfig)
def dcpo(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, cfg: DCPOConfig, **_: object
) -> tuple[Tensor, dict[str, float]]:
    """Per-token DCPO loss [B, T] and its metrics."""
    ratio = torch.exp(log_ratio(logprobs, old_logprobs))  # [B, T]
    low, high = dynamic_bounds(old_logprobs, cfg.clip_low, cfg.clip_high, cfg.ratio_max)
    token_loss = torch.maximum(-advantages * ratio, -advantages * torch.minimum(torch.maximum(ratio, low), high))
    token_loss = dual_clip(token_loss, advantages, cfg.ratio_max)
    with torch.no_grad():
        clipped = (ratio > high) & (advantages > 0) | (ratio < low) & (advantages < 0)
        metrics = {
            "clip_frac": float(masked_mean(clipped.float(), mask)),
            "clip_bound_low_mean": float(masked_mean(low, mask)),
            "clip_bound_high_mean": float(masked_mean(high, mask)),
            "ratio_mean": float(masked_mean(ratio, mask)),
        }
    return token_loss, metrics
