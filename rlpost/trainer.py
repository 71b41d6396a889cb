"""The GRPO-family training loop: one readable step, plus eval and checkpoint cadence and exact resume."""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from rlpost import distributed
from rlpost.advantages import compute_advantages
from rlpost.algos import minibatch_statistics, needs_minibatch_statistics, policy_loss
from rlpost.algos.common import Normalizer
from rlpost.batch import RolloutBatch
from rlpost.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    read_config,
    save_checkpoint,
)
from rlpost.config import ConfigError, Validated
from rlpost.data import Prompts, load_splits
from rlpost.engine import ENGINES
from rlpost.engine.precision import (
    memory_metrics,
    out_of_memory_message,
    rank_device,
    reset_peak_memory,
    resolve_device,
    resolve_precision,
)
from rlpost.logging import PhaseTimer, RunLog, SilentLog, truncate_jsonl
from rlpost.models import load_model, resolve_path
from rlpost.resume import config_record, resume_changes
from rlpost.rewards import score
from rlpost.rewards.isolation import RewardFailure
from rlpost.rollout import ROLLOUTS, Policy, Request
from rlpost.rollout.mismatch import metrics_of_sums, mismatch_sums
from rlpost.rollout.sharded import ShardedRollout
from rlpost.rundir import Launch, record_launch
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
    precision = resolve_precision(cfg.trainer.precision, rank_device(resolve_device(cfg.trainer.device)))
    engine_class = ENGINES.get(cfg.trainer.name).component
    with engine_class.loading_model(cfg.trainer, precision):  # ZeRO-3: parameters are partitioned as they load
        model, tokenizer = load_model(cfg.model, dtype=precision.param_dtype, device=precision.device)
    splits = load_splits(cfg.data, tokenizer, cfg.model.chat_template_kwargs)
    longest = max(len(ids) for split in splits.values() for ids in split.token_ids) + cfg.rollout.max_new_tokens
    max_positions = getattr(model.config, "max_position_embeddings", longest)
    if longest > max_positions:
        raise ConfigError(
            f"rollout.max_new_tokens: longest prompt + completion is {longest} tokens, "
            f"over the model's context of {max_positions}"
        )
    updates = cfg.run.steps * cfg.run.ppo_epochs * cfg.run.minibatches
    trainer_cfg = cfg.trainer
    if getattr(trainer_cfg, "gradient_checkpointing", False) is None:  # null: the model preset's recommendation
        trainer_cfg = dataclasses.replace(trainer_cfg, gradient_checkpointing=cfg.model.gradient_checkpointing)
    engine = engine_class(
        model,
        trainer_cfg,
        total_steps=updates,
        need_reference=cfg.algo.kl_coef > 0,
        temperature=cfg.rollout.temperature,
        precision=precision,
    )
    policy = Policy(
        model,
        tokenizer,
        "" if cfg.model.init == "random" else resolve_path(cfg.model.path),  # init=random: no files to load
        cfg.model.dtype,
        longest,
        cfg.model.trust_remote_code,
        precision=precision,
    )
    rollout = ROLLOUTS.get(cfg.rollout.name).component.from_policy(policy, cfg.rollout)
    if distributed.world_size() > 1:  # each rank generates a share; every rank sees the whole batch
        rollout = ShardedRollout(rollout, lockstep=engine.lockstep)
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
    loss_sum, parts = 0.0, []
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
            return {"loss": float("nan")} | _mean(parts), False
        engine.backward(loss * 0.0 if padding else loss, boundary=index == count - 1)
        if not padding:
            loss_sum += float(loss.detach())
            parts.append(metrics)
    return {"loss": distributed.sum_float(loss_sum)} | _mean(parts), True


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


class RunStopped(RuntimeError):
    """The run cannot go on (reward failures, repeated numeric faults, unwritable checkpoints); says why."""


class Preemption:
    """SIGTERM/SIGUSR1/SIGUSR2 set a flag; the loop checkpoints at the next step boundary and exits cleanly.

    Under hydra/launcher=slurm, submitit has bound SIGUSR2 (sent `signal_delay_s` before the time limit, or by
    `scancel --signal=USR2`) to its requeue: `scontrol requeue` then sys.exit(-1), right in the handler. Ours
    replaces it, and `hand_over()` calls it only once the checkpoint is written.
    Used as `with Preemption() as preemption:`; the handlers installed before are put back on exit.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self) -> None:
        self.requested = 0  # the signal number, once one arrived
        self.previous: dict = {}

    def __enter__(self) -> Preemption:
        self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: installed outside Python

    def _handle(self, signum, frame) -> None:
        self.requested = signum

    def agree(self) -> bool:
        """Whether some rank got a signal; a rank that did not then stops too (with nothing to hand over)."""
        if distributed.any_true(bool(self.requested)) and not self.requested:
            self.requested = -1
        return bool(self.requested)

    def hand_over(self) -> None:
        """Pass the signal to the handler bound before ours (submitit's requeue under Slurm; it may exit)."""
        handler = self.previous.get(self.requested)
        if callable(handler):
            handler(self.requested, None)


def _resume_candidates(cfg: Validated, run_dir: Path) -> list[Path]:
    """Checkpoints to try, newest first: every complete one for resume=auto, the one named by resume=<path>."""
    if cfg.run.resume in (None, "", "none", "null", False):
        return []
    if cfg.run.resume == "auto":
        return list_checkpoints(run_dir / "checkpoints")[::-1]
    path = Path(str(cfg.run.resume)).expanduser()
    candidates = list_checkpoints(path / "checkpoints") or list_checkpoints(path) or [path]
    if not (candidates[-1] / "trainer_state.json").is_file():
        raise ConfigError(f"resume: no complete checkpoint at {path}")
    return candidates[-1:]


@dataclass
class Start:
    """Where a run starts: the trainer state, the checkpoint it resumes from (None: fresh), the changes applied."""

    state: dict
    checkpoint: Path | None = None
    changes: dict = field(default_factory=dict)


def train(cfg: Validated, run_dir: Path, log: RunLog | None = None, launch: Launch | None = None) -> dict:
    """Run (or resume) training in `run_dir`; return the summary also written to summary.json.

    Everything that can refuse the command (config, checkpoint, resume rules) is checked before anything in
    `run_dir` is written; `launch` (Hydra's choices, overrides and .hydra files) is recorded only then.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    launch = launch or Launch()
    parts = build(cfg)
    log = log or (RunLog(run_dir, cfg.logger, cfg.run.steps) if distributed.is_main() else SilentLog())
    start = _restore(cfg, run_dir, parts, log.print)
    state = start.state
    if start.changes:
        state["resumes"] = state.get("resumes", []) + [{"step": state["step"], "changes": start.changes}]
    if distributed.is_main():  # rank 0 records the launch (.hydra files, run_info.json)
        record_launch(run_dir, launch, step=state["step"], checkpoint=start.checkpoint, changes=start.changes)
    started = time.time() - state["seconds"]
    skipped_in_a_row = 0
    position = {"step": state["step"]}  # where an out-of-memory error happened
    oom = _stops_on_out_of_memory(parts, cfg, run_dir, position)
    with Preemption() as preemption, log, _stops_on_reward_failure(), oom:
        log.print(launch.describe())
        if start.checkpoint is not None:
            parts.rollout.sync_weights(parts.engine.named_tensors())  # a separate engine starts from model.path
            applied = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in start.changes.items())
            log.print(
                f"resumed from {start.checkpoint} at step {state['step']}" + (f"; now {applied}" if applied else "")
            )
        else:
            state["eval_history"]["0"] = evaluate(parts, cfg)
            log.metrics({"step": 0, "eval_accuracy": state["eval_history"]["0"]} | evaluate_sets(parts, cfg))
        for step in range(state["step"] + 1, cfg.run.steps + 1):
            position["step"] = step
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
            preemption.agree()  # a signal may reach one rank only: every rank stops at this step
            if last or preemption.requested or (cfg.run.checkpoint_every and step % cfg.run.checkpoint_every == 0):
                state.update(step=step, seconds=time.time() - started)
                _checkpoint(cfg, run_dir, parts, state)
            if preemption.requested and not last:
                log.print(f"preempted: checkpoint written at step {step} in {run_dir}; rerun the command to resume")
                preemption.hand_over()  # under Slurm: submitit requeues the job and exits here
                return {"preempted": True, "step": step}
        summary = _summary(cfg, run_dir, state, time.time() - started, launch)
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
        message = out_of_memory_message(position["step"], phase, parts.engine.cfg, cfg.rollout, _last_good(run_dir))
        raise RunStopped(message) from error


def _restore(cfg: Validated, run_dir: Path, parts: Parts, say) -> Start:
    """Load the checkpoint to resume from (if any) and cut metrics/samples back to it; else start clean.

    Refuses (ConfigError, one line) before changing anything: a config change the checkpoint cannot take, a run
    already at its last step, a damaged checkpoint named by resume=<path>, a fresh start over a run's checkpoints.
    resume=auto passes over damaged checkpoints to the newest intact one and says so.
    """
    candidates = _resume_candidates(cfg, run_dir)
    if not candidates:
        existing = list_checkpoints(run_dir / "checkpoints")
        if existing:  # a fresh start here would mix with (and prune) that run's checkpoints
            raise ConfigError(
                f"resume=null: {run_dir} already holds a run (checkpoints up to {existing[-1].name}); "
                f"give a new hydra.run.dir for a fresh run, or resume=auto to continue this one"
            )
        for name in ("metrics.jsonl", "samples.jsonl") if distributed.is_main() else ():  # a run killed early
            (run_dir / name).unlink(missing_ok=True)
        return Start({"step": 0, "eval_history": {}, "seconds": 0.0})
    damaged: list[str] = []
    for directory in candidates:
        try:
            return _resume_from(directory, cfg, run_dir, parts, say, damaged)
        except CheckpointError as error:
            if cfg.run.resume != "auto":
                raise ConfigError(f"resume: {error}") from None
            damaged.append(f"{directory.name} ({error})")
    raise ConfigError(
        f"resume=auto: no intact checkpoint in {run_dir / 'checkpoints'}: {'; '.join(damaged)}; "
        f"resume=null with a new hydra.run.dir starts fresh"
    )


def _resume_from(directory: Path, cfg: Validated, run_dir: Path, parts: Parts, say, damaged: list[str]) -> Start:
    """Resume from `directory` if the command allows it; CheckpointError when one of its files is damaged."""
    recorded = read_config(directory)
    engine_keys = tuple(getattr(parts.engine, "RESUME_KEYS", ()))
    changes = resume_changes(recorded, config_record(cfg), engine_keys, f"checkpoint {directory}")
    state, sampler = load_checkpoint(directory, parts.engine, parts.sampler)  # intact, or CheckpointError
    if state["step"] >= cfg.run.steps:  # only now: a damaged final checkpoint falls back and replays the last steps
        raise ConfigError(
            f"steps={cfg.run.steps}: {directory} is at step {state['step']}, so this run is already done; "
            f"raise steps to train on (e.g. steps={state['step'] + 100})"
        )
    parts.sampler = sampler
    if damaged:
        say(f"resume=auto: damaged {', '.join(damaged)}; resuming from {directory.name} instead")
    for name in ("metrics.jsonl", "samples.jsonl") if distributed.is_main() else ():
        truncate_jsonl(run_dir / name, state["step"])
    return Start(state, directory, changes)


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
            config_record(cfg),
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


def _summary(cfg: Validated, run_dir: Path, state: dict, seconds: float, launch: Launch) -> dict:
    history = state["eval_history"]
    steps = sorted(history, key=int)
    return {
        "run_dir": str(run_dir),
        "steps": cfg.run.steps,
        "seconds": round(seconds, 1),
        "eval_accuracy_start": history.get("0", history[steps[0]]) if steps else None,
        "eval_accuracy_end": history[steps[-1]] if steps else None,
        "eval_history": history,
        "choices": launch.choices,  # group -> option chosen (algo=dapo and algo=dr_grpo both have name: grpo)
        "overrides": launch.overrides,
        "resumes": state.get("resumes", []),  # config changes applied at each resume: {"step", "changes"}
        "config": config_record(cfg),
    }
