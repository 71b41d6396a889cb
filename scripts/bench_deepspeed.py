"""Per-rank memory of trainer=torch (1 process) vs deepspeed_zero2 / zero3 (2 processes), side by side.

    python scripts/bench_deepspeed.py                 # ~300M-parameter random Qwen3-architecture model, fp32
    python scripts/bench_deepspeed.py --hidden 512    # smaller, quicker

Each configuration runs in its own processes (this script re-invokes itself as a worker, under torch's elastic
launcher for 2 ranks): build the model, take two policy updates on a fixed batch through rlpost's engines, and
report per rank: the model-state bytes the rank holds (parameters, gradients, optimizer state: counted from the
tensors themselves) and peak RSS. The table gives ratios to trainer=torch and the ideal ratio for W=2.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def model_state_bytes(engine) -> dict[str, int]:
    """Bytes of parameters, gradients and optimizer state this rank holds (ZeRO partitions counted as held)."""
    params = grads = 0
    for p in engine.model.parameters():
        local = getattr(p, "ds_tensor", None)  # ZeRO-3: the rank's partition
        tensor = local if local is not None else p
        params += tensor.numel() * tensor.element_size()
        if p.grad is not None:
            grads += p.grad.numel() * p.grad.element_size()
    optimizer = getattr(getattr(engine, "ds", None), "optimizer", None)
    states = optimizer.optimizer.state if optimizer is not None else engine.optimizer.state
    state = sum(
        t.numel() * t.element_size() for s in states.values() for t in s.values() if isinstance(t, torch.Tensor)
    )
    if optimizer is not None:  # ZeRO keeps its own fp32 partitions and gradient partitions
        for group in getattr(optimizer, "single_partition_of_fp32_groups", []) or []:
            params += group.numel() * group.element_size()
            if group.grad is not None:
                grads += group.grad.numel() * group.grad.element_size()
        for group in getattr(optimizer, "fp32_partitioned_groups_flat", []) or []:
            params += group.numel() * group.element_size()
            if group.grad is not None:
                grads += group.grad.numel() * group.grad.element_size()
    return {"params": params, "grads": grads, "optimizer": state}


def worker(args) -> None:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from rlpost import distributed
    from rlpost.cli import compose_train
    from rlpost.config import validate
    from rlpost.engine import ENGINES
    from tests.engine.ds_parity import fixed_batch

    cfg = validate(compose_train([f"trainer={args.trainer}", "trainer.micro_batch_size=4"]))
    engine_class = ENGINES.get(cfg.trainer.name).component
    config = Qwen3Config(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=3 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.hidden // 64,
        num_key_value_heads=max(1, args.hidden // 256),
        head_dim=64,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    with engine_class.loading_model(cfg.trainer):
        model = Qwen3ForCausalLM(config)
    from rlpost.models import load_model

    tokenizer = load_model(validate(compose_train([])).model)[1]
    engine = engine_class(model, cfg.trainer, total_steps=2, need_reference=False)
    batch = fixed_batch(tokenizer, args.vocab)
    from rlpost.advantages import compute_advantages
    from rlpost.trainer import update_policy

    compute_advantages(cfg.advantage, batch)
    held = {}
    for step in (1, 2):
        update_policy(batch, engine, cfg, step)
        held = model_state_bytes(engine)
    total_params = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in engine.model.parameters())
    record = {
        "trainer": args.trainer,
        "rank": distributed.rank(),
        "world": distributed.world_size(),
        "parameters": total_params,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        **{f"{k}_gb": v / 2**30 for k, v in held.items()},
    }
    records = distributed.all_gather_objects(record)
    if distributed.is_main():
        Path(args.out).write_text(json.dumps(records))


def run(trainer: str, nproc: int, args, out: Path) -> list[dict]:
    from rlpost.distributed import free_port

    shape = ["--hidden", str(args.hidden), "--layers", str(args.layers), "--vocab", str(args.vocab)]
    tail = [str(Path(__file__).resolve()), "--worker", "--trainer", trainer, "--out", str(out), *shape]
    if nproc == 1:
        command = [sys.executable, *tail]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
        command += [f"--master_port={free_port()}", *tail]
    subprocess.run(command, cwd=REPO, check=True, capture_output=not args.verbose)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--vocab", type=int, default=83)  # the tiny tokenizer's; the model's size is in the layers
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--trainer", default="torch")
    parser.add_argument("--out", default="")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for trainer, nproc in (("torch", 1), ("deepspeed_zero2", 2), ("deepspeed_zero3", 2)):
            rows += run(trainer, nproc, args, Path(tmp) / f"{trainer}.json")
    base = rows[0]
    base_state = base["params_gb"] + base["grads_gb"] + base["optimizer_gb"]
    ideal = {"torch": "1.00", "deepspeed_zero2": "0.625", "deepspeed_zero3": "0.50"}  # W=2, fp32 AdamW
    print(f"model: {base['parameters'] / 1e6:.0f}M parameters, fp32, AdamW; load average {os.getloadavg()[0]:.1f}")
    print("| trainer | rank | params GB | grads GB | optimizer GB | model states / torch | ideal | peak RSS GB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        state = row["params_gb"] + row["grads_gb"] + row["optimizer_gb"]
        print(
            f"| {row['trainer']} | {row['rank']}/{row['world']} | {row['params_gb']:.2f} | {row['grads_gb']:.2f} "
            f"| {row['optimizer_gb']:.2f} | {state / base_state:.2f} | {ideal[row['trainer']]} "
            f"| {row['peak_rss_gb']:.2f} |"
        )


if __name__ == "__main__":
    main()
