"""A tiny RolloutBatch builder for advantage tests: groups of uneven sizes, chosen lengths and log-probs."""

from __future__ import annotations

import torch

from rlpost.batch import RolloutBatch


def rollout_batch(
    group_sizes: list[int],
    rewards: list[float],
    *,
    lengths: list[int] | None = None,
    seq_logprobs: list[float] | None = None,
    named: dict[str, list[float]] | None = None,
    texts: list[str] | None = None,
    width: int = 8,
) -> RolloutBatch:
    """B = sum(group_sizes) completions; completion b has lengths[b] response tokens (default width) and a
    per-token sampling log-prob of seq_logprobs[b] (so its length-normalized log-likelihood is seq_logprobs[b])."""
    count = sum(group_sizes)
    assert len(rewards) == count
    lengths = lengths or [width] * count
    group_index = torch.tensor([g for g, size in enumerate(group_sizes) for _ in range(size)])
    response_mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]  # [B, T] bool
    per_token = torch.tensor(seq_logprobs or [-1.0] * count)[:, None].expand(count, width)
    batch = RolloutBatch(
        prompt_index=group_index * 10 + 7,  # dataset indices differ from group indices on purpose
        group_index=group_index,
        prompt_ids=torch.ones(count, 2, dtype=torch.long),
        prompt_mask=torch.ones(count, 2, dtype=torch.bool),
        response_ids=torch.full((count, width), 5),
        response_mask=response_mask,
        texts=texts or [""] * count,
        sampling_logprobs=per_token * response_mask,  # [B, T], 0 on padding
        truncated=torch.zeros(count, dtype=torch.bool),
    )
    batch.reward = torch.tensor(rewards, dtype=torch.float32)
    batch.rewards = {name: torch.tensor(v, dtype=torch.float32) for name, v in (named or {}).items()} or {
        "correct": batch.reward.clone()
    }
    return batch


def config(name: str, **overrides):
    """The estimator's schema instance (runs __post_init__ range checks)."""
    from rlpost.advantages import ADVANTAGES

    return ADVANTAGES.get(name).schema(**overrides)


def estimate(name: str, batch: RolloutBatch, **overrides):
    """Run estimator `name` through compute_advantages; return (advantages, metrics)."""
    from rlpost.advantages import compute_advantages

    metrics = compute_advantages(config(name, **overrides), batch)
    return batch.advantages, metrics
