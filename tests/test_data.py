"""The arithmetic task, jsonl datasets and chat-template rendering."""

from __future__ import annotations

import json

import pytest

from rlpost.config import ConfigError
from rlpost.data import render
from rlpost.data.arith import ArithConfig, arith_splits, make_problem
from rlpost.data.jsonl import read_jsonl
from rlpost.models.tiny import build_tokenizer


def test_splits_are_disjoint_and_fixed_by_split_seed():
    cfg = ArithConfig(train_size=300, eval_size=50, dev_size=50)
    splits = arith_splits(cfg)
    questions = {name: {row["question"] for row in rows} for name, rows in splits.items()}
    assert len(questions["train"]) == 300 and len(questions["eval"]) == 50
    assert not questions["train"] & questions["eval"] and not questions["train"] & questions["dev"]
    assert not questions["dev"] & questions["eval"]
    # a larger train pool leaves the held-out split unchanged
    bigger = arith_splits(ArithConfig(train_size=600, eval_size=50, dev_size=50))
    assert bigger["eval"] == splits["eval"]


def test_problem_answers_are_correct():
    import random

    rng = random.Random(0)
    for tier in ("2+", "2-", "3+", "2*", "1+"):
        problem = make_problem(rng, tier)
        expression = problem["question"].removeprefix("What is ").removesuffix("?")
        assert str(eval(expression)) == problem["answer"]  # noqa: S307 - digits and one operator only
    assert make_problem(random.Random(1), "2-")["tier"] == "2-"


@pytest.mark.parametrize("tiers", [["2"], ["x+"], ["9+"], []])
def test_bad_tiers_are_rejected(tiers):
    with pytest.raises(ConfigError, match="tiers"):
        ArithConfig(tiers=tiers)


def test_chat_template_rendering():
    tokenizer = build_tokenizer()
    prompts = render([{"question": "What is 37+58?", "answer": "95"}], tokenizer)
    text = tokenizer.decode(prompts.token_ids[0])
    assert text == "<bos><|user|>What is 37+58?<|assistant|>"
    assert len(prompts.token_ids[0]) == 17


def test_jsonl_reads_rows_and_gsm8k_answers(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(
        json.dumps({"question": "q1", "answer": "work\n#### 1,234"})
        + "\n\n"
        + json.dumps({"question": "q2", "answer": "#### 7"})
        + "\n"
    )
    rows = read_jsonl(str(path), "question", "answer", answer_after="####")
    assert rows == [{"question": "q1", "answer": "1234"}, {"question": "q2", "answer": "7"}]


def test_jsonl_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "1"}) + "\n{not json\n")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2: not valid JSON"):
        read_jsonl(str(path), "question", "answer")
    path.write_text(json.dumps({"q": "x"}) + "\n")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1: needs keys 'question' and 'answer'"):
        read_jsonl(str(path), "question", "answer")
    with pytest.raises(ConfigError, match="file not found"):
        read_jsonl(str(tmp_path / "missing.jsonl"), "question", "answer")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ConfigError, match="has no rows"):
        read_jsonl(str(tmp_path / "empty.jsonl"), "question", "answer")


def test_gsm8k_sample_loads():
    """Real GSM8K rows (MIT, from openai/grade-school-math, in tests/data): the answer is the number after '####'."""
    from pathlib import Path

    path = Path(__file__).parent / "data" / "gsm8k_sample.jsonl"
    raw = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = read_jsonl(str(path), "question", "answer", "####")
    assert rows[0] == {"question": raw[0]["question"], "answer": "18"}  # Janet's ducks: "... #### 18"
    assert rows[1]["answer"] == "3"  # the robe: 2 + 1 bolts
    assert [row["question"] for row in rows] == [record["question"] for record in raw]  # every row, in order
    assert all(row["answer"].lstrip("-").isdigit() for row in rows)  # no reasoning text left in any answer
    assert read_jsonl(str(path), "question", "answer", "####", max_rows=5) == rows[:5]
