"""advantage=reinforce_pp: REINFORCE++ with global advantage normalization.

"REINFORCE++: Stabilizing Critic-Free Policy Optimization with Global Advantage Normalization", Hu et al.,
arXiv 2501.03262 (k >= 1 samples per prompt, no group baseline):

    A_i = (R_i - mean_batch R) / sqrt(var_batch R + eps)

mean and var run over all response tokens of the rollout batch (token_weighted=True, as the paper and verl's
masked_whiten: a completion of |o_i| tokens counts |o_i| times; var Bessel-corrected) or over completions.
The paper's per-token KL-in-reward term (-beta * sum_{s>=t} KL_s) is not included: in rlpost the KL penalty lives in
the loss (algo.kl_coef) and reference log-probs are computed after the advantages. A constant batch gives 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from rlpost.advantages import ADVANTAGES
from rlpost.advantages.common import AdvantageConfig, batch_whiten
from rlpost.batch import RolloutBatch
from rlpost.config import check


@dataclass
class ReinforcePPAdvantageConfig(AdvantageConfig):
    name: str = "reinforce_pp"
    min_group_size: int = 1  # no group baseline: one completion per prompt is enough
    token_weighted: bool = True  # whiten over tokens (paper, verl) instead of over completions
    eps: float = 1e-8  # added to the batch variance

    def __post_init__(self) -> None:
        check(self.eps >= 0, "eps", f"must be >= 0, got {self.eps}")


@ADVANTAGES.register("reinforce_pp", ReinforcePPAdvantageConfig)
def reinforce_pp_advantage(
    rewards: Tensor, group_index: Tensor, cfg: ReinforcePPAdvantageConfig, *, batch: RolloutBatch, **_: object
) -> Tensor:
    """[B] batch-whitened rewards."""
    weights = batch.response_lengths if cfg.token_weighted else None
    return batch_whiten(rewards.float(), weights, cfg.eps)
