"""Worker for tests/engine/test_deepspeed.py: three policy updates on one fixed global batch, weights saved.

    python tests/engine/ds_parity.py OUT.pt trainer=torch [overrides...]
    python -m torch.distributed.run --nproc_per_node 2 tests/engine/ds_parity.py OUT.pt trainer=deepspeed_zero3 ...

Every process builds the same batch from a fixed seed (the global batch); each rank trains on its share, exactly
as rlpost.trainer.update_policy does in a run. Rank 0 writes {losses, weights, initial, ranks} to OUT.pt; `ranks`
holds, per rank, what its own engine.step reported (skipped_update) and whether its weights stayed the same.

Options before the overrides: --updates=N (default 3); --inf-grad-update=K: on the last rank only, a hook turns one
parameter's gradient into inf during update K (the loss stays finite: an overflow in backward on one rank).
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


INJECTED = "model.layers.0.mlp.down_proj.weight"


def inf_gradient_hook(engine):
    """A hook that makes INJECTED's gradient inf in every backward until removed (before ZeRO reduces it)."""
    param = dict(engine.model.named_parameters())[INJECTED]
    return param.register_hook(lambda grad: torch.full_like(grad, float("inf")))


def snapshot(engine) -> dict[str, torch.Tensor]:
    """Every weight, whole (gathered under ZeRO-3: a collective, every rank calls it)."""
    return {name: tensor.detach().float().cpu().clone() for name, tensor in engine.named_tensors()}


def main(out: str, overrides: list[str], updates: int = 3, inf_grad_update: int = 0) -> None:
    cfg = validate(compose_train(overrides))
    engine_class = ENGINES.get(cfg.trainer.name).component
    torch.manual_seed(cfg.run.seed)
    with engine_class.loading_model(cfg.trainer):
        model, tokenizer = load_model(cfg.model)
    total = updates * cfg.run.ppo_epochs * cfg.run.minibatches
    engine = engine_class(model, cfg.trainer, total_steps=total, need_reference=cfg.algo.kl_coef > 0)
    local_steps: list[dict] = []  # this rank's engine.step results (update_policy averages them over ranks)
    engine_step = engine.step

    def recorded_step(skip: bool = False) -> dict:
        local_steps.append(engine_step(skip=skip))
        return local_steps[-1]

    engine.step = recorded_step
    initial = previous = snapshot(engine)
    batch = fixed_batch(tokenizer, model.config.vocab_size)
    compute_advantages(cfg.advantage, batch)
    losses, unchanged = [], []
    injecting_rank = distributed.world_size() - 1
    for step in range(1, updates + 1):
        if cfg.run.ppo_epochs > 1 or cfg.run.minibatches > 1:
            batch.old_logprobs = engine.logprobs(batch)
        if cfg.algo.kl_coef > 0:
            batch.ref_logprobs = engine.logprobs(batch, reference=True)
        hook = inf_gradient_hook(engine) if step == inf_grad_update and distributed.rank() == injecting_rank else None
        metrics = update_policy(batch, engine, cfg, step)
        if hook is not None:
            hook.remove()
        losses.append(metrics["loss"])
        weights = snapshot(engine)
        unchanged.append(all(torch.equal(weights[name], previous[name]) for name in weights))
        previous = weights
    ranks = distributed.all_gather_objects(
        {"skipped": [record["skipped_update"] for record in local_steps], "unchanged": unchanged}
    )
    if distributed.is_main():
        torch.save({"losses": losses, "weights": previous, "initial": initial, "ranks": ranks}, out)
    distributed.barrier()


def parse(argv: list[str]) -> tuple[str, list[str], dict]:
    options = {
        key.removeprefix("--").replace("-", "_"): int(value)
        for key, value in (arg.split("=", 1) for arg in argv[1:] if arg.startswith("--"))
    }
    return argv[0], [arg for arg in argv[1:] if not arg.startswith("--")], options


if __name__ == "__main__":
    out_path, hydra_overrides, worker_options = parse(sys.argv[1:])
    main(out_path, hydra_overrides, **worker_options)
