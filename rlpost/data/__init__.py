"""Prompt datasets: the synthetic arithmetic task and jsonl files, rendered through the chat template."""

from __future__ import annotations

from dataclasses import dataclass

from rlpost.config import ConfigError, check
from rlpost.data.arith import ArithConfig, arith_splits
from rlpost.data.jsonl import JsonlConfig, read_jsonl
from rlpost.registry import Registry

DATASETS = Registry("data")


@dataclass
class Prompts:
    """A split: raw rows ({question, answer, ...}) and their chat-rendered token ids."""

    rows: list[dict]
    token_ids: list[list[int]]

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


def render(rows: list[dict], tokenizer) -> Prompts:
    """Token ids of `<chat template>(user: question) + assistant prefix` for each row."""
    token_ids = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": row["question"]}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        for row in rows
    ]
    return Prompts(rows=rows, token_ids=[list(ids) for ids in token_ids])


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


def load_splits(cfg, tokenizer) -> dict[str, Prompts]:
    """Every split rendered with `tokenizer`; the start-up check's rendering is reused by the run (same process)."""
    key = (repr(cfg), getattr(tokenizer, "name_or_path", id(tokenizer)), getattr(tokenizer, "chat_template", None))
    if key not in _RENDERED:
        _RENDERED.clear()
        _RENDERED[key] = {name: render(rows, tokenizer) for name, rows in read_splits(cfg).items()}
    return _RENDERED[key]


_RENDERED: dict[tuple, dict[str, Prompts]] = {}
