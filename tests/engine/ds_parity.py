"""Worker for tests/engine/test_deepspeed.py: three policy updates on one fixed global batch, weights saved.

    python tests/engine/ds_parity.py OUT.pt trainer=torch [overrides...]
    python -m torch.distributed.run --nproc_per_node 2 tests/engine/ds_parity.py OUT.pt trainer=deepspeed_zero3 ...

Every process builds the same batch from a fixed seed (the global batch); each rank trains on its share, exactly
as rlpost.trainer.update_policy does in a run. Rank 0 writes {losses, weights} to OUT.pt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rlpost import distributed  # noqa: E402
from rlpost.advantages import compute_advantages  # noqa: E402
from rlpost.batch import RolloutBatch  # noqa: E402
from rlpost.cli import compose_train  # noqa: E402
from rlpost.config import validate  # noqa: E402
from rlpost.engine import ENGINES  # noqa: E402
from rlpost.models import load_model  # noqa: E402
from rlpost.rollout.hf import pad_left  # noqa: E402
from rlpost.trainer import update_policy  # noqa: E402

GROUP_SIZES = [4, 3, 4, 2, 4, 3]  # uneven groups: shards differ in rows and micro-batch counts


def fixed_batch(tokenizer, vocab: int) -> RolloutBatch:
    generator = torch.Generator().manual_seed(1234)
    prompts, group_index, lengths = [], [], []
    for group, size in enumerate(GROUP_SIZES):
        prompt = tokenizer(f"<bos><|user|>What is {10 + group}+{20 + 3 * group}?<|assistant|>")["input_ids"]
        for _ in range(size):
            prompts.append(prompt)
            group_index.append(group)
            lengths.append(int(torch.randint(1, 7, (1,), generator=generator)))
    prompt_ids, prompt_mask = pad_left(prompts, tokenizer.pad_token_id)
    width = max(lengths)
    response_ids = torch.randint(10, vocab, (len(prompts), width), generator=generator)
    response_mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    response_ids = response_ids.masked_fill(~response_mask, tokenizer.pad_token_id)
    rewards = torch.rand(len(prompts), generator=generator).round()
    batch = RolloutBatch(
        prompt_index=torch.tensor(group_index),
        group_index=torch.tensor(group_index),
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=response_mask,
        texts=[""] * len(prompts),
        sampling_logprobs=-torch.rand(len(prompts), width, generator=generator) - 1.0,
        truncated=torch.zeros(len(prompts), dtype=torch.bool),
    )
    batch.reward = rewards
    batch.rewards = {"correct": rewards.clone()}
    return batch


def main(out: str, overrides: list[str]) -> None:
    cfg = validate(compose_train(overrides))
    engine_class = ENGINES.get(cfg.trainer.name).component
    torch.manual_seed(cfg.run.seed)
    with engine_class.loading_model(cfg.trainer):
        model, tokenizer = load_model(cfg.model)
    updates = 3 * cfg.run.ppo_epochs * cfg.run.minibatches
    engine = engine_class(model, cfg.trainer, total_steps=updates, need_reference=cfg.algo.kl_coef > 0)
    initial = {name: tensor.detach().float().cpu().clone() for name, tensor in engine.named_tensors()}
    batch = fixed_batch(tokenizer, model.config.vocab_size)
    compute_advantages(cfg.advantage, batch)
    losses = []
    for step in (1, 2, 3):
        if cfg.run.ppo_epochs > 1 or cfg.run.minibatches > 1:
            batch.old_logprobs = engine.logprobs(batch)
        if cfg.algo.kl_coef > 0:
            batch.ref_logprobs = engine.logprobs(batch, reference=True)
        metrics = update_policy(batch, engine, cfg, step)
        losses.append(metrics["loss"])
    weights = {name: tensor.detach().float().cpu().clone() for name, tensor in engine.named_tensors()}
    if distributed.is_main():
        torch.save({"losses": losses, "weights": weights, "initial": initial}, out)
    distributed.barrier()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
