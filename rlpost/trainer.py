"""The GRPO-family training loop: one readable step, plus eval and checkpoint cadence and exact resume."""

from __future__ import annotations

import json
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from rlpost.advantages import compute_advantages
from rlpost.algos import minibatch_statistics, needs_minibatch_statistics, policy_loss
from rlpost.algos.common import Normalizer
from rlpost.batch import RolloutBatch
from rlpost.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from rlpost.config import ConfigError, Validated, to_dict
from rlpost.data import Prompts, load_splits
from rlpost.engine import ENGINES
from rlpost.logging import PhaseTimer, RunLog, truncate_jsonl
from rlpost.models import load_model, resolve_path
from rlpost.rewards import score
from rlpost.rewards.isolation import RewardFailure
from rlpost.rollout import ROLLOUTS, Policy, Request
from rlpost.rollout.mismatch import mismatch_metrics
from rlpost.samplers import SamplerContext, build_sampler, collect_rollouts


@dataclass
class Parts:
    """Everything a step touches, built once from the config."""

    tokenizer: object
    train: Prompts
    held_out: Prompts
    engine: object
    rollout: object
    sampler: object
    eval_sets: dict[str, Prompts] = field(default_factory=dict)  # extra named eval sets (data.eval_sets)


def build(cfg: Validated) -> Parts:
    torch.manual_seed(cfg.run.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)  # same seed -> same metrics (CPU)
    model, tokenizer = load_model(cfg.model)
    splits = load_splits(cfg.data, tokenizer)
    longest = max(len(ids) for split in splits.values() for ids in split.token_ids) + cfg.rollout.max_new_tokens
    max_positions = getattr(model.config, "max_position_embeddings", longest)
    if longest > max_positions:
        raise ConfigError(
            f"rollout.max_new_tokens: longest prompt + completion is {longest} tokens, "
            f"over the model's context of {max_positions}"
        )
    updates = cfg.run.steps * cfg.run.ppo_epochs * cfg.run.minibatches
    engine = ENGINES.get(cfg.trainer.name).component(
        model,
        cfg.trainer,
        total_steps=updates,
        need_reference=cfg.algo.kl_coef > 0,
        temperature=cfg.rollout.temperature,
    )
    policy = Policy(
        model, tokenizer, resolve_path(cfg.model.path), cfg.model.dtype, longest, cfg.model.trust_remote_code
    )
    rollout = ROLLOUTS.get(cfg.rollout.name).component.from_policy(policy, cfg.rollout)
    context = SamplerContext(
        num_prompts=len(splits["train"]),
        prompts_per_step=cfg.run.prompts_per_step,
        n=cfg.run.n,
        seed=cfg.run.seed,
        rows=tuple(splits["train"].rows),
    )
    eval_sets = {name.removeprefix("eval/"): split for name, split in splits.items() if name.startswith("eval/")}
    sampler = build_sampler(cfg.sampler, context)
    return Parts(tokenizer, splits["train"], splits["eval"], engine, rollout, sampler, eval_sets)


def step_seed(seed: int, step: int) -> int:
    """Sampling seed of one step: resuming at any step replays the same rollouts."""
    return (seed * 1_000_003 + step) % (2**63)


def train_step(step: int, parts: Parts, cfg: Validated) -> tuple[dict, RolloutBatch]:
    """One GRPO-family step: select -> generate -> reward -> advantages -> log-probs -> update."""
    timer = PhaseTimer()

    def reward(batch: RolloutBatch) -> dict:
        with timer("reward"):
            rows = [parts.train.rows[i] for i in batch.prompt_index.tolist()]
            return score(cfg.reward, batch, rows, max_length=cfg.rollout.max_new_tokens)

    with timer("generate"):  # includes reward time; reported separately below
        plan, batch, metrics = collect_rollouts(
            parts.sampler, parts.rollout, parts.train.token_ids, step, step_seed(cfg.run.seed, step), reward
        )
    timer.seconds["time_generate"] -= timer.seconds["time_reward"]
    parts.rollout.sleep()  # vLLM on GPUs frees its KV cache for the update; wakes in sync_weights
    metrics |= compute_advantages(cfg.advantage, batch)
    with timer("logprob"):
        if cfg.run.ppo_epochs > 1 or cfg.run.minibatches > 1:  # later updates are off-policy: freeze pi_old
            batch.old_logprobs = parts.engine.logprobs(batch)
        if batch.replayed is not None and batch.replayed.any():  # replayed rows came from an older policy
            current = batch.old_logprobs if batch.old_logprobs is not None else parts.engine.logprobs(batch)
            batch.old_logprobs = torch.where(batch.replayed[:, None], batch.sampling_logprobs, current)
        if cfg.algo.kl_coef > 0:
            batch.ref_logprobs = parts.engine.logprobs(batch, reference=True)
    with timer("train"):
        metrics |= update_policy(batch, parts.engine, cfg, step)
    with timer("sync"):
        parts.rollout.sync_weights(parts.engine.named_tensors())
    tokens = float(batch.response_mask.sum() + batch.prompt_mask.sum())
    step_seconds = sum(timer.seconds.values())
    metrics |= timer.seconds | {
        "reward_mean": float(batch.reward.mean()),
        "reward_std": float(batch.reward.std()) if len(batch) > 1 else 0.0,
        "response_length": float(batch.response_lengths.float().mean()),
        "rollouts": len(batch),
        "truncated_frac": float(batch.truncated.float().mean()) if batch.truncated is not None else 0.0,
        "tokens_per_second": tokens / max(step_seconds, 1e-9),
        "generate_tokens_per_second": float(batch.response_mask.sum()) / max(timer.seconds["time_generate"], 1e-9),
        "step_seconds": step_seconds,
    }
    return metrics, batch


def update_policy(batch: RolloutBatch, engine, cfg: Validated, step: int) -> dict:
    """ppo_epochs x minibatches optimizer steps, each accumulating gradients over micro-batches."""
    shuffle = torch.Generator().manual_seed(step_seed(cfg.run.seed, step))
    norm_length = cfg.algo.norm_length or cfg.rollout.max_new_tokens
    history: list[dict] = []
    sampled: list[tuple[Tensor, Tensor]] = []  # (sampler, trainer) log-probs of the sampled tokens, first epoch
    for epoch in range(cfg.run.ppo_epochs):
        for minibatch in batch.split(cfg.run.minibatches, shuffle):
            norm = Normalizer.of(minibatch.loss_mask, minibatch.group_index, norm_length, minibatch.advantages)
            minibatch.minibatch_stats = statistics_of_minibatch(minibatch, engine, cfg)  # {} for most algos
            totals: dict[str, float] = {"loss": 0.0}
            parts: list[dict] = []
            finite = True
            for micro in minibatch.micro_batches(cfg.trainer.micro_batch_size, cfg.trainer.micro_batch_tokens):
                logprobs, entropy = engine.forward(micro, entropy_grad=cfg.algo.needs_entropy_grad)
                old = micro.old_logprobs if micro.old_logprobs is not None else logprobs.detach()
                if epoch == 0 and micro.sampling_logprobs is not None:  # old = trainer at the sampling weights
                    sampled.append(_sampled_pairs(micro, old))
                loss, metrics = policy_loss(
                    cfg.algo,
                    logprobs=logprobs,
                    old_logprobs=old,
                    advantages=micro.advantages,
                    mask=micro.loss_mask,
                    norm=norm,
                    group_index=micro.group_index,
                    ref_logprobs=micro.ref_logprobs,
                    entropy=entropy,
                    sampling_logprobs=micro.sampling_logprobs,
                    stats=micro.minibatch_stats,
                )
                if not torch.isfinite(loss):
                    finite = False
                    break
                engine.backward(loss)
                totals["loss"] += float(loss.detach())
                parts.append(metrics)
            update = engine.step(skip=not finite)
            history.append(totals | _mean(parts) | update)
    if not sampled:
        return _mean(history)
    return _mean(history) | mismatch_metrics(*(torch.cat(side) for side in zip(*sampled)))


def _sampled_pairs(micro: RolloutBatch, trainer_logprobs: Tensor) -> tuple[Tensor, Tensor]:
    """[N] sampler and trainer log-probs of the micro-batch's sampled tokens (replayed rows left out: an older
    policy sampled them)."""
    mask = micro.response_mask
    if micro.replayed is not None:
        mask = mask & ~micro.replayed[:, None]
    return micro.sampling_logprobs[mask], trainer_logprobs.detach()[mask]


def statistics_of_minibatch(minibatch: RolloutBatch, engine, cfg: Validated) -> dict[str, torch.Tensor]:
    """What the algo takes over the whole minibatch (Clip-Cov/KL-Cov token choice, BAPO's bounds, DHPO's batch-scope
    entropy weights), from a no-grad forward of the current policy. {} and no forward for every other algo, and when
    the minibatch is one micro-batch (the algo then takes the statistic over the tensors it gets: the minibatch)."""
    if not needs_minibatch_statistics(cfg.algo):
        return {}
    if len(minibatch.micro_batch_rows(cfg.trainer.micro_batch_size, cfg.trainer.micro_batch_tokens)) == 1:
        return {}
    logprobs, entropy = _forward_without_grad(minibatch, engine, cfg)
    return minibatch_statistics(
        cfg.algo,
        logprobs=logprobs,
        old_logprobs=minibatch.old_logprobs if minibatch.old_logprobs is not None else logprobs,
        advantages=minibatch.advantages,
        mask=minibatch.loss_mask,
        entropy=entropy,
    )


@torch.no_grad()
def _forward_without_grad(batch: RolloutBatch, engine, cfg: Validated) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T] log-probs and entropy of the current policy, computed in the step's micro-batches (same memory)."""
    logprobs = torch.zeros(batch.response_ids.shape, dtype=torch.float32, device=batch.response_ids.device)
    entropy = torch.zeros_like(logprobs)
    for rows in batch.micro_batch_rows(cfg.trainer.micro_batch_size, cfg.trainer.micro_batch_tokens):
        values, entropies = engine.forward(batch.select(rows).trim_padding())  # [b, t <= T]
        logprobs[rows, : values.shape[1]] = values.float()
        entropy[rows, : entropies.shape[1]] = entropies.float()
    return logprobs, entropy


def _mean(records: list[dict]) -> dict:
    keys = {key for record in records for key in record}
    return {key: sum(r[key] for r in records if key in r) / sum(1 for r in records if key in r) for key in keys}


@torch.no_grad()
def evaluate(parts: Parts, cfg: Validated, prompts: Prompts | None = None) -> float:
    """Greedy accuracy on the first eval_size held-out prompts (or of `prompts`)."""
    return _greedy_eval(parts, cfg, parts.held_out if prompts is None else prompts)["accuracy"]


def _greedy_eval(parts: Parts, cfg: Validated, prompts: Prompts) -> dict:
    count = min(cfg.run.eval_size, len(prompts))
    requests = [Request(i, prompts.token_ids[i], 1) for i in range(count)]
    batch = parts.rollout.generate(requests, seed=0, greedy=True)
    accuracy = float(score(cfg.reward, batch, prompts.rows[:count])["accuracy"])
    truncated = float(batch.truncated.float().mean()) if batch.truncated is not None else 0.0
    return {
        "accuracy": accuracy,
        "response_length": float(batch.response_lengths.float().mean()),
        "truncated_frac": truncated,
    }


def evaluate_sets(parts: Parts, cfg: Validated) -> dict:
    """Greedy metrics on every named eval set (data.eval_sets), as eval/<set>/<metric>."""
    return {
        f"eval/{name}/{metric}": value
        for name, prompts in parts.eval_sets.items()
        for metric, value in _greedy_eval(parts, cfg, prompts).items()
    }


class RunStopped(RuntimeError):
    """The run cannot go on (reward failures, repeated numeric faults, unwritable checkpoints); says why."""


class Preemption:
    """SIGTERM/SIGUSR1/SIGUSR2 set a flag; the loop checkpoints at the next step boundary and exits cleanly.

    Under hydra/launcher=slurm, submitit has bound SIGUSR2 (sent `signal_delay_s` before the time limit, or by
    `scancel --signal=USR2`) to its requeue: `scontrol requeue` then sys.exit(-1), right in the handler. Ours
    replaces it, and `hand_over()` calls it only once the checkpoint is written.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self) -> None:
        self.requested = 0  # the signal number, once one arrived
        self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def _handle(self, signum, frame) -> None:
        self.requested = signum

    def hand_over(self) -> None:
        """Pass the signal to the handler bound before ours (submitit's requeue under Slurm; it may exit)."""
        handler = self.previous.get(self.requested)
        if callable(handler):
            handler(self.requested, None)


def _resume_dir(cfg: Validated, run_dir: Path) -> Path | None:
    if cfg.run.resume in (None, "", "none", "null", False):
        return None
    if cfg.run.resume == "auto":
        found = list_checkpoints(run_dir / "checkpoints")
        return found[-1] if found else None
    path = Path(str(cfg.run.resume)).expanduser()
    candidates = list_checkpoints(path / "checkpoints") or list_checkpoints(path) or [path]
    if not (candidates[-1] / "trainer_state.json").is_file():
        raise ConfigError(f"resume: no complete checkpoint at {path}")
    return candidates[-1]


def train(cfg: Validated, run_dir: Path, log: RunLog | None = None) -> dict:
    """Run (or resume) training in `run_dir`; return the summary also written to summary.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    parts = build(cfg)
    state, resumed_from = _restore(cfg, run_dir, parts)
    log = log or RunLog(run_dir, cfg.logger, cfg.run.steps)
    preemption = Preemption()
    started = time.time() - state["seconds"]
    skipped_in_a_row = 0
    with log, _stops_on_reward_failure():
        if resumed_from is not None:
            parts.rollout.sync_weights(parts.engine.named_tensors())  # a separate engine starts from model.path
            log.print(f"resumed from {resumed_from} at step {state['step']}")
        else:
            state["eval_history"]["0"] = evaluate(parts, cfg)
            log.metrics({"step": 0, "eval_accuracy": state["eval_history"]["0"]} | evaluate_sets(parts, cfg))
        for step in range(state["step"] + 1, cfg.run.steps + 1):
            try:
                metrics, batch = train_step(step, parts, cfg)
            except RewardFailure as error:
                raise RunStopped(f"step {step}: {error}") from error
            skipped_in_a_row = skipped_in_a_row + 1 if metrics.get("skipped_update", 0) > 0 else 0
            if skipped_in_a_row > cfg.run.max_skipped_updates:
                raise RunStopped(
                    f"step {step}: {skipped_in_a_row} consecutive updates skipped for non-finite loss "
                    f"or gradient; last good checkpoint: {_last_good(run_dir)}"
                )
            if step == cfg.run.steps or (cfg.run.eval_every and step % cfg.run.eval_every == 0):
                metrics["eval_accuracy"] = state["eval_history"][str(step)] = evaluate(parts, cfg)
                metrics |= evaluate_sets(parts, cfg)
            log.metrics({"step": step, **dict(sorted(metrics.items()))})
            log.samples(step, _sample_rows(batch, parts, cfg.run.samples_per_step))
            last = step == cfg.run.steps
            if last or preemption.requested or (cfg.run.checkpoint_every and step % cfg.run.checkpoint_every == 0):
                state.update(step=step, seconds=time.time() - started)
                _checkpoint(cfg, run_dir, parts, state)
            if preemption.requested and not last:
                log.print(f"preempted: checkpoint written at step {step} in {run_dir}; rerun the command to resume")
                preemption.hand_over()  # under Slurm: submitit requeues the job and exits here
                return {"preempted": True, "step": step}
        summary = _summary(cfg, run_dir, state, time.time() - started)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.print(
            f"run dir {run_dir}: held-out accuracy {summary['eval_accuracy_start']:.3f} -> "
            f"{summary['eval_accuracy_end']:.3f} in {summary['seconds']:.0f}s"
        )
    return summary


@contextmanager
def _stops_on_reward_failure():
    """Too many failing reward calls (in training or eval) stop the run with a message instead of a crash."""
    try:
        yield
    except RewardFailure as error:
        raise RunStopped(str(error)) from error


def _restore(cfg: Validated, run_dir: Path, parts: Parts) -> tuple[dict, Path | None]:
    """Load the checkpoint to resume from (if any) and cut metrics/samples back to it; else start clean."""
    resume_from = _resume_dir(cfg, run_dir)
    state = {"step": 0, "eval_history": {}, "seconds": 0.0}
    if resume_from is not None:
        state = load_checkpoint(resume_from, parts.engine, parts.sampler)
    for name in ("metrics.jsonl", "samples.jsonl"):
        if resume_from is not None:
            truncate_jsonl(run_dir / name, state["step"])
        else:
            (run_dir / name).unlink(missing_ok=True)
    return state, resume_from


def _last_good(run_dir: Path) -> str:
    found = list_checkpoints(run_dir / "checkpoints")
    return str(found[-1]) if found else "none"


def _checkpoint(cfg: Validated, run_dir: Path, parts: Parts, state: dict) -> None:
    """Write checkpoints/step_N atomically; an unwritable disk stops the run naming the last good checkpoint."""
    step = state["step"]
    try:
        save_checkpoint(
            run_dir / "checkpoints",
            step,
            parts.engine,
            parts.tokenizer,
            parts.sampler.state_dict(),
            state,
            cfg.run.keep_checkpoints,
        )
    except OSError as error:
        raise RunStopped(
            f"cannot write checkpoint step_{step} ({error.strerror or error}); "
            f"last good checkpoint: {_last_good(run_dir)}"
        ) from error


def _sample_rows(batch: RolloutBatch, parts: Parts, count: int) -> list[dict]:
    rows = []
    for b in range(min(count, len(batch))):
        index = int(batch.prompt_index[b])
        rows.append(
            {
                "prompt": parts.train.rows[index]["question"],
                "answer": parts.train.rows[index]["answer"],
                "completion": batch.texts[b],
                "reward": float(batch.reward[b]),
                "advantage": float(batch.advantages[b].flatten()[0]),
            }
        )
    return rows


def _summary(cfg: Validated, run_dir: Path, state: dict, seconds: float) -> dict:
    history = state["eval_history"]
    steps = sorted(history, key=int)
    return {
        "run_dir": str(run_dir),
        "steps": cfg.run.steps,
        "seconds": round(seconds, 1),
        "eval_accuracy_start": history.get("0", history[steps[0]]) if steps else None,
        "eval_accuracy_end": history[steps[-1]] if steps else None,
        "eval_history": history,
        "config": {"run": to_dict(cfg.run)} | {g: to_dict(v) for g, v in cfg.groups.items()},
    }
