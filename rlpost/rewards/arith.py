"""reward=arith: exact match of the final integer in the completion; malformed output scores 0 and is counted."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rlpost.rewards.isolation import RewardConfig

INTEGER = re.compile(r"-?\d+")


@dataclass
class ArithRewardConfig(RewardConfig):
    name: str = "arith"
    correct: float = 1.0  # reward for the right answer
    wrong: float = 0.0  # reward for a wrong or malformed answer

    def names(self) -> tuple[str, ...]:
        return ("correct",)


def arith_reward(completion: str, answer: str) -> tuple[float, bool]:
    """(1.0 if the last integer in `completion` equals `answer` else 0.0, malformed?). Never raises."""
    found = INTEGER.findall(completion or "")
    if not found:
        return 0.0, True
    try:
        return float(int(found[-1]) == int(str(answer).strip())), False
    except ValueError:
        return 0.0, True
