"""Every option composes: one multirun per group over all its options (debug=fast) completes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_train

pytestmark = pytest.mark.slow
CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


def sweep(tmp_path: Path, *overrides: str) -> list[Path]:
    run_train("-m", "debug=fast", "eval_size=4", *overrides, f"hydra.sweep.dir={tmp_path}", timeout=1800, check=True)
    jobs = [job for job in tmp_path.iterdir() if job.is_dir()]
    assert all((job / "summary.json").is_file() for job in jobs)
    return jobs


def test_every_algo(tmp_path):
    assert len(sweep(tmp_path, f"algo={','.join(options('algo'))}")) == len(options("algo"))


def test_every_advantage_with_grpo_and_gspo(tmp_path):
    jobs = sweep(tmp_path, f"advantage={','.join(options('advantage'))}", "algo=grpo,gspo", "n=5")
    assert len(jobs) == 2 * len(options("advantage"))


def test_every_sampler_with_grpo_and_dhpo(tmp_path):
    jobs = sweep(tmp_path, f"sampler={','.join(options('sampler'))}", "algo=grpo,dhpo")
    assert len(jobs) == 2 * len(options("sampler"))


def test_experiments(tmp_path):
    for name in options("experiment"):
        if name.endswith("_qwen3_math"):  # hub models and data files: run with the tiny model in test_recipes.py
            continue
        result = run_train(f"experiment={name}", "debug=fast", "eval_size=4", run_dir=tmp_path / name, check=True)
        assert result.returncode == 0 and (tmp_path / name / "summary.json").is_file()
