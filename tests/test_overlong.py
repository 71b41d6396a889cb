"""DAPO's soft overlong punishment (arXiv 2503.14476, Eq. 13), by hand."""

from __future__ import annotations

import torch

from rlpost.rewards import score
from rlpost.rewards.arith import ArithRewardConfig
from rlpost.rewards.overlong import overlong_penalty
from tests.helpers import make_batch


def test_penalty_by_hand():
    # L_max = 10, L_cache = 4: no penalty up to 6 tokens, then (6 - |y|) / 4, and -1 beyond 10
    lengths = torch.tensor([0, 6, 7, 8, 10, 11])
    expected = torch.tensor([0.0, 0.0, -0.25, -0.5, -1.0, -1.0])
    assert torch.allclose(overlong_penalty(lengths, max_length=10, buffer=4), expected)
    assert torch.allclose(overlong_penalty(lengths, max_length=10, buffer=4, factor=0.5), expected * 0.5)


def test_score_adds_the_named_overlong_reward():
    batch = make_batch([3], response_lengths=[2, 3, 4], width=4)
    batch.texts = ["95", "95", "94"]
    cfg = ArithRewardConfig(overlong_buffer=2)
    metrics = score(cfg, batch, [{"answer": "95"}] * 3, max_length=4)
    # lengths 2, 3, 4 with L_max=4, L_cache=2: penalties 0, -0.5, -1
    assert batch.rewards["overlong"].tolist() == [0.0, -0.5, -1.0]
    assert batch.reward.tolist() == [1.0, 0.5, -1.0]
    assert metrics["overlong_penalty_mean"] == -0.5
    off = make_batch([1])
    off.texts = ["95"]
    score(ArithRewardConfig(), off, [{"answer": "95"}], max_length=4)
    assert set(off.rewards) == {"correct"}
