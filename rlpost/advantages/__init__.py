"""Advantage estimators: pure functions of rewards and a group index (groups may differ in size).

    estimator(rewards [B], group_index [B], cfg, *, batch) -> advantages [B] or [B, T]
                                                           or (advantages, sample_mask [B] bool)

`compute_advantages` checks rewards, runs the estimator and reports the metrics every estimator shares.
"""

from __future__ import annotations

import importlib
import pkgutil

from rlpost.advantages.common import check_finite, group_sum
from rlpost.batch import RolloutBatch
from rlpost.registry import Registry

ADVANTAGES = Registry("advantage")


def compute_advantages(cfg, batch: RolloutBatch) -> dict[str, float]:
    """Fill batch.advantages (and batch.sample_mask when the estimator drops completions); return metrics."""
    for name, values in batch.rewards.items():
        check_finite(values, batch.prompt_index, f"reward.{name}")
    check_finite(batch.reward, batch.prompt_index, "reward")
    estimator = ADVANTAGES.get(cfg.name).component
    out = estimator(batch.reward, batch.group_index, cfg, batch=batch)
    advantages, sample_mask = out if isinstance(out, tuple) else (out, None)
    batch.advantages = advantages
    if sample_mask is not None:
        batch.sample_mask = sample_mask
    per_sequence = advantages if advantages.dim() == 1 else advantages.abs().amax(dim=1)
    nonzero = group_sum((per_sequence != 0).float(), batch.group_index)  # [G] (flat groups give exact zeros)
    return {
        "adv_zero_group_frac": float((nonzero == 0).float().mean()),
        "adv_abs_mean": float(per_sequence.abs().mean()),
        "effective_ratio": float(((nonzero > 0).float()[batch.group_index]).mean()),
    }


def _import_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name != "common":
            importlib.import_module(f"{__name__}.{module.name}")


_import_all()
