"""RolloutBatch: the one structure that flows through a training step (tensors on one device + group index)."""

from __future__ import annotations

import warnings
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
    replayed: Tensor | None = None  # [B] bool: sampled at an earlier step (rollout replay): behaviour = sampling
    old_logprobs: Tensor | None = None  # [B, T]
    ref_logprobs: Tensor | None = None  # [B, T]
    # [B] or [B, T] per-row statistics the algo took over the whole minibatch (algos.minibatch_statistics)
    minibatch_stats: dict[str, Tensor] = field(default_factory=dict)

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

    def to(self, device: torch.device | str) -> RolloutBatch:
        """The same batch with every tensor on `device` (itself when they already are: no copy on the CPU)."""
        device = torch.device(device)
        if self.prompt_ids.device == device:
            return self
        moved, asynchronous = {}, device.type == "cuda"  # a device-to-host copy must finish before it is read
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, Tensor):
                moved[spec.name] = value.to(device, non_blocking=asynchronous)
            elif isinstance(value, dict):
                moved[spec.name] = {key: t.to(device, non_blocking=asynchronous) for key, t in value.items()}
        return replace(self, **moved)

    def split(self, parts: int, generator: torch.Generator | None = None) -> list[RolloutBatch]:
        """`parts` sub-batches (minibatches) of whole groups, balanced by rows (see `split_rows`)."""
        return [self.select(rows) for rows in self.split_rows(parts, generator)]

    def split_rows(self, parts: int, generator: torch.Generator | None = None) -> list[Tensor]:
        """Row indices of `parts` sub-batches that keep every group whole.

        Groups (in a random order when a generator is given) are dealt largest first to the sub-batch with the fewest
        rows so far, so equal groups split evenly. With fewer groups than parts no such split exists: rows are then
        shuffled and cut into equal chunks, splitting groups, and a warning says so (group-level aggregation such as
        loss_agg=balanced then sees partial groups).
        """
        groups = torch.unique(self.group_index)
        if len(groups) < parts:
            warnings.warn(
                f"run.minibatches={parts} but this step has only {len(groups)} groups: groups are split across "
                "minibatches (loss_agg=balanced and other per-group aggregation see partial groups)",
                stacklevel=2,
            )
            order = torch.randperm(len(self), generator=generator) if generator is not None else torch.arange(len(self))
            return list(order.chunk(parts))
        if generator is not None:
            groups = groups[torch.randperm(len(groups), generator=generator)]
        members = [(self.group_index == group).nonzero().squeeze(1).cpu() for group in groups.tolist()]
        members.sort(key=len, reverse=True)  # stable: equal sizes keep the shuffled order
        chosen: list[list[Tensor]] = [[] for _ in range(parts)]
        sizes = [0] * parts
        for rows in members:
            target = sizes.index(min(sizes))
            chosen[target].append(rows)
            sizes[target] += len(rows)
        return [torch.cat(rows) for rows in chosen]

    def shard(self, rank: int, world: int) -> RolloutBatch:
        """This rank's whole groups of the batch, balanced by completions (data-parallel training)."""
        if world == 1:
            return self
        from rlpost.distributed import shard_groups

        groups, sizes = torch.unique(self.group_index, return_counts=True)  # [G], [G]
        owned = groups[shard_groups(sizes.tolist(), world)[rank]]
        return self.select(torch.isin(self.group_index, owned).nonzero().squeeze(1))

    def micro_batches(self, size: int, max_tokens: int = 0) -> list[RolloutBatch]:
        """Sub-batches for gradient accumulation, each trimmed of its all-padding columns.

        `max_tokens` > 0 packs by a token budget (see `micro_batch_rows`); 0 takes `size` sequences in order.
        """
        return [self.select(rows).trim_padding() for rows in self.micro_batch_rows(size, max_tokens)]

    def token_budget_micro_batches(self, max_tokens: int) -> list[RolloutBatch]:
        """Micro-batches of at most `max_tokens` padded tokens each, sequences bucketed by length."""
        return self.micro_batches(len(self), max_tokens)

    def micro_batch_rows(self, size: int, max_tokens: int = 0) -> list[Tensor]:
        """Row indices of each micro-batch.

        max_tokens = 0: consecutive runs of `size` rows. max_tokens > 0: rows sorted by (response, prompt) length,
        longest first, then cut greedily so that rows x (longest prompt + longest response) <= max_tokens; a
        sequence longer than the budget gets a micro-batch of its own. Sorting puts similar lengths together, so
        trimming removes most of the padding.
        """
        if max_tokens <= 0:
            return list(torch.arange(len(self)).split(size))
        prompt_lengths = self.prompt_mask.sum(dim=1).tolist()  # [B]
        response_lengths = self.response_mask.sum(dim=1).tolist()  # [B]
        order = sorted(range(len(self)), key=lambda b: (-response_lengths[b], -prompt_lengths[b], b))
        chunks: list[list[int]] = []
        current: list[int] = []
        longest_prompt = longest_response = 0
        for row in order:
            prompt_width = max(longest_prompt, prompt_lengths[row])
            response_width = max(longest_response, max(response_lengths[row], 1))
            if current and (len(current) + 1) * (prompt_width + response_width) > max_tokens:
                chunks.append(current)
                current, prompt_width, response_width = [], prompt_lengths[row], max(response_lengths[row], 1)
            current.append(row)
            longest_prompt, longest_response = prompt_width, response_width
        if current:
            chunks.append(current)
        return [torch.tensor(rows, dtype=torch.long) for rows in chunks]

    def trim_padding(self) -> RolloutBatch:
        """Drop left prompt columns that are padding in every row and response columns past the longest response.

        Loss and log-probs are unchanged: position ids come from the mask, and every per-token loss is masked.
        At least one prompt column and one response column stay.
        """
        prompt_width, response_width = self.prompt_ids.shape[1], self.response_ids.shape[1]
        prompt_used = self.prompt_mask.any(dim=0).nonzero()  # [k, 1] columns with a real token in some row
        prompt_start = min(int(prompt_used[0]) if len(prompt_used) else prompt_width, prompt_width - 1)
        response_used = self.response_mask.any(dim=0).nonzero()
        response_end = max(int(response_used[-1]) + 1 if len(response_used) else 1, 1)
        if prompt_start == 0 and response_end == response_width:
            return self
        trimmed = {"prompt_ids": self.prompt_ids[:, prompt_start:], "prompt_mask": self.prompt_mask[:, prompt_start:]}
        trim = lambda value: value[:, :response_end] if value.dim() == 2 and value.shape[1] == response_width else value
        for spec in fields(self):  # every [B, T] tensor: ids, masks, log-probs, per-token advantages, statistics
            value = getattr(self, spec.name)
            if spec.name.startswith("prompt_"):
                continue
            if isinstance(value, Tensor):
                trimmed[spec.name] = trim(value)
            elif spec.name == "minibatch_stats":
                trimmed[spec.name] = {key: trim(tensor) for key, tensor in value.items()}
        return replace(self, **trimmed)

    def group_sizes(self) -> Tensor:  # [G]
        return torch.bincount(self.group_index)

    @classmethod
    def concat(cls, batches: list[RolloutBatch]) -> RolloutBatch:
        """One batch of all `batches`' groups in order (group_index renumbered 0..G-1); prompts re-left-padded and
        responses re-right-padded to the widest. Optional fields are kept only when every batch has them."""
        if not batches:
            raise ValueError("RolloutBatch.concat: no batches")
        dense = [torch.unique(b.group_index, return_inverse=True)[1] for b in batches]  # [B_i] 0..G_i-1, order kept
        offsets = torch.tensor([0] + [int(d.max()) + 1 if len(d) else 0 for d in dense]).cumsum(0)
        prompt_width = max(b.prompt_ids.shape[1] for b in batches)
        response_width = max(b.response_ids.shape[1] for b in batches)
        pad_id = _pad_value(batches)

        def stack(name: str, left: bool, width: int, fill) -> Tensor:
            parts = []
            for b in batches:
                value = getattr(b, name)
                missing = width - value.shape[1]
                pad = torch.full((value.shape[0], missing), fill, dtype=value.dtype)
                parts.append(torch.cat([pad, value] if left else [value, pad], dim=1))
            return torch.cat(parts)

        joined: dict = {
            "prompt_index": torch.cat([b.prompt_index for b in batches]),
            "group_index": torch.cat([d + offsets[i] for i, d in enumerate(dense)]),
            "prompt_ids": stack("prompt_ids", True, prompt_width, pad_id),
            "prompt_mask": stack("prompt_mask", True, prompt_width, False),
            "response_ids": stack("response_ids", False, response_width, pad_id),
            "response_mask": stack("response_mask", False, response_width, False),
            "texts": [text for b in batches for text in b.texts],
        }
        for name, per_token in (
            ("sampling_logprobs", True),
            ("old_logprobs", True),
            ("ref_logprobs", True),
            ("truncated", False),
            ("reward", False),
            ("sample_mask", False),
            ("advantages", None),
        ):
            if all(getattr(b, name) is not None for b in batches):
                token_level = per_token or (per_token is None and batches[0].advantages.dim() == 2)
                joined[name] = (
                    stack(name, False, response_width, 0)
                    if token_level
                    else torch.cat([getattr(b, name) for b in batches])
                )
        names = set(batches[0].rewards)
        if names and all(set(b.rewards) == names for b in batches):
            joined["rewards"] = {name: torch.cat([b.rewards[name] for b in batches]) for name in batches[0].rewards}
        return cls(**joined)


def _pad_value(batches: list[RolloutBatch]) -> int:
    """The pad token the batches already use (read off a padded position), else 0."""
    for b in batches:
        for ids, mask in ((b.response_ids, b.response_mask), (b.prompt_ids, b.prompt_mask)):
            if (~mask).any():
                return int(ids[~mask][0])
    return 0
