"""Configuration errors: one line naming the key and what is allowed, exit code 2, no traceback."""

from __future__ import annotations

import math

import pytest
from hydra.errors import MissingConfigException

from rlpost.cli import compose_train
from rlpost.config import ConfigError, _as_schema, first_non_finite, validate
from rlpost.preflight import explain, one_line
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


def test_non_finite_floats_are_found_anywhere_in_a_group():
    key, value = first_non_finite({"a": 1.0, "b": {"c": [0.5, float("nan")]}}, "algo")
    assert key == "algo.b.c.1" and math.isnan(value)
    assert first_non_finite({"a": 1.0, "b": {"c": float("-inf")}}, "") == ("b.c", float("-inf"))
    assert first_non_finite({"a": 1.0, "b": [2, "x"]}, "") is None


def test_every_float_key_of_every_group_refuses_nan():
    """The finiteness check is generic: it holds for every float field of every registered schema."""
    import dataclasses
    import typing

    from rlpost import registries

    for group, registry in registries.REGISTRIES.items():
        for name in registry.names():
            schema = registry.get(name).schema
            hints = typing.get_type_hints(schema)
            for field in dataclasses.fields(schema):
                if hints[field.name] is float:
                    with pytest.raises(ConfigError, match=rf"^{group}\.{field.name}: must be a finite number"):
                        _as_schema(schema, {field.name: float("nan")}, group)


def test_group_options_leave_out_hydras_search_path():
    with pytest.raises(MissingConfigException) as caught:
        composed("algo=nope")
    line = one_line(caught.value)
    assert line.startswith("algo=nope: no such option; choose one of: bapo, ") and line.endswith("sapo")
    assert "provider" not in line and "path=" not in line


def test_multirun_checks_every_job_to_the_last(tmp_path):
    argv = ["-m", "minibatches=1,3", "n=3,2", "debug=fast", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    assert explain(argv) == (
        "job 3 of 4 (minibatches=3 n=2): minibatches: 3 does not divide the rollout batch prompts_per_step*n = 8"
    )
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["algo=nope"], "algo=nope: no such option; choose one of: "),
        (["stepz=3"], "stepz: no such key (did you mean steps?)"),
        (["model.path=/nonexistent/model"], "model.path: /nonexistent/model is not a model directory"),
    ],
)
def test_cli_config_errors_exit_2_with_one_line(args, expected, tmp_path):
    result = run_train(*args, "debug=fast", run_dir=tmp_path / "run", timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_full_error_env_shows_traceback(tmp_path):
    result = run_train(
        "algo.clip_low=-1", "debug=fast", run_dir=tmp_path / "run", timeout=120, env={"HYDRA_FULL_ERROR": "1"}
    )
    assert result.returncode != 0 and "Traceback" in result.stderr


@pytest.mark.slow
def test_help_and_cfg_job_work(tmp_path):
    help_result = run_train("--help", timeout=120)
    assert help_result.returncode == 0 and "algo: " in help_result.stdout
    cfg_result = run_train("--cfg", "job", "algo.clip_high=0.28", timeout=120)
    assert cfg_result.returncode == 0 and "clip_high: 0.28" in cfg_result.stdout


def test_a_search_in_the_config_is_a_multirun_checked_at_both_ends_of_each_interval():
    """hparams_search=optuna_lr_clip sets hydra.mode=MULTIRUN and interval() params: 2 x 2 x 2 end points."""
    from hydra import initialize_config_dir

    from rlpost.config import CONF_DIR
    from rlpost.preflight import _jobs

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        jobs, sweep_dir = _jobs("train", ["hparams_search=optuna_lr_clip", "debug=fast"], multirun=False)
    assert sweep_dir is not None and len(jobs) == 8
    assert {job[0] for job in jobs} == {"trainer.lr=1e-05", "trainer.lr=0.001"}
    assert {job[1] for job in jobs} == {"algo.clip_low=0.1", "algo.clip_low=0.3"}
