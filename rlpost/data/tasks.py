"""Math task datasets (GSM8K, MATH-500, MATH) and any jsonl / parquet / hub dataset, with a field mapping and a
prompt template.

A source is a local `.jsonl` or `.parquet` file, or `hub:<dataset id>[:<config>]` (needs network; read with the
`datasets` package). Fields are mapped to rows {question, answer[, subject, level, id]}; the prompt is
`template` filled with {question} and {instruction}, preceded by `system_prompt` when set, and rendered with the
tokenizer's chat template (or as plain text with `chat_template: false`). Prompts longer than
`max_prompt_tokens` are dropped, never truncated, and the count is reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlpost.config import ConfigError, check
from rlpost.grading import last_boxed

ANSWER_FROM = ("field", "boxed")
BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass
class TaskDataConfig:
    """Keys every file/hub dataset shares; gsm8k, math500 and math only change the defaults."""

    name: str = "files"
    data_dir: str = "${oc.env:RLPOST_DATA_DIR,data}"  # where relative paths are looked up (env RLPOST_DATA_DIR)
    train_path: str = "???"  # .jsonl, .parquet, or hub:<id>[:<config>]
    eval_path: str = "???"  # held-out split, same forms
    train_split: str = "train"  # hub split names
    eval_split: str = "test"
    question_key: str = "question"  # field mapping: source field -> row field
    answer_key: str = "answer"
    answer_after: str = ""  # keep the text after the last occurrence of this marker ("####" for GSM8K)
    answer_from: str = "field"  # field: the answer field as is; boxed: the last \boxed{} in it (MATH solutions)
    subject_key: str = ""  # optional fields kept for per-subject / per-level breakdowns ("" = none)
    level_key: str = ""
    id_key: str = ""
    system_prompt: str = ""  # "" = no system message
    template: str = "{question}\n\n{instruction}"  # user message; {question} and {instruction} are filled in
    instruction: str = BOXED_INSTRUCTION  # the answer instruction
    chat_template: bool = True  # false: the filled template is the prompt text (base models)
    max_prompt_tokens: int = 1024  # longer prompts are dropped (counted), never truncated; 0 = keep all
    max_rows: int = 0  # 0: all rows of each split
    eval_sets: dict[str, Any] = field(default_factory=dict)  # extra named eval sets: name -> a data config

    def __post_init__(self) -> None:
        check(self.answer_from in ANSWER_FROM, "answer_from", f"{self.answer_from!r} is not one of {ANSWER_FROM}")
        check(self.max_prompt_tokens >= 0, "max_prompt_tokens", f"must be >= 0, got {self.max_prompt_tokens}")
        check(self.max_rows >= 0, "max_rows", f"must be >= 0, got {self.max_rows}")
        try:
            self.template.format(question="", instruction="")
        except (KeyError, IndexError, ValueError) as error:
            raise ConfigError(f"template: only {{question}} and {{instruction}} may be used ({error})") from None
        self.eval_parts = {}
        for set_name, sub in self.eval_sets.items():
            self.eval_parts[set_name] = eval_set_config(set_name, sub, self.data_dir)


def eval_set_config(set_name: str, sub: Any, data_dir: str) -> TaskDataConfig:
    """An extra eval set's config (its data_dir defaults to the main dataset's)."""
    from rlpost.config import _as_schema
    from rlpost.data import DATASETS

    check(isinstance(sub, dict) and "name" in sub, f"eval_sets.{set_name}", "needs a `name:` (e.g. math500)")
    names = [name for name in DATASETS.names() if issubclass(DATASETS.get(name).schema, TaskDataConfig)]
    check(sub["name"] in names, f"eval_sets.{set_name}.name", f"{sub['name']!r} is not one of {', '.join(names)}")
    config = _as_schema(DATASETS.get(sub["name"]).schema, {"data_dir": data_dir} | sub, f"eval_sets.{set_name}")
    config.where = f"data.eval_sets.{set_name}"
    return config


@dataclass
class GSM8KDataConfig(TaskDataConfig):
    name: str = "gsm8k"
    train_path: str = "gsm8k_train.jsonl"  # in data_dir; or hub:openai/gsm8k:main
    eval_path: str = "gsm8k_test.jsonl"
    answer_after: str = "####"


@dataclass
class Math500DataConfig(TaskDataConfig):
    name: str = "math500"
    train_path: str = "math500_test.jsonl"  # an evaluation set: train on data=math and evaluate on this
    eval_path: str = "math500_test.jsonl"  # or hub:HuggingFaceH4/MATH-500 (split test)
    question_key: str = "problem"
    subject_key: str = "subject"
    level_key: str = "level"
    id_key: str = "unique_id"


@dataclass
class MathDataConfig(TaskDataConfig):
    name: str = "math"
    train_path: str = (
        "math_train.jsonl"  # MATH train split (Hendrycks et al.); or hub:DigitalLearningGmbH/MATH-lighteval
    )
    eval_path: str = "math500_test.jsonl"  # MATH-500
    question_key: str = "problem"
    answer_key: str = "solution"  # the answer is the last \boxed{} of the solution
    answer_from: str = "boxed"
    subject_key: str = "type"
    level_key: str = "level"


def resolve_source(path: str, data_dir: str, key: str) -> str:
    """A hub source as is; a relative file under data_dir (or the working directory); the file must exist."""
    if path.startswith("hub:"):
        return path
    for candidate in (Path(path).expanduser(), Path(data_dir).expanduser() / path):
        if candidate.is_file():
            return str(candidate)
    raise ConfigError(
        f"{key}: file not found: {path} (looked in . and data_dir={data_dir}; set data.data_dir or "
        f"RLPOST_DATA_DIR, give a full path, or a hub id as hub:<id>)"
    )


def read_records(source: str, split: str) -> list[dict]:
    """Raw records of a .jsonl / .parquet file or a hub dataset split."""
    if source.startswith("hub:"):
        from datasets import load_dataset

        dataset_id, _, config = source.removeprefix("hub:").partition(":")
        try:
            return list(load_dataset(dataset_id, config or None, split=split))
        except Exception as error:  # network, unknown id or split: one line naming the source
            raise ConfigError(f"data: cannot load {source} split {split!r}: {str(error).splitlines()[0]}") from None
    if source.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(source).to_pylist()
    records = []
    with open(source, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ConfigError(f"data: {source}:{line_number}: not valid JSON ({error.msg})") from None
    return records


def map_fields(record: dict, cfg: TaskDataConfig, where: str) -> dict:
    """One source record as a row {question, answer, [subject, level, id]}."""
    for key in (cfg.question_key, cfg.answer_key):
        if key not in record:
            raise ConfigError(
                f"data: {where}: no field {key!r} (fields: {', '.join(sorted(record))}); map it with "
                f"data.question_key / data.answer_key"
            )
    answer = str(record[cfg.answer_key])
    if cfg.answer_after:
        answer = answer.rsplit(cfg.answer_after, 1)[-1].strip().replace(",", "")
    if cfg.answer_from == "boxed":
        answer = last_boxed(answer) or ""
    row = {"question": str(record[cfg.question_key]), "answer": answer.strip()}
    for out, key in (("subject", cfg.subject_key), ("level", cfg.level_key), ("id", cfg.id_key)):
        if key and key in record:
            row[out] = record[key]
    return row


def load_rows(cfg: TaskDataConfig, which: str) -> list[dict]:
    """Rows of the train or eval split ("train" | "eval")."""
    path, split = (cfg.train_path, cfg.train_split) if which == "train" else (cfg.eval_path, cfg.eval_split)
    source = resolve_source(path, cfg.data_dir, f"{getattr(cfg, 'where', 'data')}.{which}_path")
    records = read_records(source, split)
    rows = []
    for number, record in enumerate(records, start=1):
        row = map_fields(record, cfg, f"{source}:{number}")
        if row["answer"]:  # e.g. a MATH solution without \boxed{}: nothing to grade against
            rows.append(row)
        if cfg.max_rows and len(rows) >= cfg.max_rows:
            break
    check(len(rows) > 0, "data", f"{source} has no gradable rows")
    return rows


def with_prompt(rows: list[dict], cfg: TaskDataConfig) -> list[dict]:
    """Rows with the chat messages (or plain prompt text) built from the template."""
    out = []
    for row in rows:
        user = cfg.template.format(question=row["question"], instruction=cfg.instruction).strip()
        if cfg.chat_template:
            system = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
            out.append(row | {"messages": system + [{"role": "user", "content": user}]})
        else:
            text = f"{cfg.system_prompt}\n\n{user}" if cfg.system_prompt else user
            out.append(row | {"prompt_text": text})
    return out


def task_splits(cfg: TaskDataConfig) -> dict[str, list[dict]]:
    """train, eval and one `eval/<name>` split per extra eval set, each with its prompt."""
    splits = {which: with_prompt(load_rows(cfg, which), cfg) for which in ("train", "eval")}
    for set_name, sub in cfg.eval_parts.items():
        splits[f"eval/{set_name}"] = with_prompt(load_rows(sub, "eval"), sub)
    return splits
