"""sampler=dots: difficulty-targeted online data selection (DOTS) with rollout replay (RR).

Paper: "Improving Data Efficiency for LLM Reinforcement Fine-tuning Through Difficulty-targeted Online Data
Selection and Rollout Replay", Sun et al., arXiv 2506.05316 (rule as in ASTRAL-Group/data-efficient-llm-rl).

Every epoch (= epoch_steps steps):
    reference set: ref_ratio * B random prompts, ref_n rollouts each with the current policy; label y_r = mean reward
    predicted success of every prompt q by attention over the reference set:
        p_q = sum_r softmax_r(cos(e_q, e_r) / attention_temperature) * y_r
    e = hashed character trigrams of the question (the paper: a frozen LLM's mean-pooled states through a trained
    adapter, plus a calibration MLP; neither exists without offline training, so identity projections and no
    calibration are used here — the one deviation)
    selection: epoch_steps * fresh prompts drawn without replacement from softmax(-|p_q - target| / tau)
Every step: fresh = B in the first epoch, else round(fresh_fraction * B) prompts of the epoch's selection with
n rollouts each; the other B - fresh groups are replayed, drawn uniformly without replacement from a FIFO buffer
of the last buffer_size informative (not all-equal) fresh groups. Replayed rollouts keep their sampling
log-probs (the behaviour policy) for importance correction. Reference rollouts are generated but not trained on;
every generated rollout is counted in `rollouts_generated`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from rlpost.batch import RolloutBatch
from rlpost.config import check, in_range
from rlpost.samplers import SAMPLERS, Plan, SamplerContext
from rlpost.samplers.common import (
    StatefulConfig,
    informative_groups,
    make_rng,
    rng_state,
    set_rng_state,
    to_numpy,
    to_tensor,
)
from rlpost.samplers.xrpo import trigram_features


@dataclass
class DotsConfig(StatefulConfig):
    name: str = "dots"
    epoch_steps: int = 2  # mu: steps per selection epoch (one reference set each)
    ref_ratio: float = 0.5  # reference prompts per epoch / prompts_per_step (paper: 256 for B = 512)
    ref_n: int = 8  # rollouts per reference prompt
    target: float = 0.5  # alpha: the success rate selection aims at
    tau: float = 0.001  # softmax temperature of the selection (near-deterministic top by closeness)
    fresh_fraction: float = 0.5  # sigma: share of each step's groups that are freshly generated
    buffer_size: int = 512  # replay buffer capacity in groups
    attention_temperature: float = 0.1  # of the cosine attention over the reference set (reconstruction)

    def __post_init__(self) -> None:
        for key in ("epoch_steps", "ref_n", "buffer_size"):
            check(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        in_range(self.ref_ratio, "ref_ratio", 0.0, 100.0, low_open=True)
        in_range(self.target, "target", 0.0, 1.0)
        in_range(self.tau, "tau", 0.0, 100.0, low_open=True)
        in_range(self.fresh_fraction, "fresh_fraction", 0.0, 1.0, low_open=True)
        in_range(self.attention_temperature, "attention_temperature", 0.0, 100.0, low_open=True)


def batch_state(batch: RolloutBatch) -> dict:
    """A RolloutBatch as tensors / lists / dicts (loadable with weights_only=True)."""
    out = {}
    for spec in fields(batch):
        value = getattr(batch, spec.name)
        if value is not None:
            out[spec.name] = value
    return out


@SAMPLERS.register("dots", DotsConfig)
class DotsSampler:
    def __init__(self, cfg: DotsConfig, context: SamplerContext) -> None:
        self.cfg, self.context = cfg, context
        self.rng = make_rng(context.seed, 2506_05316)
        self.predicted = np.full(context.num_prompts, 0.5)  # p_q
        self.queue: list[int] = []  # this epoch's selected prompts, not yet generated
        self.buffer: list[dict] = []  # replayable groups, oldest first
        self._features: np.ndarray | None = None

    def features(self) -> np.ndarray:  # [P, D]
        if self._features is None:
            if self.context.rows:
                self._features = np.stack([trigram_features(str(r.get("question", ""))) for r in self.context.rows])
            else:  # no text: each prompt is only similar to itself
                self._features = np.eye(self.context.num_prompts)
        return self._features

    def predict(self, reference: list[int], labels: list[float]) -> np.ndarray:
        """p_q for every prompt: attention of q over the reference prompts' labels."""
        labels = np.asarray(labels, dtype=np.float64)
        if not self.context.rows:  # no text: similarity 1 to itself, 0 to the rest (closed form of the softmax)
            boost = np.zeros(self.context.num_prompts)
            boost[reference] = np.expm1(1.0 / self.cfg.attention_temperature)
            own = np.zeros(self.context.num_prompts)
            own[reference] = labels
            return (labels.sum() + boost * own) / (len(reference) + boost)
        feats = self.features()
        logits = feats @ feats[reference].T / self.cfg.attention_temperature  # [P, R]
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (weights / weights.sum(axis=1, keepdims=True)) @ labels

    def fresh_count(self, step: int) -> int:
        k = self.context.prompts_per_step
        if (step - 1) // self.cfg.epoch_steps == 0:
            return k
        return max(1, min(k, round(self.cfg.fresh_fraction * k)))

    def choose(self, count: int) -> list[int]:
        """Without replacement from softmax(-|p - target| / tau) (Gumbel top-k)."""
        score = -np.abs(self.predicted - self.cfg.target) / self.cfg.tau
        keys = score + self.rng.gumbel(size=score.shape)
        return [int(i) for i in np.argsort(-keys, kind="stable")[: min(count, len(score))]]

    def select(self, step: int) -> Plan:
        """This step's fresh prompts (n rollouts each) from the epoch's selection."""
        if (step - 1) % self.cfg.epoch_steps == 0 or not self.queue:
            self.queue = self.choose(self.cfg.epoch_steps * self.fresh_count(step))
        count = self.fresh_count(step)
        chosen, self.queue = self.queue[:count], self.queue[count:]
        return [(i, self.context.n) for i in chosen]

    def collect(self, step: int, generate) -> tuple[Plan, RolloutBatch, dict]:
        k = self.context.prompts_per_step
        if (step - 1) % self.cfg.epoch_steps == 0:
            size = min(max(1, round(self.cfg.ref_ratio * k)), self.context.num_prompts)
            reference = [int(i) for i in self.rng.choice(self.context.num_prompts, size=size, replace=False)]
            ref_batch = generate([(i, self.cfg.ref_n) for i in reference])
            solved = (ref_batch.reward > self.cfg.success_threshold).double()
            labels = (
                torch.zeros(size, dtype=torch.float64).index_add_(0, ref_batch.group_index, solved) / self.cfg.ref_n
            )
            self.predicted = self.predict(reference, labels.tolist())
        plan = self.select(step)
        fresh = generate(plan)
        replay_count = 0 if (step - 1) // self.cfg.epoch_steps == 0 else min(k - len(plan), len(self.buffer))
        replayed = [int(i) for i in self.rng.choice(len(self.buffer), size=replay_count, replace=False)]
        parts = [fresh] + [RolloutBatch(**self.buffer[i]) for i in replayed]
        plan = plan + [(int(self.buffer[i]["prompt_index"][0]), len(self.buffer[i]["prompt_index"])) for i in replayed]
        self.update(plan, fresh)
        batch = RolloutBatch.concat(parts)
        batch.replayed = torch.arange(len(batch)) >= len(
            fresh
        )  # the trainer corrects these with their sampling log-probs
        return plan, batch, {"dots_replayed": replay_count, "dots_buffer": len(self.buffer)}

    def update(self, plan: Plan, batch) -> None:
        """Push the informative fresh groups into the replay buffer (FIFO)."""
        mixed = informative_groups(batch)
        for group in mixed.nonzero().flatten().tolist():
            rows = (batch.group_index == group).nonzero().flatten()
            piece = batch.select(rows)
            piece.group_index = torch.zeros(len(rows), dtype=torch.long)
            piece.advantages = piece.old_logprobs = piece.ref_logprobs = None
            self.buffer.append(batch_state(piece))
        del self.buffer[: max(len(self.buffer) - self.cfg.buffer_size, 0)]

    def state_dict(self) -> dict:
        return {
            "rng": rng_state(self.rng),
            "predicted": to_tensor(self.predicted),
            "queue": [int(i) for i in self.queue],
            "buffer": self.buffer,
        }

    def load_state_dict(self, state: dict) -> None:
        set_rng_state(self.rng, state["rng"])
        self.predicted = to_numpy(state["predicted"])
        self.queue = [int(i) for i in state["queue"]]
        self.buffer = [dict(group) for group in state["buffer"]]
