"""End-to-end: rlpost-train as a subprocess; outputs, checkpoint reload, CPU determinism, resume."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.conftest import read_jsonl, run_train, without_timing

pytestmark = pytest.mark.slow
FEW_STEPS = ("steps=6", "prompts_per_step=8", "n=4", "eval_every=3", "eval_size=32", "checkpoint_every=3")


def tokenizer_size() -> int:
    from rlpost.models.tiny import build_tokenizer

    return len(build_tokenizer())


def test_short_run_writes_metrics_samples_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    run_train(*FEW_STEPS, run_dir=run_dir, check=True)
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(7))
    assert [step for step, m in enumerate(metrics) if "eval_accuracy" in m] == [0, 3, 6]
    assert all(0.0 <= metrics[step]["eval_accuracy"] <= 1.0 for step in (0, 3, 6))
    finite = lambda value: value == value and abs(value) != float("inf")  # noqa: E731
    for m in metrics[1:]:  # values, not only keys: each must be a possible value of what it names
        assert m["rollouts"] == 8 * 4
        assert 0.0 <= m["accuracy"] <= 1.0 and finite(m["reward_mean"]) and m["reward_std"] >= 0.0
        assert finite(m["loss"]) and m["grad_norm"] > 0.0 and finite(m["grad_norm"]) and m["skipped_update"] == 0.0
        assert 0.0 < m["entropy"] <= math.log(tokenizer_size()) + 1e-4 and 0.0 <= m["clip_frac"] <= 1.0
        assert 1.0 <= m["response_length"] and m["tokens_per_second"] > 0.0
        assert all(m[f"time_{phase}"] >= 0.0 for phase in ("generate", "reward", "logprob", "train"))
    samples = read_jsonl(run_dir / "samples.jsonl")
    assert {s["step"] for s in samples} == set(range(1, 7))
    for sample in samples:
        assert isinstance(sample["prompt"], str) and sample["prompt"] and isinstance(sample["completion"], str)
        assert sample["answer"].lstrip("-").isdigit() and finite(sample["reward"]) and finite(sample["advantage"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["eval_accuracy_start"] == metrics[0]["eval_accuracy"]
    assert summary["eval_accuracy_end"] == metrics[6]["eval_accuracy"]
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    # keep_checkpoints=2: steps 3 and 6 remain; the checkpoint is an HF model that transformers loads
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["step_3", "step_6"]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = run_dir / "checkpoints" / "step_6"
    assert (path / "model.safetensors").is_file()
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 12+30?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > ids["input_ids"].shape[1]
    state = torch.load(path / "optimizer.pt", weights_only=True)
    assert state["optimizer"]["state"] and "scheduler" in state


def test_same_seed_same_metrics(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    run_train(*FEW_STEPS, "seed=3", run_dir=first, check=True)
    run_train(*FEW_STEPS, "seed=3", run_dir=second, check=True)
    a = [without_timing(m) for m in read_jsonl(first / "metrics.jsonl")]
    b = [without_timing(m) for m in read_jsonl(second / "metrics.jsonl")]
    assert a == b
    assert (first / "samples.jsonl").read_text() == (second / "samples.jsonl").read_text()


def test_different_seed_different_rollouts(tmp_path):
    run_train(*FEW_STEPS, "seed=1", run_dir=tmp_path / "a", check=True)
    run_train(*FEW_STEPS, "seed=2", run_dir=tmp_path / "b", check=True)
    assert (tmp_path / "a" / "samples.jsonl").read_text() != (tmp_path / "b" / "samples.jsonl").read_text()


def test_rerun_in_same_dir_resumes_exactly(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    run_train(*FEW_STEPS, run_dir=whole, check=True)
    run_train(*FEW_STEPS[1:], "steps=3", run_dir=split, check=True)  # stops after step 3 (checkpointed)
    resumed = run_train(*FEW_STEPS, run_dir=split, check=True)
    assert "resumed from" in resumed.stderr
    a = [without_timing(m) for m in read_jsonl(whole / "metrics.jsonl")]
    b = [without_timing(m) for m in read_jsonl(split / "metrics.jsonl")]
    assert a == b


def test_multirun_completes(tmp_path):
    result = run_train("-m", "debug=fast", "seed=1,2", f"hydra.sweep.dir={tmp_path}", check=True)
    assert result.returncode == 0
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert [job.name[:2] for job in jobs] == ["0_", "1_"]
    assert "seed=1" in jobs[0].name and "seed=2" in jobs[1].name
    summaries = [json.loads((job / "summary.json").read_text()) for job in jobs]
    assert [s["config"]["run"]["seed"] for s in summaries] == [1, 2]
