"""advantage=ngrpo: GRPO statistics with virtual maximum-reward samples (advantage calibration).

"NGRPO: Negative-enhanced Group Relative Policy Optimization", Nan et al., arXiv 2509.18851. The group statistics
include `virtual_count` virtual completions with reward `max_reward` that are never trained on:

    S_g  = {R_j : j in g} + {max_reward} x virtual_count
    A_i  = (R_i - mean(S_g)) / (std(S_g) + eps)           (std Bessel-corrected over n_g + virtual_count values)

So an all-wrong group gets a negative signal (G=8, R=0: mean 1/9, std 1/3, A = -1/3), an all-correct group
(R = max_reward) gets exactly 0, and mixed groups are centred higher than under GRPO. Pair with asymmetric clipping
(the paper: clip_low 0.16, clip_high 0.24; set those on the algo). A group of size 1 follows the same formula
(the authors' verl code instead falls back to A = R without the virtual sample). Rewards above max_reward get a
positive advantage larger than a correct one: set max_reward to the true maximum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.advantages import ADVANTAGES
from rlpost.advantages.common import FLAT_RTOL, AdvantageConfig, flat_groups, group_count, group_sum, safe_divide
from rlpost.config import check


@dataclass
class NGRPOAdvantageConfig(AdvantageConfig):
    name: str = "ngrpo"
    min_group_size: int = 1  # the virtual sample gives even one completion a baseline
    max_reward: float = 1.0  # reward of the virtual samples (the task's maximum)
    virtual_count: int = 1  # virtual samples added to each group's statistics
    eps: float = 1e-6  # added to the std

    def __post_init__(self) -> None:
        check(self.virtual_count >= 1, "virtual_count", f"must be >= 1, got {self.virtual_count}")
        check(self.eps >= 0, "eps", f"must be >= 0, got {self.eps}")


@ADVANTAGES.register("ngrpo", NGRPOAdvantageConfig)
def ngrpo_advantage(rewards: Tensor, group_index: Tensor, cfg: NGRPOAdvantageConfig, **_: object) -> Tensor:
    """[B] (R_i - mean(S_g)) / (std(S_g) + eps) with S_g the group plus the virtual samples."""
    rewards = rewards.float()
    wide = rewards.double()  # statistics in float64: an all-max group must give exactly 0
    size = group_count(group_index).double() + cfg.virtual_count  # [B] |S_g|
    mean = (group_sum(wide, group_index)[group_index] + cfg.virtual_count * cfg.max_reward) / size
    virtual_squares = cfg.virtual_count * (cfg.max_reward - mean) ** 2
    squares = group_sum((wide - mean) ** 2, group_index)[group_index] + virtual_squares
    std = (squares / (size - 1)).sqrt()
    at_max = (wide - cfg.max_reward).abs() <= FLAT_RTOL * torch.maximum(wide.abs(), torch.tensor(abs(cfg.max_reward)))
    deviation = torch.where(flat_groups(rewards, group_index) & at_max, 0.0, wide - mean)  # S_g all equal -> 0
    return safe_divide(deviation, std + cfg.eps).float()
