"""reward=arith: exact match of the final integer; never raises."""

from __future__ import annotations

import pytest

from rlpost.rewards import score
from rlpost.rewards.arith import ArithRewardConfig, arith_reward
from tests.helpers import make_batch


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("95", (1.0, False)),
        (" 95 ", (1.0, False)),
        ("94", (0.0, False)),
        ("-12", (1.0, False)),
        ("12", (0.0, False)),
        ("the answer is 95", (1.0, False)),
        ("9 5", (0.0, False)),
    ],
)
def test_exact_match_of_final_integer(completion, expected):
    answer = "-12" if completion in ("-12", "12") else "95"
    assert arith_reward(completion, answer) == expected


@pytest.mark.parametrize("completion", ["", "abc", None, "+-", "\x00", "9" * 500])
def test_malformed_never_raises(completion):
    value, malformed = arith_reward(completion, "95")
    assert value == 0.0
    assert malformed == (completion != "9" * 500)


def test_score_fills_batch_and_counts_malformed():
    batch = make_batch([3])
    batch.texts = ["95", "x", "7"]
    metrics = score(ArithRewardConfig(correct=1.0, wrong=-1.0), batch, [{"answer": "95"}] * 3)
    assert batch.reward.tolist() == [1.0, -1.0, -1.0]
    assert batch.rewards["correct"].tolist() == [1.0, -1.0, -1.0]
    assert metrics["reward_malformed"] == 1 and metrics["accuracy"] == pytest.approx(1 / 3)
