"""Prompt datasets: the synthetic arithmetic task and jsonl files, rendered through the chat template."""

from __future__ import annotations

from dataclasses import dataclass

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


def render(rows: list[dict], tokenizer, template_kwargs: dict | None = None) -> Prompts:
    """Token ids of `<chat template>(user: question) + assistant prefix` for each row.

    `template_kwargs` go to the model's own chat template (model.chat_template_kwargs, e.g. Qwen3's
    enable_thinking).
    """
    token_ids = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": row["question"]}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
            **(template_kwargs or {}),
        )
        for row in rows
    ]
    return Prompts(rows=rows, token_ids=[list(ids) for ids in token_ids])


def load_splits(cfg, tokenizer, template_kwargs: dict | None = None) -> dict[str, Prompts]:
    splits = DATASETS.get(cfg.name).component(cfg)
    return {name: render(rows, tokenizer, template_kwargs) for name, rows in splits.items()}
