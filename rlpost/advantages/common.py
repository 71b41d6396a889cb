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


def group_sorted_order(values: Tensor, group_index: Tensor) -> tuple[Tensor, Tensor]:
    """(order [B], start [B]): `order` lists rows by group, ascending `values` within a group (ties keep batch
    order); `start[k]` is where row order[k]'s group begins in `order`."""
    by_value = torch.sort(values, stable=True).indices
    order = by_value[torch.sort(group_index[by_value], stable=True).indices]
    counts = torch.bincount(group_index)
    starts = torch.cumsum(counts, 0) - counts  # [G]
    return order, starts[group_index[order]]


def group_rank(values: Tensor, group_index: Tensor) -> Tensor:
    """[B] long: 0-based rank of each value within its group (0 = smallest; ties broken by batch order)."""
    order, start = group_sorted_order(values, group_index)
    rank = torch.empty_like(group_index)
    rank[order] = torch.arange(len(order)) - start
    return rank


def group_median(values: Tensor, group_index: Tensor) -> tuple[Tensor, Tensor]:
    """(median [B], is_pivot [B] bool): each group's lower median (torch.median's convention for even sizes)
    and the one row per group that holds it (the row at the median position of a stable sort, so among tied
    rewards the batch order decides)."""
    order, start = group_sorted_order(values, group_index)
    counts = torch.bincount(group_index)
    pivot_position = (torch.cumsum(counts, 0) - counts) + (counts - 1).clamp(min=0) // 2  # [G]
    pivot_rows = order[pivot_position[counts > 0]]
    is_pivot = torch.zeros(len(values), dtype=torch.bool)
    is_pivot[pivot_rows] = True
    median = torch.zeros(len(counts), dtype=values.dtype)
    median[group_index[pivot_rows]] = values[pivot_rows]
    return median[group_index], is_pivot


def batch_whiten(values: Tensor, weights: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """(x - mean) / sqrt(var + eps) over the whole batch; `weights` [B] (e.g. token counts) weight mean and var.

    var is Bessel-corrected over the total weight N (N/(N-1), as verl's masked_whiten); a constant batch gives 0.
    """
    weights = torch.ones_like(values) if weights is None else weights.to(values.dtype)
    total = weights.sum()
    mean = (values * weights).sum() / total.clamp(min=1e-8)
    variance = ((values - mean) ** 2 * weights).sum() / total.clamp(min=1e-8)
    variance = variance * total / (total - 1) if total > 1 else variance
    return (values - mean) * torch.rsqrt(variance + eps)


def sequence_logprob(batch, *, length_normalized: bool = True) -> Tensor:
    """[B] sequence log-likelihood under the sampling policy from batch.sampling_logprobs [B, T].

    Sum over response tokens, or their mean when length_normalized (XRPO's s(y), "Rewarding the Unlikely"'s l_i).
    """
    check(
        batch.sampling_logprobs is not None,
        "advantage",
        "this estimator needs batch.sampling_logprobs (greedy rollouts carry none)",
    )
    mask = batch.response_mask.to(batch.sampling_logprobs.dtype)  # [B, T]
    total = (batch.sampling_logprobs * mask).sum(dim=1)
    return total / mask.sum(dim=1).clamp(min=1) if length_normalized else total


def group_zscore(values: Tensor, group_index: Tensor, eps: float) -> Tensor:
    """[B] (x - group mean) / (group std + eps), the GRPO normalisation; 0 for a group of size 1."""
    normalized = (values - group_mean(values, group_index)) / (group_std(values, group_index) + eps)
    return normalized * (group_count(group_index) > 1)


def singleton_zero(advantages: Tensor, group_index: Tensor) -> Tensor:
    """Zero the advantage of completions alone in their group (no baseline, so no relative signal)."""
    return advantages * (group_count(group_index) > 1)
