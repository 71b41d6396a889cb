"""algo=gspo and algo=gspo_token: the sequence-level clipped surrogate of GSPO.

"Group Sequence Policy Optimization", Zheng et al. (Qwen team), arXiv 2507.18071. As implemented, with the
length-normalised sequence ratio computed in log space

    s_i = exp( (1/|o_i|) * sum_t (logp_{i,t} - old_logp_{i,t}) )

gspo:        L_{i,t} = -min( s_i A_{i,t}, clip(s_i, 1 - clip_low, 1 + clip_high) A_{i,t} )   (same value on every token)
gspo_token:  s_{i,t} = sg(s_i) * pi_theta(o_{i,t}) / sg(pi_theta(o_{i,t}))   (value s_i, gradient of logp_{i,t} only)
             L_{i,t} = -min( s_{i,t} A_{i,t}, clip(s_{i,t}, 1 - clip_low, 1 + clip_high) A_{i,t} )

With a sequence-level advantage and seq-mean-token-mean both give J = (1/G) sum_i min(s_i A_i, clip(s_i) A_i) and
the same gradient; gspo_token additionally allows per-token advantages. Paper defaults: clip 3e-4 / 4e-4, no KL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.algos import ALGOS
from rlpost.algos.common import (
    AlgoConfig,
    clip_fractions,
    masked_mean,
    sequence_log_ratio,
    token_sequence_log_ratio,
)
from rlpost.algos.grpo import clipped_surrogate


@dataclass
class GSPOConfig(AlgoConfig):
    name: str = "gspo"
    clip_low: float = 3e-4  # sequence ratio >= 1 - clip_low (paper 3e-4)
    clip_high: float = 4e-4  # sequence ratio <= 1 + clip_high (paper 4e-4)


def sequence_ratio_loss(ratio: Tensor, advantages: Tensor, mask: Tensor, cfg: AlgoConfig) -> tuple[Tensor, dict]:
    """Clipped surrogate of a [B, T] ratio (sequence-valued) and its metrics."""
    token_loss = clipped_surrogate(ratio, advantages, cfg.clip_low, cfg.clip_high)
    metrics = clip_fractions(ratio.detach(), advantages, cfg.clip_low, cfg.clip_high, mask)
    metrics["seq_ratio_mean"] = float(masked_mean(ratio.detach(), mask))
    return token_loss, metrics


@ALGOS.register("gspo", GSPOConfig)
def gspo(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, cfg: GSPOConfig, **_: object
) -> tuple[Tensor, dict[str, float]]:
    """Per-token GSPO loss [B, T]: the sequence's clipped surrogate on each of its tokens."""
    ratio = torch.exp(sequence_log_ratio(logprobs, old_logprobs, mask))[:, None].expand_as(advantages)  # [B, T]
    return sequence_ratio_loss(ratio, advantages, mask, cfg)


@ALGOS.register("gspo_token", GSPOConfig)
def gspo_token(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, cfg: GSPOConfig, **_: object
) -> tuple[Tensor, dict[str, float]]:
    """Per-token GSPO-token loss [B, T]: sequence ratio value, per-token gradient."""
    ratio = torch.exp(token_sequence_log_ratio(logprobs, old_logprobs, mask))  # [B, T]
    return sequence_ratio_loss(ratio, advantages, mask, cfg)
