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
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _bytes(tensors, seen: set[int]) -> int:
    """Bytes of the storages behind `tensors` not counted yet (views of one flat buffer count once)."""
    total = 0
    for tensor in tensors:
        if tensor is None or tensor.numel() == 0:
            continue
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def _flat(values) -> list:
    """Tensors in a value of DeepSpeed's per-group containers (tensor, list of tensors, or None)."""
    if isinstance(values, torch.Tensor):
        return [values]
    return [v for v in values or [] if isinstance(v, torch.Tensor)]


def model_state_bytes(engine) -> dict[str, int]:
    """Bytes of parameters, gradients and optimizer state this rank holds, counted from the tensors themselves.

    Taken just before the optimizer step, when gradients are held (trainer=torch frees them after the step).
    ZeRO partitions count as held: a ZeRO-3 parameter's `ds_tensor`, ZeRO's fp32 master partitions and their
    reduced gradient partitions (`averaged_gradients`); views of one flat buffer count once.
    """
    seen: set[int] = set()
    zero = getattr(getattr(engine, "ds", None), "optimizer", None)
    masters = [
        *(getattr(zero, "single_partition_of_fp32_groups", None) or []),  # ZeRO-1/2
        *(getattr(zero, "fp32_partitioned_groups_flat", None) or []),  # ZeRO-3
    ]
    module = [getattr(p, "ds_tensor", None) if hasattr(p, "ds_tensor") else p for p in engine.model.parameters()]
    params = _bytes(module + masters, seen)
    grad_tensors = [p.grad for p in engine.model.parameters()] + [m.grad for m in masters]
    for values in (getattr(zero, "averaged_gradients", None) or {}).values():
        grad_tensors += _flat(values)
    grads = _bytes(grad_tensors, seen)
    states = (zero.optimizer if zero is not None else engine.optimizer).state
    optimizer = _bytes([t for s in states.values() for t in s.values() if isinstance(t, torch.Tensor)], seen)
    return {"params": params, "grads": grads, "optimizer": optimizer}


def held_at_step(engine) -> dict[str, int]:
    """Wrap `engine.step` so each call records model_state_bytes just before the update (the step's peak)."""
    held: dict[str, int] = {}
    step = engine.step

    def measured_step(*args, **kwargs):
        held.update(model_state_bytes(engine))
        return step(*args, **kwargs)

    engine.step = measured_step
    return held


def worker(args) -> None:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from rlpost import distributed
    from rlpost.cli import compose_train
    from rlpost.config import validate
    from rlpost.engine import ENGINES
    from rlpost.models import load_model
    from tests.engine.ds_parity import fixed_batch

    overrides = [f"trainer={args.trainer}", "trainer.micro_batch_size=4", f"trainer.precision={args.precision}"]
    cfg = validate(compose_train(overrides))
    engine_class = ENGINES.get(cfg.trainer.name).component
    tokenizer = load_model(validate(compose_train([])).model)[1]  # the batch's prompts are in the tiny vocabulary
    vocab = args.vocab or len(tokenizer)
    config = Qwen3Config(
        vocab_size=vocab,
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
    engine = engine_class(model, cfg.trainer, total_steps=2, need_reference=False)
    batch = fixed_batch(tokenizer, vocab)
    from rlpost.advantages import compute_advantages
    from rlpost.trainer import update_policy

    compute_advantages(cfg.advantage, batch)
    held = held_at_step(engine)
    for step in (1, 2):  # the second step's record has the optimizer state the first step created
        start = time.perf_counter()
        update_policy(batch, engine, cfg, step)
        seconds = time.perf_counter() - start
    total_params = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in engine.model.parameters())
    record = {
        "trainer": args.trainer,
        "rank": distributed.rank(),
        "world": distributed.world_size(),
        "parameters": total_params,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "step_seconds": seconds,  # the second update
        **{f"{k}_gb": v / 2**30 for k, v in held.items()},
    }
    records = distributed.all_gather_objects(record)
    if distributed.is_main():
        Path(args.out).write_text(json.dumps(records))


def run(trainer: str, nproc: int, args, out: Path) -> list[dict]:
    from rlpost.distributed import free_port

    shape = ["--hidden", str(args.hidden), "--layers", str(args.layers), "--vocab", str(args.vocab)]
    shape += ["--precision", args.precision]
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
    parser.add_argument("--vocab", type=int, default=0, help="0: the tiny tokenizer's (the size is in the layers)")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--trainer", default="torch")
    parser.add_argument("--out", default="")
    parser.add_argument("--precision", default="fp32", help="trainer.precision: fp32 | bf16-mixed (the GPU setting)")
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
    print(
        f"model: {base['parameters'] / 1e6:.0f}M parameters, trainer.precision={args.precision}, AdamW; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    columns = "trainer | rank | params GB | grads GB | optimizer GB | model states / torch | ideal | peak RSS GB"
    columns += " | step s"
    print(f"| {columns} |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        state = row["params_gb"] + row["grads_gb"] + row["optimizer_gb"]
        print(
            f"| {row['trainer']} | {row['rank']}/{row['world']} | {row['params_gb']:.2f} | {row['grads_gb']:.2f} "
            f"| {row['optimizer_gb']:.2f} | {state / base_state:.2f} | {ideal[row['trainer']]} "
            f"| {row['peak_rss_gb']:.2f} | {row['step_seconds']:.1f} |"
        )


if __name__ == "__main__":
    main()
