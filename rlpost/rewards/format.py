"""reward=format: 1 when the completion gives reasoning and then its final answer in the required form, else 0.

With `think_end` set (Qwen3: "</think>"), the completion must hold non-empty reasoning, then `think_end`, then a
match of `answer_pattern` after it; with `think_end: ""` it needs some text and then a match of `answer_pattern`.
A shaping term in the style of DeepSeek-R1's format reward (arXiv 2501.12948, Sec. 2.2.2); weigh it with
reward=multi.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from rlpost.config import ConfigError
from rlpost.rewards import REWARDS
from rlpost.rewards.isolation import RewardConfig


@dataclass
class FormatRewardConfig(RewardConfig):
    name: str = "format"
    think_end: str = "</think>"  # closes the reasoning; "" = no reasoning tag required
    answer_pattern: str = r"\\boxed\{.+\}"  # regex the final answer must match after the reasoning
    reward_name: str = "format"

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            re.compile(self.answer_pattern)
        except re.error as error:
            raise ConfigError(f"answer_pattern: not a regular expression ({error})") from None


def follows_format(text: str, think_end: str, answer_pattern: re.Pattern) -> bool:
    """Reasoning, then `think_end` (when set), then the answer pattern."""
    text = text or ""
    if think_end:
        reasoning, found, answer = text.partition(think_end)
        reasoning = reasoning.replace("<think>", "")
        return bool(found) and bool(reasoning.strip()) and bool(answer_pattern.search(answer))
    match = answer_pattern.search(text)
    return match is not None and bool(text[: match.start()].strip())


@REWARDS.register("format", FormatRewardConfig)
def format_reward(texts: list[str], rows: list[dict], cfg: FormatRewardConfig, call):
    pattern = re.compile(cfg.answer_pattern, re.DOTALL)
    values = [float(follows_format(text, cfg.think_end, pattern)) for text in texts]
    return {cfg.reward_name: torch.tensor(values, dtype=torch.float32)}, {
        "format_ok_frac": sum(values) / max(len(values), 1)
    }
