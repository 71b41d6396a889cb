"""Atomic checkpoints (temporary dir, fsync, rename) with the last k kept, and exact resume.

checkpoints/step_N/ holds the HF-format model (safetensors) and tokenizer, optimizer.pt (optimizer + scheduler),
state.pt (RNG states, sampler state; loaded with weights_only=True), trainer_state.json and config.yaml (the
validated config the run was trained with up to step N). A directory named step_N exists only once complete, so a
crash mid-write leaves the previous checkpoint as the latest.

Loading is all-or-nothing: every file is read and checked against the engine and sampler being restored before
any of them changes; a damaged or mismatched file raises CheckpointError naming the file and what is wrong.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch
import yaml

from rlpost import distributed
from rlpost.config import ConfigError

STEP_DIR = re.compile(r"^step_(\d+)$")
CONFIG_FILE = "config.yaml"


class CheckpointError(ConfigError):
    """A checkpoint file is damaged or does not fit what is being restored; the message names the file."""


def _fsync_tree(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[0],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict) -> None:
    random.setstate((state["python_pos"], tuple(state["python"]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])


def save_checkpoint(
    root: Path, step: int, engine, tokenizer, sampler_state: dict, trainer_state: dict, keep: int, config: dict
) -> Path:
    """Write checkpoints/step_{step} atomically and prune to the newest `keep`; `config` is recorded beside it.

    Several ranks: every rank writes its engine shard into rank 0's temporary dir; only rank 0 creates, renames
    and prunes, between barriers, so no rank deletes a write in flight.
    """
    final = root / f"step_{step}"
    tmp = root / distributed.broadcast_object(f".tmp_step_{step}_{os.getpid()}")  # rank 0's name on every rank
    if distributed.is_main():
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    distributed.barrier()
    engine.save(tmp, tokenizer)
    distributed.barrier()
    if distributed.is_main():
        torch.save({"rng": rng_state(), "sampler": sampler_state}, tmp / "state.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2) + "\n")
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
        _fsync_tree(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        _fsync_dir(root)
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        for partial in root.glob(".tmp_step_*"):  # left by a process killed mid-write
            shutil.rmtree(partial, ignore_errors=True)
    distributed.barrier()
    return final


def last_checkpoint(run_dir: Path) -> str:
    """The newest complete checkpoint of a run dir, for messages ("none" when there is none)."""
    found = list_checkpoints(run_dir / "checkpoints")
    return str(found[-1]) if found else "none"


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := STEP_DIR.match(p.name)) and p.is_dir() and (p / "trainer_state.json").is_file()
    ]
    return [p for _, p in sorted(found)]


def read_json(path: Path) -> dict:
    """A JSON object from `path`; CheckpointError naming the file when it is missing or not JSON."""
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: unreadable ({_reason(error)})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return value


def read_torch(path: Path) -> dict:
    """A torch.save'd dict from `path` (weights_only); CheckpointError naming the file when it is damaged."""
    try:
        value = torch.load(path, weights_only=True)
    except Exception as error:  # truncated zip, bad pickle, missing file: all mean "damaged" here
        raise CheckpointError(f"{path}: unreadable ({_reason(error)})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: not a state dict")
    return value


def read_config(directory: Path) -> dict:
    """The config a checkpoint was trained with (config.yaml)."""
    path = directory / CONFIG_FILE
    try:
        value = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (a checkpoint from before rlpost recorded its config)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise CheckpointError(f"{path}: unreadable ({_reason(error)})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: not a config mapping")
    return value


def read_trainer_state(directory: Path) -> dict:
    path = directory / "trainer_state.json"
    state = read_json(path)
    if not isinstance(state.get("step"), int) or not isinstance(state.get("eval_history"), dict):
        raise CheckpointError(f"{path}: missing 'step' or 'eval_history'")
    return state


def _reason(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


def layout(value):
    """The structure of a state dict: keys, tensor shapes and dtypes, value types (not the values)."""
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)} {value.dtype}"
    if isinstance(value, dict):
        return {key: layout(item) for key, item in value.items()}
    return type(value).__name__


def layout_mismatch(found, expected, prefix: str = "") -> str | None:
    """Where `found`'s layout departs from `expected`'s, as 'key: found X, expected Y'; None when they agree."""
    if isinstance(found, dict) and isinstance(expected, dict):
        for key in sorted(set(found) | set(expected), key=str):
            name = f"{prefix}{key}"
            if key not in found or key not in expected:
                return f"{name}: {'missing' if key not in found else 'unexpected'}"
            where = layout_mismatch(found[key], expected[key], f"{name}.")
            if where:
                return where
        return None
    if found != expected:
        return f"{prefix.rstrip('.') or 'value'}: found {found}, expected {expected}"
    return None


def check_weight_files(directory: Path) -> None:
    """The model's *.safetensors files are there and whole (each header covers its file); reads headers only."""
    from safetensors import safe_open

    shards = sorted(directory.glob("*.safetensors"))
    if not shards:
        raise CheckpointError(f"{directory}: no *.safetensors model weights")
    for shard in shards:
        try:
            with safe_open(shard, "pt"):
                pass
        except Exception as error:  # truncated or overwritten: the header or the sizes do not add up
            raise CheckpointError(f"{shard}: unreadable ({_reason(error)})") from None


def check_archive(path: Path) -> None:
    """A torch.save file is a whole zip archive (a truncated one has lost its central directory); no tensor read."""
    try:
        with zipfile.ZipFile(path):
            pass
    except (OSError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path}: unreadable ({_reason(error)})") from None


def read_state(directory: Path, sampler):
    """(state.pt's dict, a copy of `sampler` restored from it): checked against this run's RNG and sampler layout,
    with `sampler` itself left as it is. CheckpointError naming the file when it does not fit."""
    saved = read_torch(directory / "state.pt")
    for key, expected in (("rng", layout(rng_state())), ("sampler", layout(sampler.state_dict()))):
        where = layout_mismatch(layout(saved.get(key)), expected)
        if where:
            raise CheckpointError(f"{directory / 'state.pt'}: {key} state does not fit this run ({where})")
    restored = copy.deepcopy(sampler)
    try:
        restored.load_state_dict(saved["sampler"])
    except Exception as error:
        raise CheckpointError(f"{directory / 'state.pt'}: sampler state does not load ({_reason(error)})") from None
    return saved, restored


def load_checkpoint(directory: Path, engine, sampler):
    """Restore engine, sampler and RNG from `directory`; return (trainer_state, the restored sampler).

    The sampler is restored into a copy (returned) and everything is checked before the engine or the global RNG
    changes; the engine's own load is all-or-nothing. Raises CheckpointError naming the file that does not fit.
    """
    trainer_state = read_trainer_state(directory)
    saved, restored = read_state(directory, sampler)
    engine.load(directory)
    set_rng_state(saved["rng"])
    return trainer_state, restored
