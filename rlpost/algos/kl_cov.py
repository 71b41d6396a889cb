"""algo=kl_cov: KL-Cov, a KL penalty on the few tokens with the largest log-prob/advantage covariance.

"The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models", Cui et al., arXiv 2505.22617.
No ratio clipping at all. As implemented:

    cov_{i,t} = (A_{i,t} - mean A)(logp_{i,t} - mean sg(logp))           (means over the valid tokens)
    top-k valid tokens by cov, k = max(1, floor(kl_cov_ratio * N_tokens)):
        L_{i,t} = -A r + kl_cov_coef * |logp_{i,t} - old_logp_{i,t}|
    every other token:  L_{i,t} = -A r

Paper: kl_cov_ratio 2e-3 (7B) / 2e-4 (32B), coefficient 1; token-mean. The means, N_tokens and the top-k are taken
over the whole minibatch (the trainer computes them once per minibatch with `kl_cov_statistics`), so
micro_batch_size / micro_batch_tokens do not change which tokens are penalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.algos import ALGOS, MINIBATCH_STATISTICS
from rlpost.algos.common import AlgoConfig, log_ratio, masked_mean, token_covariance
from rlpost.config import check, in_range


@dataclass
class KLCovConfig(AlgoConfig):
    name: str = "kl_cov"
    loss_agg: str = "token-mean"
    kl_cov_ratio: float = 2e-4  # share of valid tokens that get the |log-ratio| penalty
    kl_cov_coef: float = 1.0  # coefficient of |logp - old_logp| on those tokens

    def __post_init__(self) -> None:
        super().__post_init__()
        in_range(self.kl_cov_ratio, "kl_cov_ratio", 0.0, 1.0, low_open=True)
        check(self.kl_cov_coef >= 0, "kl_cov_coef", f"must be >= 0, got {self.kl_cov_coef}")

    @property
    def uses_minibatch_statistics(self) -> bool:
        return True


def top_covariance_mask(covariance: Tensor, mask: Tensor, ratio: float) -> Tensor:
    """Bool [B, T]: the max(1, floor(ratio * valid tokens)) valid tokens with the largest covariance."""
    chosen = torch.zeros_like(mask)
    valid = int(mask.sum())
    if valid == 0:
        return chosen
    count = max(int(ratio * valid), 1)
    scores = torch.where(mask, covariance, -torch.inf).flatten()
    chosen.view(-1)[torch.topk(scores, count).indices] = True
    return chosen


@MINIBATCH_STATISTICS.register("kl_cov")
@torch.no_grad()
def kl_cov_statistics(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, cfg: KLCovConfig, **_: object
) -> dict[str, Tensor]:
    """{"penalised": bool [B, T]}: this minibatch's top-covariance tokens."""
    return {"penalised": top_covariance_mask(token_covariance(logprobs, advantages, mask), mask, cfg.kl_cov_ratio)}


@ALGOS.register("kl_cov", KLCovConfig)
def kl_cov(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    cfg: KLCovConfig,
    *,
    stats: dict[str, Tensor] | None = None,
    **_: object,
) -> tuple[Tensor, dict[str, float]]:
    """Per-token KL-Cov loss [B, T] and its metrics; `stats`: this micro-batch's rows of the minibatch's top-k."""
    token_log_ratio = log_ratio(logprobs, old_logprobs)  # [B, T]
    ratio = torch.exp(token_log_ratio)
    penalised = (stats or kl_cov_statistics(logprobs, old_logprobs, advantages, mask, cfg))["penalised"]
    token_loss = -advantages * ratio + penalised * (cfg.kl_cov_coef * token_log_ratio.abs())
    metrics = {
        "kl_cov_frac": float(masked_mean(penalised.float(), mask)),
        "abs_log_ratio_mean": float(masked_mean(token_log_ratio.detach().abs(), mask)),
        "ratio_mean": float(masked_mean(ratio.detach(), mask)),
    }
    return token_loss, metrics
