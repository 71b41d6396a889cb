"""update_policy's loss and gradient do not depend on trainer.micro_batch_size / micro_batch_tokens, for every
conf/algo option and every advantage estimator (the real torch engine on the embedded tiny model).

Statistics an algo takes over the minibatch (Clip-Cov/KL-Cov token selection, BAPO's bounds, DHPO's batch-scope
entropy weights) and the balanced aggregation's subset counts are where a per-micro-batch computation would show.
"""

import functools
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from rlpost.advantages import ADVANTAGES, compute_advantages
from rlpost.batch import RolloutBatch
from rlpost.cli import compose_train
from rlpost.config import validate
from rlpost.engine.torch import TorchEngine, TorchEngineConfig
from rlpost.models import ModelConfig, load_model
from rlpost.trainer import update_policy

ALGO_YAMLS = sorted(path.stem for path in (Path(__file__).parents[1] / "conf" / "algo").glob("*.yaml"))
# knobs that make a minibatch statistic bite on a 12-row batch (the defaults select about one token)
SHARPENED = [
    ("clip_cov", ["algo.clip_cov_ratio=0.3", "algo.clip_cov_lb=-5.0"]),
    ("kl_cov", ["algo.kl_cov_ratio=0.3"]),
    ("dhpo_entropy", ["algo.entropy_scope=batch"]),
    ("bapo", ["algo.positive_share=0.7"]),
    ("grpo", ["algo.loss_agg=balanced", "algo.kl_coef=0.05", "algo.entropy_coef=0.01", "algo.tis_cap=2.0"]),
]
ALGO_CASES = [(stem, []) for stem in ALGO_YAMLS] + SHARPENED
pytestmark = [
    pytest.mark.slow,  # ~40 s on an idle machine: 36 cases x 4 splits of update_policy
    pytest.mark.filterwarnings("ignore:Detected call of"),  # GradientRecorder never steps the optimizer
]
SPLITS = [(1, 0), (3, 0), (12, 45), (12, 80)]  # (micro_batch_size, micro_batch_tokens); (12, 0) is the whole


class GradientRecorder(TorchEngine):
    """trainer=torch, except that step() records the accumulated gradient and leaves the weights as they are."""

    def step(self, skip: bool = False) -> dict[str, float]:
        self.recorded = {name: p.grad.clone() for name, p in self.model.named_parameters() if p.grad is not None}
        return super().step(skip=True)


@pytest.fixture(scope="module")
def tiny():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 0.5M-parameter model: more threads only contend (100x slower on a loaded machine)
    yield load_model(ModelConfig())
    torch.set_num_threads(threads)


@functools.cache
def composed(overrides: tuple[str, ...]):
    return compose_train(list(overrides))


def rollout_batch(model, tokenizer, count: int = 12, groups: int = 3, seed: int = 0) -> RolloutBatch:
    """Groups of 4 sharing a prompt, responses of varied lengths, continuous rewards in [0, 1], old log-probs the
    model's own plus noise (ratios around exp(+-0.3): clipping and the minibatch statistics are exercised)."""
    generator = torch.Generator().manual_seed(seed)
    prompt_width, response_width = 6, 7
    group_index = torch.arange(count) // (count // groups)
    prompt_lengths = torch.randint(2, prompt_width + 1, (groups,), generator=generator)[group_index]
    prompt_mask = torch.arange(prompt_width)[None, :] >= (prompt_width - prompt_lengths)[:, None]
    prompt_ids = torch.randint(7, 80, (groups, prompt_width), generator=generator)[group_index]
    response_lengths = torch.randint(1, response_width + 1, (count,), generator=generator)
    response_mask = torch.arange(response_width)[None, :] < response_lengths[:, None]
    response_ids = torch.randint(7, 80, (count, response_width), generator=generator)
    pad = tokenizer.pad_token_id
    batch = RolloutBatch(
        prompt_index=group_index.clone(),
        group_index=group_index,
        prompt_ids=prompt_ids.masked_fill(~prompt_mask, pad),
        prompt_mask=prompt_mask,
        response_ids=response_ids.masked_fill(~response_mask, pad),
        response_mask=response_mask,
        texts=["<search>" * int(b % 3) for b in range(count)],
        sampling_logprobs=(-torch.rand(count, response_width, generator=generator) - 3.0) * response_mask,
        truncated=response_lengths == response_width,
    )
    current = GradientRecorder(model, TorchEngineConfig(), total_steps=1, need_reference=False).logprobs(batch)
    batch.old_logprobs = current + 0.3 * torch.randn(current.shape, generator=generator)
    batch.ref_logprobs = current + 0.3 * torch.randn(current.shape, generator=generator)
    batch.reward = torch.rand(count, generator=generator)  # every group mixed
    batch.rewards = {"correct": batch.reward.clone(), "format": (batch.reward > 0.5).float()}
    return batch


def loss_and_gradient(model, cfg, batch: RolloutBatch, size: int, max_tokens: int):
    cfg.trainer.micro_batch_size, cfg.trainer.micro_batch_tokens = size, max_tokens
    engine = GradientRecorder(model, cfg.trainer, total_steps=1, need_reference=False)
    torch.manual_seed(0)  # Clip-Cov's draw
    metrics = update_policy(batch, engine, cfg, step=1)
    return metrics["loss"], engine.recorded


def assert_split_invariant(model, cfg, batch: RolloutBatch) -> None:
    whole, whole_grads = loss_and_gradient(model, cfg, batch, len(batch), 0)
    assert whole_grads, "no gradient recorded"
    for size, max_tokens in SPLITS:
        loss, grads = loss_and_gradient(model, cfg, batch, size, max_tokens)
        assert loss == pytest.approx(whole, rel=1e-5, abs=1e-6), (size, max_tokens)
        assert grads.keys() == whole_grads.keys()
        for name, grad in grads.items():  # float32 summation order differs: tolerance relative to the scale
            scale = float(whole_grads[name].abs().max())
            torch.testing.assert_close(grad, whole_grads[name], rtol=1e-4, atol=1e-4 * scale, msg=(size, max_tokens))


def validated(overrides: list[str]):
    cfg = validate(OmegaConf.create(OmegaConf.to_container(composed(tuple(overrides)))))
    cfg.run.ppo_epochs, cfg.run.minibatches = 1, 1
    return cfg


@pytest.mark.parametrize("stem, overrides", ALGO_CASES, ids=[" ".join([s, *o]) for s, o in ALGO_CASES])
def test_every_algo_option_is_split_invariant(tiny, stem, overrides):
    model, tokenizer = tiny
    cfg = validated([f"algo={stem}", *overrides])
    batch = rollout_batch(model, tokenizer)
    compute_advantages(cfg.advantage, batch)
    assert_split_invariant(model, cfg, batch)


@pytest.mark.parametrize("name", ADVANTAGES.names())
def test_every_estimator_is_split_invariant(tiny, name):
    # balanced aggregation splits each group by advantage sign: the estimator decides the subsets
    model, tokenizer = tiny
    cfg = validated([f"advantage={name}", "algo.loss_agg=balanced"])
    batch = rollout_batch(model, tokenizer)
    compute_advantages(cfg.advantage, batch)
    assert_split_invariant(model, cfg, batch)
