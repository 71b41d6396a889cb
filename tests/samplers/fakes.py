"""A deterministic fake rollout engine for sampler tests: rewards depend only on (seed, prompt, position)."""

from __future__ import annotations

import numpy as np
import torch

from rlpost.batch import RolloutBatch
from rlpost.samplers import SamplerContext, collect_rollouts


class FakeRollout:
    """Prompt i is solved with probability rates[i]; prompt token ids are [1, 100 + i]."""

    def __init__(self, rates: list[float]) -> None:
        self.rates = rates
        self.prompts = [[1, 100 + i] for i in range(len(rates))]

    def generate(self, requests, seed: int, greedy: bool = False) -> RolloutBatch:
        rewards, index, group, prompts = [], [], [], []
        for g, request in enumerate(requests):
            draws = np.random.default_rng([seed % 2**32, request.prompt_index, len(request.token_ids)]).random(
                request.n
            )
            rewards += (draws < self.rates[request.prompt_index]).tolist()
            index += [request.prompt_index] * request.n
            group += [g] * request.n
            prompts += [request.token_ids] * request.n
        width = max(len(p) for p in prompts)
        prompt_ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
        solved = torch.tensor(rewards)
        return RolloutBatch(
            prompt_index=torch.tensor(index),
            group_index=torch.tensor(group),
            prompt_ids=prompt_ids,
            prompt_mask=prompt_ids != 0,
            response_ids=torch.where(solved, 7, 8)[:, None],
            response_mask=torch.ones(len(rewards), 1, dtype=torch.bool),
            texts=["1" if r else "0" for r in rewards],
            sampling_logprobs=torch.full((len(rewards), 1), -0.1),
        )


def score(batch: RolloutBatch) -> dict:
    batch.reward = torch.tensor([float(t == "1") for t in batch.texts])
    batch.rewards = {"correct": batch.reward.clone()}
    return {"accuracy": float(batch.reward.mean())}


def context(num_prompts: int = 40, prompts_per_step: int = 4, n: int = 8, seed: int = 0) -> SamplerContext:
    return SamplerContext(num_prompts, prompts_per_step, n, seed)


def mixed_rates(count: int, seed: int = 0) -> list[float]:
    """Many prompts at 0 or 1, the rest in between."""
    rng = np.random.default_rng(seed)
    return [float(x) for x in np.where(rng.random(count) < 0.5, rng.integers(0, 2, count), rng.random(count))]


def step(sampler, rollout: FakeRollout, number: int):
    return collect_rollouts(sampler, rollout, rollout.prompts, number, 1000 + number, score)
