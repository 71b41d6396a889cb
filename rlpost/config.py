"""Structured-config schemas for the run-level keys, and validation of the whole composed config.

Each group's yaml names its entry with `name:`; the entry's dataclass schema (next to its code) type-checks the
yaml, and `__post_init__` checks ranges, so a bad value fails at start-up with the key's full name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException


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
        check(self.keep_checkpoints >= 1, "keep_checkpoints", f"must be >= 1, got {self.keep_checkpoints}")


GROUPS = ("algo", "advantage", "sampler", "reward", "model", "data", "rollout", "trainer", "logger")


def _registry(group: str):
    from rlpost import registries

    return registries.REGISTRIES[group]


def _as_schema(schema: type, node: Any, prefix: str) -> Any:
    """Merge `node` into `schema` and instantiate it, turning OmegaConf/range errors into one-line ConfigErrors."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        return OmegaConf.to_object(merged)
    except ConfigError as error:
        raise ConfigError(f"{prefix}.{error}" if prefix else str(error)) from None
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or ""
        key = f"{prefix}.{key}" if prefix and key else (key or prefix)
        reason = str(error).splitlines()[0]
        if isinstance(error, MissingMandatoryValue):
            reason = f"missing mandatory value; set it, e.g. {key}=..."
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
        raise ConfigError(f"{unknown[0]}: unknown top-level key (allowed: {', '.join(sorted(run_keys | set(GROUPS)))})")
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
    """Rules that span groups: batch divisibility, group sizes, context length."""
    run = cfg.run
    rollouts = run.prompts_per_step * run.n
    check(
        rollouts % run.minibatches == 0,
        "minibatches",
        f"{run.minibatches} does not divide the rollout batch prompts_per_step*n = {rollouts}",
    )
    least = getattr(cfg.advantage, "min_group_size", 1)
    check(run.n >= least, "n", f"advantage={cfg.advantage.name} needs n >= {least} completions per prompt, got {run.n}")


def to_dict(obj: Any) -> Any:
    """A schema instance as plain data (for logging and summary.json)."""
    if is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj
