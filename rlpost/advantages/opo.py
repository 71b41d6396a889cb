"""advantage=opo: length-weighted optimal reward baseline.

"On-Policy RL with Optimal Reward Baseline", Hao et al., arXiv 2505.23585:

    b_g = sum_{j in g} |o_j| R_j / sum_{j in g} |o_j|,     A_i = R_i - b_{g(i)}

(the variance-minimising baseline when ||grad log pi(o)||^2 grows like |o|). No std scaling. The paper also asks
for exact on-policy training (ppo_epochs=1, minibatches=1). Group of size 1 -> 0; all rewards equal ->
exactly 0 (float64 sums).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.advantages import ADVANTAGES
from rlpost.advantages.common import AdvantageConfig, flat_groups, group_sum, singleton_zero
from rlpost.batch import RolloutBatch


@dataclass
class OPOAdvantageConfig(AdvantageConfig):
    name: str = "opo"


@ADVANTAGES.register("opo", OPOAdvantageConfig)
def opo_advantage(
    rewards: Tensor, group_index: Tensor, cfg: OPOAdvantageConfig, *, batch: RolloutBatch, **_: object
) -> Tensor:
    """[B] rewards minus the response-length-weighted group mean."""
    rewards = rewards.float()
    wide, lengths = rewards.double(), batch.response_lengths.double()  # [B]
    baseline = group_sum(lengths * wide, group_index) / group_sum(lengths, group_index).clamp(min=1)  # [G]
    deviation = (wide - baseline[group_index]).float()
    deviation = torch.where(flat_groups(rewards, group_index), torch.zeros_like(deviation), deviation)
    return singleton_zero(deviation, group_index)
