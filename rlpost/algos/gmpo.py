"""algo=gmpo: Geometric-Mean Policy Optimization, a sequence objective on the geometric mean of token ratios.

"GMPO: Geometric-Mean Policy Optimization", Zhao et al., arXiv 2507.20673. Token ratios are clipped one by one in
log space, sign-aware (pessimistic like PPO), then averaged geometrically over the response. As implemented, with
d_{i,t} = logp_{i,t} - old_logp_{i,t} and the sequence advantage A_i = masked mean of A_{i,t}:

    d_min_{i,t} = sgn(A_i) * min( sgn(A_i) d_{i,t},  sgn(A_i) clip(d_{i,t}, -clip_low, clip_high) )
    R_i         = exp( (1/|o_i|) sum_t d_min_{i,t} )
    L_{i,t}     = -A_i R_i          (the sequence's loss on each of its tokens; seq-mean-token-mean = mean_i)

clip_low / clip_high are LOG-space here: ratios stay in (e^-0.4, e^0.4) with the paper's 0.4 / 0.4. No KL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.algos import ALGOS
from rlpost.algos.common import AlgoConfig, log_ratio, masked_mean, sequence_mean


@dataclass
class GMPOConfig(AlgoConfig):
    name: str = "gmpo"
    clip_low: float = 0.4  # log-ratio >= -clip_low per token (log space)
    clip_high: float = 0.4  # log-ratio <= clip_high per token (log space)


@ALGOS.register("gmpo", GMPOConfig)
def gmpo(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, cfg: GMPOConfig, **_: object
) -> tuple[Tensor, dict[str, float]]:
    """Per-token GMPO loss [B, T]: -A_i R_i on every token of response i."""
    token_log_ratio = log_ratio(logprobs, old_logprobs)  # [B, T]
    sequence_advantage = sequence_mean(advantages, mask)  # [B]
    sign = torch.sign(sequence_advantage)[:, None]  # [B, 1]
    clipped = token_log_ratio.clamp(-cfg.clip_low, cfg.clip_high)
    pessimistic = sign * torch.minimum(sign * token_log_ratio, sign * clipped)  # [B, T]
    sequence_ratio = torch.exp(sequence_mean(pessimistic, mask))  # [B]
    token_loss = (-sequence_advantage * sequence_ratio)[:, None].expand_as(token_log_ratio)
    with torch.no_grad():
        was_clipped = token_log_ratio != clipped
        metrics = {
            "clip_frac_upper": float(masked_mean((was_clipped & (advantages > 0)).float(), mask)),
            "clip_frac_lower": float(masked_mean((was_clipped & (advantages < 0)).float(), mask)),
            "seq_ratio_mean": float(sequence_ratio.mean()) if len(sequence_ratio) else 0.0,
        }
    return token_loss, metrics
