"""RolloutBatch.split (run.minibatches > 1): whole groups, balanced by rows; split groups only when unavoidable."""

import pytest
import torch

from tests.advantages.batches import rollout_batch


def groups_of(parts) -> list[set[int]]:
    return [set(part.group_index.tolist()) for part in parts]


def numbered(group_sizes: list[int]):
    """A batch whose reward is the row number, so that rows can be traced through the split."""
    return rollout_batch(group_sizes, [float(b) for b in range(sum(group_sizes))])


def assert_partition(batch, parts) -> None:
    rows = sorted(int(r) for part in parts for r in part.reward)
    assert rows == list(range(len(batch)))  # every row exactly once
    for part in parts:  # rows keep their group
        assert torch.equal(part.group_index, batch.group_index[part.reward.long()])


def test_equal_groups_are_dealt_whole_and_evenly():
    batch = numbered([4] * 6)
    parts = batch.split(3, torch.Generator().manual_seed(0))
    assert [len(part) for part in parts] == [8, 8, 8]
    seen = groups_of(parts)
    assert all(len(groups) == 2 for groups in seen)
    assert set().union(*seen) == set(range(6)) and sum(len(g) for g in seen) == 6  # each group in one minibatch
    assert_partition(batch, parts)


def test_unequal_groups_whole_and_balanced_by_rows():
    # sizes 5, 3, 3, 2, 2, 1 = 16 rows: largest first to the lighter minibatch -> 8 and 8
    batch = numbered([5, 3, 3, 2, 2, 1])
    parts = batch.split(2, torch.Generator().manual_seed(1))
    assert sorted(len(part) for part in parts) == [8, 8]
    seen = groups_of(parts)
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(6))
    assert_partition(batch, parts)


def test_shuffle_is_seeded_and_changes_the_deal():
    batch = numbered([2] * 8)
    deal = lambda seed: groups_of(batch.split(2, torch.Generator().manual_seed(seed)))  # noqa: E731
    assert deal(3) == deal(3)
    assert len({tuple(sorted(deal(seed)[0])) for seed in range(6)}) > 1
    assert groups_of(batch.split(2)) == [{0, 2, 4, 6}, {1, 3, 5, 7}]  # no generator: groups dealt in order


def test_fewer_groups_than_minibatches_splits_rows_and_says_so():
    batch = numbered([4, 4])
    with pytest.warns(UserWarning, match="minibatches=4 but this step has only 2 groups"):
        parts = batch.split(4, torch.Generator().manual_seed(0))
    assert [len(part) for part in parts] == [2, 2, 2, 2]
    assert_partition(batch, parts)
