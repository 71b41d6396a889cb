"""Atomic checkpoints (temporary dir, fsync, rename) with the last k kept, and exact resume.

checkpoints/step_N/ holds the HF-format model (safetensors) and tokenizer, optimizer.pt (optimizer + scheduler),
state.pt (RNG states, sampler state; loaded with weights_only=True) and trainer_state.json. A directory named
step_N exists only once complete, so a crash mid-write leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from rlpost import distributed

STEP_DIR = re.compile(r"^step_(\d+)$")


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
    root: Path, step: int, engine, tokenizer, sampler_state: dict, trainer_state: dict, keep: int
) -> Path:
    """Write checkpoints/step_{step} atomically and prune to the newest `keep`.

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


def load_checkpoint(directory: Path, engine, sampler) -> dict:
    """Restore engine, sampler and RNG from `directory`; return its trainer_state."""
    engine.load(directory)
    state = torch.load(directory / "state.pt", weights_only=True)
    sampler.load_state_dict(state["sampler"])
    set_rng_state(state["rng"])
    return json.loads((directory / "trainer_state.json").read_text())
