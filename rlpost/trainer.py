"""The GRPO-family training loop: one readable step (train_step -> update_policy -> accumulate_gradients), the
greedy eval, and the run around it (eval and checkpoint cadence, preemption). What the run is built from is
rlpost/parts.py; where it starts and how it resumes, rlpost/resume.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from rlpost import distributed
from rlpost.advantages import compute_advantages
from rlpost.algos import minibatch_statistics, needs_minibatch_statistics, policy_loss
from rlpost.algos.common import Normalizer
from rlpost.batch import RolloutBatch
from rlpost.checkpoint import last_checkpoint
from rlpost.config import Validated
from rlpost.data import Prompts
from rlpost.engine import ENGINES
from rlpost.engine.precision import memory_metrics, out_of_memory_message, reset_peak_memory
from rlpost.launch import Preemption, RunStopped
from rlpost.logging import PhaseTimer, RunLog, SilentLog, sample_rows
from rlpost.parts import Parts, build, prepare
from rlpost.resume import Start, config_record, describe, plan_start, reset_logs, restore, write_checkpoint
from rlpost.rewards import score
from rlpost.rewards.isolation import RewardFailure
from rlpost.rollout import Request
from rlpost.rollout.mismatch import metrics_of_sums, mismatch_sums
from rlpost.rundir import Launch, record_launch, run_summary
from rlpost.samplers import collect_rollouts


def step_seed(seed: int, step: int) -> int:
    """Sampling seed of one step: resuming at any step replays the same rollouts."""
    return (seed * 1_000_003 + step) % (2**63)


def train_step(step: int, parts: Parts, cfg: Validated) -> tuple[dict, RolloutBatch]:
    """One GRPO-family step: select -> generate -> reward -> advantages -> log-probs -> update."""
    timer = PhaseTimer()
    reset_peak_memory(parts.engine.device)

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
    batch = batch.to(parts.engine.device)  # rewards and samplers read it on the CPU; the engine on its device
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
    metrics |= (
        timer.seconds
        | {
            "reward_mean": float(batch.reward.mean()),
            "reward_std": float(batch.reward.std()) if len(batch) > 1 else 0.0,
            "response_length": float(batch.response_lengths.float().mean()),
            "rollouts": len(batch),
            "truncated_frac": float(batch.truncated.float().mean()) if batch.truncated is not None else 0.0,
            "tokens_per_second": tokens / max(step_seconds, 1e-9),
            "generate_tokens_per_second": float(batch.response_mask.sum()) / max(timer.seconds["time_generate"], 1e-9),
            "step_seconds": step_seconds,
        }
        | memory_metrics(parts.engine.device)
    )
    return metrics, batch.to("cpu")


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
            totals, finite = accumulate_gradients(minibatch, norm, engine, cfg, sampled if epoch == 0 else None)
            history.append(totals | engine.step(skip=not finite))
    local = mismatch_sums(*(torch.cat(side) for side in zip(*sampled))) if sampled else (0.0, 0.0, 0.0, 0)
    history[-1] |= metrics_of_sums(distributed.all_gather_objects(local))  # over every rank's sampled tokens
    return distributed.mean_metrics(_mean(history))


def accumulate_gradients(
    minibatch: RolloutBatch, norm: Normalizer, engine, cfg: Validated, sampled: list | None = None
) -> tuple[dict, bool]:
    """Backward of the minibatch loss, micro-batch by micro-batch; (loss and algo metrics, all losses finite).

    `sampled` (first epoch) collects (sampler, trainer) log-probs of the sampled tokens for the mismatch metrics.

    With several ranks each rank takes its own whole groups of the minibatch (the loss keeps the minibatch's
    denominators, so the ranks' losses add up to the minibatch loss), and every rank runs as many passes: a rank
    with fewer micro-batches joins the collectives with a zero loss.
    """
    mine = minibatch.shard(distributed.rank(), distributed.world_size())
    micros = mine.micro_batches(cfg.trainer.micro_batch_size, cfg.trainer.micro_batch_tokens)
    count = distributed.max_int(len(micros))
    loss_sum, micro_metrics = 0.0, []
    for index in range(count):
        padding = index >= len(micros)
        micro = minibatch.select(torch.tensor([0])).trim_padding() if padding else micros[index]
        logprobs, entropy = engine.forward(micro, entropy_grad=cfg.algo.needs_entropy_grad)
        old = micro.old_logprobs if micro.old_logprobs is not None else logprobs.detach()
        if sampled is not None and not padding and micro.sampling_logprobs is not None:
            sampled.append(_sampled_pairs(micro, old))  # old = the trainer at the sampling weights
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
        if not distributed.all_true(bool(torch.isfinite(loss))):  # every rank skips the update together
            return {"loss": float("nan")} | _mean(micro_metrics), False
        engine.backward(loss * 0.0 if padding else loss, boundary=index == count - 1)
        if not padding:
            loss_sum += float(loss.detach())
            micro_metrics.append(metrics)
    return {"loss": distributed.sum_float(loss_sum)} | _mean(micro_metrics), True


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
    micro_batches = len(minibatch.micro_batch_rows(cfg.trainer.micro_batch_size, cfg.trainer.micro_batch_tokens))
    if micro_batches == 1 and distributed.world_size() == 1:  # ranks each hold a part: they need the pre-pass
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


def train(
    cfg: Validated,
    run_dir: Path,
    log: RunLog | None = None,
    launch: Launch | None = None,
    on_accept: Callable[[], None] | None = None,
) -> dict:
    """Run (or resume) training in `run_dir`; return the summary also written to summary.json.

    Every refusal comes before `run_dir` is touched: where the run starts is decided before the model is loaded
    (rlpost.resume.plan_start) and the checkpoint is loaded before anything is written. Only then is the command
    accepted: `on_accept` runs (status.json), the launch is recorded (.hydra files, run_info.json), logs cut back.
    """
    launch = launch or Launch()
    inputs = prepare(cfg)
    start = plan_start(cfg, run_dir, inputs.sampler, ENGINES.get(cfg.trainer.name).component)
    parts = build(cfg, inputs)
    start = restore(start, cfg, run_dir, parts)
    log = _accept(cfg, run_dir, start, launch, log, on_accept)
    state, started = start.state, time.time() - start.state["seconds"]
    position = {"step": start.step}  # where an out-of-memory error happened
    oom = _stops_on_out_of_memory(parts, cfg, run_dir, position)
    try:
        with Preemption() as preemption, log, _stops_on_reward_failure(), oom:
            _begin(parts, cfg, start, launch, log)
            skipped_in_a_row = 0
            for step in range(start.step + 1, cfg.run.steps + 1):
                position["step"] = step
                skipped_in_a_row = _train_and_log(step, parts, cfg, run_dir, state, log, skipped_in_a_row)
                last = step == cfg.run.steps
                preemption.agree()  # a signal may reach one rank only: every rank stops at this step
                if last or preemption.requested or (cfg.run.checkpoint_every and step % cfg.run.checkpoint_every == 0):
                    state.update(step=step, seconds=time.time() - started)
                    write_checkpoint(cfg, run_dir, parts, state)
                if preemption.requested and not last:
                    log.print(f"preempted: checkpoint written at step {step} in {run_dir}; rerun the command to resume")
                    preemption.hand_over()  # under Slurm: submitit requeues the job and exits here
                    return {"preempted": True, "step": step}
            return _finish(cfg, run_dir, state, time.time() - started, launch, log)
    finally:
        parts.rollout.close()  # a multirun starts the next job's engine in this process


def _accept(
    cfg: Validated, run_dir: Path, start: Start, launch: Launch, log, on_accept: Callable[[], None] | None
) -> RunLog | SilentLog:
    """The command passed every check: record it (status, .hydra files, run_info.json, the changes applied), cut
    metrics and samples back to the resumed step, and open the run's log."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if on_accept is not None:
        on_accept()
    if start.changes:
        start.state["resumes"] = start.state.get("resumes", []) + [{"step": start.step, "changes": start.changes}]
    if distributed.is_main():  # rank 0 records the launch
        record_launch(run_dir, launch, step=start.step, checkpoint=start.checkpoint, changes=start.changes)
    reset_logs(start, run_dir)
    return log or (RunLog(run_dir, cfg.logger, cfg.run.steps) if distributed.is_main() else SilentLog())


def _begin(parts: Parts, cfg: Validated, start: Start, launch: Launch, log) -> None:
    """Say what runs; a resumed run hands its restored weights to the rollout, a fresh one evaluates step 0."""
    log.print(launch.describe())
    for line in describe(start):
        log.print(line)
    if start.checkpoint is not None:
        parts.rollout.sync_weights(parts.engine.named_tensors())  # a separate engine starts from model.path
    else:
        start.state["eval_history"]["0"] = evaluate(parts, cfg)
        log.metrics({"step": 0, "eval_accuracy": start.state["eval_history"]["0"]} | evaluate_sets(parts, cfg))


def _train_and_log(
    step: int, parts: Parts, cfg: Validated, run_dir: Path, state: dict, log, skipped_in_a_row: int
) -> int:
    """One training step, its eval when due, its metrics and samples logged; returns the updates skipped in a row."""
    try:
        metrics, batch = train_step(step, parts, cfg)
    except RewardFailure as error:
        raise RunStopped(f"step {step}: {error}") from error
    skipped_in_a_row = skipped_in_a_row + 1 if metrics.get("skipped_update", 0) > 0 else 0
    if skipped_in_a_row > cfg.run.max_skipped_updates:
        raise RunStopped(
            f"step {step}: {skipped_in_a_row} consecutive updates skipped for non-finite loss "
            f"or gradient; last good checkpoint: {last_checkpoint(run_dir)}"
        )
    if step == cfg.run.steps or (cfg.run.eval_every and step % cfg.run.eval_every == 0):
        metrics["eval_accuracy"] = state["eval_history"][str(step)] = evaluate(parts, cfg)
        metrics |= evaluate_sets(parts, cfg)
    log.metrics({"step": step, **dict(sorted(metrics.items()))})
    log.samples(step, sample_rows(batch, parts.train.rows, cfg.run.samples_per_step))
    return skipped_in_a_row


def _finish(cfg: Validated, run_dir: Path, state: dict, seconds: float, launch: Launch, log) -> dict:
    """Write summary.json (rank 0) and say how the held-out accuracy moved."""
    summary = run_summary(run_dir, config_record(cfg), state, seconds, launch)
    if distributed.is_main():
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


@contextmanager
def _stops_on_out_of_memory(parts: Parts, cfg: Validated, run_dir: Path, position: dict):
    """CUDA out of memory stops the run with one line: step, phase, the keys that reduce memory, last checkpoint.

    Checkpoints are written atomically, so the last complete one is intact whatever phase ran out.
    """
    try:
        yield
    except torch.OutOfMemoryError as error:
        phase = getattr(error, "phase", "eval or checkpoint")  # every phase of train_step is named by its timer
        last = last_checkpoint(run_dir)
        message = out_of_memory_message(position["step"], phase, parts.engine.cfg, cfg.rollout, last)
        raise RunStopped(message) from error
