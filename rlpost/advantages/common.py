"""Group statistics over a flat batch with a group index (groups may differ in size)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlpost.config import check


@dataclass
class AdvantageConfig:
    """Base schema; estimators subclass it."""

    name: str = "grpo"
    min_group_size: int = 2  # start-up requires run.n >= this (group-relative estimators need 2)


def group_count(group_index: Tensor) -> Tensor:
    """[B] size of each completion's group."""
    return torch.bincount(group_index)[group_index]


def group_sum(values: Tensor, group_index: Tensor) -> Tensor:
    """[G] sum of `values` [B] within each group."""
    return torch.zeros(int(group_index.max()) + 1, dtype=values.dtype).index_add_(0, group_index, values)


def group_mean(values: Tensor, group_index: Tensor) -> Tensor:
    """[B] mean of each completion's group."""
    counts = torch.bincount(group_index).to(values.dtype)
    return (group_sum(values, group_index) / counts.clamp(min=1))[group_index]


def group_std(values: Tensor, group_index: Tensor, unbiased: bool = True) -> Tensor:
    """[B] standard deviation of each completion's group (Bessel-corrected by default, as torch.std); 0 for size 1."""
    counts = torch.bincount(group_index).to(values.dtype)
    centered = values - group_mean(values, group_index)
    squares = group_sum(centered**2, group_index)
    denominator = (counts - 1).clamp(min=1) if unbiased else counts.clamp(min=1)
    return torch.sqrt(squares / denominator)[group_index]


def check_finite(rewards: Tensor, prompt_index: Tensor, reward_name: str = "reward") -> None:
    bad = ~torch.isfinite(rewards)
    check(
        not bad.any(),
        reward_name,
        f"non-finite reward {rewards[bad][0].item()} for prompt {int(prompt_index[bad][0])}" if bad.any() else "",
    )
