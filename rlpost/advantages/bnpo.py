"""advantage=bnpo: Beta Normalization Policy Optimization.

"BNPO: Beta Normalization Policy Optimization", Xiao, Zhang, Cao, arXiv 2506.02864 (binary rewards; the
authors' verl code maps other rewards affinely into [0, 1]):

    s_i   = (R_i - min_reward) / (max_reward - min_reward)
    p_g   = mean_{j in g} s_j                                   (Monte-Carlo success rate of the prompt)
    m, v  = mean and unbiased variance of p_g over the groups of the batch
    a     = (m(1-m)/v - 1) m,   b = (m(1-m)/v - 1)(1-m)         (method-of-moments Beta(a, b) fit)
    alpha = max(1 + a/3, 1),    beta = max(1 + b/3, 1)          (the variance-minimising normalizer)
    A_i   = min(1 / BetaPDF(p_g; alpha, beta), max_weight) * (s_i - p_g)

alpha = beta = 1 gives REINFORCE with a group-mean baseline; alpha = beta = 3/2 gives a GRPO-like std scale.
Guards (the authors' code has only the one-prompt fallback): with fewer than 2 groups, or v = 0 (every group has the
same success rate), the Beta fit is undefined and alpha = beta = 1 is used. All-equal group -> exactly 0 (s_i = p_g); a
group of size 1 -> 0 likewise. A reward outside [min_reward, max_reward] is an error (the Beta density is undefined).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.advantages import ADVANTAGES
from rlpost.advantages.common import AdvantageConfig, group_deviation, group_mean
from rlpost.config import check


@dataclass
class BNPOAdvantageConfig(AdvantageConfig):
    name: str = "bnpo"
    min_reward: float = 0.0  # reward mapped to 0 (a failure)
    max_reward: float = 1.0  # reward mapped to 1 (a success)
    max_weight: float = 1.0e6  # clamp on 1/BetaPDF (authors' code), reached when p_g is near 0 or 1

    def __post_init__(self) -> None:
        check(self.max_reward > self.min_reward, "max_reward", f"must be > min_reward ({self.min_reward})")
        check(self.max_weight > 0, "max_weight", f"must be > 0, got {self.max_weight}")


def beta_parameters(success_rates: Tensor) -> tuple[float, float]:
    """(alpha, beta) of BNPO's normalizer from the per-group success rates p_g [G]."""
    if success_rates.numel() < 2:
        return 1.0, 1.0
    mean, variance = float(success_rates.mean()), float(success_rates.var())
    if variance <= 0:
        return 1.0, 1.0
    spread = mean * (1 - mean) / variance - 1
    return max(1 + spread * mean / 3, 1.0), max(1 + spread * (1 - mean) / 3, 1.0)


def beta_pdf(values: Tensor, alpha: float, beta: float) -> Tensor:
    """Beta(alpha, beta) density on [0, 1], with 0 * log 0 = 0 at the ends (so Beta(1, 1) is 1 everywhere)."""
    log_norm = (
        torch.lgamma(torch.tensor(alpha + beta)) - torch.lgamma(torch.tensor(alpha)) - torch.lgamma(torch.tensor(beta))
    )
    log_density = torch.xlogy(torch.tensor(alpha - 1), values) + torch.xlogy(torch.tensor(beta - 1), 1 - values)
    return torch.exp(log_density + log_norm)


@ADVANTAGES.register("bnpo", BNPOAdvantageConfig)
def bnpo_advantage(rewards: Tensor, group_index: Tensor, cfg: BNPOAdvantageConfig, **_: object) -> Tensor:
    """[B] (s_i - p_g) / BetaPDF(p_g; alpha, beta), clamped."""
    rewards = rewards.float()
    outside = (rewards < cfg.min_reward) | (rewards > cfg.max_reward)
    check(
        not outside.any(),
        "advantage.max_reward",
        f"bnpo maps rewards into [min_reward, max_reward] = [{cfg.min_reward}, {cfg.max_reward}]; got reward "
        f"{float(rewards[outside][0]) if outside.any() else 0.0} (set advantage.min_reward / max_reward to the range)",
    )
    scaled = (rewards - cfg.min_reward) / (cfg.max_reward - cfg.min_reward)  # [B]
    success = group_mean(scaled, group_index)  # [B] p_g of each completion's group
    present = torch.bincount(group_index) > 0
    per_group = torch.zeros(len(present)).index_put_((group_index,), success)[present]  # [G']
    alpha, beta = beta_parameters(per_group)
    weight = (1 / beta_pdf(success, alpha, beta)).clamp(max=cfg.max_weight)  # inf -> max_weight
    return weight * group_deviation(scaled, group_index)  # exactly 0 in an all-equal group
