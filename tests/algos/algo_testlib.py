"""Shared helpers of the algo tests: build configs, call an algo, take gradients w.r.t. log-probs."""

from __future__ import annotations

import torch
from torch import Tensor

from rlpost.algos import ALGOS, policy_loss
from rlpost.algos.common import Normalizer


def config(name: str, **overrides):
    """The registered schema of `name` with overrides (validated by __post_init__)."""
    return ALGOS.get(name).schema(name=name, **overrides)


def token_loss(name: str, logprobs: Tensor, old: Tensor, advantages: Tensor, mask: Tensor, cfg=None, **kwargs):
    """(token_loss [B, T], metrics) of algo `name` with [B] or [B, T] advantages."""
    cfg = cfg or config(name)
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logprobs)
    group_index = kwargs.pop("group_index", torch.zeros(len(logprobs), dtype=torch.long))
    return ALGOS.get(name).component(
        logprobs,
        old,
        advantages.float(),
        mask,
        cfg,
        group_index=group_index,
        entropy=kwargs.pop("entropy", None),
        stats=kwargs.pop("stats", None),
    )


def scalar_loss(cfg, logprobs, old, advantages, mask, group_index=None, norm=None, **kwargs) -> Tensor:
    """policy_loss of the whole batch (Normalizer of the batch itself unless given)."""
    group_index = group_index if group_index is not None else torch.zeros(len(logprobs), dtype=torch.long)
    norm = norm or Normalizer.of(mask, group_index, 4.0, advantages)
    loss, _ = policy_loss(
        cfg,
        logprobs=logprobs,
        old_logprobs=old,
        advantages=advantages,
        mask=mask,
        norm=norm,
        group_index=group_index,
        **kwargs,
    )
    return loss


def grad_of(loss: Tensor, leaf: Tensor) -> Tensor:
    """d loss / d leaf (zeros where the loss does not depend on it)."""
    (grad,) = torch.autograd.grad(loss, leaf, allow_unused=True, retain_graph=True)
    return torch.zeros_like(leaf) if grad is None else grad


def leaf(values) -> Tensor:
    return torch.tensor(values, dtype=torch.float32, requires_grad=True)
