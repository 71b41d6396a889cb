"""Policy losses of the GRPO family, one file per paper, all behind one signature.

An algo is a pure function
    algo(logprobs, old_logprobs, advantages, mask, cfg, *, group_index, entropy, stats) -> (token_loss [B, T], metrics)
returning the per-token surrogate loss; `policy_loss` adds what every algo shares: truncated importance
sampling, aggregation, the KL penalty and the entropy bonus.

An algo whose loss uses a statistic of the whole minibatch (Clip-Cov/KL-Cov token selection, BAPO's bounds, DHPO's
batch-scope entropy weights) registers it with `@MINIBATCH_STATISTICS.register(name)`:
    statistics(logprobs, old_logprobs, advantages, mask, cfg, *, entropy) -> {key: [B] or [B, T] tensor}
The trainer computes it once per minibatch (`minibatch_statistics`, from a no-grad forward) and hands each
micro-batch its rows as `stats`, so micro_batch_size / micro_batch_tokens never change the loss. Called without
`stats`, an algo takes the statistic over the tensors it was given (then they are the minibatch).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

import torch
from torch import Tensor

from rlpost.algos.common import AlgoConfig, Normalizer, aggregate, kl_penalty, masked_mean, truncated_is_weight
from rlpost.registry import Registry

ALGOS = Registry("algo")


class StatisticsTable:
    """algo name -> function computing the per-row statistics that algo takes over the whole minibatch."""

    def __init__(self) -> None:
        self._functions: dict[str, Callable[..., dict[str, Tensor]]] = {}

    def register(self, name: str) -> Callable:
        def add(function: Callable[..., dict[str, Tensor]]) -> Callable[..., dict[str, Tensor]]:
            self._functions[name] = function
            return function

        return add

    def get(self, name: str) -> Callable[..., dict[str, Tensor]] | None:
        return self._functions.get(name)


MINIBATCH_STATISTICS = StatisticsTable()


def needs_minibatch_statistics(cfg: AlgoConfig) -> bool:
    """Whether the algo's loss, as configured, depends on a statistic of the whole minibatch."""
    return MINIBATCH_STATISTICS.get(cfg.name) is not None and cfg.uses_minibatch_statistics


def minibatch_statistics(
    cfg: AlgoConfig,
    *,
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    entropy: Tensor | None = None,
) -> dict[str, Tensor]:
    """{key: [B] or [B, T]} statistics of the whole minibatch for algo `cfg.name` ({} when it needs none)."""
    if not needs_minibatch_statistics(cfg):
        return {}
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logprobs)
    statistics = MINIBATCH_STATISTICS.get(cfg.name)
    return statistics(logprobs.detach(), old_logprobs, advantages.float(), mask, cfg, entropy=entropy)


def policy_loss(
    cfg: AlgoConfig,
    *,
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    norm: Normalizer,
    group_index: Tensor,
    ref_logprobs: Tensor | None = None,
    entropy: Tensor | None = None,
    sampling_logprobs: Tensor | None = None,
    stats: dict[str, Tensor] | None = None,
) -> tuple[Tensor, dict]:
    """Scalar loss for one micro-batch and its metrics; advantages are [B] or [B, T]; `stats`: this micro-batch's rows
    of `minibatch_statistics` (None: the statistics are taken over the tensors given)."""
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logprobs)
    advantages = advantages.float()
    algo = ALGOS.get(cfg.name).component
    token_loss, metrics = algo(
        logprobs, old_logprobs, advantages, mask, cfg, group_index=group_index, entropy=entropy, stats=stats or None
    )
    if cfg.tis_cap > 0 and sampling_logprobs is not None:
        weight = truncated_is_weight(old_logprobs, sampling_logprobs, cfg.tis_cap)
        token_loss = token_loss * weight
        metrics["tis_weight_mean"] = float(masked_mean(weight, mask))
    loss = aggregate(token_loss, mask, cfg.loss_agg, norm, group_index, advantages)
    metrics["pg_loss"] = float(loss.detach())
    if cfg.kl_coef > 0:
        if ref_logprobs is None:
            raise ValueError("algo.kl_coef > 0 needs reference log-probs")
        kl = kl_penalty(logprobs, ref_logprobs, cfg.kl_estimator)
        loss = loss + cfg.kl_coef * aggregate(kl, mask, cfg.loss_agg, norm, group_index, advantages)
        metrics["kl"] = float(masked_mean(kl.detach(), mask))
    if entropy is not None:
        if cfg.entropy_coef:
            bonus = aggregate(entropy.float(), mask, cfg.loss_agg, norm, group_index, advantages)
            loss = loss - cfg.entropy_coef * bonus
        metrics["entropy"] = float(masked_mean(entropy.detach().float(), mask))
    with torch.no_grad():
        metrics["approx_kl_old"] = float(masked_mean(old_logprobs.float() - logprobs.detach().float(), mask))
    return loss, metrics


def _import_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name not in ("common",):
            importlib.import_module(f"{__name__}.{module.name}")


_import_all()
