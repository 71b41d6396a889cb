"""sampler=xrpo: phased rollout allocation to the prompts whose mean-reward estimate is most uncertain, plus
in-context seeding of prompts no completion has solved.

Paper: "XRPO: Pushing the limits of GRPO with Targeted Exploration and Exploitation", Bamba et al.,
arXiv 2510.06672 (formulas from the paper as quoted in its reviews and a third-party reimplementation; the
novelty-aware advantage sharpening is an advantage estimator, not part of this sampler).

Step t, B prompts from a seeded shuffled stream, budget N = B * n rollouts, `phases` generation rounds:
    phase 1: base_n rollouts per prompt.
    ICL seeding (with phase 2): a prompt whose completions all failed gets one extra group of icl_n rollouts on a
        seeded prompt: the icl_examples most similar solved problems in the bank (prompt + a correct completion,
        as earlier chat turns) followed by the question; similarity = cosine of hashed character trigrams of the
        questions (the paper uses Qwen3-Embedding-8B). No exemplar fits in max_prompt_tokens -> not seeded.
    phases 2..P: the unspent budget is split evenly across the remaining phases; within a phase each rollout goes,
        one at a time, to the prompt with the highest priority
            Pi_q = Delta_q(n_q) + exploration * sqrt(log(1 + t) / n_q)
            Delta_q(n) = h_q(n) - h_q(n + 1),   h_q(n) = t_{confidence, n-1} * s_q / sqrt(n)
        (s_q = sample std of q's rewards so far, n_q = its rollouts so far including this phase's); statistics
        are refreshed after every phase.
Groups: all rollouts of a prompt on its own question form one group (across phases); a seeded re-roll is its own
group conditioned on the seeded prompt. The bank keeps the newest correct completion per solved prompt (FIFO,
bank_size prompts).
"""

from __future__ import annotations

import heapq
import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from rlpost.batch import RolloutBatch
from rlpost.config import check, in_range
from rlpost.samplers import SAMPLERS, Plan, SamplerContext
from rlpost.samplers.common import PromptStream, StatefulConfig, t_quantile


@dataclass
class XrpoConfig(StatefulConfig):
    name: str = "xrpo"
    base_n: int = 0  # phase-1 rollouts per prompt: 0 = n/2 (half the budget stays adaptive); else 2 .. n/2
    phases: int = 3  # generation rounds per step: the base round + allocation rounds
    confidence: float = 0.95  # level of the Student-t interval whose half-width is the uncertainty (1 - alpha)
    exploration: float = 0.05  # lambda: weight of the bonus sqrt(log(1 + t) / n_q) (paper: > 0, value not given)
    max_n: int = 0  # cap on one prompt's rollouts in a step (0: none; the paper has none)
    icl: bool = True  # seed all-failed prompts with solved examples
    icl_examples: int = 2  # K exemplars retrieved per seeded prompt
    icl_n: int = 4  # rollouts of a seeded prompt (taken from the step's budget)
    bank_size: int = 1024  # solved prompts kept for retrieval (oldest dropped first)
    max_prompt_tokens: int = 248  # a seeded prompt longer than this drops exemplars (context - max_new_tokens)

    def __post_init__(self) -> None:
        check(
            self.base_n == 0 or self.base_n >= 2,
            "base_n",
            f"must be 0 (= n/2) or >= 2 (a std needs two rewards), got {self.base_n}",
        )
        check(self.phases >= 1, "phases", f"must be >= 1, got {self.phases}")
        in_range(self.confidence, "confidence", 0.0, 1.0, low_open=True)
        check(self.confidence < 1.0, "confidence", "must be < 1")
        check(self.exploration >= 0, "exploration", f"must be >= 0, got {self.exploration}")
        check(self.max_n >= 0, "max_n", f"must be >= 0, got {self.max_n}")
        for key in ("icl_examples", "icl_n", "bank_size", "max_prompt_tokens"):
            check(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")

    def cross_check(self, cfg) -> None:
        """At start-up: phase 1 spends at most half of the step's budget, and at least two rollouts per prompt."""
        half = cfg.run.n // 2
        check(half >= 2, "n", f"sampler=xrpo needs n >= 4 (phase 1: 2 .. n/2 rollouts per prompt), got {cfg.run.n}")
        check(
            self.base_n <= half,
            "sampler.base_n",
            f"{self.base_n} is more than n/2 = {half} (half of each prompt's budget n={cfg.run.n} is left for "
            f"the adaptive phases); lower sampler.base_n (0 = n/2) or raise n to at least {2 * self.base_n}",
        )


def half_width(count: int, std: float, confidence: float) -> float:
    """h(n) = t_{confidence, n-1} * s / sqrt(n); infinite below two rewards."""
    return math.inf if count < 2 else t_quantile(confidence, count - 1) * std / math.sqrt(count)


def priority(count: int, std: float, step: int, cfg: XrpoConfig) -> float:
    """Pi = [h(n) - h(n+1)] + lambda sqrt(log(1 + t) / n)."""
    reduction = 0.0 if std == 0 else half_width(count, std, cfg.confidence) - half_width(count + 1, std, cfg.confidence)
    return reduction + cfg.exploration * math.sqrt(math.log(1 + step) / max(count, 1))


def allocate_phase(counts: list[int], stds: list[float], units: int, step: int, cfg: XrpoConfig) -> list[int]:
    """Extra rollouts per prompt for one phase: `units` given one at a time to the highest priority."""
    counts = list(counts)
    extra = [0] * len(counts)
    cap = cfg.max_n or math.inf
    heap = [(-priority(c, s, step, cfg), q) for q, (c, s) in enumerate(zip(counts, stds)) if c < cap]
    heapq.heapify(heap)  # ties: the earlier prompt first
    for _ in range(units):
        if not heap:
            break
        _, best = heapq.heappop(heap)
        counts[best] += 1
        extra[best] += 1
        if counts[best] < cap:
            heapq.heappush(heap, (-priority(counts[best], stds[best], step, cfg), best))
    return extra


def sample_std(values: list[float]) -> float:
    """Bessel-corrected standard deviation; 0 below two values."""
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def trigram_features(text: str, width: int = 256) -> np.ndarray:
    """Unit-norm hashed character-trigram counts (a frozen, model-free stand-in for a text embedding)."""
    vector = np.zeros(width)
    padded = f"  {text.lower()} "
    for i in range(len(padded) - 2):
        vector[zlib.crc32(padded[i : i + 3].encode()) % width] += 1.0
    norm = np.linalg.norm(vector)
    return vector / norm if norm else vector


@SAMPLERS.register("xrpo", XrpoConfig)
class XrpoSampler:
    def __init__(self, cfg: XrpoConfig, context: SamplerContext) -> None:
        self.cfg, self.context = cfg, context
        self.stream = PromptStream(context.num_prompts, context.seed)
        self.bank: dict[int, list[int]] = {}  # prompt index -> token ids of a correct completion (insertion = age)
        self._features: dict[int, np.ndarray] = {}

    @property
    def base_n(self) -> int:
        return self.cfg.base_n or self.context.n // 2  # start-up checked 2 <= it <= n/2 (XrpoConfig.cross_check)

    def select(self, step: int) -> Plan:
        """Phase 1: the next B prompts, base_n rollouts each."""
        return [(i, self.base_n) for i in self.stream.take(self.context.prompts_per_step)]

    def collect(self, step: int, generate) -> tuple[Plan, RolloutBatch, dict]:
        cfg, budget = self.cfg, self.context.budget
        plan = self.select(step)
        prompts = [index for index, _ in plan]
        rounds: list[tuple[RolloutBatch, list[int]]] = []  # (round batch, group key of each of its plan entries)
        rewards: list[list[float]] = [[] for _ in prompts]

        def run(entries: list[tuple[int, int]], keys: list[int], token_ids: list[list[int]] | None = None) -> None:
            batch = generate(entries, token_ids)
            rounds.append((batch, keys))
            for g, reward in zip(batch.group_index.tolist(), batch.reward.tolist()):
                if keys[g] < len(prompts):
                    rewards[keys[g]].append(reward)

        run(plan, list(range(len(prompts))))
        spent = sum(n for _, n in plan)
        seeded = []
        if cfg.icl and self.bank and cfg.phases >= 2:
            for slot, index in enumerate(prompts):
                if spent + len(seeded) * cfg.icl_n + cfg.icl_n > budget:
                    break
                if max(rewards[slot]) <= cfg.success_threshold:
                    ids = self.seeded_prompt(index, generate.prompt_token_ids)
                    if ids is not None:
                        seeded.append((slot, ids))
        for phase in range(1, cfg.phases):
            units = (budget - spent - len(seeded) * cfg.icl_n * (phase == 1)) // (cfg.phases - phase)
            stds = [sample_std(r) for r in rewards]
            extra = allocate_phase([len(r) for r in rewards], stds, max(units, 0), step, cfg)
            entries = [(prompts[q], e) for q, e in enumerate(extra) if e > 0]
            keys = [q for q, e in enumerate(extra) if e > 0]
            token_ids = [generate.prompt_token_ids[i] for i, _ in entries]
            if phase == 1 and seeded:
                entries += [(prompts[slot], cfg.icl_n) for slot, _ in seeded]
                keys += [len(prompts) + slot for slot, _ in seeded]
                token_ids += [ids for _, ids in seeded]
            if entries:
                run(entries, keys, token_ids)
                spent += sum(n for _, n in entries)
        batch, final_plan = self._regroup(rounds)
        self.update(final_plan, batch)
        seeded_keys = {len(prompts) + slot for slot, _ in seeded}
        seeded_solved = sum(
            1
            for b, keys in rounds
            for g, key in enumerate(keys)
            if key in seeded_keys and bool((b.reward[b.group_index == g] > cfg.success_threshold).any())
        )
        sizes = [n for _, n in final_plan]
        return (
            final_plan,
            batch,
            {
                "icl_seeded": len(seeded),
                "icl_solved": seeded_solved,
                "xrpo_max_group": max(sizes),
                "xrpo_bank": len(self.bank),
            },
        )

    def _regroup(self, rounds: list[tuple[RolloutBatch, list[int]]]) -> tuple[RolloutBatch, Plan]:
        """One batch whose groups are the group keys (a prompt's rollouts across phases form one group)."""
        batch = RolloutBatch.concat([b for b, _ in rounds])
        keys = torch.cat([torch.tensor(keys)[b.group_index] for b, keys in rounds])  # [B] key of each row
        order = torch.sort(keys, stable=True).indices
        batch = batch.select(order)
        batch.group_index = torch.unique(keys[order], return_inverse=True)[1]
        sizes = batch.group_sizes().tolist()
        starts = np.cumsum([0] + sizes[:-1])
        return batch, [(int(batch.prompt_index[s]), size) for s, size in zip(starts, sizes)]

    def seeded_prompt(self, index: int, prompt_token_ids: list[list[int]]) -> list[int] | None:
        """Exemplar turns (solved prompt + its correct completion) then the question, within max_prompt_tokens."""
        candidates = [j for j in self.bank if j != index]
        if not candidates:
            return None
        if self.context.rows:
            query = self._feature(index)
            similarity = [float(query @ self._feature(j)) for j in candidates]
            ranked = [candidates[r] for r in np.argsort(-np.array(similarity), kind="stable")]
        else:
            ranked = candidates[::-1]  # newest first
        exemplars = ranked[: self.cfg.icl_examples]
        target = prompt_token_ids[index]
        while exemplars:
            ids: list[int] = []
            for j in exemplars:
                ids += _strip_shared_start(prompt_token_ids[j], ids) + self.bank[j]
            ids += _strip_shared_start(target, ids)
            if len(ids) <= self.cfg.max_prompt_tokens:
                return ids
            exemplars = exemplars[:-1]
        return None

    def _feature(self, index: int) -> np.ndarray:
        if index not in self._features:
            self._features[index] = trigram_features(str(self.context.rows[index].get("question", "")))
        return self._features[index]

    def update(self, plan: Plan, batch) -> None:
        """Bank the newest correct completion of every solved prompt."""
        solved = (batch.reward > self.cfg.success_threshold).nonzero().flatten().tolist()
        newest = {int(batch.prompt_index[row]): row for row in solved}  # the last correct row per prompt
        for index, row in newest.items():
            self.bank.pop(index, None)
            self.bank[index] = batch.response_ids[row][batch.response_mask[row]].tolist()
        while len(self.bank) > self.cfg.bank_size:
            self.bank.pop(next(iter(self.bank)))

    def state_dict(self) -> dict:
        return {
            "stream_position": int(self.stream.position),
            "bank_prompts": [int(i) for i in self.bank],
            "bank_responses": [list(map(int, ids)) for ids in self.bank.values()],
        }

    def load_state_dict(self, state: dict) -> None:
        self.stream.position = int(state["stream_position"])
        self.bank = dict(zip(state["bank_prompts"], state["bank_responses"]))


def _strip_shared_start(prompt: list[int], before: list[int]) -> list[int]:
    """Drop the template's leading token (BOS) when it already opens the sequence, so it appears once."""
    return prompt[1:] if before and prompt and prompt[0] == before[0] else list(prompt)
