"""advantage=grpo: group-relative advantage of GRPO.

"DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models", Shao et al.,
arXiv 2402.03300 (outcome supervision):

    A_i = (R_i - mean_{j in g(i)} R_j) / (std_{j in g(i)} R_j + eps)        (scale_std=True)
    A_i =  R_i - mean_{j in g(i)} R_j                                       (scale_std=False, as Dr. GRPO)

std is Bessel-corrected (torch.std, as verl and TRL). A group of size 1 has no baseline: its advantage is
0; an all-equal group gets exactly 0 whatever its value (statistics in float64, see common.group_deviation).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from rlpost.advantages import ADVANTAGES
from rlpost.advantages.common import AdvantageConfig, group_deviation, group_zscore, singleton_zero
from rlpost.config import check


@dataclass
class GRPOAdvantageConfig(AdvantageConfig):
    name: str = "grpo"
    scale_std: bool = True  # divide by the group std (False: mean-centering only)
    eps: float = 1e-6  # added to the std

    def __post_init__(self) -> None:
        check(self.eps >= 0, "eps", f"must be >= 0, got {self.eps}")


@ADVANTAGES.register("grpo", GRPOAdvantageConfig)
def grpo_advantage(rewards: Tensor, group_index: Tensor, cfg: GRPOAdvantageConfig, **_: object) -> Tensor:
    """[B] advantages from rewards [B] and group_index [B]."""
    rewards = rewards.float()
    if cfg.scale_std:
        return group_zscore(rewards, group_index, cfg.eps)
    return singleton_zero(group_deviation(rewards, group_index), group_index)
