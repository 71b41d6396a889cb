"""Model presets and loading: the embedded tiny model, any HF causal LM by local path or hub id, or a preset's
architecture with random weights (model.init=random: no download; benchmarks and tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlpost.config import ConfigError, check
from rlpost.registry import Registry

MODELS = Registry("model")
BUILTIN = {"tiny-arith": Path(__file__).resolve().parents[1] / "assets" / "tiny-arith"}
BUILTIN_TOKENIZERS = ("qwen3",)  # builtin:qwen3 = rlpost.models.qwen (offline Qwen vocabulary + Qwen3 chat template)
DTYPES = ("float32", "bfloat16", "float16")
INITS = ("pretrained", "random")
ATTENTION = ("sdpa", "eager", "flash_attention_2", "flex_attention")


@dataclass
class ModelConfig:
    name: str = "tiny"
    path: str = "builtin:tiny-arith"  # "builtin:<name>", a local directory, or a hub id (needs network)
    init: str = "pretrained"  # pretrained: weights from `path` | random: `architecture` with random weights
    tokenizer: str = ""  # "" = path's tokenizer (init=random with a hub id: builtin:qwen3); or builtin:qwen3, dir, id
    dtype: str = "float32"  # weights dtype when loaded outside training (eval); training uses trainer.precision
    attn_implementation: str = "sdpa"  # sdpa | eager | flash_attention_2 (needs flash-attn) | flex_attention
    gradient_checkpointing: bool = False  # this model's recommendation; trainer.gradient_checkpointing=null takes it
    architecture: dict[str, Any] = field(default_factory=dict)  # config.json fields for init=random (model_type...)
    generation_config: dict[str, Any] = field(default_factory=dict)  # overrides, e.g. eos_token_id: [151645, 151643]
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)  # to apply_chat_template: enable_thinking
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        check(self.dtype in DTYPES, "dtype", f"{self.dtype!r} is not one of {', '.join(DTYPES)}")
        check(self.init in INITS, "init", f"{self.init!r} is not one of {', '.join(INITS)}")
        check(
            self.attn_implementation in ATTENTION,
            "attn_implementation",
            f"{self.attn_implementation!r} is not one of {', '.join(ATTENTION)}",
        )


MODELS.register("tiny", ModelConfig)(None)
MODELS.register("hf", ModelConfig)(None)


def resolve_path(path: str, key: str = "model.path") -> str:
    """A builtin name to its directory; a local path must exist; anything else is treated as a hub id."""
    if path.startswith("builtin:"):
        name = path.removeprefix("builtin:")
        check(name in BUILTIN, key, f"unknown builtin {name!r}; known: {', '.join(BUILTIN)}")
        directory = BUILTIN[name]
        if not (directory / "config.json").is_file():
            raise ConfigError(f"{key}: builtin model missing at {directory}; run scripts/make_tiny_model.py")
        return str(directory)
    local = Path(path).expanduser()
    looks_local = path.startswith((".", "/", "~")) or local.exists() or path.count("/") != 1
    if looks_local:
        check(
            local.is_dir() and (local / "config.json").is_file(),
            key,
            f"{path} is not a model directory (needs config.json)",
        )
        return str(local)
    return path  # hub id like Qwen/Qwen3-8B


def _is_local(path: str) -> bool:
    return path.startswith("builtin:") or Path(path).expanduser().is_dir()


def load_tokenizer(cfg: ModelConfig):
    """model.tokenizer, else the model path's; builtin:qwen3 is built offline (cached, see rlpost.models.qwen)."""
    from transformers import AutoTokenizer

    source = cfg.tokenizer
    if not source:
        random_from_hub = cfg.init == "random" and not _is_local(cfg.path)
        qwen = str(cfg.architecture.get("model_type", "")).startswith("qwen")
        if random_from_hub and not qwen:
            raise ConfigError(
                f"model.tokenizer: model.init=random with the hub id {cfg.path!r} needs a tokenizer without a "
                "download; set model.tokenizer=builtin:qwen3 or a local tokenizer directory"
            )
        source = "builtin:qwen3" if random_from_hub else cfg.path
    if source == "builtin:qwen3":
        from rlpost.models.qwen import load_qwen3_tokenizer

        tokenizer = load_qwen3_tokenizer()
    else:
        key = "model.tokenizer" if cfg.tokenizer else "model.path"
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                resolve_path(source, key), trust_remote_code=cfg.trust_remote_code
            )
        except (OSError, ValueError, KeyError) as error:
            raise ConfigError(f"{key}: cannot load a tokenizer from {source!r}: {str(error).splitlines()[0]}") from None
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _check_attention(cfg: ModelConfig) -> None:
    if cfg.attn_implementation == "flash_attention_2":
        from transformers.utils import is_flash_attn_2_available

        check(
            is_flash_attn_2_available(),
            "model.attn_implementation",
            "flash_attention_2 needs the flash-attn package and a CUDA GPU; use sdpa",
        )


def architecture_config(cfg: ModelConfig):
    """The transformers config for init=random: model.architecture, else the local model directory's config.json."""
    from transformers import AutoConfig

    if cfg.architecture:
        fields_ = dict(cfg.architecture)
        model_type = fields_.pop("model_type", None)
        check(model_type is not None, "model.architecture", "needs model_type (e.g. qwen3, qwen3_moe)")
        try:
            return AutoConfig.for_model(model_type, **fields_)
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"model.architecture: {str(error).splitlines()[0]}") from None
    check(
        _is_local(cfg.path),
        "model.architecture",
        f"model.init=random needs the architecture: a preset gives it, or model.path must be a local directory "
        f"(got {cfg.path!r})",
    )
    return AutoConfig.from_pretrained(resolve_path(cfg.path), trust_remote_code=cfg.trust_remote_code)


def load_model(cfg: ModelConfig, *, dtype=None, device=None):
    """(model, tokenizer) in train mode; weights in `dtype` (default model.dtype) on `device` (default CPU).

    init=random builds the architecture with random weights (seeded by the caller's torch seed), directly on the
    device. The tokenizer pads on the left for generation.
    """
    import torch
    from transformers import AutoModelForCausalLM

    _check_attention(cfg)
    dtype = dtype or getattr(torch, cfg.dtype)
    device = torch.device(device or "cpu")
    tokenizer = load_tokenizer(cfg)
    if cfg.init == "random":
        config = architecture_config(cfg)
        with device:  # parameters are created on the device: no CPU copy of a large model
            model = AutoModelForCausalLM.from_config(
                config,
                dtype=dtype,
                attn_implementation=cfg.attn_implementation,
                trust_remote_code=cfg.trust_remote_code,
            )
    else:
        path = resolve_path(cfg.path)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                path,
                dtype=dtype,
                attn_implementation=cfg.attn_implementation,
                trust_remote_code=cfg.trust_remote_code,
            )
        except (OSError, ValueError, KeyError) as error:  # missing files, unrecognized or broken config.json
            raise ConfigError(f"model.path: cannot load {path!r}: {str(error).splitlines()[0]}") from None
        model = model.to(device)
    for key, value in cfg.generation_config.items():
        setattr(model.generation_config, key, value)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        raise ConfigError(
            f"model.tokenizer: {len(tokenizer)} tokens do not fit the model's {model.config.vocab_size}-row embedding"
        )
    model.train()
    return model, tokenizer


def eos_token_ids(model, tokenizer) -> tuple[int, ...]:
    """Every id that ends a completion: the generation config's eos_token_id (an int or a list; Qwen3 lists
    <|im_end|> and <|endoftext|>) plus the tokenizer's EOS, in that order, without repeats."""
    listed = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = list(listed) if isinstance(listed, (list, tuple)) else ([] if listed is None else [listed])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    unique = tuple(dict.fromkeys(int(i) for i in ids))
    if not unique:
        raise ConfigError("model.generation_config: the model has no eos_token_id and its tokenizer no EOS token")
    return unique
