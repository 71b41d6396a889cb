"""Balanced Aggregation (arXiv 2605.04077): token mean per (group, sign) subset, weighted by sequence counts."""

import pytest
import torch

from rlpost.algos.balanced import balanced_aggregate
from rlpost.algos.common import Normalizer, aggregate

# group 0: seq 0 (A > 0, 2 tokens), seq 1 (A > 0, 1 token), seq 2 (A < 0, 3 tokens); group 1: seq 3 (A < 0, 1 token)
LOSS = torch.tensor([[1.0, 3.0, 0.0], [5.0, 0.0, 0.0], [2.0, 2.0, 2.0], [4.0, 0.0, 0.0]])
MASK = torch.tensor([[True, True, False], [True, False, False], [True, True, True], [True, False, False]])
GROUPS = torch.tensor([0, 0, 0, 1])
ADV = torch.tensor([1.0, 0.5, -1.0, -2.0])


def test_value_by_hand():
    # subsets: (0,+): n 2, tokens 3, sum 9 -> 2 * 9/3 = 6;  (0,-): n 1, tokens 3, sum 6 -> 1 * 2 = 2;
    # (1,-): n 1, tokens 1, sum 4 -> 4.   total / N = (6 + 2 + 4) / 4 = 3
    norm = Normalizer.of(MASK, GROUPS, 1.0, ADV)
    assert float(balanced_aggregate(LOSS, MASK, GROUPS, norm, ADV)) == pytest.approx(3.0)
    assert float(aggregate(LOSS, MASK, "balanced", norm, GROUPS, ADV)) == pytest.approx(3.0)


def test_split_micro_batches_add_up_with_minibatch_totals():
    norm = Normalizer.of(MASK, GROUPS, 1.0, ADV)
    parts = [
        balanced_aggregate(LOSS[rows], MASK[rows], GROUPS[rows], norm, ADV[rows])
        for rows in (torch.tensor([0, 2]), torch.tensor([1, 3]))
    ]
    assert float(sum(parts)) == pytest.approx(3.0)


def test_fallback_without_minibatch_subsets_is_exact_for_whole_subsets():
    norm = Normalizer.of(MASK, GROUPS, 1.0)  # no advantages: subsets counted per micro-batch
    parts = [
        balanced_aggregate(LOSS[rows], MASK[rows], GROUPS[rows], norm, ADV[rows])
        for rows in (torch.tensor([0, 1]), torch.tensor([2, 3]))
    ]
    assert float(sum(parts)) == pytest.approx(3.0)


def test_equal_lengths_reduce_to_sequence_mean_and_advantages_are_required():
    mask = torch.ones(4, 2, dtype=torch.bool)
    loss = torch.tensor([[1.0, 3.0], [2.0, 2.0], [0.0, 4.0], [6.0, 6.0]])
    norm = Normalizer.of(mask, GROUPS, 1.0, ADV)
    balanced = aggregate(loss, mask, "balanced", norm, GROUPS, ADV)
    assert float(balanced) == pytest.approx(float(aggregate(loss, mask, "seq-mean-token-mean", norm, GROUPS)))
    with pytest.raises(ValueError, match="advantages"):
        aggregate(loss, mask, "balanced", norm, GROUPS)
