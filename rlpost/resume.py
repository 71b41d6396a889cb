"""Where a run starts and what a resumed run may change; checkpoint writing at the cadence the loop asks for.

`plan_start` decides where a command starts from the run dir's checkpoints alone (their config.yaml,
trainer_state.json and state.pt, and the headers of their weight files), before any model is loaded and before
anything in the run dir is written: every refusal of a resume happens there, in one line. `restore` then loads the
chosen checkpoint into the built engine and sampler.

What a resume may change: the config recorded in the checkpoint is compared with the new command's, key by key. A
key either takes effect for real from the resumed step on (the loop or the engine reads it afresh: the run-level
cadence keys, `steps`, logger keys, the engine's RESUME_KEYS such as trainer.lr) or the resume is refused with one
line naming the keys; `resume_allow_changes=[key, group, ...]` continues with the new values of those keys anyway.
Either way the new value is the one used and recorded, never the checkpoint's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlpost import distributed
from rlpost.checkpoint import (
    CheckpointError,
    last_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_config,
    read_state,
    read_trainer_state,
    save_checkpoint,
)
from rlpost.config import ConfigError, Validated, to_dict
from rlpost.launch import RunStopped
from rlpost.logging import truncate_jsonl

# run-level keys the loop reads afresh every step
RUN_KEYS_APPLIED = (
    "steps",
    "eval_every",
    "checkpoint_every",
    "keep_checkpoints",
    "samples_per_step",
    "max_skipped_updates",
)
GROUPS_APPLIED = ("logger",)  # where metrics go besides metrics.jsonl: no effect on training
NOT_COMPARED = ("resume", "resume_allow_changes")  # how to resume, not what is trained
ABSENT = "<absent>"


def config_record(cfg: Validated) -> dict:
    """The validated config as plain data: {"run": {...}, "<group>": {...}} (checkpoints, summary.json)."""
    return {"run": to_dict(cfg.run)} | {group: to_dict(value) for group, value in cfg.groups.items()}


def flat(record: dict) -> dict[str, Any]:
    """{"run": {"steps": 3}, "algo": {"name": "grpo"}} -> {"steps": 3, "algo.name": "grpo"}: keys as typed."""
    out = {}
    for section, values in record.items():
        prefix = "" if section == "run" else f"{section}."
        for key, value in (values or {}).items():
            out[prefix + str(key)] = value
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def differences(recorded: dict, current: dict) -> dict[str, tuple[Any, Any]]:
    """Keys whose value differs: key -> (checkpoint's value, new value); ABSENT where one side lacks the key."""
    old, new = flat(recorded), flat(current)
    keys = sorted((set(old) | set(new)) - set(NOT_COMPARED))
    return {
        key: (old.get(key, ABSENT), new.get(key, ABSENT))
        for key in keys
        if not _same(old.get(key, ABSENT), new.get(key, ABSENT))
    }


def applies_for_real(key: str, engine_keys: tuple[str, ...]) -> bool:
    """True when a resumed run uses the new value of `key` from its first step on, without being told to."""
    group, _, name = key.partition(".")
    return key in RUN_KEYS_APPLIED or group in GROUPS_APPLIED or (group == "trainer" and name in engine_keys)


def _allowed(key: str, allowed: list[str]) -> bool:
    return any(key == entry or key.startswith(entry + ".") for entry in allowed)


def resume_changes(recorded: dict, current: dict, engine_keys: tuple[str, ...], where: str) -> dict:
    """The changes a resume applies, key -> [old, new]; ConfigError (one line) when any is not allowed."""
    allowed = [str(entry) for entry in current["run"].get("resume_allow_changes") or []]
    known = flat(current)
    for entry in allowed:
        if not any(_allowed(key, [entry]) for key in known):
            raise ConfigError(f"resume_allow_changes: {entry!r} is not a config key or group")
    changes = differences(recorded, current)
    refused = [key for key in changes if not applies_for_real(key, engine_keys) and not _allowed(key, allowed)]
    if refused:
        shown = ", ".join(f"{key} ({_show(changes[key][0])} -> {_show(changes[key][1])})" for key in refused)
        raise ConfigError(
            f"resume: {where} was trained with other values of {shown}; start a fresh run with resume=null in a "
            f"new hydra.run.dir, or continue with the new values: 'resume_allow_changes=[{','.join(refused)}]'"
        )
    return {key: [old, new] for key, (old, new) in changes.items()}


def _show(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- where a command starts ---------------------------------------------------------------------------------------


@dataclass
class Start:
    """Where a run starts: the trainer state, the checkpoint it resumes from (None: fresh), the config changes it
    applies (key -> [old, new]), and the newer checkpoints resume=auto passed over as damaged (name -> why)."""

    state: dict
    checkpoint: Path | None = None
    changes: dict = field(default_factory=dict)
    passed_over: dict[str, str] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return self.state["step"]


def resume_candidates(cfg: Validated, run_dir: Path) -> list[Path]:
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


def plan_start(
    cfg: Validated, run_dir: Path, sampler, engine_class, passed_over: dict[str, str] | None = None
) -> Start:
    """Where this command starts, or ConfigError (one line) when it must be refused; reads, never writes.

    Refused: a config change the checkpoint cannot take, a run already at its last step, a damaged or mismatched
    checkpoint named by resume=<path>, a checkpoint written by another number of processes, a fresh start over a
    run's checkpoints. resume=auto passes over damaged checkpoints (and those in `passed_over`) to the newest
    intact one. Decided from small files and weight-file headers, so no model is loaded for a refused command.
    """
    candidates = resume_candidates(cfg, run_dir)
    if not candidates:
        existing = list_checkpoints(run_dir / "checkpoints")
        if existing:  # a fresh start here would mix with (and prune) that run's checkpoints
            raise ConfigError(
                f"resume=null: {run_dir} already holds a run (checkpoints up to {existing[-1].name}); "
                f"give a new hydra.run.dir for a fresh run, or resume=auto to continue this one"
            )
        return Start({"step": 0, "eval_history": {}, "seconds": 0.0})
    damaged = dict(passed_over or {})
    for directory in candidates:
        if directory.name in damaged:
            continue
        try:
            return _start_from(directory, cfg, sampler, engine_class, damaged)
        except CheckpointError as error:
            if cfg.run.resume != "auto":
                raise ConfigError(f"resume: {error}") from None
            damaged[directory.name] = str(error)
    listed = "; ".join(f"{name} ({why})" for name, why in damaged.items())
    raise ConfigError(
        f"resume=auto: no intact checkpoint in {run_dir / 'checkpoints'}: {listed}; "
        f"resume=null with a new hydra.run.dir starts fresh"
    )


def _start_from(directory: Path, cfg: Validated, sampler, engine_class, damaged: dict[str, str]) -> Start:
    """The start at `directory` if the command may resume there; CheckpointError when one of its files is damaged."""
    recorded = read_config(directory)
    engine_keys = tuple(getattr(engine_class, "RESUME_KEYS", ()))
    changes = resume_changes(recorded, config_record(cfg), engine_keys, f"checkpoint {directory}")
    state = read_trainer_state(directory)
    read_state(directory, sampler)  # state.pt fits this run's sampler
    engine_class.check_checkpoint(directory, distributed.env_rank()[1])  # weights, optimizer, number of ranks
    if state["step"] >= cfg.run.steps:  # only once intact: a damaged final checkpoint falls back and replays
        raise ConfigError(
            f"steps={cfg.run.steps}: {directory} is at step {state['step']}, so this run is already done; "
            f"raise steps to train on (e.g. steps={state['step'] + 100})"
        )
    return Start(state, directory, {key: [old, new] for key, (old, new) in changes.items()}, damaged)


def restore(start: Start, cfg: Validated, run_dir: Path, parts) -> Start:
    """Load `start`'s checkpoint into `parts` (engine, sampler, RNG); return the start actually taken.

    A checkpoint that only the full read finds damaged (a weight of another shape, a corrupt tensor) is refused
    for resume=<path>; resume=auto plans again without it. Nothing in `run_dir` is written either way.
    """
    while start.checkpoint is not None:
        try:
            _, parts.sampler = load_checkpoint(start.checkpoint, parts.engine, parts.sampler)
            return start
        except CheckpointError as error:
            if cfg.run.resume != "auto":
                raise ConfigError(f"resume: {error}") from None
            passed_over = start.passed_over | {start.checkpoint.name: str(error)}
            start = plan_start(cfg, run_dir, parts.sampler, type(parts.engine), passed_over)
    return start


def describe(start: Start) -> list[str]:
    """The console lines of a resume (none for a fresh start): what was passed over, where from, what changed."""
    if start.checkpoint is None:
        return []
    lines = []
    if start.passed_over:
        damaged = ", ".join(f"{name} ({why})" for name, why in start.passed_over.items())
        lines.append(f"resume=auto: damaged {damaged}; resuming from {start.checkpoint.name} instead")
    applied = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in start.changes.items())
    lines.append(f"resumed from {start.checkpoint} at step {start.step}" + (f"; now {applied}" if applied else ""))
    return lines


def reset_logs(start: Start, run_dir: Path) -> None:
    """metrics.jsonl and samples.jsonl cut back to the resumed step (removed for a fresh start: a run killed before
    its first checkpoint); rank 0 only, once the command is accepted."""
    for name in ("metrics.jsonl", "samples.jsonl") if distributed.is_main() else ():
        if start.checkpoint is None:
            (run_dir / name).unlink(missing_ok=True)
        else:
            truncate_jsonl(run_dir / name, start.step)


# -- writing checkpoints ------------------------------------------------------------------------------------------


def write_checkpoint(cfg: Validated, run_dir: Path, parts, state: dict) -> None:
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
            f"last good checkpoint: {last_checkpoint(run_dir)}"
        ) from error
