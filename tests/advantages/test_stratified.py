"""advantage=stratified: SAN within (group, stratum), blended with GRPO."""

import pytest
import torch

from rlpost.config import ConfigError
from tests.advantages.batches import estimate, rollout_batch


def test_stratified_tool_call_strata():
    # g0 (5 completions): search calls [0,0,1,1,1], rewards [1,0,1,1,0]
    #   GRPO: mean 0.6, std_u sqrt(1.2/4) = 0.547723 -> [0.730297, -1.095445, 0.730297, 0.730297, -1.095445]
    #   SAN: stratum 0 [1,0] -> [0.707107, -0.707107]; stratum 1 [1,1,0] -> [0.577350, 0.577350, -1.154701]
    #   alpha 0.5: [0.718702, -0.901276, 0.653824, 0.653824, -1.125073]
    # g1 (2): one completion per stratum -> SAN 0 -> A = 0.5 * GRPO = [0.353553, -0.353553]
    # g2 (1): alone -> 0
    texts = ["a", "b", "<search>q", "<search>q", "<search>x"] + ["<search><search>", ""] + ["<search>"]
    batch = rollout_batch([5, 2, 1], [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0], texts=texts)
    advantages, _ = estimate("stratified", batch)
    expected = [0.718702, -0.901276, 0.653824, 0.653824, -1.125073, 0.353553, -0.353553, 0.0]
    assert torch.allclose(advantages, torch.tensor(expected), atol=1e-5)


def test_one_stratum_is_grpo_and_alpha_zero_is_grpo():
    batch = rollout_batch([3, 2], [1.0, 0.0, 0.5, 1.0, 0.0])  # no tool calls: a single stratum per group
    stratified, _ = estimate("stratified", batch)
    grpo, _ = estimate("grpo", batch)
    assert torch.allclose(stratified, grpo, atol=1e-6)
    batch.texts = ["<search>", "", "", "<search>", ""]
    mixed, _ = estimate("stratified", batch, alpha=0.0)
    assert torch.allclose(mixed, grpo, atol=1e-6)


def test_call_counts_are_capped_at_max_strata():
    # 1 and 3 calls share the last stratum with max_strata=2 -> one stratum -> GRPO
    batch = rollout_batch([2], [1.0, 0.0], texts=["<search>", "<search>" * 3])
    capped, _ = estimate("stratified", batch, max_strata=2)
    assert torch.allclose(capped, torch.tensor([0.707107, -0.707107]), atol=1e-5)


def test_length_strata():
    # lengths [2,2,6,6] with edges [4]: strata [0,0,1,1]; rewards [1,0,1,0] -> SAN = GRPO within each stratum
    #   SAN [0.707107, -0.707107] x2; GRPO: mean 0.5, std_u 0.577350 -> [0.866025, -0.866025] x2
    #   blend 0.5: [0.786566, -0.786566] x2
    batch = rollout_batch([4], [1.0, 0.0, 1.0, 0.0], lengths=[2, 2, 6, 6])
    advantages, _ = estimate("stratified", batch, stratum="length", length_edges=[4])
    assert torch.allclose(advantages, torch.tensor([0.786566, -0.786566] * 2), atol=1e-5)


def test_stratum_key_is_checked():
    with pytest.raises(ConfigError, match="stratum"):
        estimate("stratified", rollout_batch([2], [1.0, 0.0]), stratum="dataset_row")
