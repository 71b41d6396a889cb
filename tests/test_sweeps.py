"""Multirun hygiene with any launcher: one valid run dir per job, a sweep index with every job's status, a failing
job that does not take the others down, a preempted run that is not read as a success."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rlpost.cli import CONF_DIR
from rlpost.launch import PREEMPTED_EXIT, job_dirname, run_status
from rlpost.sweep import write_index
from tests.conftest import REPO, read_jsonl, run_train


def test_job_dirname_keeps_short_names_and_hashes_unsafe_or_long_ones():
    assert job_dirname(3, "algo=grpo,seed=1") == "3_algo=grpo,seed=1"
    assert job_dirname(0, "") == "0"
    with_path = job_dirname(1, "model.path=/data/models/qwen3,seed=2")
    assert "/" not in with_path and with_path.startswith("1_model.path=_data_models_qwen3,seed=2_")
    # '/' and '_' would collide without the hash
    assert with_path != job_dirname(1, "model.path=_data_models_qwen3,seed=2")
    long = job_dirname(12, "data.path=" + "x" * 400)
    assert len(long) == 96 and long.startswith("12_data.path=xxx")
    assert long != job_dirname(12, "data.path=" + "x" * 399)


def test_sweep_subdir_in_train_yaml_uses_the_resolver():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["seed=1"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.job.num = 4
        cfg.hydra.job.override_dirname = "model.path=/a b/c,seed=1"
    assert OmegaConf.select(cfg, "hydra.sweep.subdir") == job_dirname(4, "model.path=/a b/c,seed=1")
    assert "/" not in OmegaConf.select(cfg, "hydra.sweep.subdir")


def test_run_status_records_each_ending(tmp_path):
    from rlpost.trainer import RunStopped

    with run_status(tmp_path / "a") as outcome:
        assert not (tmp_path / "a" / "status.json").exists(), "written before the command was accepted"
        outcome.accept()
        assert json.loads((tmp_path / "a" / "status.json").read_text())["status"] == "running"
        outcome.finish({"steps": 5})
    assert json.loads((tmp_path / "a" / "status.json").read_text())["status"] == "completed"
    with run_status(tmp_path / "b") as outcome:
        outcome.accept()
        outcome.finish({"preempted": True, "step": 2})
    record = json.loads((tmp_path / "b" / "status.json").read_text())
    assert (record["status"], record["step"], record["exit_code"]) == ("preempted", 2, PREEMPTED_EXIT)
    with pytest.raises(RunStopped), run_status(tmp_path / "c", stopped=RunStopped) as outcome:
        outcome.accept()
        raise RunStopped("reward failures")
    assert json.loads((tmp_path / "c" / "status.json").read_text())["status"] == "stopped"
    with pytest.raises(KeyError), run_status(tmp_path / "d") as outcome:
        outcome.accept()
        raise KeyError("boom")
    assert json.loads((tmp_path / "d" / "status.json").read_text())["status"] == "failed"


def test_run_status_of_a_rejected_command_leaves_the_previous_record(tmp_path):
    """A command refused (or failing) before it is accepted must not overwrite the run dir's last status."""
    from rlpost.config import ConfigError

    with run_status(tmp_path) as outcome:
        outcome.accept()
        outcome.finish({"steps": 5})
    before = (tmp_path / "status.json").read_bytes()
    for error in (ConfigError("resume: refused"), KeyError("boom"), SystemExit(2)):
        with pytest.raises(type(error)), run_status(tmp_path):
            raise error
        assert (tmp_path / "status.json").read_bytes() == before, f"{error!r} rewrote status.json"


@pytest.mark.slow
def test_local_multirun_failed_job_keeps_the_others_and_the_index_says_which(tmp_path):
    """Job 0's reward raises on half the answers (the run stops); job 1 still runs; names with ':' stay valid."""
    result = run_train(
        "-m",
        "debug=fast",
        "reward=custom",
        "reward.function=tests.fault_rewards:raises_on_odd_answers,tests.fault_rewards:exact",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert result.returncode == 1, result.stderr
    assert "rlpost-train: stopped:" in result.stderr
    index = read_jsonl(tmp_path / "sweep_index.jsonl")
    assert [(r["num"], r["status"]) for r in index] == [(0, "stopped"), (1, "completed")]
    for record in index:
        run_dir = Path(record["run_dir"])
        assert run_dir.parent == tmp_path and ":" not in run_dir.name, run_dir
    assert json.loads((Path(index[1]["run_dir"]) / "summary.json").read_text())["steps"] == 3
    # the index is rebuilt from the run dirs: the same records again
    assert write_index(tmp_path) == index


@pytest.mark.slow
def test_preempted_run_exits_75_with_a_status_record_then_resumes(tmp_path):
    args = [
        sys.executable,
        "-m",
        "rlpost.cli",
        "steps=200",
        "prompts_per_step=4",
        "n=4",
        "eval_every=0",
        "eval_size=16",
        "checkpoint_every=0",
        "logger.progress=false",
        f"hydra.run.dir={tmp_path}",
    ]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    while process.poll() is None:
        path = tmp_path / "metrics.jsonl"
        if path.exists() and len(path.read_text().splitlines()) >= 3:
            process.send_signal(signal.SIGUSR2)  # submitit's preemption signal, outside Slurm
            break
        time.sleep(0.01)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == PREEMPTED_EXIT, stderr
    record = json.loads((tmp_path / "status.json").read_text())
    assert record["status"] == "preempted" and record["step"] >= 2
    steps = [m["step"] for m in read_jsonl(tmp_path / "metrics.jsonl")]
    assert steps == list(range(record["step"] + 1))


def test_optuna_search_composes():
    """conf/hparams_search/optuna_lr_clip.yaml: the Optuna sweeper, maximising, over lr and the clip range."""
    result = run_train("--cfg", "hydra", "hparams_search=optuna_lr_clip", "hydra.sweeper.n_trials=5", timeout=120)
    assert result.returncode == 0, result.stderr
    hydra = yaml.safe_load(result.stdout)["hydra"]
    assert hydra["sweeper"]["_target_"].endswith("optuna_sweeper.OptunaSweeper")
    assert hydra["sweeper"]["direction"] == "maximize" and hydra["sweeper"]["n_trials"] == 5
    assert hydra["mode"] == "MULTIRUN"
    assert hydra["sweeper"]["params"] == {
        "trainer.lr": "tag(log, interval(1e-5, 1e-3))",
        "algo.clip_low": "interval(0.1, 0.3)",
        "algo.clip_high": "interval(0.1, 0.4)",
    }


def test_two_slurm_tasks_with_the_one_process_trainer_is_a_config_error(tmp_path):
    env = {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_STEP_NUM_TASKS": "2", "SLURM_LOCALID": "0"}
    env["SLURM_JOB_ID"] = "7"
    result = run_train("debug=fast", run_dir=tmp_path, env=env, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "hydra.launcher.tasks_per_node: 2 processes per job, but trainer=torch runs in one" in result.stderr
    assert not (tmp_path / "metrics.jsonl").exists()
