"""algo=grpo: the PPO-clipped token-level surrogate of GRPO.

"DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models", Shao et al.,
arXiv 2402.03300. Per token, with r = exp(logp - old_logp) and the group advantage A broadcast over tokens:

    L_{i,t} = -min( r_{i,t} A_i, clip(r_{i,t}, 1 - clip_low, 1 + clip_high) A_i )

optionally dual-clipped for A < 0 (Ye et al., arXiv 1912.09729): L = min(L, -A * dual_clip).
The KL penalty (beta * k3 by default), entropy bonus, TIS and aggregation are added in algos/__init__.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.algos import ALGOS
from rlpost.algos.common import AlgoConfig, clip_fractions, log_ratio, masked_mean
from rlpost.config import check


@dataclass
class GRPOConfig(AlgoConfig):
    dual_clip: float = 0.0  # c > 1 bounds the loss of negative-advantage tokens at -c*A; 0 = off

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.dual_clip == 0 or self.dual_clip > 1, "dual_clip", f"must be 0 (off) or > 1, got {self.dual_clip}")


def clipped_surrogate(ratio: Tensor, advantages: Tensor, low: float, high: float) -> Tensor:
    """-min(r A, clip(r, 1-low, 1+high) A) per token."""
    return torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1.0 - low, 1.0 + high))


@ALGOS.register("grpo", GRPOConfig)
def grpo(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, cfg: GRPOConfig, **_: object
) -> tuple[Tensor, dict[str, float]]:
    """Per-token GRPO loss [B, T] and its metrics."""
    ratio = torch.exp(log_ratio(logprobs, old_logprobs))  # [B, T]
    token_loss = clipped_surrogate(ratio, advantages, cfg.clip_low, cfg.clip_high)
    if cfg.dual_clip:
        token_loss = torch.where(advantages < 0, token_loss.clamp(max=-advantages * cfg.dual_clip), token_loss)
    metrics = clip_fractions(ratio.detach(), advantages, cfg.clip_low, cfg.clip_high, mask)
    metrics["ratio_mean"] = float(masked_mean(ratio.detach(), mask))
    return token_loss, metrics
