"""advantage=unlikely: unlikeliness reward reshaping before GRPO's z-score.

"Rewarding the Unlikely: Lifting GRPO Beyond Distribution Sharpening", He, Fried, Welleck, arXiv 2506.02355
(EMNLP 2025). GRPO's rank bias reinforces the likely correct samples; reshape rewards by likelihood rank:

    l_i    = (1/|o_i|) sum_t log pi_sampling(o_{i,t} | q, o_{i,<t})     (length-normalized, detached)
    rank_i = #{j in g(i) ranked below i by l} / n_g                    (0 = least likely ... (n_g-1)/n_g = most)
    R'_i   = R_i * (1 - beta_rank * rank_i)                            (only non-zero rewards change)
    A_i    = (R'_i - mean_g R') / (std_g R' + eps)                     (GRPO on R'; std Bessel-corrected)

So an all-correct group is no longer zero-advantage: likely proofs get negative, unlikely ones positive advantage.
The paper pairs it with more updates per batch (run.ppo_epochs=2). l uses the rollout engine's log-probs (the
authors' code uses pi_old's, the same policy on-policy). Ties in l go by batch order. All-wrong group -> 0;
group of size 1 -> 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from rlpost.advantages import ADVANTAGES
from rlpost.advantages.common import (
    AdvantageConfig,
    group_count,
    group_rank,
    group_zscore,
    sequence_logprob,
)
from rlpost.batch import RolloutBatch
from rlpost.config import check, in_range


@dataclass
class UnlikelyAdvantageConfig(AdvantageConfig):
    name: str = "unlikely"
    beta_rank: float = 0.25  # reward cut for the most likely completion (rank_penalty in the authors' code)
    eps: float = 1e-6  # added to the group std

    def __post_init__(self) -> None:
        in_range(self.beta_rank, "beta_rank", 0.0, 1.0)
        check(self.eps >= 0, "eps", f"must be >= 0, got {self.eps}")


@ADVANTAGES.register("unlikely", UnlikelyAdvantageConfig)
def unlikely_advantage(
    rewards: Tensor, group_index: Tensor, cfg: UnlikelyAdvantageConfig, *, batch: RolloutBatch, **_: object
) -> Tensor:
    """[B] GRPO advantages of the likelihood-rank-shaped rewards."""
    likelihood = sequence_logprob(batch).float()  # [B] l_i
    rank = group_rank(likelihood, group_index).float() / group_count(group_index).float()
    shaped = rewards.float() * (1 - cfg.beta_rank * rank)
    return group_zscore(shaped, group_index, cfg.eps)
