"""Benchmark the prompt samplers on a simulated learner (no model): equal rollout budget, several seeds.

    python scripts/bench_samplers.py                       # table + docs/samplers_bench.png, ~1 minute
    python scripts/bench_samplers.py --steps 300 --seeds 2 --samplers uniform,vade --plot ''

The simulator drives the real sampler classes through rlpost.samplers.collect_rollouts (select -> generate ->
reward -> update, and the multi-round `collect` hook) with a fake rollout engine:
- a pool of prompts grouped into topics of `topic_size` consecutive prompts; each prompt has a hidden logit,
  drawn as topic difficulty + per-prompt noise from a mixture: ~30% of topics very hard (p ~ 0.01), ~25% easy
  (p ~ 0.98), the rest spread over logit U(-3, 3), so many prompts sit near 0 or 1 as in real RL data;
- a completion succeeds with probability sigmoid(logit); a seeded (in-context) prompt succeeds with
  1 - (1 - p)(1 - icl_gain);
- every group in the trained batch with non-zero advantage (rewards not all equal) raises its prompt's logit by
  lr * sqrt(size / n) (diminishing returns in group size), its topic neighbours' by neighbour_lr * that, and
  all prompts' by global_lr * that; groups trained on a seeded prompt or replayed from an earlier step count
  with weight off_policy_weight.
Metrics, per sampler, mean over seeds:
- effective-gradient ratio: rollouts generated this step that land in trained groups with non-zero advantage,
  over all rollouts generated (filtered, reference and replayed-later rollouts count as generated);
- rollouts (generated) until the pool's mean solve rate mean(sigmoid(logit)) first reaches `target`;
- final mean solve rate once steps * B * n rollouts have been generated (equal cost; samplers that generate
  more or less than B * n per step run fewer or more steps).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from rlpost.batch import RolloutBatch
from rlpost.samplers import SAMPLERS, SamplerContext, build_sampler, collect_rollouts

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLERS = "uniform,dynamic_filter,vade,knapsack,xrpo,dots"


@dataclass
class SimConfig:
    pool: int = 512  # prompts in the pool
    topic_size: int = 8  # consecutive prompts sharing a topic difficulty (the "neighbours")
    prompts_per_step: int = 16  # B
    n: int = 8  # rollouts per prompt on average: budget B * n per step for every sampler
    steps: int = 600  # training steps per run
    lr: float = 0.15  # logit increase of a prompt per informative group of n rollouts
    neighbour_lr: float = 0.15  # fraction of that applied to the other prompts of its topic
    global_lr: float = 0.0005  # fraction applied to every prompt (generalisation)
    icl_gain: float = 0.1  # seeded prompt success: 1 - (1 - p)(1 - icl_gain)
    off_policy_weight: float = 0.5  # learning weight of seeded and replayed groups
    target: float = 0.65  # mean solve rate to reach
    frac_hard: float = 0.3  # share of topics drawn very hard
    frac_easy: float = 0.25  # share of topics drawn easy
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])


def initial_logits(cfg: SimConfig, rng: np.random.Generator) -> np.ndarray:
    topics = math.ceil(cfg.pool / cfg.topic_size)
    kind = rng.random(topics)
    centre = np.where(
        kind < cfg.frac_hard,
        rng.normal(-4.5, 0.7, topics),
        np.where(kind < cfg.frac_hard + cfg.frac_easy, rng.normal(4.0, 0.7, topics), rng.uniform(-3, 3, topics)),
    )
    return (np.repeat(centre, cfg.topic_size)[: cfg.pool] + rng.normal(0, 0.7, cfg.pool)).astype(np.float64)


class SimulatedRollout:
    """rollout.generate(requests, seed) -> RolloutBatch whose texts are 'step|seeded|reward'."""

    def __init__(self, logits: np.ndarray, default_prompts: list[list[int]], cfg: SimConfig, seed: int) -> None:
        self.logits, self.default_prompts, self.cfg = logits, default_prompts, cfg
        self.rng = np.random.default_rng([seed, 7])
        self.step = 0

    def generate(self, requests, seed: int, greedy: bool = False) -> RolloutBatch:
        sizes = np.array([r.n for r in requests])
        index = np.array([r.prompt_index for r in requests])
        p = 1.0 / (1.0 + np.exp(-self.logits[index]))
        seeded = np.array([r.token_ids != self.default_prompts[r.prompt_index] for r in requests])
        p = np.where(seeded, 1.0 - (1.0 - p) * (1.0 - self.cfg.icl_gain), p)
        solved = self.rng.random(int(sizes.sum())) < np.repeat(p, sizes)  # [B]
        seeded_rows = np.repeat(seeded, sizes)
        texts = [f"{self.step}|{int(a)}|{int(b)}" for a, b in zip(seeded_rows, solved)]
        width = max(len(r.token_ids) for r in requests)
        block = np.zeros((len(requests), width), dtype=np.int64)
        mask = np.zeros((len(requests), width), dtype=bool)
        for g, r in enumerate(requests):
            block[g, width - len(r.token_ids) :] = r.token_ids
            mask[g, width - len(r.token_ids) :] = True
        count = len(texts)
        return RolloutBatch(
            prompt_index=torch.from_numpy(np.repeat(index, sizes)),
            group_index=torch.from_numpy(np.repeat(np.arange(len(requests)), sizes)),
            prompt_ids=torch.from_numpy(np.repeat(block, sizes, axis=0)),
            prompt_mask=torch.from_numpy(np.repeat(mask, sizes, axis=0)),
            response_ids=torch.from_numpy(np.where(solved, 3, 4)[:, None]),  # one token: 3 right, 4 wrong
            response_mask=torch.ones(count, 1, dtype=torch.bool),
            texts=texts,
            sampling_logprobs=torch.full((count, 1), -0.5),
            truncated=torch.zeros(count, dtype=torch.bool),
        )


def score(batch: RolloutBatch) -> dict:
    batch.reward = (batch.response_ids[:, 0] == 3).float()
    batch.rewards = {"correct": batch.reward.clone()}
    return {"accuracy": float(batch.reward.mean())}


def sampler_config(spec: str):
    """'name' or 'name:key=value,key=value' -> the sampler's schema instance from conf/sampler/<name>.yaml."""
    name, _, overrides = spec.partition(":")
    node = OmegaConf.load(REPO / "conf" / "sampler" / f"{name}.yaml")
    if overrides:
        node = OmegaConf.merge(node, OmegaConf.from_dotlist(overrides.split(",")))
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SAMPLERS.get(name).schema), node))


def simulate(spec: str, seed: int, cfg: SimConfig) -> dict:
    """One run; returns per-step cumulative rollouts and mean solve rate, and the effective-gradient ratio."""
    logits = initial_logits(cfg, np.random.default_rng([seed, 1]))
    default_prompts = [[1, 1000 + i] for i in range(cfg.pool)]
    rollout = SimulatedRollout(logits, default_prompts, cfg, seed)
    context = SamplerContext(cfg.pool, cfg.prompts_per_step, cfg.n, seed)
    sampler = build_sampler(sampler_config(spec), context)
    topic = np.arange(cfg.pool) // cfg.topic_size
    generated = effective = 0
    curve_rollouts, curve_solve = [0], [float(np.mean(1 / (1 + np.exp(-logits))))]
    total, step = cfg.steps * context.budget, 0
    while generated < total and step < 3 * cfg.steps:  # equal rollouts generated, whatever a step costs
        step += 1
        rollout.step = step
        _, batch, metrics = collect_rollouts(sampler, rollout, default_prompts, step, seed * 100_003 + step, score)
        generated += int(metrics.get("rollouts_generated", len(batch)))
        sizes = batch.group_sizes()
        low = torch.full((len(sizes),), 2.0).scatter_reduce(0, batch.group_index, batch.reward, "amin")
        high = torch.full((len(sizes),), -1.0).scatter_reduce(0, batch.group_index, batch.reward, "amax")
        for group in (high > low).nonzero().flatten().tolist():
            first = int((batch.group_index == group).nonzero()[0])
            made_step, seeded, _ = batch.texts[first].split("|")
            fresh = int(made_step) == step
            effective += int(sizes[group]) if fresh else 0
            weight = 1.0 if fresh and seeded == "0" else cfg.off_policy_weight
            gain = cfg.lr * weight * math.sqrt(int(sizes[group]) / cfg.n)
            index = int(batch.prompt_index[first])
            logits += cfg.global_lr * gain
            logits[topic == topic[index]] += cfg.neighbour_lr * gain
            logits[index] += (1 - cfg.neighbour_lr) * gain
        curve_rollouts.append(generated)
        curve_solve.append(float(np.mean(1 / (1 + np.exp(-logits)))))
    return {
        "rollouts": np.array(curve_rollouts),
        "solve": np.array(curve_solve),
        "effective_ratio": effective / max(generated, 1),
    }


def rollouts_to_target(run: dict, target: float) -> float:
    hit = np.nonzero(run["solve"] >= target)[0]
    return float(run["rollouts"][hit[0]]) if len(hit) else math.inf


def _simulate(job: tuple[str, int, SimConfig]) -> dict:
    return simulate(*job)


def run_benchmark(specs: list[str], cfg: SimConfig, workers: int = 1) -> dict[str, dict]:
    jobs = [(spec, seed, cfg) for spec in specs for seed in cfg.seeds]
    if workers > 1:
        from multiprocessing import get_context

        with get_context("spawn").Pool(workers) as pool:
            done = pool.map(_simulate, jobs)
    else:
        done = [_simulate(job) for job in jobs]
    results = {}
    for s, spec in enumerate(specs):
        runs = done[s * len(cfg.seeds) : (s + 1) * len(cfg.seeds)]
        to_target = [rollouts_to_target(run, cfg.target) for run in runs]
        results[spec] = {
            "runs": runs,
            "effective_ratio": float(np.mean([run["effective_ratio"] for run in runs])),
            "rollouts_to_target": float(np.mean(to_target)),  # inf if any seed never reached it
            "reached": sum(math.isfinite(t) for t in to_target),
            "final_solve": float(np.mean([run["solve"][-1] for run in runs])),
        }
    return results


def table(results: dict[str, dict], cfg: SimConfig) -> str:
    base = results.get("uniform")
    lines = [
        f"| sampler | effective-gradient ratio | vs uniform | rollouts to solve rate {cfg.target} "
        f"| vs uniform | final solve rate |",
        "|---|---|---|---|---|---|",
    ]
    for spec, r in results.items():
        eff = f"{r['effective_ratio']:.3f}"
        eff_rel = f"{(r['effective_ratio'] / base['effective_ratio'] - 1) * 100:+.0f}%" if base else ""
        hit = r["rollouts_to_target"]
        hit_text = f"{hit:,.0f}" if math.isfinite(hit) else f"not reached ({r['reached']}/{len(cfg.seeds)} seeds)"
        rel = ""
        if base and math.isfinite(hit) and math.isfinite(base["rollouts_to_target"]):
            rel = f"{(hit / base['rollouts_to_target'] - 1) * 100:+.0f}%"
        lines.append(f"| {spec} | {eff} | {eff_rel} | {hit_text} | {rel} | {r['final_solve']:.3f} |")
    return "\n".join(lines)


def plot(results: dict[str, dict], cfg: SimConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0, cfg.steps * cfg.prompts_per_step * cfg.n, 200)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for spec, r in results.items():
        curves = np.stack([np.interp(grid, run["rollouts"], run["solve"], right=np.nan) for run in r["runs"]])
        ax.plot(grid, np.nanmean(curves, axis=0), label=spec)
    ax.axhline(cfg.target, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("rollouts generated")
    ax.set_ylabel("mean solve rate of the pool")
    ax.set_title(
        f"Simulated learner: {cfg.pool} prompts, budget {cfg.prompts_per_step}x{cfg.n}/step, {len(cfg.seeds)} seeds"
    )
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", default=DEFAULT_SAMPLERS, help="comma list; name:key=value overrides")
    parser.add_argument("--steps", type=int, default=SimConfig.steps)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--pool", type=int, default=SimConfig.pool)
    parser.add_argument("--workers", type=int, default=2, help="processes (one run each)")
    parser.add_argument("--plot", default=str(REPO / "docs" / "samplers_bench.png"), help="'' for none")
    args = parser.parse_args()
    specs, current = [], ""
    for part in args.samplers.split(","):  # re-join "name:a=1,b=2" split on commas
        if "=" in part and ":" not in part and current:
            specs[-1] += "," + part
        else:
            specs.append(part)
        current = specs[-1]
    cfg = SimConfig(steps=args.steps, pool=args.pool, seeds=list(range(args.seeds)))
    started = time.time()
    results = run_benchmark(specs, cfg, args.workers)
    print(table(results, cfg))
    print(f"\n{len(specs)} samplers x {args.seeds} seeds x {args.steps} steps in {time.time() - started:.0f}s")
    if args.plot:
        plot(results, cfg, Path(args.plot))
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
