"""Prompt datasets: the synthetic arithmetic task, jsonl files and math tasks, rendered through the chat template."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from rlpost.config import ConfigError, check
from rlpost.data.arith import ArithConfig, arith_splits
from rlpost.data.jsonl import JsonlConfig, read_jsonl
from rlpost.data.tasks import GSM8KDataConfig, Math500DataConfig, MathDataConfig, TaskDataConfig, task_splits
from rlpost.registry import Registry

DATASETS = Registry("data")


@dataclass
class Prompts:
    """A split: raw rows ({question, answer, ...}) and their chat-rendered token ids."""

    rows: list[dict]
    token_ids: list[list[int]]
    dropped: int = 0  # prompts left out for being longer than data.max_prompt_tokens

    def __len__(self) -> int:
        return len(self.rows)


@DATASETS.register("arith", ArithConfig)
def load_arith(cfg: ArithConfig) -> dict[str, list[dict]]:
    return arith_splits(cfg)


@DATASETS.register("jsonl", JsonlConfig)
def load_jsonl(cfg: JsonlConfig) -> dict[str, list[dict]]:
    train = read_jsonl(cfg.train_path, cfg.question_key, cfg.answer_key, cfg.answer_after, cfg.max_rows)
    held_out = read_jsonl(cfg.eval_path, cfg.question_key, cfg.answer_key, cfg.answer_after, cfg.max_rows)
    return {"train": train, "eval": held_out}


for _name, _schema in (("gsm8k", GSM8KDataConfig), ("math500", Math500DataConfig), ("math", MathDataConfig)):
    DATASETS.register(_name, _schema)(task_splits)
DATASETS.register("files", TaskDataConfig)(task_splits)


def render(rows: list[dict], tokenizer, template_kwargs: dict | None = None) -> Prompts:
    """Token ids of `<chat template>(messages) + assistant prefix` for each row.

    Rows carry `messages` (system + user, from a data prompt template), `prompt_text` (no chat template), or only
    `question` (sent as the user message). `template_kwargs` go to the model's own chat template
    (model.chat_template_kwargs, e.g. Qwen3's enable_thinking).
    """
    token_ids = [
        tokenizer(row["prompt_text"], add_special_tokens=False)["input_ids"]
        if "prompt_text" in row
        else tokenizer.apply_chat_template(
            row.get("messages") or [{"role": "user", "content": row["question"]}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
            **(template_kwargs or {}),
        )
        for row in rows
    ]
    return Prompts(rows=rows, token_ids=[list(ids) for ids in token_ids])


def drop_long(prompts: Prompts, max_tokens: int) -> Prompts:
    """Prompts of at most `max_tokens` tokens (0 = all); the rest are dropped, never truncated, and counted."""
    if max_tokens <= 0:
        return prompts
    keep = [i for i, ids in enumerate(prompts.token_ids) if len(ids) <= max_tokens]
    return Prompts(
        rows=[prompts.rows[i] for i in keep],
        token_ids=[prompts.token_ids[i] for i in keep],
        dropped=len(prompts) - len(keep),
    )


def read_splits(cfg) -> dict[str, list[dict]]:
    """The dataset's raw splits ("train", "eval", ...); a row without a usable question or answer is a ConfigError."""
    key = repr(cfg)
    if key not in _ROWS:
        splits = DATASETS.get(cfg.name).component(cfg)
        for split, rows in splits.items():
            check(len(rows) > 0, "data", f"data={cfg.name}: the {split} split is empty")
            for number, row in enumerate(rows, start=1):
                _check_row(row, f"data={cfg.name}: {split} row {number}")
        _ROWS.clear()  # keep one dataset: the run's
        _ROWS[key] = splits
    return _ROWS[key]


_ROWS: dict[str, dict[str, list[dict]]] = {}  # read once for the start-up checks and again for the run


def _check_row(row: dict, where: str) -> None:
    for key in ("question", "answer"):
        value = row.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ConfigError(f"{where}: '{key}' is {'missing or null' if value is None else 'empty'}")


def check_sizes(cfg, splits: dict[str, list[dict]]) -> None:
    """Run-level sizes that the data must cover: eval_size held-out prompts, prompts_per_step distinct prompts."""
    held_out, train = len(splits["eval"]), len(splits["train"])
    check(
        cfg.run.eval_size <= held_out,
        "eval_size",
        f"{cfg.run.eval_size} is more than the {held_out} held-out prompts of data={cfg.data.name}",
    )
    check(
        cfg.run.prompts_per_step <= train,
        "prompts_per_step",
        f"{cfg.run.prompts_per_step} is more than the {train} training prompts of data={cfg.data.name}",
    )


def load_splits(cfg, tokenizer, template_kwargs: dict | None = None) -> dict[str, Prompts]:
    """Every split rendered with `tokenizer`, over-long prompts dropped (reported on stderr); the start-up check's
    rendering is reused by the run (same process)."""
    key = (repr(cfg), getattr(tokenizer, "name_or_path", id(tokenizer)), getattr(tokenizer, "chat_template", None))
    key += (repr(sorted((template_kwargs or {}).items())),)
    if key not in _RENDERED:
        limit = getattr(cfg, "max_prompt_tokens", 0)
        out = {}
        for name, rows in read_splits(cfg).items():
            out[name] = drop_long(render(rows, tokenizer, template_kwargs), limit)
            if out[name].dropped:
                print(
                    f"data: dropped {out[name].dropped} of {len(rows)} {name} prompts longer than "
                    f"data.max_prompt_tokens={limit}",
                    file=sys.stderr,
                )
            if not len(out[name]):
                raise ConfigError(f"data.max_prompt_tokens: all {len(rows)} {name} prompts are longer than {limit}")
        _RENDERED.clear()
        _RENDERED[key] = out
    return _RENDERED[key]


_RENDERED: dict[tuple, dict[str, Prompts]] = {}
