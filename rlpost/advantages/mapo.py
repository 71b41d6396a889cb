"""advantage=mapo: Mixed Advantage Policy Optimization (certainty-weighted mix of z-score and percent deviation).

"MAPO: Mixed Advantage Policy Optimization", Huang, Zhang, ..., Ye, Du, Tao, arXiv 2509.18849:

    p        = #{j in g : R_j = success_reward} / n_g          (trajectory certainty)
    lambda_p = 1 - 4 p (1 - p)                                 (0 at p = 1/2, 1 at p in {0, 1})
    A_std_i  = (R_i - mu_g) / (sigma_g + eps)                  (sigma_g BIASED, /n_g, as the paper's Eq. 2)
    A_apd_i  = (R_i - mu_g) / (mu_g + eps)                     ("advantage percent deviation")
    A_i      = (1 - lambda_p) A_std_i + lambda_p A_apd_i

Near-certain groups lean on the percent deviation, which avoids GRPO's "advantage reversion" (a tiny std inflating
|A|) and "advantage mirror" (e.g. [0, .1, .1, .1] and [.9, 1, 1, 1] getting equal z-scores). The paper has no eps:
it is ours, and makes an all-zero group (mu = sigma = 0) give 0 instead of 0/0. Rewards are assumed >= 0 (mu is a
divisor). A small non-zero mu (partial credit among zeros) makes A_apd large, as the paper's formula does. All-equal
group -> exactly 0; group of size 1 -> 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from rlpost.advantages import ADVANTAGES
from rlpost.advantages.common import (
    AdvantageConfig,
    group_deviation,
    group_mean,
    group_std,
    safe_divide,
    singleton_zero,
)
from rlpost.config import check


@dataclass
class MAPOAdvantageConfig(AdvantageConfig):
    name: str = "mapo"
    success_reward: float = 1.0  # a completion with exactly this reward counts as a success for p
    eps: float = 1e-6  # added to sigma and mu (ours: the paper has none)

    def __post_init__(self) -> None:
        check(self.eps > 0, "eps", f"must be > 0, got {self.eps}")


@ADVANTAGES.register("mapo", MAPOAdvantageConfig)
def mapo_advantage(rewards: Tensor, group_index: Tensor, cfg: MAPOAdvantageConfig, **_: object) -> Tensor:
    """[B] (1 - lambda(p)) * z-score + lambda(p) * percent deviation."""
    rewards = rewards.float()
    mean = group_mean(rewards, group_index)
    certainty = group_mean((rewards == cfg.success_reward).float(), group_index)  # [B] p
    weight = 1 - 4 * certainty * (1 - certainty)  # [B] lambda(p)
    deviation = group_deviation(rewards, group_index)  # [B] R_i - mu_g, exactly 0 in an all-equal group
    z_score = safe_divide(deviation, group_std(rewards, group_index, unbiased=False) + cfg.eps)
    percent = safe_divide(deviation, mean + cfg.eps)
    return singleton_zero((1 - weight) * z_score + weight * percent, group_index)
