"""advantage=grpo and advantage=dr_grpo: hand-computed numbers on uneven groups."""

import pytest
import torch

from tests.advantages.batches import estimate, rollout_batch

# groups of sizes 3, 2, 1
REWARDS = [1.0, 0.0, 0.0, 2.0, 0.0, 5.0]


def test_grpo_uneven_groups():
    # g0 [1,0,0]: mean 1/3, std_u sqrt((4/9+1/9+1/9)/2) = 0.577350 -> [1.154701, -0.577350, -0.577350]
    # g1 [2,0]:   mean 1, std_u sqrt(2) = 1.414214 -> [0.707107, -0.707107]
    # g2 [5]:     alone -> 0
    advantages, _ = estimate("grpo", rollout_batch([3, 2, 1], REWARDS))
    expected = [1.154701, -0.577350, -0.577350, 0.707107, -0.707107, 0.0]
    assert torch.allclose(advantages, torch.tensor(expected), atol=1e-5)


def test_metrics_count_zero_groups():
    # g1 all equal -> zero group; g2 alone -> zero group; g0 carries signal
    _, metrics = estimate("dr_grpo", rollout_batch([2, 3, 1], [1.0, 0.0, 1.0, 1.0, 1.0, 0.0]))
    assert metrics["adv_zero_group_frac"] == pytest.approx(2 / 3)
    assert metrics["effective_ratio"] == pytest.approx(2 / 6)
    assert metrics["adv_abs_mean"] == pytest.approx(1 / 6)  # |0.5| + |-0.5| over 6 completions
