"""Rollout engines: generate(requests) -> RolloutBatch and sync_weights(named_tensors). HF now, vLLM later."""

from __future__ import annotations

from dataclasses import dataclass

from rlpost.config import check, in_range
from rlpost.registry import Registry

ROLLOUTS = Registry("rollout")


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
        in_range(self.temperature, "temperature", 0.0, 10.0, low_open=True)
        in_range(self.top_p, "top_p", 0.0, 1.0, low_open=True)
        check(self.max_new_tokens >= 1, "max_new_tokens", f"must be >= 1, got {self.max_new_tokens}")
        check(
            0 <= self.min_new_tokens <= self.max_new_tokens,
            "min_new_tokens",
            f"must be in [0, max_new_tokens={self.max_new_tokens}], got {self.min_new_tokens}",
        )
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")


from rlpost.rollout import hf  # noqa: E402,F401  (registers rollout=hf)
