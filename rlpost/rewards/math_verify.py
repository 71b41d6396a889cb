"""reward=math_verify: the final answer (\\boxed{}, "the answer is", last number) graded by the math-verify package.

Grading runs in `workers` processes (rlpost/rewards/pool.py) with a per-completion deadline of `timeout_s`:
failures, timeouts and worker crashes score `wrong` and are counted (reward_errors, reward_timeouts,
reward_crashes); `reward_graded_per_s` is the batch's grading throughput. Extraction and grading rules are in
rlpost/grading.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from rlpost.config import check
from rlpost.grading import WARM_UP
from rlpost.rewards import REWARDS
from rlpost.rewards.isolation import RewardConfig
from rlpost.rewards.pool import PoolCounts, shared_pool

SOURCES = ("boxed", "answer_is", "last_number", "none")


@dataclass
class MathVerifyRewardConfig(RewardConfig):
    name: str = "math_verify"
    correct: float = 1.0  # reward for an answer math-verify accepts
    wrong: float = 0.0  # reward for a wrong, missing, unparsable or timed-out answer
    workers: int = 0  # grading processes; 0 = min(4, CPU count)
    answer_key: str = "answer"  # dataset row field with the reference answer
    reward_name: str = "correct"  # key of this reward in batch.rewards

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.workers >= 0, "workers", f"must be >= 0 (0 = min(4, CPU count)), got {self.workers}")


def worker_count(configured: int) -> int:
    return configured or max(1, min(4, os.cpu_count() or 1))


def record_failures(call, counts: PoolCounts) -> None:
    """Add the pool's failures to the step's call log, so reward.max_error_rate applies to them too."""
    call.log.calls += counts.items
    call.log.errors += counts.errors + counts.crashes
    call.log.timeouts += counts.timeouts
    call.log.first_traceback = call.log.first_traceback or counts.first_failure


def grade_in_pool(function: str, texts: list[str], references: list[str], cfg, call) -> tuple[list[float], dict]:
    """Grade (text, reference) pairs in the shared pool: ([B] 0/1 scores, metrics)."""
    pool = shared_pool(function, worker_count(cfg.workers), cfg.timeout_s, WARM_UP, preload=("math_verify",))
    results, counts = pool.map([(text, reference) for text, reference in zip(texts, references)], default=(0.0, "none"))
    record_failures(call, counts)
    scores = [float(score) for score, _ in results]
    metrics = {
        "accuracy": sum(scores) / max(len(scores), 1),
        "reward_crashes": counts.crashes,
        "reward_graded_per_s": counts.items / max(counts.seconds, 1e-9),
        "time_grading": counts.seconds,
    }
    for source in SOURCES:
        metrics[f"answer_{source}_frac"] = sum(found == source for _, found in results) / max(len(results), 1)
    return scores, metrics


@REWARDS.register("math_verify", MathVerifyRewardConfig)
def math_verify_reward(texts: list[str], rows: list[dict], cfg: MathVerifyRewardConfig, call):
    references = [str(row[cfg.answer_key]) for row in rows]
    scores, metrics = grade_in_pool("rlpost.grading:grade", texts, references, cfg, call)
    values = [cfg.correct if score > 0 else cfg.wrong for score in scores]
    return {cfg.reward_name: torch.tensor(values, dtype=torch.float32)}, metrics
