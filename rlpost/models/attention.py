"""model.attn_implementation=sdpa: grouped-query key/value heads handed to SDPA on the CPU instead of copied.

transformers' sdpa attention repeats a grouped-query model's key/value heads (`repeat_kv`: Qwen3 has 2-8 query
heads per KV head) whenever an attention mask is given, because CUDA's fused SDPA kernels take GQA only without a
mask. Left-padded batches always carry a mask, so on every decoding step each layer copied its whole KV cache (the
largest `reshape` in a profile of rollout=hf at 128 new tokens: about a fifth of generation). torch's CPU SDPA
takes the grouped heads itself with a mask (`enable_gqa=True`): the same numbers (tests/models/test_attention.py)
without the copy, 2.8 -> 1.0 ms per call at 128 rows x 144 cached tokens on this machine.

rlpost registers this function under `rlpost_sdpa` with transformers' AttentionInterface (its extension point for
attention functions) and loads models with it when the config says `sdpa`. Everywhere else (CUDA, no mask, one
query head per KV head) it is transformers' own sdpa_attention_forward.
"""

from __future__ import annotations

import torch.nn.functional as F

NAME = "rlpost_sdpa"


def sdpa_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """(attention output [B, q, heads, D], None), as transformers' sdpa_attention_forward returns."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    grouped = getattr(module, "num_key_value_groups", 1) > 1
    plain = kwargs.get("position_bias") is None and kwargs.get("cache") is None and not kwargs.get("output_attentions")
    if not (query.device.type == "cpu" and attention_mask is not None and grouped and plain):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    # with a mask transformers' path is not causal either: the mask carries causality and padding
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True
    )
    return out.transpose(1, 2).contiguous(), None


def attention_backend(name: str) -> str:
    """The transformers attn_implementation to load model.attn_implementation `name` with."""
    if name != "sdpa":
        return name
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, sdpa_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # the masks sdpa gets: boolean, causal skipped when possible
    return NAME
