"""The paper recipes on Qwen3 for math (conf/experiment/*_qwen3_math.yaml): each composes and validates with its
real settings, and runs end to end with the tiny model on the MATH-500 / GSM8K samples (debug=fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlpost.cli import compose_train
from rlpost.config import validate
from tests.conftest import read_jsonl, run_train

CONF = Path(__file__).resolve().parents[1] / "conf"
RECIPES = sorted(path.stem for path in (CONF / "experiment").glob("*_qwen3_math.yaml"))
# the recipe's model and data files swapped for the embedded tiny model and the samples in tests/data
TINY = [
    "model=tiny",
    "data=math",  # also for the multirun's first composition, before the recipe applies
    "data.data_dir=tests/data",
    "data.train_path=math500_sample.jsonl",
    "data.eval_path=math500_sample.jsonl",
    "data.template='{question}'",
    "data.max_prompt_tokens=200",
    "++data.eval_sets.gsm8k={name: gsm8k, eval_path: gsm8k_sample.jsonl, template: '{question}'}",
    "rollout.max_new_tokens=8",
    "reward.overlong_buffer=0",
    "trainer.micro_batch_tokens=0",
    "trainer.gradient_checkpointing=false",
]


def test_the_four_recipes_exist():
    assert RECIPES == ["dapo_qwen3_math", "dhpo_qwen3_math", "dr_grpo_qwen3_math", "gspo_qwen3_math"]


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_composes_and_validates(recipe):
    cfg = validate(compose_train([f"experiment={recipe}"]))
    assert cfg.model.path.startswith("Qwen/Qwen3-") and cfg.data.name == "math" and cfg.reward.name == "math_verify"
    paper_algo = recipe.removesuffix("_qwen3_math")  # the recipe's loss equals conf/algo/<paper>.yaml
    assert cfg.algo == validate(compose_train([f"algo={paper_algo}"])).algo


@pytest.mark.slow
def test_recipes_run_with_the_tiny_model(tmp_path):
    run_train(
        "-m",
        f"experiment={','.join(RECIPES)}",
        "debug=fast",
        "eval_size=4",
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
        "hydra.sweep.subdir=${hydra.job.num}",  # the overrides would make too long a name
        timeout=1800,
        check=True,
    )
    jobs = sorted(job for job in tmp_path.iterdir() if job.is_dir())
    assert len(jobs) == len(RECIPES)
    for job in jobs:
        records = read_jsonl(job / "metrics.jsonl")
        assert (job / "summary.json").is_file() and records[-1]["step"] == 3
        assert "eval/gsm8k/accuracy" in records[0] and "reward_graded_per_s" in records[1]
