"""advantage=mc_grpo: median-centred group advantage; the median completion (pivot) is dropped from the update.

"MC-GRPO: Median-Centered Group Relative Policy Optimization for Small-Rollout Reinforcement Learning", Youngeun Kim,
arXiv 2601.22582. Generate G+1 completions per prompt (run.n = G+1, odd); with med_g the group median:

    A_i  = (R_i - med_g) / (MAD_g + mad_eps),   MAD_g = median_{j in g} |R_j - med_g|     (scale="mad")
    A_i  =  R_i - med_g                                                                    (scale="none")
    A_i *= n_g / #{j in g : A_j != 0}       where some A_j != 0                   (rescale_nonzero=True)
    sample_mask_i = (i is not the pivot)    the pivot holds med_g, so A_pivot = 0

so G = n_g - 1 completions per prompt carry gradient, the same update cost as G-rollout GRPO. MAD, mad_eps = 1e-3 and
the n_g/#nonzero rescale follow the authors' code (lotusroot-kim/MC-GRPO, flag --mc); the paper's text states the
median baseline and the dropped pivot. For an even n_g the lower median is the pivot (torch.median's convention);
among tied rewards the pivot is the one at the median position of a stable sort. With binary rewards MAD is usually
0, so |A| = (n_g/#minority)/mad_eps for the minority side and 0 for the majority side, as in the authors' code;
scale="none" keeps advantages in reward units. A group of size 1 is its own pivot: advantage 0, dropped. All rewards
equal: all advantages 0 and the pivot still dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.advantages import ADVANTAGES
from rlpost.advantages.common import AdvantageConfig, group_count, group_median, group_sum
from rlpost.config import check


@dataclass
class MCGRPOAdvantageConfig(AdvantageConfig):
    name: str = "mc_grpo"
    min_group_size: int = 3  # G+1 completions with G >= 2 (n odd gives a unique median)
    scale: str = "mad"  # mad: divide by the group's median absolute deviation + mad_eps; none: median-centring only
    mad_eps: float = 1e-3  # added to the MAD (authors' code)
    rescale_nonzero: bool = True  # multiply by n_g / #nonzero advantages in the group (authors' code)

    def __post_init__(self) -> None:
        check(self.scale in ("mad", "none"), "scale", f"must be 'mad' or 'none', got {self.scale!r}")
        check(self.mad_eps > 0, "mad_eps", f"must be > 0, got {self.mad_eps}")


@ADVANTAGES.register("mc_grpo", MCGRPOAdvantageConfig)
def mc_grpo_advantage(
    rewards: Tensor, group_index: Tensor, cfg: MCGRPOAdvantageConfig, **_: object
) -> tuple[Tensor, Tensor]:
    """([B] advantages, [B] bool sample_mask with each group's pivot False)."""
    rewards = rewards.float()
    median, is_pivot = group_median(rewards, group_index)
    advantages = rewards - median
    if cfg.scale == "mad":
        mad, _ = group_median(advantages.abs(), group_index)
        advantages = advantages / (mad + cfg.mad_eps)
    advantages = torch.where(is_pivot, torch.zeros_like(advantages), advantages)
    if cfg.rescale_nonzero:
        nonzero = group_sum((advantages.abs() > 1e-6).to(rewards.dtype), group_index)[group_index]  # [B]
        count = group_count(group_index).to(rewards.dtype)
        advantages = torch.where(nonzero > 0, advantages * count / nonzero.clamp(min=1), advantages)
    return advantages, ~is_pivot
