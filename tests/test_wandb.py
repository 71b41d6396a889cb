"""logger=wandb, offline: config, per-step metrics and sample tables are written and read back; a resumed run
continues the same W&B run with the steps after its checkpoint only."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlpost.wandb_logger import resolve_mode
from tests.conftest import read_jsonl, run_train
from tests.wandb_reader import history, run_info


def test_mode_is_offline_without_a_key(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode("auto") == "online" and resolve_mode("disabled") == "disabled"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode("auto") == "offline"


def logs(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))


@pytest.mark.slow
def test_wandb_offline_run_is_read_back_and_resume_continues_it(tmp_path):
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    common = ["logger=wandb", "logger.samples_every=2", "debug=fast", "eval_size=4", "checkpoint_every=1"]
    run_train(*common, "steps=2", run_dir=tmp_path, env=env, check=True)
    [first] = logs(tmp_path)
    run_id = (tmp_path / "wandb_run_id").read_text().strip()
    info = run_info(first)
    assert info["id"] == run_id and info["job_type"] == "train"
    assert info["config"]["algo"]["name"] == "grpo" and info["config"]["steps"] == 2
    rows = history(first)
    assert [row["_step"] for row in rows] == [0, 1, 2]
    metrics = read_jsonl(tmp_path / "metrics.jsonl")
    assert rows[1]["reward_mean"] == pytest.approx(metrics[1]["reward_mean"])
    assert rows[0]["eval_accuracy"] == pytest.approx(metrics[0]["eval_accuracy"])
    assert rows[2]["samples/_type"] == "table-file" and rows[2]["samples/nrows"] == 2
    assert "samples/_type" not in rows[1]  # only every samples_every steps

    run_train(*common, "steps=4", run_dir=tmp_path, env=env, check=True)  # resumes from step_2
    second = [path for path in logs(tmp_path) if path.parent != first.parent]
    assert len(second) == 1 and run_info(second[0])["id"] == run_id  # the same W&B run, continued
    assert [row["_step"] for row in history(second[0])] == [3, 4]


def test_tensorboard_sink_writes_scalars_and_samples(tmp_path):
    """logger=tensorboard through RunLog: read back with TensorBoard's own event reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rlpost.logging import RunLog
    from rlpost.tensorboard_logger import TensorBoardLoggerConfig

    with RunLog(tmp_path, TensorBoardLoggerConfig(progress=False, samples_every=2), total_steps=2) as log:
        log.metrics({"step": 0, "eval_accuracy": 0.25})
        for step in (1, 2):
            log.metrics({"step": step, "reward_mean": 0.5 * step, "eval/gsm8k/accuracy": 0.1 * step})
            log.samples(step, [{"prompt": "What is 1+1?", "completion": "2", "reward": 1.0}])
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("reward_mean")] == [(1, 0.5), (2, 1.0)]
    assert [e.step for e in events.Scalars("eval/gsm8k/accuracy")] == [1, 2]
    assert events.Scalars("eval_accuracy")[0].value == 0.25
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 3  # metrics.jsonl is always written
