"""rlpost-eval: the unbiased pass@k estimator against brute force, breakdowns, and end-to-end runs."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from math import comb
from pathlib import Path

import pytest

from rlpost.config import ConfigError
from rlpost.eval import breakdown, ks_to_report, pass_at_k, resolve_checkpoint

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "rlpost" / "assets" / "tiny-arith"


@pytest.mark.parametrize(
    ("n", "c", "k"), [(n, c, k) for n in range(1, 8) for c in range(n + 1) for k in range(1, n + 1)]
)
def test_pass_at_k_equals_brute_force_over_all_k_subsets(n, c, k):
    """pass@k = share of the C(n, k) size-k subsets of the n samples that hold at least one correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    brute = sum(any(samples[i] for i in subset) for subset in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), abs=1e-12)


def test_breakdown_by_hand():
    rows = [{"subject": "Algebra", "level": 1}, {"subject": "Algebra", "level": 2}, {"subject": "Geometry", "level": 2}]
    report = breakdown(rows, greedy=[1.0, 0.0, 0.0], counts=[2, 1, 0], n=4, k=2)
    overall = report["overall"]
    assert overall["pass@1_greedy"] == pytest.approx(1 / 3)
    assert overall["mean@2"] == pytest.approx((2 / 4 + 1 / 4 + 0) / 3)
    # pass@2 with n=4: c=2 -> 1 - C(2,2)/C(4,2) = 5/6; c=1 -> 1 - C(3,2)/C(4,2) = 1/2; c=0 -> 0
    assert overall["pass@2"] == pytest.approx((5 / 6 + 1 / 2) / 3)
    assert report["by_subject"]["Algebra"]["problems"] == 2
    assert report["by_subject"]["Algebra"]["pass@1"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert report["by_level"]["2"]["pass@1_greedy"] == 0.0
    assert ks_to_report(8) == [1, 2, 4, 8] and ks_to_report(6) == [1, 2, 4, 6] and ks_to_report(0) == []


def test_resolve_checkpoint(tmp_path):
    assert resolve_checkpoint(str(TINY)) == str(TINY)
    assert resolve_checkpoint("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B"
    step = tmp_path / "checkpoints" / "step_4"
    step.mkdir(parents=True)
    (step / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoints" / "step_2").mkdir()  # incomplete: no trainer_state.json
    assert resolve_checkpoint(str(tmp_path)) == str(step)
    with pytest.raises(ConfigError, match="checkpoint: .* is neither a run dir"):
        resolve_checkpoint(str(tmp_path / "checkpoints" / "step_2"))
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_checkpoint(str(tmp_path / "missing"))


def run_eval(*overrides: str, out: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "rlpost.eval", *overrides, f"hydra.run.dir={out}"]
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("data", "sample", "reward"),
    [("math500", "math500_sample.jsonl", "math_verify"), ("gsm8k", "gsm8k_sample.jsonl", "gsm8k")],
)
def test_rlpost_eval_end_to_end_with_the_tiny_model(tmp_path, data, sample, reward):
    result = run_eval(
        f"checkpoint={TINY}",
        f"data={data}",
        f"reward={reward}",
        "data.data_dir=tests/data",
        f"data.eval_path={sample}",
        "data.template='{question}'",
        "data.max_prompt_tokens=200",
        "eval.k=4",
        "eval.max_problems=12",
        out=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "eval.json").read_text())
    overall = report["metrics"]["overall"]
    assert set(overall) == {"problems", "pass@1_greedy", "mean@4", "pass@1", "pass@2", "pass@4"}
    assert 0 < overall["problems"] <= 12 and len(report["problems"]) == overall["problems"]
    assert overall["pass@1"] == pytest.approx(overall["mean@4"])  # pass@1 with n = k is the sample mean
    assert overall["pass@1"] <= overall["pass@2"] <= overall["pass@4"] <= 1.0
    if data == "math500":
        assert "by_subject" in report["metrics"] and "by_level" in report["metrics"]
        assert sum(v["problems"] for v in report["metrics"]["by_level"].values()) == overall["problems"]
    assert "pass@1_greedy" in result.stdout and "eval.json" in result.stdout


def test_rlpost_eval_bad_checkpoint_is_one_line_exit_2(tmp_path):
    result = run_eval(f"checkpoint={tmp_path / 'nope'}", out=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("rlpost-eval: config error: checkpoint:")
