"""Model presets and loading: the embedded tiny model, any HF causal LM by local path or hub id, or a preset's
architecture with random weights (model.init=random: no download; benchmarks and tests)."""

from __future__ import annotations

import json
import os
import socket
import threading
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rlpost.config import ConfigError, check
from rlpost.models.attention import attention_backend
from rlpost.registry import Registry

MODELS = Registry("model")
BUILTIN = {"tiny-arith": Path(__file__).resolve().parents[1] / "assets" / "tiny-arith"}
BUILTIN_TOKENIZERS = ("qwen3",)  # builtin:qwen3 = rlpost.models.qwen (offline Qwen vocabulary + Qwen3 chat template)
DTYPES = ("float32", "bfloat16", "float16")
INITS = ("pretrained", "random")
ATTENTION = ("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3", "flash_attention_4")
# files one of which a tokenizer needs (remote-code tokenizers may use others: then only loading it tells)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model", "*.tiktoken")


@dataclass
class ModelConfig:
    name: str = "tiny"
    path: str = "builtin:tiny-arith"  # "builtin:<name>", a local directory, or a hub id (needs network)
    init: str = "pretrained"  # pretrained: weights from `path` | random: `architecture` with random weights
    tokenizer: str = ""  # "" = path's tokenizer (init=random with a hub id: builtin:qwen3); or builtin:qwen3, dir, id
    dtype: str = "float32"  # weights dtype when loaded outside training (eval); training uses trainer.precision
    attn_implementation: str = "sdpa"  # sdpa | eager | flex_attention | flash_attention_2/3/4 | org/kernel
    gradient_checkpointing: bool = False  # this model's recommendation; trainer.gradient_checkpointing=null takes it
    architecture: dict[str, Any] = field(default_factory=dict)  # config.json fields for init=random (model_type...)
    generation_config: dict[str, Any] = field(default_factory=dict)  # overrides, e.g. eos_token_id: [151645, 151643]
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)  # to apply_chat_template: enable_thinking
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        check(self.dtype in DTYPES, "dtype", f"{self.dtype!r} is not one of {', '.join(DTYPES)}")
        check(self.init in INITS, "init", f"{self.init!r} is not one of {', '.join(INITS)}")
        kind = self.attn_implementation.removeprefix("paged|")
        check(
            kind in ATTENTION or "/" in kind,
            "attn_implementation",
            f"{self.attn_implementation!r} is not one of {', '.join(ATTENTION)} (or a hub kernel 'org/name')",
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
    return _hub_model(path)  # hub id like Qwen/Qwen3-8B


def _hub_model(repo_id: str) -> str:
    """The hub id when the hub answers; else its cached snapshot directory; else a ConfigError (no 50 s of retries)."""
    cached = _cached_snapshot(repo_id)
    offline = os.environ.get("HF_HUB_OFFLINE", os.environ.get("TRANSFORMERS_OFFLINE", "")).lower() in (
        "1",
        "true",
        "yes",
        "on",
    )
    if not offline and hub_reachable():
        return repo_id
    why = "the hub is offline (HF_HUB_OFFLINE=1)" if offline else f"the hub ({_hub_host()[0]}) is unreachable"
    check(
        cached is not None,
        "model.path",
        f"{repo_id} is not a local directory and {why}, and it is not in the hub cache; "
        "download it first or give a local directory",
    )
    return cached


def _cached_snapshot(repo_id: str) -> str | None:
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, local_files_only=True)
    except Exception:  # not cached, or not a valid repo id: both mean "not here"
        return None


def _hub_host() -> tuple[str, int]:
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme != "http" else 80)


@lru_cache(maxsize=1)
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the hub opens within `timeout_s` (DNS included, so it runs in a thread)."""
    opened: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(_hub_host(), timeout=timeout_s).close()
            opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(opened)


def check_model(cfg: ModelConfig):
    """Start-up checks of the model's files, before anything is written: config.json, weights (complete, not
    truncated), tokenizer files and chat template. Returns (tokenizer, max_position_embeddings or None)."""
    if cfg.init == "random":  # no weights to check; the architecture comes from the preset (no download)
        tokenizer = load_tokenizer(cfg)
        return tokenizer, cfg.architecture.get("max_position_embeddings")
    path = resolve_path(cfg.path)
    directory = Path(path) if Path(path).is_dir() else None
    max_positions = None
    if directory is not None:
        max_positions = _read_json(directory / "config.json").get("max_position_embeddings")
        check_weights(directory)
        if not cfg.trust_remote_code:
            found = [name for pattern in TOKENIZER_FILES for name in directory.glob(pattern)]
            check(
                bool(found),
                "model.path",
                f"{directory} has no tokenizer files (one of {', '.join(TOKENIZER_FILES)})",
            )
    if cfg.attn_implementation.removeprefix("paged|").startswith("flash_attention"):
        import torch

        check(
            torch.cuda.is_available(),
            "model.attn_implementation",
            f"{cfg.attn_implementation} needs a CUDA GPU and there is none; use sdpa",
        )
    if directory is not None:
        for name in ("tokenizer_config.json", "special_tokens_map.json", "tokenizer.json", "generation_config.json"):
            if (directory / name).is_file():
                _read_json(directory / name)
        for template in directory.glob("*.jinja"):
            _read_text(template)
    tokenizer = load_tokenizer(cfg)
    check(
        tokenizer.chat_template is not None,
        "model.path",
        f"{path}: the tokenizer has no chat template (chat_template.jinja or tokenizer_config.json); "
        "prompts are rendered with it",
    )
    check(tokenizer.eos_token_id is not None, "model.path", f"{path}: the tokenizer has no eos_token")
    return tokenizer, max_positions


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        line = file.read_bytes()[: error.start].count(b"\n") + 1
        raise ConfigError(f"model.path: {file}:{line}: not UTF-8 text") from None
    except OSError as error:
        raise ConfigError(f"model.path: cannot read {file}: {error.strerror or error}") from None


def _read_json(file: Path) -> dict:
    try:
        data = json.loads(_read_text(file))
    except json.JSONDecodeError as error:
        raise ConfigError(f"model.path: {file}:{error.lineno}: not valid JSON ({error.msg})") from None
    check(isinstance(data, dict), "model.path", f"{file}: not a JSON object")
    return data


def check_weights(directory: Path) -> None:
    """Every weight file is there and whole: safetensors headers must cover their files exactly."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        missing = [name for name in shards if not (directory / name).is_file()]
        check(not missing, "model.path", f"{index} lists missing shard files: {', '.join(missing[:3])}")
    tensors = sorted(directory.glob("*.safetensors"))
    pickles = sorted(directory.glob("pytorch_model*.bin"))
    check(
        bool(tensors or pickles),
        "model.path",
        f"{directory} has no weights (*.safetensors or pytorch_model*.bin)",
    )
    for file in tensors:
        _check_safetensors(file)
    for file in pickles:  # torch.save's zip format: a truncated file loses its central directory at the end
        check(zipfile.is_zipfile(file), "model.path", f"{file} is truncated or not a torch checkpoint; re-download it")


def _check_safetensors(file: Path) -> None:
    """The 8-byte header length, the JSON header and the byte ranges it declares must match the file's size."""
    size = file.stat().st_size
    try:
        with file.open("rb") as handle:
            header_size = int.from_bytes(handle.read(8), "little")
            if size < 8 or header_size > size - 8:
                raise ValueError(f"header of {header_size} bytes in a file of {size}")
            header = json.loads(handle.read(header_size))
        end = max((int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, OSError) as error:
        raise ConfigError(f"model.path: {file} is not a valid safetensors file ({error}); re-download it") from None
    check(
        size == 8 + header_size + end,
        "model.path",
        f"{file} is truncated or corrupt: {size} bytes, its header describes {8 + header_size + end}; re-download it",
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


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
        except Exception as error:  # noqa: BLE001  any failure here is about the files at that key
            raise ConfigError(f"{key}: cannot load a tokenizer from {source!r}: {_first_line(error)}") from None
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


def load_model(cfg: ModelConfig, *, dtype=None, device=None, tokenizer=None):
    """(model, tokenizer) in train mode; weights in `dtype` (default model.dtype) on `device` (default CPU).
    `tokenizer`: one already loaded by `load_tokenizer(cfg)` (the trainer loads it before the model).

    init=random builds the architecture with random weights (seeded by the caller's torch seed), directly on the
    device. The tokenizer pads on the left for generation.
    """
    import torch
    from transformers import AutoModelForCausalLM

    _check_attention(cfg)
    dtype = dtype or getattr(torch, cfg.dtype)
    device = torch.device(device or "cpu")
    tokenizer = load_tokenizer(cfg) if tokenizer is None else tokenizer
    if cfg.init == "random":
        config = architecture_config(cfg)
        with device:  # parameters are created on the device: no CPU copy of a large model
            model = AutoModelForCausalLM.from_config(
                config,
                dtype=dtype,
                attn_implementation=attention_backend(cfg.attn_implementation),
                trust_remote_code=cfg.trust_remote_code,
            )
    else:
        path = resolve_path(cfg.path)
        try:
            model, loading = AutoModelForCausalLM.from_pretrained(
                path,
                dtype=dtype,
                attn_implementation=attention_backend(cfg.attn_implementation),
                trust_remote_code=cfg.trust_remote_code,
                output_loading_info=True,
            )
        except Exception as error:  # noqa: BLE001  missing/broken files, unknown architecture, attention backend
            key = "model.attn_implementation" if "attn" in str(error).lower() else "model.path"
            raise ConfigError(f"{key}: cannot load {path!r}: {_first_line(error)}") from None
        unfit = {kind: [str(k) for k in loading.get(kind) or []] for kind in ("missing_keys", "mismatched_keys")}
        listed = "; ".join(f"{kind.replace('_', ' ')}: {', '.join(keys[:4])}" for kind, keys in unfit.items() if keys)
        check(
            not listed, "model.path", f"{path}: the weights do not fit its config.json ({listed}); refusing random init"
        )
        model = model.to(device)
    for key, value in cfg.generation_config.items():
        setattr(model.generation_config, key, value)
    if len(tokenizer) > model.config.vocab_size:  # the config, not the weight: ZeRO-3 holds a shard of it
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
