"""Prompt samplers: which prompts go into the next step and how many completions each gets.

sampler = Sampler(cfg, context)          # context: pool size, prompts_per_step, n, seed, prompt rows
plan = sampler.select(step)              # [(prompt_index, n_completions)], within the rollout budget
sampler.update(plan, batch)              # rewards (and log-probs) per completion -> per-prompt state
sampler.state_dict() / load_state_dict() # a resumed run continues with the same per-prompt state
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


def collect_rollouts(
    sampler, rollout, prompt_token_ids: list[list[int]], step: int, seed: int, score_fn
) -> tuple[Plan, RolloutBatch, dict]:
    """select -> generate -> reward -> update for one step; returns (plan, scored batch, reward metrics).

    `score_fn(batch) -> metrics` fills batch.rewards/batch.reward. Samplers that need several generation rounds
    (e.g. DAPO's dynamic sampling) do them here, so the trainer's step stays one line for every sampler.
    """
    from rlpost.rollout import Request

    plan = sampler.select(step)
    batch = rollout.generate([Request(index, prompt_token_ids[index], n) for index, n in plan], seed=seed)
    metrics = score_fn(batch)
    sampler.update(plan, batch)
    return plan, batch, metrics


def _import_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name not in ("common", "base"):
            importlib.import_module(f"{__name__}.{module.name}")


_import_all()
