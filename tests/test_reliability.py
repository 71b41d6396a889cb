"""Reliability: kill/resume exactness, preemption, numeric faults, reward isolation, unwritable checkpoints."""

from __future__ import annotations

import copy
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from rlpost import resume, trainer
from rlpost.checkpoint import list_checkpoints
from rlpost.cli import compose_train
from rlpost.config import validate
from rlpost.launch import PREEMPTED_EXIT
from rlpost.logging import ConsoleLoggerConfig, RunLog
from tests.conftest import REPO, read_jsonl, run_train, without_timing

SHORT = ("steps=8", "prompts_per_step=4", "n=4", "eval_every=4", "eval_size=16", "checkpoint_every=1")


def config(*overrides: str):
    return validate(compose_train(list(SHORT) + list(overrides)))


def train_in_process(cfg, run_dir):
    return trainer.train(cfg, run_dir, RunLog(run_dir, ConsoleLoggerConfig(progress=False), cfg.run.steps))


def metrics_without_timing(run_dir):
    return [without_timing(m) for m in read_jsonl(run_dir / "metrics.jsonl")]


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["uniform", "vade", "knapsack"])
def test_sigkill_at_random_step_then_resume_matches_uninterrupted(tmp_path, sampler):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run_train(*SHORT, f"sampler={sampler}", run_dir=whole, check=True)
    kill_after = random.Random(os.getpid()).randint(2, 6)  # metrics lines seen before the kill (any step)
    args = [
        sys.executable,
        "-m",
        "rlpost.cli",
        *SHORT,
        f"sampler={sampler}",
        "logger.progress=false",
        f"hydra.run.dir={killed}",
    ]
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        path = killed / "metrics.jsonl"
        if path.exists() and len(path.read_text().splitlines()) > kill_after:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    run_train(*SHORT, f"sampler={sampler}", run_dir=killed, check=True)
    assert metrics_without_timing(killed) == metrics_without_timing(whole)


@pytest.mark.slow
def test_crash_mid_checkpoint_write_keeps_previous_and_resumes(tmp_path, monkeypatch):
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    train_in_process(config(), whole)
    real_save = resume.save_checkpoint

    def save_then_die(root, step, engine, *args, **kwargs):
        if step == 5:  # write a partial temporary checkpoint, then "die" before the rename
            partial = root / f".tmp_step_{step}_999"
            partial.mkdir(parents=True)
            (partial / "model.safetensors").write_bytes(b"\x00" * 100)
            raise KeyboardInterrupt("killed mid-write")
        return real_save(root, step, engine, *args, **kwargs)

    monkeypatch.setattr(resume, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_in_process(config(), crashed)
    assert list_checkpoints(crashed / "checkpoints")[-1].name == "step_4"
    monkeypatch.setattr(resume, "save_checkpoint", real_save)
    train_in_process(config(), crashed)
    assert metrics_without_timing(crashed) == metrics_without_timing(whole)
    assert [p.name for p in list_checkpoints(crashed / "checkpoints")] == ["step_7", "step_8"]
    assert not list((crashed / "checkpoints").glob(".tmp_step_*")), "partial checkpoint left behind"


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_cleanly_then_resumes(tmp_path):
    whole, preempted = tmp_path / "whole", tmp_path / "preempted"
    run_train(*SHORT, run_dir=whole, check=True)
    args = [
        sys.executable,
        "-m",
        "rlpost.cli",
        *SHORT,
        "checkpoint_every=0",
        "logger.progress=false",
        f"hydra.run.dir={preempted}",
    ]
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while process.poll() is None:
        path = preempted / "metrics.jsonl"
        if path.exists() and len(path.read_text().splitlines()) >= 3:
            process.send_signal(signal.SIGTERM)
            break
        time.sleep(0.01)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == PREEMPTED_EXIT, stderr  # a preempted run is not a success
    assert "preempted: checkpoint written at step" in stderr
    assert list_checkpoints(preempted / "checkpoints"), "no checkpoint written on SIGTERM"
    run_train(*SHORT, "checkpoint_every=0", run_dir=preempted, check=True)
    assert metrics_without_timing(preempted) == metrics_without_timing(whole)


def test_nan_loss_is_skipped_and_training_continues(tmp_path, monkeypatch):
    real_loss = trainer.policy_loss
    calls = {"n": 0}

    def nan_on_third_update(*args, **kwargs):
        loss, metrics = real_loss(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 3 else loss), metrics

    monkeypatch.setattr(trainer, "policy_loss", nan_on_third_update)
    real_update = trainer.update_policy
    changed: list[bool] = []  # per step: did the update change any weight?

    def watched_update(batch, engine, cfg, step):
        before = {name: tensor.clone() for name, tensor in engine.model.state_dict().items()}
        metrics = real_update(batch, engine, cfg, step)
        after = engine.model.state_dict()
        changed.append(any(not torch.equal(before[name], after[name]) for name in before))
        return metrics

    monkeypatch.setattr(trainer, "update_policy", watched_update)
    train_in_process(config("steps=5", "checkpoint_every=0"), tmp_path)
    metrics = read_jsonl(tmp_path / "metrics.jsonl")
    assert [m.get("skipped_update") for m in metrics[1:]] == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert changed == [True, True, False, True, True]  # the skipped update left every weight as it was
    assert metrics[-1]["step"] == 5


def test_inf_gradient_with_finite_loss_is_skipped_and_training_continues(tmp_path, monkeypatch):
    """An overflow in backward (finite loss, inf gradient on one parameter) at update 3: trainer=torch's global
    grad norm is inf, so that update is dropped and counted; weights and AdamW moments stay as they were."""
    real_update = trainer.update_policy
    changed: list[tuple[bool, bool]] = []  # per step: (did any weight change, did any AdamW state tensor change)

    def update_with_inf_gradient_at_step_3(batch, engine, cfg, step):
        weights = {name: tensor.clone() for name, tensor in engine.model.state_dict().items()}
        moments = copy.deepcopy(engine.optimizer.state_dict()["state"])
        hook = None
        if step == 3:
            param = dict(engine.model.named_parameters())["model.layers.0.mlp.down_proj.weight"]
            hook = param.register_hook(lambda grad: torch.full_like(grad, float("inf")))
        metrics = real_update(batch, engine, cfg, step)
        if hook is not None:
            hook.remove()
        after = engine.optimizer.state_dict()["state"]
        changed.append(
            (
                any(not torch.equal(weights[name], tensor) for name, tensor in engine.model.state_dict().items()),
                set(after) != set(moments)
                or any(not torch.equal(moments[i][key], after[i][key]) for i in moments for key in moments[i]),
            )
        )
        return metrics

    monkeypatch.setattr(trainer, "update_policy", update_with_inf_gradient_at_step_3)
    train_in_process(config("steps=5", "checkpoint_every=0"), tmp_path)
    metrics = read_jsonl(tmp_path / "metrics.jsonl")[1:]
    assert [m["skipped_update"] for m in metrics] == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert all(math.isfinite(m["loss"]) for m in metrics)  # the loss stayed finite: only the gradient was not
    assert not math.isfinite(float(metrics[2]["grad_norm"]))  # written as the string "inf" or "nan"
    assert changed == [(True, True), (True, True), (False, False), (True, True), (True, True)]


def test_consecutive_nan_losses_stop_the_run_with_last_good_checkpoint(tmp_path, monkeypatch):
    real_loss = trainer.policy_loss
    calls = {"n": 0}

    def nan_from_third_update(*args, **kwargs):
        loss, metrics = real_loss(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] >= 3 else loss), metrics

    monkeypatch.setattr(trainer, "policy_loss", nan_from_third_update)
    with pytest.raises(
        trainer.RunStopped, match=r"step 5: 3 consecutive updates skipped.*last good checkpoint: .*step_4"
    ):
        train_in_process(config("max_skipped_updates=2"), tmp_path)
    good = list_checkpoints(tmp_path / "checkpoints")[-1]
    assert torch.isfinite(
        torch.load(good / "optimizer.pt", weights_only=True)["optimizer"]["state"][0]["exp_avg"]
    ).all()


def odd_answer_rows(run_dir, step: int) -> list[dict]:
    """The logged rollouts of `step` (samples_per_step=16 logs all of them) whose answer is odd."""
    samples = [row for row in read_jsonl(run_dir / "samples.jsonl") if row["step"] == step]
    assert len(samples) == 16
    return [row for row in samples if int(row["answer"]) % 2]


def test_raising_reward_is_isolated_and_counted(tmp_path):
    # the reward raises on every rollout whose answer is odd: those are counted and score 0, the run goes on
    cfg = config(
        "reward=custom",
        "reward.function=tests.fault_rewards:raises_on_odd_answers",
        "reward.max_error_rate=1.0",
        "steps=3",
        "checkpoint_every=0",
        "samples_per_step=16",
    )
    train_in_process(cfg, tmp_path)
    metrics = read_jsonl(tmp_path / "metrics.jsonl")[1:]
    assert [m["step"] for m in metrics] == [1, 2, 3]
    failing = {record["step"]: odd_answer_rows(tmp_path, record["step"]) for record in metrics}
    assert [record["reward_errors"] for record in metrics] == [len(failing[step]) for step in (1, 2, 3)]
    assert sum(map(len, failing.values())) > 0, "no odd answer in 3 steps: the test would prove nothing"
    assert all(row["reward"] == 0.0 for rows in failing.values() for row in rows)
    assert all(record["reward_timeouts"] == 0 for record in metrics)


def test_error_rate_above_threshold_stops_with_first_traceback(tmp_path):
    cfg = config(
        "reward=custom",
        "reward.function=tests.fault_rewards:raises_on_odd_answers",
        "reward.max_error_rate=0.05",
        "checkpoint_every=0",
    )
    with pytest.raises(trainer.RunStopped, match=r"(?s)calls failed in one step.*Traceback.*cannot grade"):
        train_in_process(cfg, tmp_path)


def test_hanging_reward_times_out_and_scores_zero(tmp_path):
    # the reward sleeps 30 s on every rollout whose answer is odd: each call is cut at 0.2 s, counted, scores 0
    cfg = config(
        "reward=custom",
        "reward.function=tests.fault_rewards:sleeps_on_odd_answers",
        "reward.timeout_s=0.2",
        "reward.max_error_rate=1.0",
        "steps=1",
        "checkpoint_every=0",
        "eval_size=4",
        "samples_per_step=16",
    )
    train_in_process(cfg, tmp_path)
    record = read_jsonl(tmp_path / "metrics.jsonl")[1]
    failing = odd_answer_rows(tmp_path, 1)
    assert failing, "no odd answer in this step: the test would prove nothing"
    assert record["reward_timeouts"] == len(failing) and record["reward_errors"] == 0
    assert all(row["reward"] == 0.0 for row in failing)
    from rlpost.rewards.isolation import SafeCaller

    caller = SafeCaller(timeout_s=0.2)
    assert caller(time.sleep, 5) == 0.0 and caller.log.timeouts == 1


def test_unwritable_checkpoint_dir_stops_and_keeps_last_good(tmp_path, monkeypatch):
    real_save = resume.save_checkpoint

    def disk_full(root, step, *args, **kwargs):
        if step >= 3:
            raise OSError(28, "No space left on device")
        return real_save(root, step, *args, **kwargs)

    monkeypatch.setattr(resume, "save_checkpoint", disk_full)
    with pytest.raises(trainer.RunStopped, match=r"cannot write checkpoint step_3 \(No space left on device\).*step_2"):
        train_in_process(config(), tmp_path)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(list_checkpoints(tmp_path / "checkpoints")[-1])  # loadable
    shutil.rmtree(tmp_path / "checkpoints")


def test_run_stopped_exits_1_with_a_message(tmp_path):
    result = run_train(
        *SHORT,
        "reward=custom",
        "reward.function=tests.fault_rewards:raises_on_odd_answers",
        "reward.max_error_rate=0.05",
        run_dir=tmp_path,
        timeout=300,
    )
    assert result.returncode == 1
    assert "rlpost-train: stopped: " in result.stderr and "reward=custom" in result.stderr
    assert "calls failed in one step" in result.stderr
