"""Reward functions: completions + their dataset rows -> one or several named rewards per completion.

reward(texts, rows, cfg) -> ({name: [B] float32}, metrics)      # the total is the sum of the named rewards
"""

from __future__ import annotations

import torch

from rlpost.batch import RolloutBatch
from rlpost.registry import Registry
from rlpost.rewards.arith import ArithRewardConfig, arith_reward

REWARDS = Registry("reward")


@REWARDS.register("arith", ArithRewardConfig)
def arith(texts: list[str], rows: list[dict], cfg: ArithRewardConfig) -> tuple[dict[str, torch.Tensor], dict]:
    scores, malformed = zip(*(arith_reward(text, row["answer"]) for text, row in zip(texts, rows)))
    values = [cfg.correct if score else cfg.wrong for score in scores]
    return (
        {"correct": torch.tensor(values, dtype=torch.float32)},
        {"reward_malformed": sum(malformed), "accuracy": sum(scores) / max(len(scores), 1)},
    )


def score(cfg, batch: RolloutBatch, rows: list[dict]) -> dict:
    """Fill batch.rewards and batch.reward (the sum of the named rewards); return metrics."""
    named, metrics = REWARDS.get(cfg.name).component(batch.texts, rows, cfg)
    batch.rewards = named
    batch.reward = torch.stack(list(named.values())).sum(dim=0)
    return metrics
