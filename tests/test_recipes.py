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
    "data.system_prompt=''",  # Dr. GRPO's Qwen-Math system message would not fit the tiny model's 200 tokens
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


def test_dapo_recipe_holds_the_papers_ratios():
    """DAPO §4.1: 512 prompts x 16, mini-batches of 512 responses (16 updates per rollout step), a 20-rollout-step
    warm-up, L_max 20480 with a 4096-token soft punish cache (expected maximum 16384); Eq. 7 rewards +1 / -1; Eq. 11
    filter on accuracy."""
    cfg = validate(compose_train(["experiment=dapo_qwen3_math"]))
    run = cfg.run
    assert (run.prompts_per_step, run.n) == (512, 16)
    assert run.prompts_per_step * run.n // run.minibatches == 512 and run.minibatches * run.ppo_epochs == 16
    assert cfg.trainer.warmup_steps == 20 * run.minibatches * run.ppo_epochs and cfg.trainer.lr == 1e-6
    assert cfg.rollout.max_new_tokens == 20480 and cfg.rollout.max_new_tokens - cfg.reward.overlong_buffer == 16384
    assert (cfg.reward.correct, cfg.reward.wrong) == (1.0, -1.0) and cfg.sampler.metric == "correct"
    assert (cfg.algo.clip_low, cfg.algo.clip_high, cfg.algo.loss_agg, cfg.algo.kl_coef) == (0.2, 0.28, "token-mean", 0)


def test_dr_grpo_recipe_holds_table_6():
    """Dr. GRPO App. G Table 6: 8 responses, 3000 tokens (also the loss's constant divisor, Listing 1), temperature 1.0,
    top-p 1.0, AdamW (0.9, 0.95), no weight decay, clip-norm 1.0, constant lr 1e-6, one inner epoch, no KL, clip 0.2."""
    cfg = validate(compose_train(["experiment=dr_grpo_qwen3_math"]))
    assert cfg.run.n == 8 and cfg.run.ppo_epochs == 1 and cfg.advantage.name == "dr_grpo"
    assert (cfg.rollout.max_new_tokens, cfg.rollout.temperature, cfg.rollout.top_p) == (3000, 1.0, 1.0)
    assert cfg.algo.loss_agg == "seq-mean-token-sum-norm" and cfg.algo.norm_length == 0  # 0: max_new_tokens
    trainer = cfg.trainer
    assert (trainer.beta1, trainer.beta2, trainer.weight_decay, trainer.grad_clip) == (0.9, 0.95, 0.0, 1.0)
    assert (trainer.lr, trainer.schedule, trainer.warmup_steps) == (1e-6, "constant", 0)
    assert (cfg.algo.clip_low, cfg.algo.clip_high, cfg.algo.kl_coef) == (0.2, 0.2, 0.0)


def test_gspo_recipe_holds_section_5_1():
    """GSPO §5.1: clipping ranges 3e-4 / 4e-4, each rollout batch split into four minibatches."""
    cfg = validate(compose_train(["experiment=gspo_qwen3_math"]))
    assert (cfg.algo.clip_low, cfg.algo.clip_high, cfg.run.minibatches) == (3e-4, 4e-4, 4)
    assert cfg.algo.loss_agg == "seq-mean-token-mean" and cfg.algo.kl_coef == 0.0
