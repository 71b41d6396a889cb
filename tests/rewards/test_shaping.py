"""reward=format, reward=length (linear, Kimi k1.5), reward=multi (named rewards kept, weighted sum as reward)."""

from __future__ import annotations

import pytest
import torch

from rlpost.cli import compose_train
from rlpost.config import ConfigError, validate
from rlpost.rewards import score
from rlpost.rewards.format import FormatRewardConfig
from rlpost.rewards.length import LengthRewardConfig, kimi_length_reward
from rlpost.rewards.multi import MultiRewardConfig
from tests.helpers import make_batch


@pytest.mark.parametrize(
    ("text", "think_end", "expected"),
    [
        (r"<think>add them</think> so \boxed{5}", "</think>", 1.0),
        (r"add them</think>\boxed{5}", "</think>", 1.0),  # Qwen3's template opens <think> in the prompt
        (r"<think></think>\boxed{5}", "</think>", 0.0),  # no reasoning
        (r"<think>add them</think> five", "</think>", 0.0),  # no boxed answer
        (r"\boxed{5}</think>", "</think>", 0.0),  # answer before the reasoning ends
        (r"we add: \boxed{5}", "", 1.0),
        (r"\boxed{5}", "", 0.0),
    ],
)
def test_format_reward(text, think_end, expected):
    batch = make_batch([1])
    batch.texts = [text]
    score(FormatRewardConfig(think_end=think_end), batch, [{"answer": "5"}])
    assert batch.reward.tolist() == [expected]


def test_kimi_length_reward_by_hand():
    # group 0: lengths 2, 4, 6 (min 2, max 6): lambda = 0.5, 0, -0.5; group 1: equal lengths -> 0
    lengths = torch.tensor([2, 4, 6, 3, 3])
    groups = torch.tensor([0, 0, 0, 1, 1])
    correct = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    # correct: lambda; wrong: min(0, lambda)
    assert kimi_length_reward(lengths, groups, correct).tolist() == [0.5, 0.0, -0.5, 0.0, 0.0]


def test_linear_length_penalty_uses_the_generation_limit():
    batch = make_batch([2], response_lengths=[2, 4], width=4)
    score(LengthRewardConfig(kind="linear"), batch, [{}] * 2, max_length=8)
    assert batch.reward.tolist() == [-0.25, -0.5]


def test_multi_keeps_each_reward_and_sums_with_weights():
    batch = make_batch([3], response_lengths=[1, 2, 3], width=3)
    batch.texts = [r"ok</think>\boxed{5}", "ok</think> 5", r"ok</think>\boxed{4}"]
    cfg = MultiRewardConfig(
        rewards={
            "correct": {"name": "gsm8k"},
            "form": {"name": "format"},
            "short": {"name": "length", "kind": "kimi", "correct_from": "correct"},
        },
        weights={"correct": 1.0, "form": 0.5, "short": 0.1},
    )
    batch.texts = [text + "\n#### 5" if i < 2 else text for i, text in enumerate(batch.texts)]
    metrics = score(cfg, batch, [{"answer": "5"}] * 3)
    assert batch.rewards["correct"].tolist() == [1.0, 1.0, 0.0]
    assert batch.rewards["form"].tolist() == [1.0, 0.0, 1.0]
    assert batch.rewards["short"].tolist() == [0.5, 0.0, -0.5]  # lengths 1, 2, 3 -> lambda 0.5, 0, -0.5
    assert batch.reward.tolist() == pytest.approx([1 + 0.5 + 0.05, 1.0, 0.5 - 0.05])
    assert metrics["accuracy"] == pytest.approx(2 / 3) and "reward_form_format_ok_frac" in metrics


def test_multi_yaml_composes_and_bad_parts_fail_with_the_key():
    cfg = validate(compose_train(["reward=multi"]))
    assert set(cfg.reward.parts) == {"correct", "format"} and cfg.reward.weights["format"] == 0.2
    with pytest.raises(ConfigError, match=r"rewards.correct.name: 'nope' is not one of"):
        MultiRewardConfig(rewards={"correct": {"name": "nope"}})
    with pytest.raises(ConfigError, match=r"weights: \['other'\] are not among rewards"):
        MultiRewardConfig(rewards={"correct": {"name": "gsm8k"}}, weights={"other": 1.0})
    with pytest.raises(ConfigError, match=r"rewards.c.timeout_s"):
        MultiRewardConfig(rewards={"c": {"name": "gsm8k", "timeout_s": -1}})


def test_dapo_overlong_composes_with_multi():
    """reward=multi + reward.overlong_buffer: the overlong penalty is one more named reward, weight 1."""
    batch = make_batch([2], response_lengths=[2, 4], width=4)
    batch.texts = ["#### 5", "#### 5"]
    cfg = MultiRewardConfig(rewards={"correct": {"name": "gsm8k"}}, weights={"correct": 2.0}, overlong_buffer=2)
    score(cfg, batch, [{"answer": "5"}] * 2, max_length=4)
    # L_max = 4, L_cache = 2: length 2 -> 0; length 4 -> (2 - 4) / 2 = -1
    assert batch.rewards["overlong"].tolist() == [0.0, -1.0]
    assert batch.reward.tolist() == [2.0, 1.0]
