"""Configuration errors: one line naming the key and what is allowed, exit code 2, no traceback."""

from __future__ import annotations

import pytest

from rlpost.cli import compose_train
from rlpost.config import ConfigError, validate
from tests.conftest import run_train


def composed(*overrides: str):
    return compose_train(list(overrides))


def test_default_config_validates():
    cfg = validate(composed())
    assert cfg.algo.name == "grpo" and cfg.advantage.name == "grpo" and cfg.run.n == 8
    assert cfg.sampler.name == "uniform" and cfg.trainer.lr == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("algo.clip_low=-1", r"algo\.clip_low: -1\.0 is out of range \[0\.0, 1\.0\]"),
        ("algo.clip_low=abc", r"algo\.clip_low: Value 'abc' .*could not be converted to Float"),
        ("algo.loss_agg=mean", r"algo\.loss_agg: 'mean' is not one of token-mean"),
        ("trainer.lr=0", r"trainer\.lr: 0\.0 is out of range \(0\.0, 1\.0\]"),
        ("rollout.top_p=1.5", r"rollout\.top_p"),
        ("steps=0", r"steps: must be >= 1"),
        ("n=1", r"n: advantage=grpo needs n >= 2"),
        ("minibatches=3", r"minibatches: 3 does not divide"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(composed(override))


def test_added_unknown_key_lists_allowed_keys():
    with pytest.raises(ConfigError, match=r"algo\.cliplow: .*allowed keys: name, clip_low"):
        validate(composed("+algo.cliplow=0.2"))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["algo=nope"], "algo=nope: no such option; choose one of: "),
        (["algo.cliplow=0.2"], "algo.cliplow: no such key; allowed keys: "),
        (["algo.clip_low=-1"], "algo.clip_low: -1.0 is out of range"),
        (
            ["data=jsonl", "data.train_path=/nonexistent/train.jsonl", "data.eval_path=/x.jsonl"],
            "file not found: /nonexistent/train.jsonl",
        ),
        (["model.path=/nonexistent/model"], "model.path: /nonexistent/model is not a model directory"),
        (["stepz=3"], "stepz: no such key"),
    ],
)
def test_cli_config_errors_exit_2_with_one_line(args, expected, tmp_path):
    result = run_train(*args, "debug=fast", run_dir=tmp_path / "run", timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_unknown_option_lists_the_options(tmp_path):
    result = run_train("algo=nope", run_dir=tmp_path / "run", timeout=120)
    assert "grpo" in result.stderr.splitlines()[0]


def test_malformed_data_file_names_path_and_line(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"question": "What is 1+1?", "answer": "2"}\n{"question": oops}\n')
    result = run_train(
        "data=jsonl",
        f"data.train_path={data}",
        f"data.eval_path={data}",
        "debug=fast",
        run_dir=tmp_path / "run",
        timeout=120,
    )
    assert result.returncode == 2
    assert f"{data}:2: not valid JSON" in result.stderr.strip()


def test_full_error_env_shows_traceback(tmp_path):
    result = run_train(
        "algo.clip_low=-1", "debug=fast", run_dir=tmp_path / "run", timeout=120, env={"HYDRA_FULL_ERROR": "1"}
    )
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_help_and_cfg_job_work(tmp_path):
    help_result = run_train("--help", timeout=120)
    assert help_result.returncode == 0 and "algo: " in help_result.stdout
    cfg_result = run_train("--cfg", "job", "algo.clip_high=0.28", timeout=120)
    assert cfg_result.returncode == 0 and "clip_high: 0.28" in cfg_result.stdout
