"""model.attn_implementation=sdpa loads rlpost's grouped-query SDPA on the CPU: same numbers, no repeated KV heads."""

from __future__ import annotations

import tempfile

import pytest
import torch

from rlpost.models import ModelConfig, load_model
from rlpost.models.attention import NAME
from rlpost.rollout.hf import pad_left


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model, _ = load_model(ModelConfig())  # the embedded tiny Qwen3: 4 query heads over 2 key/value heads
    assert model.config.num_attention_heads == 2 * model.config.num_key_value_heads
    return model


def padded_batch():
    """Left-padded rows of different lengths: the attention mask that made transformers repeat the KV heads."""
    generator = torch.Generator().manual_seed(1)
    rows = [torch.randint(3, 100, (n,), generator=generator).tolist() for n in (5, 9, 12, 7)]
    ids, mask = pad_left(rows, 0)
    return ids, mask.long()


def loss_and_grads(model, implementation: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.set_attn_implementation(implementation)
    model.zero_grad(set_to_none=True)
    ids, mask = padded_batch()
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    loss = (logits.log_softmax(-1)[mask.bool()] ** 2).mean()
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def test_sdpa_loads_rlpost_grouped_attention_and_saves_plain_config(model):
    assert model.config._attn_implementation == NAME
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        assert NAME not in open(f"{directory}/config.json").read()  # vLLM and users reload the stock config


def test_loss_and_gradients_equal_transformers_sdpa_bit_for_bit_and_eager_to_rounding(model):
    ours_loss, ours_grads = loss_and_grads(model, NAME)
    sdpa_loss, sdpa_grads = loss_and_grads(model, "sdpa")  # repeated KV heads, same SDPA kernel
    eager_loss, eager_grads = loss_and_grads(model, "eager")  # matmul + softmax, another summation order
    model.set_attn_implementation(NAME)
    assert torch.equal(ours_loss, sdpa_loss)
    assert all(torch.equal(ours_grads[name], grad) for name, grad in sdpa_grads.items())
    torch.testing.assert_close(ours_loss, eager_loss, rtol=1e-6, atol=0.0)
    for name, grad in eager_grads.items():
        assert (ours_grads[name] - grad).abs().max() <= 1e-5 * grad.abs().max(), name


def test_masked_grouped_attention_does_not_repeat_kv_heads(model, monkeypatch):
    """transformers' sdpa calls repeat_kv under a mask; rlpost's does not (the copy this replaces)."""
    import transformers.integrations.sdpa_attention as sdpa

    calls = []
    original = sdpa.repeat_kv
    monkeypatch.setattr(sdpa, "repeat_kv", lambda *args: calls.append(1) or original(*args))
    ids, mask = padded_batch()
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
        assert calls == []
        model.set_attn_implementation("sdpa")
        model(input_ids=ids, attention_mask=mask)
        model.set_attn_implementation(NAME)
    assert len(calls) == 2 * model.config.num_hidden_layers  # keys and values in every layer
