"""rlpost-train with trainer=deepspeed_zero2/3 and trainer.nproc_per_node=2: a run, and kill -9 of one rank."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.conftest import read_jsonl, run_train, start_train, wait_for_checkpoint, without_timing

pytest.importorskip("deepspeed", reason="trainer=deepspeed needs the deepspeed package (pip install -e '.[deepspeed]')")

SMALL = ["steps=4", "prompts_per_step=4", "n=4", "eval_every=0", "eval_size=16", "checkpoint_every=2"]


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def rank_pids(cli_pid: int) -> list[int]:
    """rlpost-train -> torch.distributed.run -> ranks."""
    return [rank for launcher in children(cli_pid) for rank in children(launcher)]


@pytest.mark.slow
def test_zero3_two_ranks_writes_once_and_resumes_after_kill_9(tmp_path):
    args = ["trainer=deepspeed_zero3", "trainer.nproc_per_node=2", *SMALL]
    clean = run_train(*args, run_dir=tmp_path / "clean", check=True)
    assert "held-out accuracy" in clean.stderr + clean.stdout
    records = read_jsonl(tmp_path / "clean" / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2, 3, 4]  # rank 0 alone writes: no duplicated lines
    export = tmp_path / "clean" / "checkpoints" / "step_4"
    assert (export / "model.safetensors").is_file() and (export / "deepspeed").is_dir()

    killed_dir = tmp_path / "killed"
    process = start_train(*args, run_dir=killed_dir)
    wait_for_checkpoint(process, killed_dir / "checkpoints" / "step_2")
    ranks = rank_pids(process.pid)
    assert len(ranks) == 2
    os.kill(ranks[1], signal.SIGKILL)
    assert process.wait(timeout=300) != 0  # the launcher tears the other rank down; the run is not a success

    resumed = run_train(*args, run_dir=killed_dir, check=True)
    assert "resumed from" in resumed.stderr + resumed.stdout
    again = [without_timing(r) for r in read_jsonl(killed_dir / "metrics.jsonl")]
    assert again == [without_timing(r) for r in records]


@pytest.mark.slow
def test_resume_with_another_world_size_is_one_line(tmp_path):
    args = ["trainer=deepspeed_zero2", *SMALL, "steps=2"]
    run_train(*args, "trainer.nproc_per_node=2", run_dir=tmp_path, check=True)
    result = run_train(*args, "steps=3", "trainer.nproc_per_node=1", run_dir=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "trainer.nproc_per_node" in result.stderr
