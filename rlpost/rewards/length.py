"""reward=length: length penalties, for use inside reward=multi (or alone, kind=linear).

kind=linear:  r_i = -|y_i| / L_max            (L_max = rollout.max_new_tokens; scale it with the multi weight)

kind=kimi: Kimi k1.5's length reward (arXiv 2501.12599, Sec. 2.3.3), per group with min_len / max_len the
shortest / longest response of the group:

    lambda_i = 0.5 - (|y_i| - min_len) / (max_len - min_len)          (0 when max_len = min_len)
    r_i      = lambda_i                 if response i is correct
             = min(0, lambda_i)         otherwise
correctness is read from the named reward `correct_from` (> 0 = correct), computed earlier in the same multi.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.config import check
from rlpost.rewards import REWARDS
from rlpost.rewards.isolation import RewardConfig

KINDS = ("linear", "kimi")


@dataclass
class LengthRewardConfig(RewardConfig):
    name: str = "length"
    kind: str = "linear"  # linear | kimi
    correct_from: str = "correct"  # kimi: the named reward that says which responses are correct
    reward_name: str = "length"

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.kind in KINDS, "kind", f"{self.kind!r} is not one of {', '.join(KINDS)}")


def linear_length_penalty(lengths: Tensor, max_length: int) -> Tensor:
    """[B] -|y| / L_max."""
    return -lengths.float() / max(max_length, 1)


def kimi_length_reward(lengths: Tensor, group_index: Tensor, correct: Tensor) -> Tensor:
    """[B] Kimi k1.5 length reward (formula in the module docstring)."""
    lengths = lengths.float()
    groups = int(group_index.max()) + 1 if len(group_index) else 0
    shortest = torch.full((groups,), float("inf")).scatter_reduce(0, group_index, lengths, "amin")
    longest = torch.full((groups,), float("-inf")).scatter_reduce(0, group_index, lengths, "amax")
    spread = (longest - shortest)[group_index]
    lam = torch.where(spread > 0, 0.5 - (lengths - shortest[group_index]) / spread.clamp(min=1e-9), 0.0)
    return torch.where(correct > 0, lam, lam.clamp(max=0.0))


def length_reward(texts: list[str], rows: list[dict], cfg: LengthRewardConfig, call, *, batch, max_length, named):
    if cfg.kind == "linear":
        values = linear_length_penalty(batch.response_lengths, max_length)
    else:
        check(
            cfg.correct_from in named,
            "reward.correct_from",
            f"{cfg.correct_from!r} is not a reward computed before this one (have: {sorted(named)})",
        )
        values = kimi_length_reward(batch.response_lengths, batch.group_index, named[cfg.correct_from])
    return {cfg.reward_name: values}, {"length_reward_mean": float(values.mean()) if len(values) else 0.0}


length_reward.needs_batch = True
REWARDS.register("length", LengthRewardConfig)(length_reward)
