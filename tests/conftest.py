"""Shared test helpers: running rlpost-train as a subprocess, reading its outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def train_command(*overrides: str, run_dir: Path | None = None, env: dict | None = None) -> tuple[list[str], dict]:
    """(argv, environment) of `rlpost-train <overrides>` as the tests run it (rich progress bar off)."""
    args = [sys.executable, "-m", "rlpost.cli", *overrides, "logger.progress=false"]
    if run_dir is not None:
        args.append(f"hydra.run.dir={run_dir}")
    full_env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    full_env.update({"PYTHONHASHSEED": "0", **(env or {})})
    return args, full_env


def run_train(
    *overrides: str, run_dir: Path | None = None, timeout: int = 600, env: dict | None = None, check: bool = False
) -> subprocess.CompletedProcess:
    """`rlpost-train <overrides>` in a subprocess, to completion."""
    args, full_env = train_command(*overrides, run_dir=run_dir, env=env)
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and result.returncode != 0:
        raise AssertionError(f"rlpost-train failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def start_train(*overrides: str, run_dir: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    """`rlpost-train <overrides>` started in the background (output discarded), e.g. to be killed mid-run."""
    args, full_env = train_command(*overrides, run_dir=run_dir, env=env)
    return subprocess.Popen(args, cwd=REPO, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_checkpoint(process: subprocess.Popen, directory: Path, timeout: float = 600) -> None:
    """Wait until `directory` exists while `process` runs (AssertionError if the run ends or stalls first)."""
    deadline = time.monotonic() + timeout
    while not directory.is_dir():
        if process.poll() is not None:
            raise AssertionError(f"the run ended ({process.returncode}) before {directory.name} was written")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {directory.name} after {timeout:.0f} s")
        time.sleep(0.1)


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
