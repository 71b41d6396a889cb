"""advantage=adora: ADORA's length-advantage weighting of GRPO advantages (the LLM variant of the authors' code).

"ADORA: Training Reasoning Models with Dynamic Advantage Estimation on Reinforcement Learning", Ren, Huang, Fang,
Chen, Chen, Li, Zhao, arXiv 2602.10019 (first released as a blog post with code, ShadeCloak/ADORA). A group is a
"temporarily advantageous sample" (TAS) when its correct completions reason longer than its wrong ones:

    correct_g = {j in g : R_j > correct_threshold},   wrong_g = g minus correct_g
    w_g       = 1       if correct_g is empty or max_{j in correct_g} |o_j| > mean_{j in wrong_g} |o_j|   (TAS)
    w_g       = weight  otherwise                                                                       (TDS)
    A_i       = w_{g(i)} * (R_i - mean_g R) / (std_g R + eps)                                 (std Bessel-corrected)

A group without a wrong completion is TDS (the code's mean over an empty set is +inf); with 0/1 rewards its
advantages are 0 anyway. Defaults follow the authors' LLM code (`compute_grpo_outcome_advantage_length_weight`:
lamda = 0.1 attenuates TDS groups); their threshold 1.0 is for the Knights-and-Knaves reward scale (correct = 3),
ours 0.5 is for 0/1 rewards. Not implemented: the paper's "Difficulty Advantage" criterion (used for VLMs) and its
amplification variant, whose formulas we could not recover precisely. Group of size 1 -> 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.advantages import ADVANTAGES
from rlpost.advantages.common import AdvantageConfig, group_sum, group_zscore
from rlpost.batch import RolloutBatch
from rlpost.config import check


@dataclass
class ADORAAdvantageConfig(AdvantageConfig):
    name: str = "adora"
    correct_threshold: float = 0.5  # rewards above this are "correct" (authors' K&K code: 1.0)
    weight: float = 0.1  # multiplier of TDS groups' advantages (< 1 attenuates, > 1 amplifies)
    eps: float = 1e-6  # added to the group std

    def __post_init__(self) -> None:
        check(self.weight >= 0, "weight", f"must be >= 0, got {self.weight}")
        check(self.eps >= 0, "eps", f"must be >= 0, got {self.eps}")


@ADVANTAGES.register("adora", ADORAAdvantageConfig)
def adora_advantage(
    rewards: Tensor, group_index: Tensor, cfg: ADORAAdvantageConfig, *, batch: RolloutBatch, **_: object
) -> Tensor:
    """[B] GRPO advantages, multiplied by `weight` in groups whose correct completions are not the longer ones."""
    rewards = rewards.float()
    lengths = batch.response_lengths.float()  # [B]
    correct = rewards > cfg.correct_threshold  # [B]
    groups = int(group_index.max()) + 1
    longest_correct = torch.full((groups,), -torch.inf).scatter_reduce(
        0, group_index[correct], lengths[correct], reduce="amax"
    )  # [G], -inf without a correct completion
    wrong_count = group_sum((~correct).float(), group_index)  # [G]
    mean_wrong = torch.where(
        wrong_count > 0, group_sum(lengths * ~correct, group_index) / wrong_count.clamp(min=1), torch.inf
    )  # [G]
    has_correct = group_sum(correct.float(), group_index) > 0  # [G]
    advantageous = ~has_correct | (longest_correct > mean_wrong)  # [G] TAS
    weight = torch.where(advantageous, 1.0, cfg.weight)[group_index]  # [B]
    return weight * group_zscore(rewards, group_index, cfg.eps)
