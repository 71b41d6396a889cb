"""What a resumed run may change: the config recorded in the checkpoint against the new command's, key by key.

A key either takes effect for real from the resumed step on (the loop or the engine reads it afresh: the run-level
cadence keys, `steps`, logger keys, the engine's RESUME_KEYS such as trainer.lr) or the resume is refused with one
line naming the keys; `resume_allow_changes=[key, group, ...]` continues with the new values of those keys anyway.
Either way the new value is the one used and recorded, never the checkpoint's.
"""

from __future__ import annotations

import math
from typing import Any

from rlpost.config import ConfigError, Validated, to_dict

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
