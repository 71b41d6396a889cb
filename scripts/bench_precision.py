"""CPU benchmark: trainer.precision=fp32 vs bf16-mixed, a ~65M-parameter random Qwen3, vocabulary 151,936.

    python scripts/bench_precision.py                 # both precisions, side by side; prints a markdown table
    python scripts/bench_precision.py --steps 3       # shorter

Each precision runs in its own subprocess (so its peak RSS is its own), one after the other in this invocation.
A step is what trainer=torch does per optimizer step: forward (chunked log-probs + entropy), the GRPO loss,
backward, gradient clipping, AdamW. The batch is synthetic (random token ids: the numerics do not matter for
time and memory), identical in both runs. Model: Qwen3 architecture, hidden 384, 4 layers, 6 heads / 2 KV heads,
head_dim 64, intermediate 1152, tied embeddings, vocabulary 151,936 (the LM head is most of the compute, as in
small real models). Median of the timed steps after the warm-up steps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = {
    "model_type": "qwen3",
    "vocab_size": 151936,
    "hidden_size": 384,
    "intermediate_size": 1152,
    "num_hidden_layers": 4,
    "num_attention_heads": 6,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "tie_word_embeddings": True,
    "max_position_embeddings": 4096,
}


def _batch(rows: int, prompt: int, response: int, vocab: int, groups: int):
    import torch

    from rlpost.batch import RolloutBatch

    generator = torch.Generator().manual_seed(0)
    group_index = torch.arange(rows) % groups
    prompt_ids = torch.randint(0, vocab, (groups, prompt), generator=generator)[group_index]
    response_ids = torch.randint(0, vocab, (rows, response), generator=generator)
    return RolloutBatch(
        prompt_index=group_index.clone(),
        group_index=group_index,
        prompt_ids=prompt_ids,
        prompt_mask=torch.ones(rows, prompt, dtype=torch.bool),
        response_ids=response_ids,
        response_mask=torch.ones(rows, response, dtype=torch.bool),
        texts=[""] * rows,
        advantages=torch.randn(rows, generator=generator),
    )


def worker(args) -> dict:
    """One precision: build, warm up, time `steps` optimizer steps; report step time and this process's peak RSS."""
    import resource

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from rlpost.algos import ALGOS, policy_loss
    from rlpost.algos.common import Normalizer
    from rlpost.engine.precision import Precision
    from rlpost.engine.torch import TorchEngine, TorchEngineConfig

    torch.manual_seed(0)
    fields = dict(ARCHITECTURE)  # built as model.init=random builds a preset (no tokenizer needed here)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields))
    parameters = sum(p.numel() for p in model.parameters())
    engine = TorchEngine(
        model,
        TorchEngineConfig(lr=1e-6),
        total_steps=args.warmup + args.steps,
        need_reference=False,
        precision=Precision(args.worker, torch.device("cpu")),
    )
    batch = _batch(args.rows, args.prompt, args.response, ARCHITECTURE["vocab_size"], args.groups)
    algo = ALGOS.get("grpo").schema()
    norm = Normalizer.of(batch.loss_mask, batch.group_index, float(args.response), batch.advantages)
    seconds, losses = [], []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        logprobs, entropy = engine.forward(batch)
        loss, _ = policy_loss(
            algo,
            logprobs=logprobs,
            old_logprobs=logprobs.detach(),
            advantages=batch.advantages,
            mask=batch.loss_mask,
            norm=norm,
            group_index=batch.group_index,
            entropy=entropy,
        )
        engine.backward(loss)
        engine.step()
        if step >= args.warmup:
            seconds.append(time.perf_counter() - start)
            losses.append(float(loss.detach()))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "precision": args.worker,
        "parameters": parameters,
        "tokens_per_step": args.rows * (args.prompt + args.response),
        "step_seconds": seconds,
        "median_step_seconds": statistics.median(seconds),
        "peak_rss_mib": peak_kib / 1024,
        "threads": torch.get_num_threads(),
        "logprob_dtype": str(logprobs.dtype),
        "master_dtype": str(next(engine.model.parameters()).dtype),
        "finite": all(math.isfinite(v) for v in losses),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=["fp32", "bf16-mixed", "bf16"], help=argparse.SUPPRESS)
    parser.add_argument("--precisions", default="fp32,bf16-mixed")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rows", type=int, default=8, help="sequences per step")
    parser.add_argument("--groups", type=int, default=2, help="prompts per step (rows share them)")
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--response", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if args.worker:
        print(json.dumps(worker(args)))
        return
    results = []
    for precision in args.precisions.split(","):
        command = [sys.executable, __file__, "--worker", precision]
        for key in ("steps", "warmup", "rows", "groups", "prompt", "response"):
            command += [f"--{key}", str(getattr(args, key))]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=os.environ.copy())
        if done.returncode != 0:
            sys.exit(f"bench_precision: {precision} failed:\n{done.stderr[-2000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    load = os.getloadavg()
    base = results[0]["median_step_seconds"]
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load[0]:.1f}; "
        f"{results[0]['parameters'] / 1e6:.1f}M parameters, {results[0]['tokens_per_step']} tokens/step, "
        f"median of {args.steps} steps after {args.warmup} warm-up"
    )
    print("| precision | masters | log-probs | step s (median) | tokens/s | peak RSS MiB | step time vs fp32 |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        tokens = r["tokens_per_step"] / r["median_step_seconds"]
        print(
            f"| {r['precision']} | {r['master_dtype'].removeprefix('torch.')} | "
            f"{r['logprob_dtype'].removeprefix('torch.')} | {r['median_step_seconds']:.3f} | {tokens:,.0f} | "
            f"{r['peak_rss_mib']:,.0f} | {r['median_step_seconds'] / base:.2f}x |"
        )
    if args.json:
        args.json.write_text(json.dumps({"load_average": load, "results": results}, indent=2) + "\n")
    if not all(r["finite"] for r in results):
        sys.exit("bench_precision: a loss was not finite")


if __name__ == "__main__":
    main()
