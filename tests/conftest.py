"""Shared test helpers: running rlpost-train as a subprocess, reading its outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_train(
    *overrides: str, run_dir: Path | None = None, timeout: int = 600, env: dict | None = None, check: bool = False
) -> subprocess.CompletedProcess:
    """`rlpost-train <overrides>` in a subprocess (with the rich progress bar off)."""
    args = [sys.executable, "-m", "rlpost.cli", *overrides, "logger.progress=false"]
    if run_dir is not None:
        args.append(f"hydra.run.dir={run_dir}")
    full_env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    full_env.update({"PYTHONHASHSEED": "0", **(env or {})})
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and result.returncode != 0:
        raise AssertionError(f"rlpost-train failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def without_timing(record: dict) -> dict:
    """A metrics record without the wall-clock and memory fields (they differ between identical runs)."""
    return {
        k: v
        for k, v in record.items()
        if not k.startswith(("time_", "memory_")) and not k.endswith("tokens_per_second") and k != "step_seconds"
    }


@pytest.fixture
def tiny_batch():
    from tests.helpers import make_batch

    return make_batch
