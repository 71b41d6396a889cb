"""rollout=vllm vs rollout=hf: generation tokens/s on the same prompts, and in-place weight-sync seconds.

    python scripts/bench_rollout.py                                  # tiny model, then a Qwen3-0.6B-shaped one
    python scripts/bench_rollout.py --shapes tiny --prompts 64 --n 8 --tokens 32
    python scripts/bench_rollout.py --json out.json

Each shape runs in a subprocess of its own (one vLLM engine per process). Lengths are forced (min_new_tokens =
max_new_tokens) so every engine generates the same number of tokens; sampling at temperature 1 with log-probs, as
in training. Three rows per shape: rlpost's rollout=hf (its KV-cached loop), rlpost's rollout=vllm (per-request
seeds, processed log-probs, RolloutBatch building), and the same vLLM engine called directly (`LLM.generate`,
no log-probs, no seeds: "standalone"). Then `sync_weights` of the full state dict (median of 3). The
Qwen3-0.6B shape has random weights (bf16) and the tiny character tokenizer: throughput and sync cost only.
Timings on a shared machine are noisy: compare the ratios taken in the same invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QWEN3_06B = dict(  # Qwen/Qwen3-0.6B's config.json sizes
    hidden_size=1024,
    intermediate_size=3072,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=151936,
    max_position_embeddings=40960,
    tie_word_embeddings=True,
)


def _model_dir(shape: str, workdir: Path) -> tuple[str, str]:
    """(directory with config.json + tokenizer + weights, dtype)."""
    from rlpost.models import resolve_path

    if shape == "tiny":
        return resolve_path("builtin:tiny-arith"), "float32"
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from rlpost.models.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    config = Qwen3Config(
        **QWEN3_06B,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(workdir, safe_serialization=True)
    tokenizer.save_pretrained(workdir)
    return str(workdir), "bfloat16"


def _requests(shape: str, tokenizer, prompts: int, n: int):
    import torch

    from rlpost.data import load_splits
    from rlpost.data.arith import ArithConfig
    from rlpost.rollout import Request

    if shape == "tiny":
        ids = load_splits(ArithConfig(), tokenizer)["train"].token_ids[:prompts]
    else:  # 32 random prompt tokens from the character vocabulary
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(7, len(tokenizer), (prompts, 32), generator=generator).tolist()
    return [Request(i, list(p), n) for i, p in enumerate(ids)]


def _timed(fn, repeats: int = 1) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def run_shape(shape: str, prompts: int, n: int, tokens: int) -> dict:
    """One shape's measurements (runs in its own process)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlpost.rollout import Policy, SamplingConfig
    from rlpost.rollout.hf import HFRollout
    from rlpost.rollout.vllm import VLLMConfig, VLLMRollout

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as workdir:
        path, dtype = _model_dir(shape, Path(workdir))
        tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer.padding_side = "left"
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
        requests = _requests(shape, tokenizer, prompts, n)
        longest = max(len(r.token_ids) for r in requests) + tokens
        forced = dict(temperature=1.0, max_new_tokens=tokens, min_new_tokens=tokens)

        hf = HFRollout(model, tokenizer, SamplingConfig(**forced, batch_size=prompts * n))
        hf.generate(requests[:2], seed=1)  # warm-up
        hf_seconds, hf_batch = _timed(lambda: hf.generate(requests, seed=0))

        start = time.perf_counter()
        policy = Policy(model, tokenizer, path, dtype, longest)
        # on CPU the reservation is a fraction of RAM for this whole process, which already holds the HF model
        memory = 0.2 if shape == "tiny" else 0.45
        vllm = VLLMRollout.from_policy(policy, VLLMConfig(**forced, gpu_memory_utilization=memory))
        start_seconds = time.perf_counter() - start
        vllm.generate(requests[:2], seed=1)  # warm-up
        vllm_seconds, vllm_batch = _timed(lambda: vllm.generate(requests, seed=0))

        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        plain = SamplingParams(n=n, temperature=1.0, max_tokens=tokens, min_tokens=tokens, detokenize=False)
        prompts_in = [TokensPrompt(prompt_token_ids=list(r.token_ids)) for r in requests]
        standalone_seconds, outputs = _timed(lambda: vllm.llm.generate(prompts_in, plain, use_tqdm=False))
        standalone_tokens = sum(len(c.token_ids) for o in outputs for c in o.outputs)

        sync_seconds, _ = _timed(lambda: vllm.sync_weights(model.state_dict().items()), repeats=3)
    parameters = sum(p.numel() for p in model.parameters())
    hf_tokens, vllm_tokens = int(hf_batch.response_mask.sum()), int(vllm_batch.response_mask.sum())
    return {
        "shape": shape,
        "dtype": dtype,
        "parameters": parameters,
        "prompts": prompts,
        "n": n,
        "tokens": tokens,
        "hf_tokens_per_s": hf_tokens / hf_seconds,
        "vllm_tokens_per_s": vllm_tokens / vllm_seconds,
        "standalone_vllm_tokens_per_s": standalone_tokens / standalone_seconds,
        "vllm_engine_start_s": start_seconds,
        "sync_s": sync_seconds,
        "load_average_1min": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| shape | params | batch | hf tok/s | vllm tok/s | standalone vLLM tok/s | rollout / standalone | "
        "vllm / hf | sync s | engine start s | load avg |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['shape']} ({r['dtype']}) | {r['parameters'] / 1e6:.1f}M | {r['prompts']}x{r['n']}x{r['tokens']} "
            f"| {r['hf_tokens_per_s']:.0f} | {r['vllm_tokens_per_s']:.0f} | {r['standalone_vllm_tokens_per_s']:.0f} "
            f"| {r['vllm_tokens_per_s'] / r['standalone_vllm_tokens_per_s']:.2f} "
            f"| {r['vllm_tokens_per_s'] / r['hf_tokens_per_s']:.2f} | {r['sync_s']:.2f} "
            f"| {r['vllm_engine_start_s']:.0f} | {r['load_average_1min']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["tiny", "qwen3-0.6b"], choices=["tiny", "qwen3-0.6b"])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one shape, print JSON
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_shape(args.one, args.prompts, args.n, args.tokens)))
        return
    rows = []
    for shape in args.shapes:
        command = [sys.executable, __file__, "--one", shape]
        command += ["--prompts", str(args.prompts), "--n", str(args.n), "--tokens", str(args.tokens)]
        out = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        found = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode != 0 or not found:
            sys.exit(f"{shape} failed ({out.returncode}):\n{out.stderr[-3000:]}")
        rows.append(json.loads(found[-1].removeprefix("RESULT ")))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
