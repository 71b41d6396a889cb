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


FLAT_RTOL = 4 * torch.finfo(torch.float32).eps  # values closer than a few float32 ulps of their size count as equal


def group_count(group_index: Tensor) -> Tensor:
    """[B] size of each completion's group."""
    return torch.bincount(group_index)[group_index]


def group_sum(values: Tensor, group_index: Tensor) -> Tensor:
    """[G] sum of `values` [B] within each group."""
    return torch.zeros(int(group_index.max()) + 1, dtype=values.dtype).index_add_(0, group_index, values)


def group_mean(values: Tensor, group_index: Tensor) -> Tensor:
    """[B] mean of each completion's group, accumulated in float64 (so a group of equal values has that value
    as its mean exactly: n * x and its division by n are exact in float64 for float32 x)."""
    wide = values.double()
    counts = torch.bincount(group_index).double()
    return (group_sum(wide, group_index) / counts.clamp(min=1))[group_index].to(values.dtype)


def flat_groups(values: Tensor, group_index: Tensor) -> Tensor:
    """[B] bool: the completion's group has (numerically) one value, max - min <= FLAT_RTOL * max |value|."""
    groups = int(group_index.max()) + 1
    high = torch.full((groups,), -torch.inf, dtype=values.dtype).scatter_reduce(0, group_index, values, "amax")
    low = torch.full((groups,), torch.inf, dtype=values.dtype).scatter_reduce(0, group_index, values, "amin")
    scale = torch.maximum(high.abs(), low.abs())
    return ((high - low) <= FLAT_RTOL * scale)[group_index]


def group_deviation(values: Tensor, group_index: Tensor) -> Tensor:
    """[B] value minus its group's mean (float64 accumulation), exactly 0 in a group whose values are all equal.

    Every group statistic builds on this: float32 sums are an ulp off the common value, and a z-score would divide
    that ulp by a ~1e-7 std and turn an all-equal group into +-0.1 advantages.
    """
    deviation = (values.double() - group_mean(values.double(), group_index)).to(values.dtype)
    return torch.where(flat_groups(values, group_index), torch.zeros_like(deviation), deviation)


def group_std(values: Tensor, group_index: Tensor, unbiased: bool = True) -> Tensor:
    """[B] standard deviation of each completion's group (Bessel-corrected by default, as torch.std); 0 for size 1
    and for an all-equal group (two-pass: from the centred values, in float64)."""
    counts = torch.bincount(group_index).double()
    squares = group_sum(group_deviation(values, group_index).double() ** 2, group_index)
    denominator = (counts - 1).clamp(min=1) if unbiased else counts.clamp(min=1)
    return torch.sqrt(squares / denominator)[group_index].to(values.dtype)


def safe_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator, and exactly 0 where the numerator is 0 (a flat group with eps = 0 gives 0, not NaN)."""
    return torch.where(numerator == 0, torch.zeros_like(numerator), numerator / denominator)


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

    var is Bessel-corrected over the total weight N (N/(N-1), as verl's masked_whiten); computed in float64, and a
    constant batch (every value equal, see flat_groups) gives exactly 0.
    """
    wide = values.double()
    weights = torch.ones_like(wide) if weights is None else weights.double()
    total = weights.sum()
    mean = (wide * weights).sum() / total.clamp(min=1e-8)
    centred = wide - mean
    if bool(flat_groups(values, torch.zeros_like(values, dtype=torch.long)).all()):
        centred = torch.zeros_like(centred)
    variance = (centred**2 * weights).sum() / total.clamp(min=1e-8)
    variance = variance * total / (total - 1) if total > 1 else variance
    return safe_divide(centred, torch.sqrt(variance + eps)).to(values.dtype)


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
    """[B] (x - group mean) / (group std + eps), the GRPO normalisation; exactly 0 for a group of size 1 and for a
    group whose values are all equal (whatever the values and eps)."""
    normalized = safe_divide(group_deviation(values, group_index), group_std(values, group_index) + eps)
    return normalized * (group_count(group_index) > 1)


def singleton_zero(advantages: Tensor, group_index: Tensor) -> Tensor:
    """Zero the advantage of completions alone in their group (no baseline, so no relative signal)."""
    return advantages * (group_count(group_index) > 1)
