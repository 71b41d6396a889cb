"""Prompt samplers: which prompts go into the next step and how many completions each gets.

sampler = Sampler(cfg, context)          # context: pool size, prompts_per_step, n, seed, prompt rows
plan = sampler.select(step)              # [(prompt_index, n_completions)], within the rollout budget
sampler.update(plan, batch)              # rewards (and log-probs) per completion -> per-prompt state
sampler.state_dict() / load_state_dict() # a resumed run continues with the same per-prompt state

Optional hook, for samplers that generate in several rounds within a step (DAPO dynamic sampling, XRPO's phased
allocation and in-context seeding, DOTS' reference set and rollout replay):

sampler.collect(step, generate) -> (plan, batch, metrics)
    generate(plan, token_ids=None) -> scored RolloutBatch   # token_ids: per plan entry, replaces the prompt
    generate.prompt_token_ids[i]                            # the pool's rendered prompts
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

from rlpost.batch import RolloutBatch
from rlpost.registry import Registry

SAMPLERS = Registry("sampler")

Plan = list[tuple[int, int]]


@dataclass(frozen=True)
class SamplerContext:
    """What every sampler is built from."""

    num_prompts: int  # size of the training pool
    prompts_per_step: int  # run.prompts_per_step
    n: int  # run.n: completions per prompt for fixed-n samplers; the mean for budgeted ones
    seed: int
    rows: tuple = ()  # the pool's rows (question/answer/tier...), for samplers that stratify

    @property
    def budget(self) -> int:
        """Rollouts per step: the same for every sampler, so comparisons are at equal cost."""
        return self.prompts_per_step * self.n


def build_sampler(cfg, context: SamplerContext):
    return SAMPLERS.get(cfg.name).component(cfg, context)


class Generate:
    """generate(plan, token_ids=None) -> RolloutBatch with rewards: one generation round of a step.

    Round r of step s samples with its own seed, so a multi-round sampler never draws the same completions twice
    and a resumed run replays them exactly. Reward metrics are averaged over every rollout generated, weighted by
    round size; `rollouts` counts them (the step's generation cost).
    """

    def __init__(self, rollout, prompt_token_ids: list[list[int]], seed: int, score_fn) -> None:
        self.rollout, self.prompt_token_ids, self.seed, self.score_fn = rollout, prompt_token_ids, seed, score_fn
        self.rounds, self.rollouts = 0, 0
        self._metric_sums: dict[str, float] = {}
        self._last_metrics: dict = {}

    def __call__(self, plan: Plan, token_ids: list[list[int]] | None = None) -> RolloutBatch:
        from rlpost.rollout import Request

        if not plan:
            raise ValueError("generate: empty plan")
        if token_ids is not None and len(token_ids) != len(plan):
            raise ValueError(f"generate: {len(token_ids)} prompts for a plan of {len(plan)} entries")
        requests = [
            Request(index, self.prompt_token_ids[index] if token_ids is None else token_ids[g], n)
            for g, (index, n) in enumerate(plan)
        ]
        seed = self.seed if self.rounds == 0 else (self.seed + self.rounds * 0x9E3779B97F4A7C15) % (2**63)
        batch = self.rollout.generate(requests, seed=seed)
        metrics = self._last_metrics = self.score_fn(batch)
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                self._metric_sums[key] = self._metric_sums.get(key, 0.0) + float(value) * len(batch)
        self.rounds += 1
        self.rollouts += len(batch)
        return batch

    def metrics(self) -> dict:
        if self.rounds == 1:
            return dict(self._last_metrics)
        return {key: total / max(self.rollouts, 1) for key, total in self._metric_sums.items()}


def collect_rollouts(
    sampler, rollout, prompt_token_ids: list[list[int]], step: int, seed: int, score_fn
) -> tuple[Plan, RolloutBatch, dict]:
    """select -> generate -> reward -> update for one step; returns (plan, scored batch, reward metrics).

    `score_fn(batch) -> metrics` fills batch.rewards/batch.reward. Samplers that need several generation rounds
    (DAPO's dynamic sampling, XRPO, DOTS) implement `collect(step, generate)`, so the trainer's step stays one
    line for every sampler. `plan[g]` is (prompt, size) of the returned batch's group g.
    """
    generate = Generate(rollout, prompt_token_ids, seed, score_fn)
    if hasattr(sampler, "collect"):
        plan, batch, metrics = sampler.collect(step, generate)
        return plan, batch, generate.metrics() | metrics | {"rollouts_generated": generate.rollouts}
    plan = sampler.select(step)
    batch = generate(plan)
    sampler.update(plan, batch)
    return plan, batch, generate.metrics()


def _import_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name not in ("common", "base"):
            importlib.import_module(f"{__name__}.{module.name}")


_import_all()
