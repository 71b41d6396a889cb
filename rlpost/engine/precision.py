"""Device and numeric precision of an engine, and its memory metrics: one place for every engine and rollout.

`trainer.device`: auto (CUDA when available, else CPU) | cpu | cuda | cuda:N.
`trainer.precision`: auto (bf16-mixed on CUDA, fp32 on CPU) | fp32 | bf16-mixed | bf16.

- fp32: float32 weights, optimizer state and compute (today's deterministic CPU behaviour).
- bf16-mixed: float32 master weights and AdamW state; forward and backward matmuls under bf16 autocast;
  log-probs, losses, advantages and the optimizer update in float32. Updates of lr 1e-6 survive because they are
  added to float32 masters (a bf16 weight of magnitude 0.02 has a spacing of ~1e-4, so smaller steps round away).
- bf16: weights and AdamW state in bfloat16 (half the memory of bf16-mixed's masters); opt-in, with a warning:
  at RL post-training learning rates most updates round away.
- fp16 is refused: without a dynamic loss scaler its small gradients underflow.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import warnings
from dataclasses import dataclass

import torch

from rlpost.config import ConfigError

PRECISIONS = ("auto", "fp32", "bf16-mixed", "bf16")
GIB = float(2**30)


def rank_device(device: torch.device) -> torch.device:
    """This rank's GPU when several ranks share a node (cuda -> cuda:LOCAL_RANK); `device` otherwise."""
    from rlpost.distributed import env_rank

    _, world, local_rank = env_rank()
    if device.type == "cuda" and world > 1:
        return torch.device("cuda", local_rank)
    return device


def resolve_device(spec: str, key: str = "trainer.device") -> torch.device:
    """auto | cpu | cuda | cuda:N -> a torch.device with an explicit index on CUDA; ConfigError if unavailable."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{key}: {spec} requested but torch.cuda.is_available() is False (a CPU build of torch, or no GPU "
                "visible); use trainer.device=cpu or auto"
            )
        index = torch.cuda.current_device() if spec == "cuda" else _cuda_index(spec, key)
        return torch.device("cuda", index)
    raise ConfigError(f"{key}: {spec!r} is not one of auto, cpu, cuda, cuda:N")


def _cuda_index(spec: str, key: str) -> int:
    text = spec.removeprefix("cuda:")
    count = torch.cuda.device_count()
    if not text.isdigit() or int(text) >= count:
        raise ConfigError(f"{key}: {spec!r} names no GPU; this machine has cuda:0..cuda:{count - 1}")
    return int(text)


@dataclass(frozen=True)
class Precision:
    """How an engine stores and computes: `param_dtype` for weights and optimizer state, bf16 autocast or not."""

    name: str  # fp32 | bf16-mixed | bf16
    device: torch.device

    @property
    def param_dtype(self) -> torch.dtype:
        """Master weights (and so AdamW state and gradients): float32 except under pure bf16."""
        return torch.bfloat16 if self.name == "bf16" else torch.float32

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype matmuls run in."""
        return torch.float32 if self.name == "fp32" else torch.bfloat16

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on the engine's device under bf16-mixed; a no-op otherwise."""
        if self.name != "bf16-mixed":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)


def check_precision(spec: str, key: str = "trainer.precision") -> str:
    """The normalised name of a precision setting; fp16 and unknown names raise ConfigError naming `key`."""
    spec = str(spec).strip().lower()
    if spec in ("fp16", "float16", "16-mixed", "fp16-mixed", "16"):
        raise ConfigError(
            f"{key}: fp16 is not supported (it needs a dynamic loss scaler, or small RL gradients underflow); "
            "use bf16-mixed (GPUs since Ampere, and CPUs) or fp32"
        )
    if spec not in PRECISIONS:
        raise ConfigError(f"{key}: {spec!r} is not one of {', '.join(PRECISIONS)}")
    return spec


def default_precision(device: torch.device) -> str:
    """What precision=auto means: bf16-mixed on CUDA, fp32 on the CPU (exactly today's CPU numbers)."""
    return "bf16-mixed" if device.type == "cuda" else "fp32"


def resolve_precision(spec: str, device: torch.device, key: str = "trainer.precision") -> Precision:
    """`trainer.precision` for `device`: auto picks bf16-mixed on CUDA and fp32 on the CPU."""
    spec = check_precision(spec, key)
    if spec == "auto":
        spec = default_precision(device)
    if spec != "fp32" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{key}: {spec} needs bfloat16, which {torch.cuda.get_device_name(device)} lacks; use fp32")
    if spec == "bf16":
        warnings.warn(
            f"{key}=bf16 keeps weights and AdamW state in bfloat16: updates smaller than ~1/256 of a weight "
            "(most updates at lr 1e-6..1e-5) round away and the model does not move; bf16-mixed keeps float32 "
            "masters",
            stacklevel=2,
        )
    return Precision(spec, device)


# -- memory ------------------------------------------------------------------------------------------------------
def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return _peak_rss_bytes()


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window (per step) on CUDA; CPU RSS has no resettable peak."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def memory_metrics(device: torch.device) -> dict[str, float]:
    """GiB: current and process-peak CPU RSS always; peak allocated/reserved CUDA memory since the last reset."""
    metrics = {"memory_rss_gb": _rss_bytes() / GIB, "memory_rss_peak_gb": _peak_rss_bytes() / GIB}
    if device.type == "cuda":
        metrics["memory_cuda_peak_gb"] = torch.cuda.max_memory_allocated(device) / GIB
        metrics["memory_cuda_reserved_gb"] = torch.cuda.max_memory_reserved(device) / GIB
    return metrics


def out_of_memory_message(step: int, phase: str, trainer_cfg, rollout_cfg, last_good: str) -> str:
    """One line: where it ran out, the keys that reduce memory (with their values now), the last good checkpoint."""
    micro = getattr(trainer_cfg, "micro_batch_tokens", None)
    tips = [
        f"trainer.micro_batch_tokens (now {micro}; 0 = use micro_batch_size={trainer_cfg.micro_batch_size})"
        if micro is not None
        else None,
        f"trainer.gradient_checkpointing=true (now {str(bool(trainer_cfg.gradient_checkpointing)).lower()})",
        f"trainer.logprob_chunk_rows (now {trainer_cfg.logprob_chunk_rows})"
        if hasattr(trainer_cfg, "logprob_chunk_rows")
        else None,
        f"rollout.batch_size (now {rollout_cfg.batch_size})" if hasattr(rollout_cfg, "batch_size") else None,
    ]
    keys = ", ".join(tip for tip in tips if tip)
    return f"step {step}, phase {phase}: CUDA out of memory; lower {keys}; last good checkpoint: {last_good}"
