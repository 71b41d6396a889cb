"""Reward functions: completions + their dataset rows -> one or several named rewards per completion.

    reward(texts, rows, cfg, call) -> ({name: [B] float32}, metrics)   # total reward = sum of the named rewards

`call(fn, *args)` runs one per-completion call with the config's timeout and exception isolation.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from rlpost.batch import RolloutBatch
from rlpost.registry import Registry
from rlpost.rewards.arith import ArithRewardConfig, arith_reward
from rlpost.rewards.custom import CustomRewardConfig, load_function
from rlpost.rewards.isolation import RewardFailure, SafeCaller
from rlpost.rewards.overlong import overlong_penalty

REWARDS = Registry("reward")


@REWARDS.register("arith", ArithRewardConfig)
def arith(texts: list[str], rows: list[dict], cfg: ArithRewardConfig, call) -> tuple[dict[str, torch.Tensor], dict]:
    results = [arith_reward(text, row["answer"]) for text, row in zip(texts, rows)]
    scores = [score for score, _ in results]
    values = [cfg.correct if score else cfg.wrong for score in scores]
    return (
        {"correct": torch.tensor(values, dtype=torch.float32)},
        {"reward_malformed": sum(m for _, m in results), "accuracy": sum(scores) / max(len(scores), 1)},
    )


@lru_cache(maxsize=8)
def _custom_function(dotted: str):
    return load_function(dotted)


def check_reward(cfg) -> None:
    """Start-up check of a reward config: import the user's code now, not after the model has loaded."""
    if isinstance(cfg, CustomRewardConfig):
        _custom_function(cfg.function)


class NonFiniteReward(RewardFailure):
    """A reward function returned NaN or inf: the run stops (exit 1) naming the reward and the completion."""


def check_finite_rewards(named: dict[str, torch.Tensor], rows: list[dict], texts: list[str]) -> None:
    for name, values in named.items():
        bad = (~torch.isfinite(values)).nonzero().flatten()
        if len(bad):
            first = int(bad[0])
            raise NonFiniteReward(
                f"reward.{name} returned {float(values[first])} for {len(bad)} of {len(values)} completions, "
                f"first for question {rows[first].get('question', '?')!r} with completion {texts[first]!r}"
            )


@REWARDS.register("custom", CustomRewardConfig)
def custom(texts: list[str], rows: list[dict], cfg: CustomRewardConfig, call) -> tuple[dict[str, torch.Tensor], dict]:
    function = _custom_function(cfg.function)
    values = [call(function, text, row) for text, row in zip(texts, rows)]
    return {cfg.reward_name: torch.tensor(values, dtype=torch.float32)}, {
        "accuracy": sum(v > 0 for v in values) / max(len(values), 1)
    }


def score(cfg, batch: RolloutBatch, rows: list[dict], max_length: int = 0) -> dict:
    """Fill batch.rewards and batch.reward (the (weighted) sum of the named rewards); return metrics.

    `max_length` is the generation limit, for DAPO's overlong punishment (reward.overlong_buffer > 0).
    """
    caller = SafeCaller(timeout_s=cfg.timeout_s)
    component = REWARDS.get(cfg.name).component
    if getattr(component, "needs_batch", False):  # length penalties and reward=multi read lengths and groups
        named, metrics = component(batch.texts, rows, cfg, caller, batch=batch, max_length=max_length, named={})
    else:
        named, metrics = component(batch.texts, rows, cfg, caller)
    caller.raise_if_too_many(cfg.max_error_rate, cfg.name)
    check_finite_rewards(named, rows, batch.texts)
    if cfg.overlong_buffer > 0 and max_length > 0:
        named = named | {
            "overlong": overlong_penalty(batch.response_lengths, max_length, cfg.overlong_buffer, cfg.overlong_factor)
        }
        metrics["overlong_penalty_mean"] = float(named["overlong"].mean())
    batch.rewards = named
    weights = getattr(cfg, "weights", None) or {}  # reward=multi: the scalar reward is the weighted sum
    batch.reward = torch.stack([weights.get(key, 1.0) * value for key, value in named.items()]).sum(dim=0)
    return metrics | caller.log.metrics()


# the task rewards register themselves on import
import rlpost.rewards.format  # noqa: E402,F401
import rlpost.rewards.gsm8k  # noqa: E402,F401
import rlpost.rewards.length  # noqa: E402,F401
import rlpost.rewards.math_verify  # noqa: E402,F401
import rlpost.rewards.multi  # noqa: E402,F401
