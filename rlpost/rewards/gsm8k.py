"""reward=gsm8k: GSM8K's own answer format, the number after the last `#### ` (Cobbe et al., arXiv 2110.14168).

Strict: a completion without `#### <number>` scores `wrong` and is counted as malformed. Equal numbers match
(`#### 1,234` = 1234 = 1234.0). For the looser "any final answer" grading use reward=math_verify.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlpost.grading import grade_gsm8k
from rlpost.rewards import REWARDS
from rlpost.rewards.isolation import RewardConfig


@dataclass
class GSM8KRewardConfig(RewardConfig):
    name: str = "gsm8k"
    correct: float = 1.0
    wrong: float = 0.0
    answer_key: str = "answer"  # dataset row field with the reference number
    reward_name: str = "correct"


@REWARDS.register("gsm8k", GSM8KRewardConfig)
def gsm8k_reward(texts: list[str], rows: list[dict], cfg: GSM8KRewardConfig, call):
    results = [grade_gsm8k(text, str(row[cfg.answer_key])) for text, row in zip(texts, rows)]
    scores = [score for score, _ in results]
    values = [cfg.correct if score > 0 else cfg.wrong for score in scores]
    return {cfg.reward_name: torch.tensor(values, dtype=torch.float32)}, {
        "accuracy": sum(scores) / max(len(scores), 1),
        "reward_malformed": sum(found == "none" for _, found in results),
    }
