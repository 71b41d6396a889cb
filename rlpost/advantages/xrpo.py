"""advantage=xrpo: GRPO advantage plus XRPO's novelty-aware sharpening of correct but unlikely completions.

"XRPO: Pushing the limits of GRPO with Targeted Exploration and Exploitation", Bamba, Fang, Yu, Zheng, Lai,
arXiv 2510.06672 (only the advantage part; XRPO's rollout allocator is sampler=xrpo):

    s_i   = (1/|o_i|) sum_t log pi_sampling(o_{i,t} | q, o_{i,<t})       (length-normalized sequence likelihood)
    eta_i = exp(s_i - mean_{j in g(i)} s_j)                              (< 1: less likely than its group)
    A_i   = GRPO advantage (R_i - mean_g R) / (std_g R + eps)
    A+_i  = A_i + min(max(lambda_novelty * (1 - eta_i), 0), kappa_clip * A_i)   if A_i > 0 (a correct completion)
    A+_i  = A_i                                                                 otherwise

The bonus lies in [0, kappa_clip * A_i], so a correct completion is amplified at most (1 + kappa_clip)x and a typical
or likely one (eta >= 1) not at all. s uses the rollout engine's log-probs (detached, as pi_old). Reconstructed:
s_bar over the whole group (not only correct completions) and the A_i > 0 gating follow the paper's notation as
quoted by reviewers; the authors' code was not available. All-equal group -> 0; group of size 1 -> 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.advantages import ADVANTAGES
from rlpost.advantages.common import AdvantageConfig, group_mean, group_zscore, sequence_logprob, singleton_zero
from rlpost.batch import RolloutBatch
from rlpost.config import check


@dataclass
class XRPOAdvantageConfig(AdvantageConfig):
    name: str = "xrpo"
    lambda_novelty: float = 2.5  # bonus per unit of (1 - eta)
    kappa_clip: float = 0.5  # the bonus is at most kappa_clip * A_i
    eps: float = 1e-6  # added to the group std

    def __post_init__(self) -> None:
        check(self.lambda_novelty >= 0, "lambda_novelty", f"must be >= 0, got {self.lambda_novelty}")
        check(self.kappa_clip >= 0, "kappa_clip", f"must be >= 0, got {self.kappa_clip}")
        check(self.eps >= 0, "eps", f"must be >= 0, got {self.eps}")


@ADVANTAGES.register("xrpo", XRPOAdvantageConfig)
def xrpo_advantage(
    rewards: Tensor, group_index: Tensor, cfg: XRPOAdvantageConfig, *, batch: RolloutBatch, **_: object
) -> Tensor:
    """[B] GRPO advantages with a capped bonus for positive-advantage completions less likely than their group."""
    rewards = rewards.float()
    advantages = group_zscore(rewards, group_index, cfg.eps)
    likelihood = sequence_logprob(batch).float()  # [B] s_i
    eta = torch.exp(likelihood - group_mean(likelihood, group_index))
    bonus = torch.minimum((cfg.lambda_novelty * (1 - eta)).clamp(min=0), cfg.kappa_clip * advantages)
    advantages = torch.where(advantages > 0, advantages + bonus, advantages)
    return singleton_zero(advantages, group_index)
