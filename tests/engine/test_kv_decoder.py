"""rollout=hf's static-cache decoder gives the hidden states of the model's own forward, token after token."""

from __future__ import annotations

import pytest
import torch

from rlpost.models import ModelConfig, load_model
from rlpost.rollout.hf import pad_left
from rlpost.rollout.kv import DynamicDecoder, StaticDecoder, make_decoder, supports_static


def _random_model(kind: str):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config, Qwen3Config

    shape = dict(
        vocab_size=61,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    config = {"qwen2": Qwen2Config, "llama": LlamaConfig, "qwen3": Qwen3Config}[kind](**shape)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()


@pytest.fixture(scope="module", params=["tiny", "qwen2", "llama"])
def model(request):
    if request.param == "tiny":
        return load_model(ModelConfig())[0].eval()
    return _random_model(request.param)


def _prefill(model, prompts):
    slots: dict[tuple[int, ...], int] = {}
    inverse = torch.tensor([slots.setdefault(tuple(ids), len(slots)) for ids in prompts])
    prompt_ids, prompt_mask = pad_left([list(ids) for ids in slots], pad_id=0)
    out = model.model(
        input_ids=prompt_ids,
        attention_mask=prompt_mask.long(),
        position_ids=(prompt_mask.long().cumsum(dim=1) - 1).clamp(min=0),
        use_cache=True,
    )
    return out.past_key_values, inverse, prompt_mask


@torch.no_grad()
def test_static_decoder_equals_the_models_forward(model):
    prompts = [[5, 6, 7, 8, 9, 10]] * 3 + [[11, 12, 13]] * 2 + [[14, 15, 16, 17]]  # shared and padded prompts
    steps = 12
    feeds = torch.randint(1, model.config.vocab_size, (steps, len(prompts)), generator=torch.Generator().manual_seed(1))
    static = StaticDecoder(model, *_prefill(model, prompts), max_new_tokens=steps)
    dynamic = DynamicDecoder(model, *_prefill(model, prompts))
    for t in range(steps):
        torch.testing.assert_close(static.step(feeds[t], t), dynamic.step(feeds[t], t), rtol=1e-5, atol=1e-5)


def test_static_decoder_is_chosen_only_where_it_applies():
    tiny = load_model(ModelConfig())[0]
    assert supports_static(tiny)
    assert isinstance(make_decoder(tiny, *_prefill(tiny.eval(), [[5, 6, 7]]), max_new_tokens=4), StaticDecoder)
    sliding = _random_model("qwen2")
    sliding.config.layer_types = ["sliding_attention", "full_attention"]
    assert not supports_static(sliding)
    flash = _random_model("llama")
    flash.config._attn_implementation = "flash_attention_2"
    assert not supports_static(flash)
    other = _random_model("qwen3")
    other.config.model_type = "gpt_neox"
    assert isinstance(make_decoder(other, *_prefill(other, [[5, 6, 7]]), max_new_tokens=4), DynamicDecoder)
