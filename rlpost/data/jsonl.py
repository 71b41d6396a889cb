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
        raise ConfigError(
            f"data: {file} is a directory, not a jsonl file" if file.is_dir() else f"data: file not found: {file}"
        )
    rows: list[dict] = []
    try:
        with file.open("rb") as handle:
            for line_number, raw in enumerate(handle, start=1):
                line = _decode(raw, file, line_number)
                if not line.strip():
                    continue
                rows.append(_row(line, f"{file}:{line_number}", question_key, answer_key, answer_after))
                if max_rows and len(rows) >= max_rows:
                    break
    except OSError as error:
        raise ConfigError(f"data: cannot read {file}: {error.strerror or error}") from None
    check(len(rows) > 0, "data", f"{file} has no rows")
    return rows


def _decode(raw: bytes, file: Path, line_number: int) -> str:
    try:
        return raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"data: {file}:{line_number}: not UTF-8 text (byte {raw[error.start]:#04x} at column {error.start + 1}); "
            "save the file as UTF-8"
        ) from None


def _row(line: str, where: str, question_key: str, answer_key: str, answer_after: str) -> dict:
    """One {question, answer} row from a JSON line; `where` is "file:line" for the messages."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ConfigError(f"data: {where}: not valid JSON ({error.msg})") from None
    if not isinstance(record, dict) or question_key not in record or answer_key not in record:
        raise ConfigError(f"data: {where}: needs keys '{question_key}' and '{answer_key}'")
    question, answer = record[question_key], record[answer_key]
    for key, value in ((question_key, question), (answer_key, answer)):
        if value is None or isinstance(value, bool) or not isinstance(value, (str, int, float)):
            kind = "null" if value is None else type(value).__name__
            raise ConfigError(f"data: {where}: '{key}' must be a string or a number, got {kind}")
    answer = str(answer)
    if answer_after:
        if answer_after not in answer:
            raise ConfigError(f"data: {where}: '{answer_key}' has no '{answer_after}' marker (data.answer_after)")
        answer = answer.rsplit(answer_after, 1)[-1]
    answer = answer.strip().replace(",", "")
    if not str(question).strip() or not answer:
        raise ConfigError(f"data: {where}: empty '{question_key if not str(question).strip() else answer_key}'")
    return {"question": str(question), "answer": answer}
