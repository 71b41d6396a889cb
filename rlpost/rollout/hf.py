"""rollout=hf: sampling on the policy module itself (colocated, no weight copy).

Two samplers: a KV-cached loop that prefills each distinct prompt once and expands its cache to the prompt's n
completions (default; for small models the per-token overhead of `generate` dominates), and transformers'
`generate` (`use_generate=true`). Both draw from softmax(logits / temperature) restricted to the top-p nucleus.

Both run on the model's device under the engine's precision (bf16 autocast under bf16-mixed) and stop a
completion at any of the model's EOS ids (rlpost.models.eos_token_ids: Qwen3 stops on <|im_end|> and
<|endoftext|>). The RolloutBatch comes back on the CPU, where rewards and samplers read it.

`sampling_logprobs[b, t]` is log q(y_t | context), q being the distribution the token was actually drawn from:
softmax(logits / temperature), renormalised over the top-p nucleus, with every EOS id banned before
min_new_tokens. Greedy decoding returns None. See docs/sampling_logprobs.md for how TIS, replay correction and the
estimators that read it treat the difference from the training distribution softmax(logits / temperature).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers.cache_utils import Cache, DynamicLayer

from rlpost.batch import RolloutBatch
from rlpost.engine.precision import Precision
from rlpost.models import eos_token_ids
from rlpost.rollout import ROLLOUTS, Policy, Request, SamplingConfig


def pad_left(sequences: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """[B, P] ids and bool mask, left-padded."""
    width = max(len(ids) for ids in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = True
    return ids, mask


def response_mask_until_eos(response_ids: Tensor, eos_ids: int | tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """([B, T] mask up to and including the first EOS (any of `eos_ids`), [B] truncated = no EOS)."""
    is_eos = torch.isin(response_ids, torch.tensor(eos_ids, device=response_ids.device).reshape(-1))
    before_or_at_eos = (is_eos.long().cumsum(dim=1) - is_eos.long()) == 0
    return before_or_at_eos, ~is_eos.any(dim=1)


@ROLLOUTS.register("hf", SamplingConfig)
class HFRollout:
    """Generates with the same nn.Module the engine trains, so sync_weights has nothing to copy."""

    uses_policy_module = True  # its forward passes are the engine's (collectives under ZeRO-3)

    def __init__(self, model, tokenizer, cfg: SamplingConfig, precision: Precision | None = None) -> None:
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.all_finished = bool  # several ranks in lockstep (ZeRO-3) replace it by an all-ranks agreement
        self.eos_ids = eos_token_ids(model, tokenizer)  # every id that ends a completion
        self.precision = precision  # the engine's: bf16 autocast under bf16-mixed; None = the module as it is

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @classmethod
    def from_policy(cls, policy: Policy, cfg: SamplingConfig) -> HFRollout:
        return cls(policy.module, policy.tokenizer, cfg, precision=policy.precision)

    def sleep(self) -> None:
        """Nothing to free: generation uses the trained module itself."""

    def close(self) -> None:
        """Nothing to release: the module belongs to the engine."""

    def sync_weights(self, named_tensors) -> None:
        """Colocated with the trainer's module: the weights are already the trained ones."""

    @torch.no_grad()
    def generate(self, requests: list[Request], seed: int, greedy: bool = False) -> RolloutBatch:
        prompts = [r.token_ids for r in requests for _ in range(r.n)]
        prompt_index = torch.tensor([r.prompt_index for r in requests for _ in range(r.n)], dtype=torch.long)
        group_index = torch.tensor([g for g, r in enumerate(requests) for _ in range(r.n)], dtype=torch.long)
        was_training = self.model.training
        self.model.eval()
        generator_state = torch.get_rng_state()
        torch.manual_seed(seed)
        try:
            with self.precision.autocast() if self.precision is not None else contextlib.nullcontext():
                chunks = [
                    _to_cpu(self._generate(prompts[i : i + self.cfg.batch_size], greedy))
                    for i in range(0, len(prompts), self.cfg.batch_size)
                ]
        finally:
            torch.set_rng_state(generator_state)
            self.model.train(was_training)
        prompt_ids, prompt_mask = pad_left(prompts, self.tokenizer.pad_token_id)
        width = max(chunk[0].shape[1] for chunk in chunks)
        response_ids = torch.cat([_pad_right(c[0], width, self.tokenizer.pad_token_id) for c in chunks])
        sampling_logprobs = None if greedy else torch.cat([_pad_right(c[1], width, 0.0) for c in chunks])
        response_mask, truncated = response_mask_until_eos(response_ids, self.eos_ids)
        response_ids = response_ids.masked_fill(~response_mask, self.tokenizer.pad_token_id)
        texts = self.tokenizer.batch_decode(
            response_ids.masked_fill(~response_mask, self.tokenizer.pad_token_id), skip_special_tokens=True
        )
        return RolloutBatch(
            prompt_index=prompt_index,
            group_index=group_index,
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            response_ids=response_ids,
            response_mask=response_mask,
            texts=texts,
            sampling_logprobs=sampling_logprobs,
            truncated=truncated,
        )

    def _generate(self, prompts: list[list[int]], greedy: bool) -> tuple[Tensor, Tensor | None]:
        if self.cfg.use_generate:
            return self._generate_hf(prompts, greedy)
        return self._sample_loop(prompts, greedy)

    def _sample_loop(self, prompts: list[list[int]], greedy: bool) -> tuple[Tensor, Tensor | None]:
        """([B, T] sampled ids, pad after EOS; [B, T] log-probs under the sampling distribution, or None if greedy)."""
        pad_id, device = self.tokenizer.pad_token_id, self.device
        eos_ids = torch.tensor(self.eos_ids, device=device)
        slots: dict[tuple[int, ...], int] = {}
        inverse = torch.tensor([slots.setdefault(tuple(ids), len(slots)) for ids in prompts])  # [B] -> prompt slot
        prompt_ids, prompt_mask = pad_left([list(ids) for ids in slots], pad_id)  # [U, P], each prompt once
        prompt_ids, prompt_mask, inverse = prompt_ids.to(device), prompt_mask.to(device), inverse.to(device)
        prefill = self.model.model(
            input_ids=prompt_ids,
            attention_mask=prompt_mask.long(),
            position_ids=(prompt_mask.long().cumsum(dim=1) - 1).clamp(min=0),
            use_cache=True,
        )
        width, steps = prompt_ids.shape[1], self.cfg.max_new_tokens
        cache = Cache(
            layers=[
                _GrowingLayer(layer.keys[inverse], layer.values[inverse], width + steps)
                for layer in prefill.past_key_values.layers
            ]
        )
        hidden = prefill.last_hidden_state[:, -1][inverse]  # [B, H]: left-padded, so the real last prompt token
        attention = torch.ones(len(prompts), width + steps, dtype=torch.long, device=device)  # [:, :P + t] is live
        attention[:, :width] = prompt_mask[inverse]
        positions = prompt_mask.sum(dim=1)[inverse][:, None]  # [B, 1] position of the next token
        head = self.model.get_output_embeddings()
        rows = len(prompts)
        finished = torch.zeros(rows, dtype=torch.bool, device=device)
        tokens, logprobs = [], []
        for step in range(self.cfg.max_new_tokens):
            logits = head(hidden).float()  # [B, V]
            if greedy:
                next_ids = logits.argmax(dim=-1)
            else:
                if step < self.cfg.min_new_tokens:
                    logits[:, eos_ids] = float("-inf")
                log_probs = _nucleus(logits / self.cfg.temperature, self.cfg.top_p).log_softmax(dim=-1)
                next_ids = torch.multinomial(log_probs.exp(), 1).squeeze(1)
                logprobs.append(log_probs.gather(1, next_ids[:, None]).squeeze(1))
            next_ids = next_ids.masked_fill(finished, pad_id)
            tokens.append(next_ids)
            finished |= torch.isin(next_ids, eos_ids)
            if self.all_finished(bool(finished.all())) or step == self.cfg.max_new_tokens - 1:
                break
            hidden = self.model.model(
                input_ids=next_ids[:, None],
                attention_mask=attention[:, : width + step + 1],
                position_ids=positions + step,
                past_key_values=cache,
                use_cache=True,
            ).last_hidden_state[:, -1]
        return torch.stack(tokens, dim=1), (None if greedy else torch.stack(logprobs, dim=1))

    def _generate_hf(self, prompts: list[list[int]], greedy: bool) -> tuple[Tensor, Tensor | None]:
        prompt_ids, prompt_mask = pad_left(prompts, self.tokenizer.pad_token_id)
        prompt_ids, prompt_mask = prompt_ids.to(self.device), prompt_mask.to(self.device)
        sampling = {} if greedy else {"temperature": self.cfg.temperature, "top_p": self.cfg.top_p, "top_k": 0}
        if self.cfg.min_new_tokens and not greedy:  # greedy eval always stops at EOS
            sampling["min_new_tokens"] = self.cfg.min_new_tokens
        out = self.model.generate(
            input_ids=prompt_ids,
            attention_mask=prompt_mask.long(),
            max_new_tokens=self.cfg.max_new_tokens,
            do_sample=not greedy,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=list(self.eos_ids),
            return_dict_in_generate=True,
            output_scores=not greedy,
            synced_gpus=self.all_finished is not bool,
            **sampling,
        )
        response_ids = out.sequences[:, prompt_ids.shape[1] :]  # [B, T]
        if greedy:
            return response_ids, None
        # scores are the warped logits the tokens were drawn from (temperature, top-p): the sampling distribution
        scores = torch.stack(out.scores, dim=1).float()  # [B, T, V]
        logprobs = scores.log_softmax(dim=-1).gather(-1, response_ids[..., None]).squeeze(-1)
        return response_ids, logprobs


class _GrowingLayer(DynamicLayer):
    """One layer's KV cache, grown in place inside a buffer sized for the prompt plus every new token.

    transformers' DynamicLayer appends each decoding step with `torch.cat`, which copies the layer's whole cache
    every step (quadratic in the completion length: ~10% of generation at 128 new tokens). Here a step writes its
    new positions into the buffer and attention reads a view of the filled part: the same keys and values, so the
    same logits bit for bit (tests/engine/test_sampling_loop.py).
    """

    def __init__(self, keys: Tensor, values: Tensor, capacity: int) -> None:
        super().__init__()
        self.lazy_initialization(keys, values)
        self._keys = keys.new_empty(*keys.shape[:2], capacity, keys.shape[3])  # [B, kv heads, capacity, D]
        self._values = values.new_empty(*values.shape[:2], capacity, values.shape[3])
        self.keys, self.values = self._write(keys, values, 0)

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        self.keys, self.values = self._write(key_states, value_states, self.keys.shape[2])
        return self.keys, self.values

    def _write(self, keys: Tensor, values: Tensor, start: int) -> tuple[Tensor, Tensor]:
        end = start + keys.shape[2]
        self._keys[:, :, start:end] = keys
        self._values[:, :, start:end] = values
        return self._keys[:, :, :end], self._values[:, :, :end]


def _nucleus(logits: Tensor, top_p: float) -> Tensor:
    """[B, V] logits with tokens outside the top-p nucleus set to -inf (as transformers' TopPLogitsWarper)."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1)  # ascending
    outside = F.softmax(sorted_logits, dim=-1).cumsum(dim=-1) <= 1.0 - top_p
    outside[:, -1] = False  # the most likely token always stays
    return logits.masked_fill(outside.scatter(1, order, outside), float("-inf"))


def _to_cpu(pair: tuple[Tensor, Tensor | None]) -> tuple[Tensor, Tensor | None]:
    """(ids, log-probs) of one generation chunk on the CPU, where rewards and samplers read them."""
    ids, logprobs = pair
    return ids.cpu(), None if logprobs is None else logprobs.cpu()


def _pad_right(tensor: Tensor, width: int, value) -> Tensor:
    if tensor.shape[1] == width:
        return tensor
    pad = torch.full((tensor.shape[0], width - tensor.shape[1]), value, dtype=tensor.dtype)
    return torch.cat([tensor, pad], dim=1)
