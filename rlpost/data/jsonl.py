"""Question/answer datasets from local jsonl files (one JSON object per line), e.g. GSM8K-style files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rlpost.config import ConfigError, check


@dataclass
class JsonlConfig:
    name: str = "jsonl"
    train_path: str = "???"  # jsonl file with one problem per line
    eval_path: str = "???"  # held-out jsonl file
    question_key: str = "question"
    answer_key: str = "answer"
    answer_after: str = ""  # e.g. "####" for GSM8K: the answer is the text after the last marker
    max_rows: int = 0  # 0: all rows

    def __post_init__(self) -> None:
        check(self.max_rows >= 0, "max_rows", f"must be >= 0, got {self.max_rows}")


def read_jsonl(path: str, question_key: str, answer_key: str, answer_after: str = "", max_rows: int = 0) -> list[dict]:
    """Rows as {question, answer}; a bad line raises ConfigError naming the file and line number."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"data: file not found: {file}")
    rows: list[dict] = []
    with file.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ConfigError(f"data: {file}:{line_number}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict) or question_key not in record or answer_key not in record:
                raise ConfigError(f"data: {file}:{line_number}: needs keys '{question_key}' and '{answer_key}'")
            answer = str(record[answer_key])
            if answer_after:
                answer = answer.rsplit(answer_after, 1)[-1]
            rows.append({"question": str(record[question_key]), "answer": answer.strip().replace(",", "")})
            if max_rows and len(rows) >= max_rows:
                break
    check(len(rows) > 0, "data", f"{file} has no rows")
    return rows
