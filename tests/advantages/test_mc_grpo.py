"""advantage=mc_grpo: median baseline, pivot dropped from the loss, and the sign-flip claim of the paper."""

import pytest
import torch

from rlpost.advantages.dr_grpo import dr_grpo_advantage
from rlpost.advantages.mc_grpo import mc_grpo_advantage
from rlpost.config import ConfigError
from tests.advantages.batches import config, estimate, rollout_batch

# groups of sizes 3, 5, 1
REWARDS = [0.2, 0.9, 0.5, 1.0, 0.0, 0.0, 1.0, 0.0, 0.7]


def test_median_baseline_without_scale():
    # g0 [0.2,0.9,0.5]: median 0.5 (row 2 = pivot) -> [-0.3, 0.4, 0]; 2 non-zero of 3 -> x3/2 -> [-0.45, 0.6, 0]
    # g1 [1,0,0,1,0]: stable sort 0(r4),0(r5),0(r7),1(r3),1(r6); median position 2 -> pivot r7, median 0
    #   -> [1,0,0,1,0]; 2 non-zero of 5 -> x5/2 -> [2.5, 0, 0, 2.5, 0]
    # g2 [0.7]: its own pivot -> 0
    advantages, _ = estimate("mc_grpo", rollout_batch([3, 5, 1], REWARDS), scale="none")
    expected = [-0.45, 0.6, 0.0, 2.5, 0.0, 0.0, 2.5, 0.0, 0.0]
    assert torch.allclose(advantages, torch.tensor(expected), atol=1e-6)


def test_median_baseline_with_mad():
    # g0: MAD = median(0.3, 0.4, 0) = 0.3 -> [-0.3, 0.4]/0.301 * 3/2 = [-1.495017, 1.993355]
    # g1: MAD = median(1,0,0,1,0) = 0 -> [1, 1]/0.001 * 5/2 = 2500 (binary rewards: the authors' code's scale)
    advantages, _ = estimate("mc_grpo", rollout_batch([3, 5, 1], REWARDS))
    expected = [-1.495017, 1.993355, 0.0, 2500.0, 0.0, 0.0, 2500.0, 0.0, 0.0]
    assert torch.allclose(advantages, torch.tensor(expected), rtol=1e-5)


def test_without_rescale():
    advantages, _ = estimate("mc_grpo", rollout_batch([3, 5, 1], REWARDS), scale="none", rescale_nonzero=False)
    expected = [-0.3, 0.4, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert torch.allclose(advantages, torch.tensor(expected), atol=1e-6)


def test_pivot_is_excluded_from_the_loss_mask():
    batch = rollout_batch([3, 5, 1], REWARDS, lengths=[2, 3, 4, 5, 6, 7, 8, 3, 2])
    estimate("mc_grpo", batch)
    pivots = torch.tensor([2, 7, 8])
    assert batch.sample_mask.tolist() == [i not in pivots.tolist() for i in range(9)]
    assert not batch.loss_mask[pivots].any()
    # every other completion keeps all its response tokens: G = n - 1 per group carry gradient
    keep = batch.sample_mask
    assert torch.equal(batch.loss_mask[keep], batch.response_mask[keep])
    assert torch.bincount(batch.group_index[keep], minlength=3).tolist() == [2, 4, 0]
    # a masked policy-gradient surrogate: the pivot's log-probs get no gradient, the others' do
    logprobs = torch.zeros(9, 8, requires_grad=True)
    surrogate = -(batch.advantages[:, None] * logprobs * batch.loss_mask).sum()
    surrogate.backward()
    assert torch.all(logprobs.grad[pivots] == 0)
    assert torch.all(logprobs.grad[[0, 1, 3, 6]].abs().sum(dim=1) > 0)


def test_all_equal_group_is_zero_and_still_drops_the_pivot():
    batch = rollout_batch([3, 3], [1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    advantages, metrics = estimate("mc_grpo", batch)
    assert torch.equal(advantages, torch.zeros(6))
    assert batch.sample_mask.sum() == 4
    assert metrics["adv_zero_group_frac"] == 1.0


def test_min_group_size_is_three():
    assert config("mc_grpo").min_group_size == 3
    with pytest.raises(ConfigError, match="scale"):
        config("mc_grpo", scale="std")


def test_median_flips_advantage_sign_less_often_than_mean():
    """The paper's claim at G=2: a mean baseline over 2 noisy rewards flips the sign of the true advantage more
    often than a median baseline over G+1 = 3 (pivot dropped, so both give 2 gradient-carrying completions).

    True quality q ~ N(0, 1) (population mean = median = 0, so the true advantage's sign is sign(q)); observed
    reward r = q + noise, noise N(0, 0.5^2) with 10% outliers N(0, 5^2). Flip: sign(A_i) != sign(q_i).
    """
    generator = torch.Generator().manual_seed(1234)
    prompts = 20_000

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        quality = torch.randn(prompts, n, generator=generator)
        noise = 0.5 * torch.randn(prompts, n, generator=generator)
        outlier = torch.rand(prompts, n, generator=generator) < 0.1
        noise = torch.where(outlier, 5.0 * torch.randn(prompts, n, generator=generator), noise)
        return quality.flatten(), (quality + noise).flatten()

    quality, rewards = draw(2)
    mean_adv = dr_grpo_advantage(rewards, torch.arange(prompts).repeat_interleave(2), config("dr_grpo"))
    mean_flips = float(((mean_adv > 0) != (quality > 0)).float().mean())

    quality, rewards = draw(3)
    median_adv, carries = mc_grpo_advantage(rewards, torch.arange(prompts).repeat_interleave(3), config("mc_grpo"))
    median_flips = float(((median_adv > 0) != (quality > 0))[carries].float().mean())

    # measured: mean ~0.32, median ~0.22; a 0.05 margin is > 10 standard errors at 20k groups
    assert median_flips < mean_flips - 0.05, (median_flips, mean_flips)
