"""A corpus of bad inputs: each exits with code 2 and one line naming the problem, with no traceback."""

from __future__ import annotations

import pytest

from tests.conftest import run_train

pytestmark = pytest.mark.slow

GROUPS = ("algo", "advantage", "sampler", "reward", "model", "data", "rollout", "trainer", "logger")

# (overrides, text the one-line message must contain)
CORPUS = [
    *[([f"{group}=nope"], f"{group}=nope: no such option; choose one of: ") for group in GROUPS],
    (["algo.cliplow=0.2"], "algo.cliplow: no such key; allowed keys: "),
    (["trainer.learning_rate=1e-4"], "trainer.learning_rate: no such key"),
    (["rollout.temprature=0.7"], "rollout.temprature: no such key"),
    (["stepz=3"], "stepz: no such key"),
    (["algo.clip_low=-1"], "algo.clip_low: -1.0 is out of range [0.0, 1.0]"),
    (["algo.clip_low=abc"], "algo.clip_low: Value 'abc'"),
    (["algo.loss_agg=mean"], "algo.loss_agg: 'mean' is not one of"),
    (["algo.kl_estimator=k9"], "algo.kl_estimator: 'k9' is not one of k1, k2, k3"),
    (["algo.kl_coef=-0.1"], "algo.kl_coef: must be >= 0"),
    (["trainer.lr=0"], "trainer.lr: 0.0 is out of range"),
    (["trainer.schedule=step"], "trainer.schedule: 'step' is not one of constant, linear, cosine"),
    (["trainer.grad_clip=-1"], "trainer.grad_clip: must be >= 0"),
    (["rollout.top_p=1.5"], "rollout.top_p: 1.5 is out of range"),
    (["rollout.temperature=0"], "rollout.temperature: 0.0 is out of range"),
    (["rollout.max_new_tokens=0"], "rollout.max_new_tokens: must be >= 1"),
    (["steps=0"], "steps: must be >= 1"),
    (["prompts_per_step=0"], "prompts_per_step: must be >= 1"),
    (["eval_size=0"], "eval_size: must be >= 1"),
    (["keep_checkpoints=0"], "keep_checkpoints: must be >= 1"),
    (["data.tiers=[9x]"], "data.tiers: '9x' is not '<digits 1-6><op>'"),
    (["data.train_size=0"], "data.train_size: must be >= 1"),
    (["model.dtype=float8"], "model.dtype: 'float8' is not one of float32, bfloat16, float16"),
    (["seed=-1"], "seed: must be >= 0"),
    # incompatible combinations
    (["n=1"], "n: advantage=grpo needs n >= 2"),
    (["minibatches=3"], "minibatches: 3 does not divide the rollout batch"),
    (["rollout.max_new_tokens=300"], "rollout.max_new_tokens: longest prompt + completion is"),
    # files, models, data
    (["model.path=/nonexistent/model"], "model.path: /nonexistent/model is not a model directory"),
    (["model.path=builtin:nope"], "model.path: unknown builtin 'nope'"),
    (
        ["data=jsonl", "data.train_path=/nonexistent/train.jsonl", "data.eval_path=/x.jsonl"],
        "data: file not found: /nonexistent/train.jsonl",
    ),
    (["data=jsonl"], "data.train_path: missing mandatory value; set it"),
    (["reward=custom"], "reward.function: missing mandatory value; set it"),
    (["reward=custom", "reward.function=no_colon"], "reward.function: 'no_colon' must be 'package.module:function'"),
    (["reward=custom", "reward.function=tests.nope:f"], "reward.function: cannot import 'tests.nope:f'"),
    (["reward=custom", "reward.function=tests.fault_rewards:NOT_CALLABLE"], "is not callable"),
    (["resume=/nonexistent/run"], "resume: no complete checkpoint at /nonexistent/run"),
]


def test_corpus_is_large_enough():
    assert len(CORPUS) + len(FILE_CASES) >= 30


@pytest.mark.parametrize(("overrides", "expected"), CORPUS, ids=[" ".join(c[0]) for c in CORPUS])
def test_bad_input_exits_2_with_one_line(overrides, expected, tmp_path):
    result = run_train(*overrides, "debug=fast", run_dir=tmp_path / "run", timeout=180)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert expected in lines[0], lines[0]


FILE_CASES = {
    "malformed_json": ('{"question": "What is 1+1?", "answer": "2"}\n{"question": oops}\n', ":2: not valid JSON"),
    "missing_keys": ('{"q": "What is 1+1?", "a": "2"}\n', ":1: needs keys 'question' and 'answer'"),
    "empty_file": ("\n\n", "has no rows"),
    "not_an_object": ("[1, 2]\n", ":1: needs keys 'question' and 'answer'"),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_bad_data_file_exits_2_naming_path_and_line(case, tmp_path):
    content, expected = FILE_CASES[case]
    path = tmp_path / f"{case}.jsonl"
    path.write_text(content)
    result = run_train(
        "data=jsonl",
        f"data.train_path={path}",
        f"data.eval_path={path}",
        "debug=fast",
        run_dir=tmp_path / "run",
        timeout=180,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert str(path) in lines[0] and expected in lines[0]


def test_model_dir_without_weights_exits_2(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    result = run_train(f"model.path={tmp_path / 'model'}", "debug=fast", run_dir=tmp_path / "run", timeout=180)
    assert result.returncode == 2 and "model.path: cannot load" in result.stderr, result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
