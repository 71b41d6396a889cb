"""advantage=dr_grpo: GRPO's group baseline without the std division.

"Understanding R1-Zero-Like Training: A Critical Perspective", Liu et al., arXiv 2503.20783:

    A_i = R_i - mean_{j in g(i)} R_j

The paper's other change (no 1/|o_i| in the loss) is a loss-aggregation choice: algo=dr_grpo / algo.norm_length.
An all-equal group gets exactly 0. A group of size 1 has no baseline: its advantage is 0 (verl keeps R_i there; we
give no signal without a group).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from rlpost.advantages import ADVANTAGES
from rlpost.advantages.common import AdvantageConfig, group_deviation, singleton_zero


@dataclass
class DrGRPOAdvantageConfig(AdvantageConfig):
    name: str = "dr_grpo"


@ADVANTAGES.register("dr_grpo", DrGRPOAdvantageConfig)
def dr_grpo_advantage(rewards: Tensor, group_index: Tensor, cfg: DrGRPOAdvantageConfig, **_: object) -> Tensor:
    """[B] mean-centred rewards."""
    rewards = rewards.float()
    return singleton_zero(group_deviation(rewards, group_index), group_index)
