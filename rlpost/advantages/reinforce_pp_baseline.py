"""advantage=reinforce_pp_baseline: REINFORCE++-baseline (group mean subtracted, then batch-normalized).

"REINFORCE++: Stabilizing Critic-Free Policy Optimization with Global Advantage Normalization", Hu et al.,
arXiv 2501.03262 (k > 1 samples per prompt, reasoning tasks):

    A'_i = R_i - mean_{j in g(i)} R_j                       (no group std: the group std is a biased scale)
    A_i  = (A'_i - mean_batch A') / sqrt(var_batch A' + eps)  (over tokens when token_weighted, as verl)

Note: a group whose rewards are all equal has A' = 0 but A = -mean_batch/std_batch, generally not 0 (the paper's
rule; filter such groups with the sampler if that matters). A group of size 1 has A' = 0. A batch of all-equal
groups gives exactly 0 (A' = 0 everywhere; float32 group sums would leave ulp noise that whitening blows up to +-1).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from rlpost.advantages import ADVANTAGES
from rlpost.advantages.common import AdvantageConfig, batch_whiten, group_deviation
from rlpost.batch import RolloutBatch
from rlpost.config import check


@dataclass
class ReinforcePPBaselineAdvantageConfig(AdvantageConfig):
    name: str = "reinforce_pp_baseline"
    token_weighted: bool = True  # whiten over tokens (verl) instead of over completions
    eps: float = 1e-8  # added to the batch variance

    def __post_init__(self) -> None:
        check(self.eps >= 0, "eps", f"must be >= 0, got {self.eps}")


@ADVANTAGES.register("reinforce_pp_baseline", ReinforcePPBaselineAdvantageConfig)
def reinforce_pp_baseline_advantage(
    rewards: Tensor, group_index: Tensor, cfg: ReinforcePPBaselineAdvantageConfig, *, batch: RolloutBatch, **_: object
) -> Tensor:
    """[B] group-centred rewards, batch-whitened."""
    rewards = rewards.float()
    centred = group_deviation(rewards, group_index)  # [B] exactly 0 in all-equal groups
    weights = batch.response_lengths if cfg.token_weighted else None
    return batch_whiten(centred, weights, cfg.eps)
