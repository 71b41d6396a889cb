"""algo=ctpo: Cumulative Token Policy Optimization, the cumulative token IS ratio with position-adaptive clipping.

"Rethinking Importance Sampling in LLM Policy Optimization: A Cumulative Token Perspective", Zhang, Ye, Jin, Yu,
Xiong, Sahu, Jiang, arXiv 2605.07331 (code: horizon-llm/CTPO, loss "cum-token-cumprod-la" = CTPO-LA). The ratio at
t is the product of the token ratios up to t (an unbiased prefix correction of the token term), its value detached
and its gradient that of logp_t. As implemented, with t the 1-based position among the response's valid tokens:

    log rho_{i,t} = sg( sum_{j<=t} (logp_{i,j} - old_logp_{i,j}) ) + logp_{i,t} - sg(logp_{i,t})
                    (ratio_mode=geomean: the sum divided by t)
    bounds in log space grow as t^p:  [-clip_low t^p,  clip_high t^p],  dual-clip bound exp(dual_clip t^p)
    L_{i,t} = -min( rho A, exp(clip(log rho, -clip_low t^p, clip_high t^p)) A ),
              capped at -A exp(dual_clip t^p) for A < 0 (dual_clip = 0: off)

Defaults (authors' ctpo.sh): clip_low 0.025, clip_high 0.05, dual_clip 0.05 (all log space), p = 0.5, cumprod,
no KL; the script leaves verl's default token-mean aggregation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.algos import ALGOS
from rlpost.algos.common import LOG_RATIO_LIMIT, AlgoConfig, dual_clip, log_ratio, masked_mean
from rlpost.config import check

RATIO_MODES = ("cumprod", "geomean")


@dataclass
class CTPOConfig(AlgoConfig):
    name: str = "ctpo"
    clip_low: float = 0.025  # log-space lower clip at position 1 (scaled by t^clip_power)
    clip_high: float = 0.05  # log-space upper clip at position 1 (scaled by t^clip_power)
    clip_power: float = 0.5  # p: bounds grow as t^p (0.5 matches Var(sum of log-ratios) ~ t)
    dual_clip: float = 0.05  # log-space dual-clip bound at position 1 for A < 0; 0 = off
    ratio_mode: str = "cumprod"  # cumprod: prod_{j<=t} r_j; geomean: its t-th root
    loss_agg: str = "token-mean"

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.ratio_mode in RATIO_MODES, "ratio_mode", f"{self.ratio_mode!r} is not one of {RATIO_MODES}")
        check(self.dual_clip >= 0, "dual_clip", f"must be >= 0 (0 = off), got {self.dual_clip}")


def cumulative_log_ratio(logprobs: Tensor, old_logprobs: Tensor, mask: Tensor, mode: str) -> Tensor:
    """log rho_{i,t} [B, T]: detached cumulative (or running-mean) log-ratio plus the gradient of logp_t."""
    token = log_ratio(logprobs, old_logprobs).detach() * mask
    cumulative = torch.cumsum(token, dim=1)
    if mode == "geomean":
        cumulative = cumulative / torch.cumsum(mask, dim=1).clamp(min=1)
    logprobs = logprobs.float()
    return cumulative.clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT) + logprobs - logprobs.detach()


@ALGOS.register("ctpo", CTPOConfig)
def ctpo(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, cfg: CTPOConfig, **_: object
) -> tuple[Tensor, dict[str, float]]:
    """Per-token CTPO-LA loss [B, T] and its metrics."""
    log_rho = cumulative_log_ratio(logprobs, old_logprobs, mask, cfg.ratio_mode)  # [B, T]
    scale = torch.cumsum(mask, dim=1).clamp(min=1).float() ** cfg.clip_power  # [B, T] t^p
    clipped_log_rho = torch.maximum(torch.minimum(log_rho, cfg.clip_high * scale), -cfg.clip_low * scale)
    token_loss = torch.maximum(-advantages * torch.exp(log_rho), -advantages * torch.exp(clipped_log_rho))
    if cfg.dual_clip:
        token_loss = dual_clip(token_loss, advantages, torch.exp(cfg.dual_clip * scale))
    with torch.no_grad():
        upper = (log_rho > cfg.clip_high * scale) & (advantages > 0)
        lower = (log_rho < -cfg.clip_low * scale) & (advantages < 0)
        metrics = {
            "clip_frac_upper": float(masked_mean(upper.float(), mask)),
            "clip_frac_lower": float(masked_mean(lower.float(), mask)),
            "cum_ratio_mean": float(masked_mean(torch.exp(log_rho), mask)),
        }
    return token_loss, metrics
