"""A run's parts, built once from the validated config: first what needs no model (tokenizer, rendered prompts,
prompt sampler: where a run starts is decided on these, rlpost.resume), then the model with its training engine
and rollout engine."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from rlpost import distributed
from rlpost.config import ConfigError, Validated
from rlpost.data import Prompts, load_splits
from rlpost.engine import ENGINES
from rlpost.engine.precision import rank_device, resolve_device, resolve_precision
from rlpost.models import load_model, load_tokenizer, resolve_path
from rlpost.rollout import ROLLOUTS, Policy
from rlpost.rollout.sharded import ShardedRollout
from rlpost.samplers import SamplerContext, build_sampler


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


@dataclass
class Inputs:
    """What a run is built from before any model is loaded: the tokenizer, the rendered splits, the prompt sampler."""

    tokenizer: object
    splits: dict[str, Prompts]
    sampler: object


def prepare(cfg: Validated) -> Inputs:
    """Tokenizer, prompts and sampler: enough to decide where a run starts (rlpost.resume) without the model."""
    tokenizer = load_tokenizer(cfg.model)
    splits = load_splits(cfg.data, tokenizer, cfg.model.chat_template_kwargs)
    context = SamplerContext(
        num_prompts=len(splits["train"]),
        prompts_per_step=cfg.run.prompts_per_step,
        n=cfg.run.n,
        seed=cfg.run.seed,
        rows=tuple(splits["train"].rows),
    )
    return Inputs(tokenizer, splits, build_sampler(cfg.sampler, context))


def build(cfg: Validated, inputs: Inputs | None = None) -> Parts:
    """The model, its training engine and rollout engine over `inputs` (prepared here when not given)."""
    inputs = inputs or prepare(cfg)
    torch.manual_seed(cfg.run.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)  # same seed -> same metrics (CPU)
    precision = resolve_precision(cfg.trainer.precision, rank_device(resolve_device(cfg.trainer.device)))
    engine_class = ENGINES.get(cfg.trainer.name).component
    with engine_class.loading_model(cfg.trainer, precision):  # ZeRO-3: parameters are partitioned as they load
        model, tokenizer = load_model(
            cfg.model, dtype=precision.param_dtype, device=precision.device, tokenizer=inputs.tokenizer
        )
    longest = _longest_sequence(cfg, inputs.splits, model)
    trainer_cfg = cfg.trainer
    if getattr(trainer_cfg, "gradient_checkpointing", False) is None:  # null: the model preset's recommendation
        trainer_cfg = dataclasses.replace(trainer_cfg, gradient_checkpointing=cfg.model.gradient_checkpointing)
    engine = engine_class(
        model,
        trainer_cfg,
        total_steps=cfg.run.steps * cfg.run.ppo_epochs * cfg.run.minibatches,  # optimizer updates
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
    splits = inputs.splits
    eval_sets = {name.removeprefix("eval/"): split for name, split in splits.items() if name.startswith("eval/")}
    return Parts(tokenizer, splits["train"], splits["eval"], engine, rollout, inputs.sampler, eval_sets)


def _longest_sequence(cfg: Validated, splits: dict[str, Prompts], model) -> int:
    """Tokens of the longest prompt + max_new_tokens; ConfigError when over the model's context."""
    longest = max(len(ids) for split in splits.values() for ids in split.token_ids) + cfg.rollout.max_new_tokens
    max_positions = getattr(model.config, "max_position_embeddings", longest)
    if longest > max_positions:
        raise ConfigError(
            f"rollout.max_new_tokens: longest prompt + completion is {longest} tokens, "
            f"over the model's context of {max_positions}"
        )
    return longest
