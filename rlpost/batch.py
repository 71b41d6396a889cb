"""RolloutBatch: the one structure that flows through a training step (tensors on one device + group index)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor


@dataclass
class RolloutBatch:
    """B completions; prompts are left-padded to P tokens, completions right-padded to T tokens.

    Groups may differ in size: `group_index[b]` says which group (plan entry) completion b belongs to.
    """

    prompt_index: Tensor  # [B] long: dataset index of the prompt each completion answers
    group_index: Tensor  # [B] long: 0..G-1, one group per plan entry
    prompt_ids: Tensor  # [B, P] long, left-padded
    prompt_mask: Tensor  # [B, P] bool, True on real prompt tokens
    response_ids: Tensor  # [B, T] long, right-padded
    response_mask: Tensor  # [B, T] bool, True on completion tokens that carry loss (up to and incl. EOS)
    texts: list[str] = field(default_factory=list)  # [B] decoded completions
    sampling_logprobs: Tensor | None = None  # [B, T] float32 from the rollout engine (for TIS)
    truncated: Tensor | None = None  # [B] bool: hit max_new_tokens without EOS
    rewards: dict[str, Tensor] = field(default_factory=dict)  # name -> [B]
    reward: Tensor | None = None  # [B] total reward
    advantages: Tensor | None = None  # [B] or [B, T]
    sample_mask: Tensor | None = None  # [B] bool: completions that carry gradient (e.g. MC-GRPO drops the pivot)
    old_logprobs: Tensor | None = None  # [B, T]
    ref_logprobs: Tensor | None = None  # [B, T]

    def __len__(self) -> int:
        return self.prompt_index.shape[0]

    @property
    def response_lengths(self) -> Tensor:  # [B]
        return self.response_mask.sum(dim=1)

    @property
    def loss_mask(self) -> Tensor:  # [B, T] bool: response tokens of completions that carry gradient
        if self.sample_mask is None:
            return self.response_mask
        return self.response_mask & self.sample_mask[:, None]

    def select(self, rows: Tensor) -> RolloutBatch:
        """The sub-batch of `rows` (a 1-D index tensor); tensors and lists alike."""
        picked = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, Tensor):
                picked[spec.name] = value[rows]
            elif isinstance(value, dict):
                picked[spec.name] = {name: tensor[rows] for name, tensor in value.items()}
            elif isinstance(value, list):
                picked[spec.name] = [value[i] for i in rows.tolist()]
        return replace(self, **picked)

    def split(self, parts: int, generator: torch.Generator | None = None) -> list[RolloutBatch]:
        """`parts` equal sub-batches (shuffled when a generator is given)."""
        order = torch.randperm(len(self), generator=generator) if generator is not None else torch.arange(len(self))
        return [self.select(rows) for rows in order.chunk(parts)]

    def micro_batches(self, size: int) -> list[RolloutBatch]:
        return [self.select(rows) for rows in torch.arange(len(self)).split(size)]

    def group_sizes(self) -> Tensor:  # [G]
        return torch.bincount(self.group_index)
