"""Token-by-token decoding for rollout=hf's sampling loop: one step = one new token for every row.

Two decoders with the same interface (`step(next_ids, t) -> [B, H] last hidden state`):

- `StaticDecoder`: for Llama-family decoder stacks (Qwen3, Qwen2, Llama: pre-norm layers of q/k/v/o projections,
  optional per-head q/k RMSNorm, rotary positions, full attention). Keys and values live in buffers preallocated
  for the whole completion ([B, kv_heads, P + T, D] per layer), written in place at slot P + t; attention reads a
  view of the first P + t + 1 slots (no copy), with grouped-query attention inside SDPA (no repeat of the keys);
  rotary cos/sin are computed once for every position. The layers' own submodules (norms, projections, MLP) run
  unchanged, so the arithmetic is the same as transformers' forward up to float rounding in attention. What it
  removes is per-token overhead: the KV cache's `torch.cat` growth (quadratic copying), the 4-D mask built each
  step, and the model-level wrappers.
- `DynamicDecoder`: any other model, through its own forward with transformers' DynamicCache.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

ROTARY_TYPES = ("qwen3", "qwen2", "llama")


def supports_static(model) -> bool:
    """True for Llama-family decoders with full attention in every layer, run with sdpa or eager attention."""
    config = model.config
    if getattr(config, "model_type", None) not in ROTARY_TYPES:
        return False
    if getattr(config, "_attn_implementation", "sdpa") not in ("sdpa", "eager"):
        return False
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    return all(kind == "full_attention" for kind in layer_types)


def make_decoder(model, prefill_cache, inverse: Tensor, prompt_mask: Tensor, max_new_tokens: int):
    """A decoder continuing from the prompts' prefill cache, expanded to rows by `inverse` ([B] -> prompt slot)."""
    if supports_static(model):
        return StaticDecoder(model, prefill_cache, inverse, prompt_mask, max_new_tokens)
    return DynamicDecoder(model, prefill_cache, inverse, prompt_mask)


class DynamicDecoder:
    """The model's own forward, one token per row, on transformers' DynamicCache."""

    def __init__(self, model, prefill_cache, inverse: Tensor, prompt_mask: Tensor) -> None:
        from transformers import DynamicCache

        self.model = model
        self.cache = DynamicCache(
            ddp_cache_data=[(layer.keys[inverse], layer.values[inverse]) for layer in prefill_cache.layers]
        )
        self.attention = prompt_mask[inverse].long()  # [B, P + t]
        self.positions = prompt_mask.sum(dim=1)[inverse][:, None]  # [B, 1] position of the first new token

    def step(self, next_ids: Tensor, t: int) -> Tensor:
        """[B, H] hidden state after feeding token t (0-based) of every row."""
        ones = torch.ones(len(next_ids), 1, dtype=self.attention.dtype, device=self.attention.device)
        self.attention = torch.cat([self.attention, ones], dim=1)
        return self.model.model(
            input_ids=next_ids[:, None],
            attention_mask=self.attention,
            position_ids=self.positions + t,
            past_key_values=self.cache,
            use_cache=True,
        ).last_hidden_state[:, -1]


class StaticDecoder:
    """Preallocated KV buffers and a direct layer loop (see the module docstring)."""

    def __init__(self, model, prefill_cache, inverse: Tensor, prompt_mask: Tensor, max_new_tokens: int) -> None:
        self.body = model.model
        rows, width = len(inverse), prompt_mask.shape[1]
        self.width = width
        self.keys, self.values = [], []
        for layer in prefill_cache.layers:  # [U, kv_heads, P, D] each
            kv_heads, dim = layer.keys.shape[1], layer.keys.shape[3]
            keys = layer.keys.new_empty(rows, kv_heads, width + max_new_tokens, dim)
            values = layer.values.new_empty(rows, kv_heads, width + max_new_tokens, dim)
            keys[:, :, :width] = layer.keys[inverse]
            values[:, :, :width] = layer.values[inverse]
            self.keys.append(keys)
            self.values.append(values)
        # [B, 1, 1, P + T] attention mask: the real prompt tokens, then every generated slot once written
        self.mask = torch.ones(rows, 1, 1, width + max_new_tokens, dtype=torch.bool, device=prompt_mask.device)
        self.mask[:, 0, 0, :width] = prompt_mask[inverse]
        start = prompt_mask.sum(dim=1)[inverse]  # [B] position of the first new token
        positions = start[:, None] + torch.arange(max_new_tokens, device=start.device)  # [B, T]
        probe = self.keys[0] if self.keys else torch.empty(0)
        cos, sin = self.body.rotary_emb(probe, positions)  # [B, T, D] each
        self.cos, self.sin = cos[:, :, None], sin[:, :, None]  # [B, T, 1, D]: broadcast over heads

    def step(self, next_ids: Tensor, t: int) -> Tensor:
        """[B, H] hidden state after feeding token t (0-based) of every row."""
        hidden = self.body.embed_tokens(next_ids[:, None])  # [B, 1, H]
        cos, sin = self.cos[:, t : t + 1], self.sin[:, t : t + 1]  # [B, 1, 1, D]
        slot = self.width + t
        mask = self.mask[..., : slot + 1]
        for index, layer in enumerate(self.body.layers):
            attn = layer.self_attn
            normed = layer.input_layernorm(hidden)
            query = attn.q_proj(normed).view(len(next_ids), 1, -1, attn.head_dim)  # [B, 1, heads, D]
            key = attn.k_proj(normed).view(len(next_ids), 1, -1, attn.head_dim)
            value = attn.v_proj(normed).view(len(next_ids), 1, -1, attn.head_dim)
            if hasattr(attn, "q_norm"):  # Qwen3: RMSNorm over each head's dimensions
                query, key = attn.q_norm(query), attn.k_norm(key)
            query, key = _rotate(query, cos, sin), _rotate(key, cos, sin)
            self.keys[index][:, :, slot] = key[:, 0]
            self.values[index][:, :, slot] = value[:, 0]
            out = F.scaled_dot_product_attention(
                query.transpose(1, 2),  # [B, heads, 1, D]
                self.keys[index][:, :, : slot + 1],
                self.values[index][:, :, : slot + 1],
                attn_mask=mask,
                scale=attn.scaling,
                enable_gqa=True,
            )
            hidden = hidden + attn.o_proj(out.transpose(1, 2).reshape(len(next_ids), 1, -1))
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        return self.body.norm(hidden)[:, -1]


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary position embedding, as transformers' apply_rotary_pos_emb (rotate_half convention)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
