"""algo=cispo: Clipped IS-weight Policy Optimization (REINFORCE with a clipped, detached importance weight).

MiniMax-M1 technical report ("MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning Attention"),
arXiv 2506.13585. No token is ever dropped from the gradient: the clip acts on the weight, not on the update.
As implemented (token-mean over the batch, as in the paper):

    r_hat_{i,t} = clip( r_{i,t}, 1 - clip_low, 1 + clip_high ),   r = exp(logp - old_logp)
    L_{i,t}     = -sg(r_hat_{i,t}) * A_{i,t} * logp_{i,t}          (gradient: -sg(r_hat) A grad logp)

The paper sets no effective lower bound (clip_low = 1 gives a lower bound of 0) and tunes only clip_high.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.algos import ALGOS
from rlpost.algos.common import AlgoConfig, log_ratio, masked_mean


@dataclass
class CISPOConfig(AlgoConfig):
    name: str = "cispo"
    clip_low: float = 1.0  # IS weight >= 1 - clip_low (1.0: no lower bound, as in the paper)
    clip_high: float = 0.2  # IS weight <= 1 + clip_high
    loss_agg: str = "token-mean"


@ALGOS.register("cispo", CISPOConfig)
def cispo(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, cfg: CISPOConfig, **_: object
) -> tuple[Tensor, dict[str, float]]:
    """Per-token CISPO loss [B, T] and its metrics."""
    ratio = torch.exp(log_ratio(logprobs, old_logprobs))  # [B, T]
    weight = ratio.clamp(1.0 - cfg.clip_low, 1.0 + cfg.clip_high).detach()
    token_loss = -weight * advantages * logprobs.float()
    with torch.no_grad():
        metrics = {
            "is_weight_mean": float(masked_mean(weight, mask)),
            "clip_frac_upper": float(masked_mean((ratio > 1.0 + cfg.clip_high).float(), mask)),
            "clip_frac_lower": float(masked_mean((ratio < 1.0 - cfg.clip_low).float(), mask)),
            "ratio_mean": float(masked_mean(ratio, mask)),
        }
    return token_loss, metrics
