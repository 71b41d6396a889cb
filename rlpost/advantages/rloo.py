"""advantage=rloo: leave-one-out baseline.

"Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs",
Ahmadian et al., arXiv 2402.14740 (after Kool et al. 2019, "Buy 4 REINFORCE samples, get a baseline for free"):

    A_i = R_i - 1/(n-1) * sum_{j in g(i), j != i} R_j  =  n/(n-1) * (R_i - mean_{j in g(i)} R_j),   n = |g(i)|

The baseline does not depend on sample i, so the estimate is unbiased. A group of size 1 has no other sample:
its advantage is 0 (as TRL and verl's rloo_vectorized). An all-equal group gets exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from rlpost.advantages import ADVANTAGES
from rlpost.advantages.common import AdvantageConfig, group_count, group_deviation, singleton_zero


@dataclass
class RLOOAdvantageConfig(AdvantageConfig):
    name: str = "rloo"


@ADVANTAGES.register("rloo", RLOOAdvantageConfig)
def rloo_advantage(rewards: Tensor, group_index: Tensor, cfg: RLOOAdvantageConfig, **_: object) -> Tensor:
    """[B] reward minus the mean of the other rewards of its group."""
    rewards = rewards.float()
    count = group_count(group_index).to(rewards.dtype)
    scale = count / (count - 1).clamp(min=1)
    return singleton_zero(scale * group_deviation(rewards, group_index), group_index)
