"""Structured-config schemas for the run-level keys, and validation of the whole composed config.

Each group's yaml names its entry with `name:`; the entry's dataclass schema (next to its code) type-checks the
yaml, and `__post_init__` checks ranges, so a bad value fails at start-up with the key's full name.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


class ConfigError(ValueError):
    """A bad configuration value; the message names the key and what is allowed."""


def check(condition: bool, key: str, message: str) -> None:
    """Raise ConfigError naming `key` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"{key}: {message}")


def in_range(value: float, key: str, low: float, high: float, *, low_open: bool = False) -> None:
    ok = (value > low if low_open else value >= low) and value <= high
    bracket = "(" if low_open else "["
    check(ok, key, f"{value} is out of range {bracket}{low}, {high}]")


@dataclass
class RunSchema:
    """Run-level keys of conf/train.yaml (everything outside the groups)."""

    seed: int = 0  # seeds data order, sampling and init noise; same seed -> same metrics on CPU
    steps: int = 300  # optimizer steps (each: one rollout batch, ppo_epochs x minibatches updates)
    prompts_per_step: int = 16  # prompts selected by the sampler per step (uniform sampler: exactly these)
    n: int = 8  # completions per prompt (group size) for samplers with a fixed n
    ppo_epochs: int = 1  # passes over each rollout batch
    minibatches: int = 1  # optimizer steps per epoch; >1 makes later minibatches off-policy
    eval_every: int = 50  # held-out greedy eval cadence in steps (0: only at start and end)
    eval_size: int = 200  # held-out prompts evaluated (taken from the fixed held-out split)
    checkpoint_every: int = 100  # checkpoint cadence in steps (0: only at the end)
    keep_checkpoints: int = 2  # newest complete checkpoints kept
    samples_per_step: int = 4  # prompt/completion rows written to samples.jsonl per step
    resume: Any = "auto"  # "auto": latest checkpoint in this run dir; a path; or null to start fresh
    resume_allow_changes: list[str] = field(default_factory=list)  # keys/groups a resume may change (README)
    max_skipped_updates: int = 3  # stop after more than this many consecutive non-finite (skipped) updates

    def __post_init__(self) -> None:
        for key in ("steps", "prompts_per_step", "ppo_epochs", "minibatches", "eval_size"):
            check(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        for key in ("eval_every", "checkpoint_every", "samples_per_step", "seed", "max_skipped_updates"):
            check(getattr(self, key) >= 0, key, f"must be >= 0, got {getattr(self, key)}")
        check(self.n >= 1, "n", f"must be >= 1, got {self.n}")
        check(self.seed < 2**63, "seed", f"must be < 2**63 (torch's seed range), got {self.seed}")
        check(self.keep_checkpoints >= 1, "keep_checkpoints", f"must be >= 1, got {self.keep_checkpoints}")


GROUPS = ("algo", "advantage", "sampler", "reward", "model", "data", "rollout", "trainer", "logger")


def _registry(group: str):
    from rlpost import registries

    return registries.REGISTRIES[group]


def compose_train(overrides: list[str]) -> DictConfig:
    """conf/train.yaml composed with `overrides`, outside a Hydra run (for error messages, tests, benchmarks)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def first_non_finite(value: Any, key: str) -> tuple[str, float] | None:
    """(key, value) of the first NaN or infinite float in `value` (nested dicts and lists), else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return key, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for name, item in items:
        found = first_non_finite(item, f"{key}.{name}" if key else str(name))
        if found:
            return found
    return None


def _as_schema(schema: type, node: Any, prefix: str) -> Any:
    """Merge `node` into `schema` and instantiate it, turning OmegaConf/range errors into one-line ConfigErrors.

    Every float of every schema must be finite: NaN or inf in any key (nested ones too) is refused here, before
    the schema's own range checks, whose comparisons a NaN would slip through.
    """
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        found = first_non_finite(OmegaConf.to_container(merged, resolve=True), "")
        if found:
            raise ConfigError(f"{found[0]}: must be a finite number, got {found[1]}")
        return OmegaConf.to_object(merged)
    except ConfigError as error:
        raise ConfigError(f"{prefix}.{error}" if prefix else str(error)) from None
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or ""
        key = f"{prefix}.{key}" if prefix and key else (key or prefix)
        reason = str(error).splitlines()[0]
        if isinstance(error, MissingMandatoryValue):
            reason = f"missing mandatory value; set it, e.g. {key}=..."
        elif "is not a ListConfig" in reason:
            reason = f"expected a list, e.g. {key}=[a,b]"
        elif "is not a DictConfig" in reason or "is not a subclass of" in reason and "Dict" in reason:
            reason = f"expected a mapping, e.g. {key}={{a: 1}}"
        allowed = ", ".join(f.name for f in fields(schema)) if "not in" in reason or "Key" in reason else ""
        hint = f" (allowed keys: {allowed})" if allowed else ""
        raise ConfigError(f"{key}: {reason}{hint}") from None


@dataclass
class Validated:
    """The composed config as typed objects: `run` plus one schema instance per group."""

    run: RunSchema
    groups: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        groups = self.__dict__.get("groups", {})
        if name in groups:
            return groups[name]
        raise AttributeError(name)


def validate(cfg: DictConfig) -> Validated:
    """Type- and range-check every group, then the cross-field rules; raise ConfigError on the first problem."""
    run_keys = {f.name for f in fields(RunSchema)}
    unknown = [k for k in cfg if k not in run_keys and k not in GROUPS and k != "hydra"]
    if unknown:
        allowed = sorted(run_keys | set(GROUPS))
        close = difflib.get_close_matches(str(unknown[0]), allowed, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{unknown[0]}: unknown top-level key{hint}; allowed: {', '.join(allowed)}")
    # interpolations across groups (advantage.weights=${reward.weights}) resolve here, on the whole config: a
    # group merged into its schema alone no longer sees the others
    cfg = OmegaConf.create(
        {
            k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg[k], DictConfig) else cfg[k]
            for k in cfg
            if k != "hydra"
        }
    )
    run = _as_schema(RunSchema, {k: cfg[k] for k in run_keys if k in cfg}, "")
    groups: dict[str, Any] = {}
    for group in GROUPS:
        check(group in cfg and isinstance(cfg[group], DictConfig), group, "missing config group")
        name = cfg[group].get("name")
        registry = _registry(group)
        check(name in registry.names(), f"{group}.name", f"{name!r} is not one of {', '.join(registry.names())}")
        groups[group] = _as_schema(registry.get(name).schema, cfg[group], group)
    validated = Validated(run=run, groups=groups)
    cross_check(validated)
    return validated


def cross_check(cfg: Validated) -> None:
    """Rules that span groups: batch divisibility, group sizes, schedule length, reward names, DAPO's buffer.

    A group's schema may add its own rules on the whole config with a method `cross_check(cfg)` (e.g. a sampler
    whose parameter depends on run.n); they run here, after the shared ones.
    """
    run = cfg.run
    rollouts = run.prompts_per_step * run.n
    check(
        rollouts % run.minibatches == 0,
        "minibatches",
        f"{run.minibatches} does not divide the rollout batch prompts_per_step*n = {rollouts}",
    )
    least = getattr(cfg.advantage, "min_group_size", 1)
    check(least >= 1, "advantage.min_group_size", f"must be >= 1, got {least}")
    check(run.n >= least, "n", f"advantage={cfg.advantage.name} needs n >= {least} completions per prompt, got {run.n}")
    updates = run.steps * run.ppo_epochs * run.minibatches
    warmup = getattr(cfg.trainer, "warmup_steps", 0)
    check(
        warmup <= updates,
        "trainer.warmup_steps",
        f"{warmup} is more than the run's {updates} optimizer steps (steps*ppo_epochs*minibatches): "
        "the learning rate would never reach trainer.lr",
    )
    _check_overlong(cfg)
    _check_reward_weights(cfg)
    for group in GROUPS:
        rule = getattr(cfg.groups[group], "cross_check", None)
        if callable(rule):
            rule(cfg)


def _check_overlong(cfg: Validated) -> None:
    """DAPO's soft punishment starts at max_new_tokens - overlong_buffer tokens: that start must be > 0."""
    buffer, limit = getattr(cfg.reward, "overlong_buffer", 0), cfg.rollout.max_new_tokens
    check(
        buffer < limit,
        "reward.overlong_buffer",
        f"{buffer} must be less than rollout.max_new_tokens={limit} "
        f"(the punishment ramps over the last overlong_buffer tokens of the limit)",
    )


def reward_names(reward: Any) -> list[str]:
    """Names of the rewards a run's reward config produces (batch.rewards keys), known before anything runs."""
    names = list(reward.names()) if callable(getattr(reward, "names", None)) else [reward.name]
    return names + (["overlong"] if getattr(reward, "overlong_buffer", 0) > 0 else [])


def _check_reward_weights(cfg: Validated) -> None:
    """Per-reward weights of a multi-reward advantage (advantage.weights) must name rewards this run produces."""
    weights = getattr(cfg.advantage, "weights", None)
    if not isinstance(weights, dict) or not weights:
        return
    known = reward_names(cfg.reward)
    unknown = sorted(set(weights) - set(known))
    check(
        not unknown,
        "advantage.weights",
        f"{', '.join(unknown)}: not a reward of reward={cfg.reward.name} (its rewards: {', '.join(known)})",
    )


def to_dict(obj: Any) -> Any:
    """A schema instance as plain data (for logging and summary.json)."""
    if is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj
