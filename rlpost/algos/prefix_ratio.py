"""algo=prefix_ratio: MinPRO, the token surrogate weighted by a non-cumulative prefix importance ratio.

"A Step Back: Prefix Importance Ratio Stabilizes Policy Optimization", Lei, Cheng, Tao, arXiv 2601.22718.
The exact off-policy correction of the token term at t is the prefix ratio prod_{j<t} r_j times r_t; MinPRO replaces
the (exploding) cumulative product by the minimum token ratio seen in the preceding prefix. As implemented:

    w_{i,t} = sg( min_{j<t} r_{i,j} )     (prefix=min, MinPRO; w_{i,1} = 1)
            = sg( prod_{j<t} r_{i,j} )    (prefix=product: the exact, high-variance prefix ratio, for ablation)
    L_{i,t} = -w_{i,t} * min( r_{i,t} A, clip(r_{i,t}, 1 - clip_low, 1 + clip_high) A )

Reconstructed (the paper's equation was not available verbatim; the abstract fixes "minimum token-level ratio in the
preceding prefix"): the prefix is exclusive of t, the weight is detached (it corrects the state distribution, the
gradient flows through r_t as in the policy-gradient theorem), and GRPO's clip stays on r_t. Masked positions do
not enter the minimum. Clip and aggregation defaults follow GRPO.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.algos import ALGOS
from rlpost.algos.common import LOG_RATIO_LIMIT, AlgoConfig, clip_fractions, log_ratio, masked_mean
from rlpost.algos.grpo import clipped_surrogate
from rlpost.config import check

PREFIXES = ("min", "product")


@dataclass
class PrefixRatioConfig(AlgoConfig):
    name: str = "prefix_ratio"
    prefix: str = "min"  # min: MinPRO's minimum prefix ratio; product: the exact cumulative prefix ratio

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.prefix in PREFIXES, "prefix", f"{self.prefix!r} is not one of {', '.join(PREFIXES)}")


def exclusive_prefix_log_weight(token_log_ratio: Tensor, mask: Tensor, prefix: str) -> Tensor:
    """log of min_{j<t} r_j (or of prod_{j<t} r_j) over masked positions, 0 where the prefix is empty -> [B, T]."""
    if prefix == "min":
        filled = torch.where(mask, token_log_ratio, torch.full_like(token_log_ratio, LOG_RATIO_LIMIT))
        inclusive = torch.cummin(filled, dim=1).values  # masked positions never lower the minimum
    else:
        inclusive = torch.cumsum(token_log_ratio * mask, dim=1)
    shifted = torch.cat([torch.zeros_like(inclusive[:, :1]), inclusive[:, :-1]], dim=1)
    has_prefix = torch.cat([torch.zeros_like(mask[:, :1]), torch.cumsum(mask, dim=1)[:, :-1] > 0], dim=1)
    return torch.where(has_prefix, shifted, torch.zeros_like(shifted)).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)


@ALGOS.register("prefix_ratio", PrefixRatioConfig)
def prefix_ratio(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, cfg: PrefixRatioConfig, **_: object
) -> tuple[Tensor, dict[str, float]]:
    """Per-token MinPRO loss [B, T] and its metrics."""
    token_log_ratio = log_ratio(logprobs, old_logprobs)  # [B, T]
    ratio = torch.exp(token_log_ratio)
    weight = torch.exp(exclusive_prefix_log_weight(token_log_ratio.detach(), mask, cfg.prefix))  # [B, T]
    token_loss = weight * clipped_surrogate(ratio, advantages, cfg.clip_low, cfg.clip_high)
    metrics = clip_fractions(ratio.detach(), advantages, cfg.clip_low, cfg.clip_high, mask)
    metrics["prefix_weight_mean"] = float(masked_mean(weight, mask))
    metrics["ratio_mean"] = float(masked_mean(ratio.detach(), mask))
    return token_loss, metrics
