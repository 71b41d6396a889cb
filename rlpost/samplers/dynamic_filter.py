"""sampler=dynamic_filter: DAPO's dynamic sampling; over-sample, drop groups whose rewards are all equal, repeat.

Paper: "DAPO: An Open-Source LLM Reinforcement Learning System at Scale", Yu et al., arXiv 2503.14476
(rule as in verl recipe/dapo, algorithm.filter_groups).

Each generation round takes the next gen_ratio * B prompts of a seeded shuffled stream, n completions each, and
keeps a group iff the std of its `metric` is > 0 (or it has one completion): metric=reward is the total reward;
a named reward such as metric=correct is the paper's rule (§3.2, Eq. 11: 0 < |{o_i correct}| < G), which differs
from the total once the soft overlong punishment (reward.overlong_buffer) is added to it. Rounds repeat until >= B
groups are kept, or max_rounds rounds were generated (0: no cap); the batch is the first B kept groups (B * n
rollouts, the same as uniform). If the cap is hit short of B, dropped groups fill the batch (they carry no gradient) and
`filter_exhausted` = 1; DAPO raises instead. Every generated rollout is counted in `rollouts_generated`.
No state crosses steps except the stream position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlpost.batch import RolloutBatch
from rlpost.config import check
from rlpost.samplers import SAMPLERS, Plan, SamplerContext
from rlpost.samplers.common import PromptStream, informative_groups


@dataclass
class DynamicFilterConfig:
    name: str = "dynamic_filter"
    gen_ratio: int = 3  # prompts generated per round = gen_ratio x prompts_per_step (gen_batch_size / train)
    max_rounds: int = 10  # generation rounds per step before giving up (max_num_gen_batches; 0 = unlimited)
    metric: str = "reward"  # what must differ within a kept group: reward (the total) | a named reward, e.g. correct

    def __post_init__(self) -> None:
        check(self.gen_ratio >= 1, "gen_ratio", f"must be >= 1, got {self.gen_ratio}")
        check(self.max_rounds >= 0, "max_rounds", f"must be >= 0, got {self.max_rounds}")
        check(bool(self.metric), "metric", "must be 'reward' or the name of one of the run's rewards")

    def cross_check(self, cfg) -> None:
        """At start-up: a named metric must be one of the rewards this run produces."""
        from rlpost.config import reward_names

        known = reward_names(cfg.reward)
        check(
            self.metric == "reward" or self.metric in known,
            "sampler.metric",
            f"{self.metric!r} is neither 'reward' nor a reward of reward={cfg.reward.name} "
            f"(its rewards: {', '.join(known)})",
        )


@SAMPLERS.register("dynamic_filter", DynamicFilterConfig)
class DynamicFilterSampler:
    def __init__(self, cfg: DynamicFilterConfig, context: SamplerContext) -> None:
        self.cfg, self.context = cfg, context
        self.stream = PromptStream(context.num_prompts, context.seed)

    def select(self, step: int) -> Plan:
        """The plan of the next generation round (gen_ratio x the training batch's prompts)."""
        return [(i, self.context.n) for i in self.stream.take(self.cfg.gen_ratio * self.context.prompts_per_step)]

    def update(self, plan: Plan, batch) -> None:
        """Stateless: the filter looks only at the current round."""

    def collect(self, step: int, generate) -> tuple[Plan, RolloutBatch, dict]:
        wanted = self.context.prompts_per_step
        kept: list[tuple[RolloutBatch, torch.Tensor]] = []  # (round batch, its kept group ids)
        dropped: list[tuple[RolloutBatch, torch.Tensor]] = []
        count = rounds = 0
        while count < wanted and (self.cfg.max_rounds == 0 or rounds < self.cfg.max_rounds):
            batch = generate(self.select(step))
            rounds += 1
            mixed = informative_groups(batch, self._metric(batch)) | (batch.group_sizes() == 1)
            kept.append((batch, mixed.nonzero().flatten()))
            dropped.append((batch, (~mixed).nonzero().flatten()))
            count += int(mixed.sum())
        exhausted = count < wanted
        parts, plan, taken = [], [], 0
        for batch, groups in kept + (dropped if exhausted else []):
            groups = groups[: wanted - taken]
            if len(groups):
                rows = torch.isin(batch.group_index, groups).nonzero().flatten()
                parts.append(batch.select(rows))
                plan += [
                    (int(batch.prompt_index[batch.group_index == g][0]), int((batch.group_index == g).sum()))
                    for g in groups.tolist()
                ]
                taken += len(groups)
        return (
            plan,
            RolloutBatch.concat(parts),
            {
                "filter_rounds": rounds,
                "filter_kept_frac": count / max(rounds * self.cfg.gen_ratio * wanted, 1),
                "filter_exhausted": int(exhausted),
            },
        )

    def _metric(self, batch: RolloutBatch) -> torch.Tensor:
        """[B] values whose spread within a group decides whether the group is kept."""
        if self.cfg.metric == "reward":
            return batch.reward
        if self.cfg.metric not in batch.rewards:
            raise KeyError(f"sampler.metric={self.cfg.metric!r} is not one of the rewards {sorted(batch.rewards)}")
        return batch.rewards[self.cfg.metric]

    def state_dict(self) -> dict:
        return {"stream_position": int(self.stream.position)}

    def load_state_dict(self, state: dict) -> None:
        self.stream.position = int(state["stream_position"])
