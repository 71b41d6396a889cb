"""Small hand-made RolloutBatches for unit tests."""

from __future__ import annotations

import torch

from rlpost.batch import RolloutBatch


def make_batch(
    group_sizes: list[int],
    response_lengths: list[int] | None = None,
    width: int = 4,
    rewards: list[float] | None = None,
) -> RolloutBatch:
    """A batch with the given group sizes; response b has response_lengths[b] tokens (default: width)."""
    count = sum(group_sizes)
    lengths = response_lengths or [width] * count
    group_index = torch.tensor([g for g, size in enumerate(group_sizes) for _ in range(size)])
    response_mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    batch = RolloutBatch(
        prompt_index=group_index.clone(),
        group_index=group_index,
        prompt_ids=torch.ones(count, 3, dtype=torch.long),
        prompt_mask=torch.ones(count, 3, dtype=torch.bool),
        response_ids=torch.full((count, width), 5),
        response_mask=response_mask,
        texts=[""] * count,
        sampling_logprobs=torch.full((count, width), -1.0),
    )
    if rewards is not None:
        batch.reward = torch.tensor(rewards, dtype=torch.float32)
        batch.rewards = {"correct": batch.reward.clone()}
    return batch
