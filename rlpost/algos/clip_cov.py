"""algo=clip_cov: Clip-Cov, detach a few high-covariance tokens from the PPO gradient to stop entropy collapse.

"The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models", Cui et al., arXiv 2505.22617.
Entropy falls with the covariance of log-probability and advantage of the sampled tokens. As implemented:

    cov_{i,t} = (A_{i,t} - mean A)(logp_{i,t} - mean sg(logp))           (means over the valid tokens)
    among valid tokens NOT already clipped by PPO with clip_cov_lb < cov < clip_cov_ub, draw uniformly
    n = max(1, floor(clip_cov_ratio * N_tokens)) of them and set their loss to 0 (no gradient)
    every other token: L = -min(r A, clip(r, 1 - clip_low, 1 + clip_high) A)

Paper: clip_cov_ratio 2e-4, bounds (1, 5), token-mean. The means, N_tokens and the draw are taken over the whole
minibatch (the paper's "batch"; the trainer computes them once per minibatch with `clip_cov_statistics`), so
micro_batch_size / micro_batch_tokens do not change which tokens are detached. The random draw uses torch's global
generator, which the trainer seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.algos import ALGOS, MINIBATCH_STATISTICS
from rlpost.algos.common import AlgoConfig, clip_fractions, log_ratio, masked_mean, token_covariance
from rlpost.algos.grpo import clipped_surrogate
from rlpost.config import check, in_range


@dataclass
class ClipCovConfig(AlgoConfig):
    name: str = "clip_cov"
    loss_agg: str = "token-mean"
    clip_cov_ratio: float = 2e-4  # share of valid tokens whose gradient is detached
    clip_cov_lb: float = 1.0  # covariance lower bound of the candidates
    clip_cov_ub: float = 5.0  # covariance upper bound of the candidates

    def __post_init__(self) -> None:
        super().__post_init__()
        in_range(self.clip_cov_ratio, "clip_cov_ratio", 0.0, 1.0, low_open=True)
        check(self.clip_cov_ub > self.clip_cov_lb, "clip_cov_ub", f"must be > clip_cov_lb={self.clip_cov_lb}")

    @property
    def uses_minibatch_statistics(self) -> bool:
        return True


def covariance_detach_mask(candidates: Tensor, mask: Tensor, ratio: float) -> Tensor:
    """Bool [B, T]: a uniform draw of max(1, floor(ratio * valid tokens)) among the candidate tokens."""
    chosen = torch.zeros_like(mask)
    positions = candidates.flatten().nonzero().squeeze(1)
    count = min(max(int(ratio * int(mask.sum())), 1), len(positions))
    if count:
        picked = positions[torch.randperm(len(positions))[:count].to(positions.device)]
        chosen.view(-1)[picked] = True
    return chosen


@MINIBATCH_STATISTICS.register("clip_cov")
@torch.no_grad()
def clip_cov_statistics(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, cfg: ClipCovConfig, **_: object
) -> dict[str, Tensor]:
    """{"detached": bool [B, T]}: the tokens drawn among this minibatch's candidates."""
    ratio = torch.exp(log_ratio(logprobs, old_logprobs))  # [B, T]
    ppo_clipped = (-advantages * ratio.clamp(1 - cfg.clip_low, 1 + cfg.clip_high)) > (-advantages * ratio)
    covariance = token_covariance(logprobs, advantages, mask)
    candidates = mask & ~ppo_clipped & (covariance > cfg.clip_cov_lb) & (covariance < cfg.clip_cov_ub)
    return {"detached": covariance_detach_mask(candidates, mask, cfg.clip_cov_ratio)}


@ALGOS.register("clip_cov", ClipCovConfig)
def clip_cov(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    cfg: ClipCovConfig,
    *,
    stats: dict[str, Tensor] | None = None,
    **_: object,
) -> tuple[Tensor, dict[str, float]]:
    """Per-token Clip-Cov loss [B, T] and its metrics; `stats`: this micro-batch's rows of the minibatch's draw."""
    ratio = torch.exp(log_ratio(logprobs, old_logprobs))  # [B, T]
    token_loss = clipped_surrogate(ratio, advantages, cfg.clip_low, cfg.clip_high)
    detached = (stats or clip_cov_statistics(logprobs, old_logprobs, advantages, mask, cfg))["detached"]
    token_loss = torch.where(detached, torch.zeros_like(token_loss), token_loss)
    metrics = clip_fractions(ratio.detach(), advantages, cfg.clip_low, cfg.clip_high, mask)
    metrics["cov_detached_frac"] = float(masked_mean(detached.float(), mask))
    return token_loss, metrics
