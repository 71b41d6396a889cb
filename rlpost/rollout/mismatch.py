"""How far the rollout engine's sampling log-probs are from the trainer's at the same weights.

With mu the sampler's distribution (vLLM's or HF's sampling loop) and pi the trainer's, both at the weights that
generated the batch, over the sampled tokens t (drawn from mu):

    mismatch_abs_mean = mean_t |log mu(t) - log pi(t)|,   mismatch_abs_max = max_t |log mu(t) - log pi(t)|
    mismatch_kl       = mean_t (r_t - 1 - log r_t),  r_t = pi(t) / mu(t)

the last is the k3 estimator of KL(mu || pi) (Schulman, "Approximating KL divergence", 2020): unbiased, >= 0
per token. Large values mean the trainer optimises a different policy than the one that sampled; `algo.tis_cap`
(truncated importance sampling, Yao et al. 2025) corrects the gradient with the same ratios.
"""

from __future__ import annotations

import torch
from torch import Tensor


def mismatch_metrics(sampling_logprobs: Tensor, trainer_logprobs: Tensor) -> dict[str, float]:
    """Metrics above from the [N] log-probs of N sampled tokens under the sampler and the trainer."""
    return metrics_of_sums([mismatch_sums(sampling_logprobs, trainer_logprobs)])


def mismatch_sums(sampling_logprobs: Tensor, trainer_logprobs: Tensor) -> tuple[float, float, float, int]:
    """(sum |log r|, max |log r|, sum of k3 terms, N) over N sampled tokens: what ranks combine exactly."""
    if sampling_logprobs.numel() == 0:
        return 0.0, 0.0, 0.0, 0
    delta = trainer_logprobs.double() - sampling_logprobs.double()  # log r
    return float(delta.abs().sum()), float(delta.abs().max()), float((torch.expm1(delta) - delta).sum()), len(delta)


def metrics_of_sums(parts: list[tuple[float, float, float, int]]) -> dict[str, float]:
    """The metrics over the tokens of every part (e.g. one per rank); {} when there are none."""
    count = sum(part[3] for part in parts)
    if count == 0:
        return {}
    return {
        "mismatch_abs_mean": sum(part[0] for part in parts) / count,
        "mismatch_abs_max": max(part[1] for part in parts if part[3]),
        "mismatch_kl": sum(part[2] for part in parts) / count,
    }
