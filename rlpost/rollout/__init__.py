"""Rollout engines: generate(requests) -> RolloutBatch and sync_weights(named_tensors); rollout=hf and rollout=vllm."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from rlpost.config import check, in_range
from rlpost.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor, nn

    from rlpost.batch import RolloutBatch

ROLLOUTS = Registry("rollout")


@dataclass(frozen=True)
class Policy:
    """What a rollout engine is built from: the trained module and where it came from (trainer.build hands it)."""

    module: nn.Module  # the module the engine trains (rollout=hf samples on it directly)
    tokenizer: object  # its tokenizer (pads on the left)
    path: str  # directory or hub id with config.json and tokenizer (vLLM builds from it); "" for model.init=random
    dtype: str  # the trainer's weight dtype (float32 | bfloat16 | float16)
    max_length: int  # longest prompt of the run's data + rollout.max_new_tokens
    trust_remote_code: bool = False
    precision: object = None  # the engine's rlpost.engine.precision.Precision (device, autocast); None: as loaded


class Rollout(Protocol):
    """The narrow interface the trainer and the samplers use."""

    uses_policy_module: bool  # generates with the engine's own module (under ZeRO-3 every forward is a collective)

    @classmethod
    def from_policy(cls, policy: Policy, cfg) -> Rollout: ...

    def generate(self, requests: list[Request], seed: int, greedy: bool = False) -> RolloutBatch:
        """Completions of every request (request g: n_g rows, group index g), as token ids, masks, sampling
        log-probs (after temperature / top-k / top-p, i.e. of the distribution sampled from; None when greedy) and
        truncation flags. The same (requests, seed) give the same completions."""
        ...

    def sleep(self) -> None:
        """Free generation memory until the next sync_weights (vLLM sleep mode on GPUs); a no-op elsewhere."""
        ...

    def sync_weights(self, named_tensors: Iterable[tuple[str, Tensor]]) -> None:
        """Make the next generate sample from these weights (the trainer's, after an optimizer step)."""
        ...

    def close(self) -> None:
        """Release the engine and its memory when the run ends (a multirun starts the next job in this process)."""
        ...


def eos_token_ids(policy: Policy) -> list[int]:
    """Every id that ends a completion (rlpost.models.eos_token_ids: Qwen3 stops on `<|im_end|>` and
    `<|endoftext|>`)."""
    from rlpost.models import eos_token_ids as model_eos_ids

    return list(model_eos_ids(policy.module, policy.tokenizer))


@dataclass(frozen=True)
class Request:
    """Generate `n` completions for one prompt."""

    prompt_index: int
    token_ids: list[int]
    n: int


@dataclass
class SamplingConfig:
    name: str = "hf"
    temperature: float = 1.0  # sampling temperature; log-probs for the loss use the same temperature
    top_p: float = 1.0  # nucleus sampling
    max_new_tokens: int = 8  # completion length cap (truncated completions are flagged)
    min_new_tokens: int = 0  # EOS suppressed before this many tokens in training rollouts (benchmarks); 0 = off
    batch_size: int = 512  # sequences generated at once
    use_generate: bool = (
        False  # hf: transformers' generate instead of rlpost's KV-cached loop (prompt shared per group)
    )

    def __post_init__(self) -> None:
        check_sampling(self)
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")


def check_sampling(cfg) -> None:
    """Range checks of the sampling keys every rollout config has."""
    in_range(cfg.temperature, "temperature", 0.0, 10.0, low_open=True)
    in_range(cfg.top_p, "top_p", 0.0, 1.0, low_open=True)
    check(cfg.max_new_tokens >= 1, "max_new_tokens", f"must be >= 1, got {cfg.max_new_tokens}")
    check(
        0 <= cfg.min_new_tokens <= cfg.max_new_tokens,
        "min_new_tokens",
        f"must be in [0, max_new_tokens={cfg.max_new_tokens}], got {cfg.min_new_tokens}",
    )


from rlpost.rollout import hf, vllm  # noqa: E402,F401  (registers rollout=hf and rollout=vllm)
