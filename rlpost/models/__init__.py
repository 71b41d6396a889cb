"""Model presets and loading: the embedded tiny model, or any HF causal LM by local path or hub id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlpost.config import ConfigError, check
from rlpost.registry import Registry

MODELS = Registry("model")
BUILTIN = {"tiny-arith": Path(__file__).resolve().parents[1] / "assets" / "tiny-arith"}
DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class ModelConfig:
    name: str = "tiny"
    path: str = "builtin:tiny-arith"  # "builtin:<name>", a local directory, or a hub id (needs network)
    dtype: str = "float32"  # weights dtype; log-ratios are always computed in float32
    attn_implementation: str = "sdpa"  # sdpa | eager | flash_attention_2
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        check(self.dtype in DTYPES, "dtype", f"{self.dtype!r} is not one of {', '.join(DTYPES)}")


MODELS.register("tiny", ModelConfig)(None)
MODELS.register("hf", ModelConfig)(None)


def resolve_path(path: str) -> str:
    """A builtin name to its directory; a local path must exist; anything else is treated as a hub id."""
    if path.startswith("builtin:"):
        name = path.removeprefix("builtin:")
        check(name in BUILTIN, "model.path", f"unknown builtin {name!r}; known: {', '.join(BUILTIN)}")
        directory = BUILTIN[name]
        if not (directory / "config.json").is_file():
            raise ConfigError(f"model.path: builtin model missing at {directory}; run scripts/make_tiny_model.py")
        return str(directory)
    local = Path(path).expanduser()
    looks_local = path.startswith((".", "/", "~")) or local.exists() or path.count("/") != 1
    if looks_local:
        check(
            local.is_dir() and (local / "config.json").is_file(),
            "model.path",
            f"{path} is not a model directory (needs config.json)",
        )
        return str(local)
    return path  # hub id like Qwen/Qwen3-8B


def load_model(cfg: ModelConfig):
    """(model, tokenizer) in train mode; tokenizer pads on the left for generation."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_path(cfg.path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=getattr(torch, cfg.dtype),
            attn_implementation=cfg.attn_implementation,
            trust_remote_code=cfg.trust_remote_code,
        )
    except (OSError, ValueError, KeyError) as error:  # missing files, unrecognized or broken config.json
        raise ConfigError(f"model.path: cannot load {path!r}: {str(error).splitlines()[0]}") from None
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.train()
    return model, tokenizer
