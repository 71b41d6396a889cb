"""reward=multi: several named rewards, each kept as its own [B] tensor, and their weighted sum as the reward.

    r_i = sum_k w_k r^k_i          (w_k from `weights`, 1 when left out)

batch.rewards keeps every r^k (advantage=gdpo normalizes each on its own, arXiv 2601.05242; give it the same
weights with advantage.weights=${reward.weights}); batch.reward is r. Rewards run in the order listed, so a
reward such as length kind=kimi can read one computed before it. Metrics of reward k are logged as
reward_<k>_<metric>; `accuracy` is the first one that reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlpost.config import _as_schema, check
from rlpost.rewards import REWARDS
from rlpost.rewards.isolation import RewardConfig


@dataclass
class MultiRewardConfig(RewardConfig):
    name: str = "multi"
    rewards: dict[str, Any] = field(default_factory=dict)  # key -> a reward config; its `name:` picks the reward
    weights: dict[str, float] = field(default_factory=dict)  # key -> weight in the scalar reward; 1 if left out

    def __post_init__(self) -> None:
        super().__post_init__()
        check(len(self.rewards) > 0, "rewards", "needs a named reward, e.g. +reward.rewards.correct.name=math_verify")
        self.parts = {}
        for key, sub in self.rewards.items():
            check(isinstance(sub, dict) and "name" in sub, f"rewards.{key}", "needs a `name:` (e.g. math_verify)")
            names = [name for name in REWARDS.names() if name != "multi"]
            check(sub["name"] in names, f"rewards.{key}.name", f"{sub['name']!r} is not one of {', '.join(names)}")
            self.parts[key] = _as_schema(REWARDS.get(sub["name"]).schema, sub, f"rewards.{key}")
        unknown = sorted(set(self.weights) - set(self.rewards))
        check(not unknown, "weights", f"{unknown} are not among rewards {sorted(self.rewards)}")

    def names(self) -> tuple[str, ...]:
        """batch.rewards keys: one per named reward (advantage=gdpo weighs them)."""
        return tuple(self.rewards)


def multi_reward(texts: list[str], rows: list[dict], cfg: MultiRewardConfig, call, *, batch, max_length, named):
    rewards, metrics = {}, {}
    for key, part in cfg.parts.items():
        component = REWARDS.get(part.name).component
        context = {"batch": batch, "max_length": max_length, "named": rewards}
        values, part_metrics = (
            component(texts, rows, part, call, **context)
            if needs_batch(component)
            else (component(texts, rows, part, call))
        )
        if len(values) == 1:
            rewards[key] = next(iter(values.values()))
        else:
            rewards |= {f"{key}_{name}": tensor for name, tensor in values.items()}
        metrics |= {f"reward_{key}_{metric}": value for metric, value in part_metrics.items()}
        if "accuracy" in part_metrics and "accuracy" not in metrics:
            metrics["accuracy"] = part_metrics["accuracy"]
    return rewards, metrics


def needs_batch(component) -> bool:
    """Rewards that read lengths or groups (length, multi) take batch=, max_length=, named= keywords."""
    return getattr(component, "needs_batch", False)


multi_reward.needs_batch = True
REWARDS.register("multi", MultiRewardConfig)(multi_reward)
