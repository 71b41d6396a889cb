"""sampler=vade: Thompson sampling of prompts on a Beta posterior of each prompt's success rate.

Paper: "VADE: Variance-Aware Dynamic Sampling via Online Sample-Level Difficulty Estimation for Multimodal RL",
Hu et al., arXiv 2511.18902. The two-scale decay is a reconstruction (the method section was not accessible);
its per-visit part is MoPPS' discounted update (Qu et al., arXiv 2507.04632), the closest verified code.

State per prompt i: decayed evidence a_i (successes), b_i (failures), last update step t_i.
Select at step t:
    candidates C = next candidate_ratio * B prompts of a seeded shuffled stream (the whole pool if smaller)
    lag-decay    a~_i = a_i * step_decay^(t - t_i),  b~_i likewise           (global scale: the policy drifts)
    Thompson     p_i ~ Beta(a~_i + 1, b~_i + 1)                              (posterior over the success rate)
    score        I_i = p_i (1 - p_i)^2                                        (InfoGain, peak at p = 1/3)
    plan         top-B of C by I_i, n completions each                       (budget B * n, as uniform)
Update with s_i successes out of n_i completions at step t:
    a_i <- visit_decay * step_decay^(t - t_i) * a_i + s_i,   b_i <- ... * b_i + (n_i - s_i),   t_i <- t
i.e. evidence decays toward the Beta(1, 1) prior at two scales: once per revisit (sample level) and per elapsed
step (global). Never-seen prompts have a = b = 0 (the uniform prior), so Thompson draws still explore them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlpost.config import check, in_range
from rlpost.samplers import SAMPLERS, Plan, SamplerContext
from rlpost.samplers.common import (
    PromptStream,
    StatefulConfig,
    group_outcomes,
    make_rng,
    rng_state,
    set_rng_state,
    to_numpy,
    to_tensor,
)


@dataclass
class VadeConfig(StatefulConfig):
    name: str = "vade"
    candidate_ratio: int = 16  # candidate pool = ratio x prompts_per_step prompts (MoPPS ts_ratio; VADE's unknown)
    visit_decay: float = 0.9  # sample-level scale: old evidence kept per revisit (MoPPS lambda; 1.0 = none)
    step_decay: float = 0.995  # global scale: evidence kept per elapsed step since the prompt's last update

    def __post_init__(self) -> None:
        check(self.candidate_ratio >= 1, "candidate_ratio", f"must be >= 1, got {self.candidate_ratio}")
        in_range(self.visit_decay, "visit_decay", 0.0, 1.0, low_open=True)
        in_range(self.step_decay, "step_decay", 0.0, 1.0, low_open=True)


@SAMPLERS.register("vade", VadeConfig)
class VadeSampler:
    def __init__(self, cfg: VadeConfig, context: SamplerContext) -> None:
        self.cfg, self.context = cfg, context
        size = context.num_prompts
        self.successes = np.zeros(size)  # a_i, decayed
        self.failures = np.zeros(size)  # b_i, decayed
        self.last_step = np.zeros(size, dtype=np.int64)  # t_i (0 = never updated: a = b = 0 anyway)
        self.stream = PromptStream(size, context.seed, salt=1)
        self.rng = make_rng(context.seed, 2511_18902)
        self.current_step = 0

    def posterior(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Beta parameters (alpha, beta) of every prompt at `step`, prior Beta(1, 1) included."""
        lag = np.maximum(step - self.last_step, 0)
        keep = self.cfg.step_decay**lag
        return self.successes * keep + 1.0, self.failures * keep + 1.0

    def select(self, step: int) -> Plan:
        self.current_step = step  # the step update() stamps
        k, size = self.context.prompts_per_step, self.context.num_prompts
        pool = min(self.cfg.candidate_ratio * k, size)
        candidates = np.arange(size) if pool == size else np.array(self.stream.take(pool))
        alpha, beta = self.posterior(step)
        draws = self.rng.beta(alpha[candidates], beta[candidates])
        info = draws * (1.0 - draws) ** 2
        chosen = candidates[np.argsort(-info, kind="stable")[:k]]
        return [(int(i), self.context.n) for i in chosen]

    def update(self, plan: Plan, batch) -> None:
        step = self.current_step
        prompts, solved, sizes = group_outcomes(batch, self.cfg.success_threshold)
        for index, s, n in zip(prompts, solved, sizes):
            keep = self.cfg.visit_decay * self.cfg.step_decay ** max(step - int(self.last_step[index]), 0)
            self.successes[index] = keep * self.successes[index] + s
            self.failures[index] = keep * self.failures[index] + (n - s)
            self.last_step[index] = step

    def state_dict(self) -> dict:
        return {
            "successes": to_tensor(self.successes),
            "failures": to_tensor(self.failures),
            "last_step": to_tensor(self.last_step),
            "stream_position": int(self.stream.position),
            "current_step": int(self.current_step),
            "rng": rng_state(self.rng),
        }

    def load_state_dict(self, state: dict) -> None:
        self.successes = to_numpy(state["successes"])
        self.failures = to_numpy(state["failures"])
        self.last_step = to_numpy(state["last_step"])
        self.stream.position = int(state["stream_position"])
        self.current_step = int(state["current_step"])
        set_rng_state(self.rng, state["rng"])
