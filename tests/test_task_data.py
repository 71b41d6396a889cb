"""Math task datasets: presets compose, field mapping, prompt template, parquet, over-long prompts dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlpost.cli import compose_train
from rlpost.config import ConfigError, validate
from rlpost.data import load_splits
from rlpost.data.tasks import TaskDataConfig, load_rows
from rlpost.models.tiny import build_tokenizer

DATA = Path(__file__).parent / "data"


def data_cfg(*overrides: str):
    return validate(compose_train(list(overrides))).data


def test_gsm8k_and_math500_presets_read_the_samples():
    gsm8k = data_cfg(
        "data=gsm8k", f"data.data_dir={DATA}", "data.train_path=gsm8k_sample.jsonl", "data.eval_path=gsm8k_sample.jsonl"
    )
    rows = load_rows(gsm8k, "train")
    assert rows[0]["answer"] == "18" and rows[0]["question"].startswith("Janet")
    math500 = data_cfg(
        "data=math500",
        f"data.data_dir={DATA}",
        "data.eval_path=math500_sample.jsonl",
        "data.train_path=math500_sample.jsonl",
    )
    rows = load_rows(math500, "eval")
    assert rows[0] == {
        "question": rows[0]["question"],
        "answer": r"\left( 3, \frac{\pi}{2} \right)",
        "subject": "Precalculus",
        "level": 2,
        "id": "test/precalculus/807.json",
    }


def test_math_preset_takes_the_last_boxed_of_the_solution():
    cfg = data_cfg(
        "data=math",
        f"data.data_dir={DATA}",
        "data.train_path=math500_sample.jsonl",
        "data.eval_path=math500_sample.jsonl",
    )
    answers = [row["answer"] for row in load_rows(cfg, "train")]
    references = [json.loads(line)["answer"] for line in (DATA / "math500_sample.jsonl").read_text().splitlines()]
    same = sum(a.replace(" ", "") == r.replace(" ", "") for a, r in zip(answers, references))
    assert same >= 0.8 * len(references)  # MATH-500 `answer` is the boxed part of the solution, up to spacing


def test_field_mapping_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"prompt": ["What is 2+2?", "What is 3+3?"], "target": ["#### 4", "#### 6"], "tag": ["a", "b"]})
    pq.write_table(table, tmp_path / "t.parquet")
    cfg = TaskDataConfig(
        train_path=str(tmp_path / "t.parquet"),
        eval_path=str(tmp_path / "t.parquet"),
        question_key="prompt",
        answer_key="target",
        answer_after="####",
        subject_key="tag",
    )
    assert load_rows(cfg, "train") == [
        {"question": "What is 2+2?", "answer": "4", "subject": "a"},
        {"question": "What is 3+3?", "answer": "6", "subject": "b"},
    ]
    wrong = TaskDataConfig(train_path=str(tmp_path / "t.parquet"), eval_path="x", question_key="question")
    with pytest.raises(ConfigError, match=r"t.parquet:1: no field 'question' \(fields: prompt, tag, target\)"):
        load_rows(wrong, "train")
    with pytest.raises(ConfigError, match=r"data.eval_path: file not found: x"):
        load_rows(wrong, "eval")


def test_prompt_template_system_prompt_and_plain_text():
    tokenizer = build_tokenizer()
    path = str(DATA / "gsm8k_sample.jsonl")
    cfg = TaskDataConfig(
        train_path=path,
        eval_path=path,
        answer_after="####",
        system_prompt="Be brief.",
        template="Q: {question} {instruction}",
        instruction="Answer:",
        max_prompt_tokens=0,
    )
    splits = load_splits(cfg, tokenizer)
    text = tokenizer.decode(splits["train"].token_ids[0])
    assert text.startswith("<bos><|system|>Be brief.<|user|>Q: Janet") and text.endswith("Answer:<|assistant|>")
    plain = TaskDataConfig(
        train_path=path,
        eval_path=path,
        answer_after="####",
        template="{question}",
        chat_template=False,
        max_prompt_tokens=0,
    )
    assert tokenizer.decode(load_splits(plain, tokenizer)["eval"].token_ids[0]).startswith("Janet")
    with pytest.raises(ConfigError, match="template: only"):
        TaskDataConfig(template="{answer}")


def test_over_long_prompts_are_dropped_and_counted(capsys):
    tokenizer = build_tokenizer()  # one token per character
    path = str(DATA / "gsm8k_sample.jsonl")
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    lengths = sorted(
        len(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": r["question"]}], add_generation_prompt=True, return_dict=False
            )
        )
        for r in rows
    )
    limit = lengths[len(lengths) // 2]
    cfg = TaskDataConfig(
        train_path=path, eval_path=path, answer_after="####", template="{question}", max_prompt_tokens=limit
    )
    splits = load_splits(cfg, tokenizer)
    expected_dropped = sum(length > limit for length in lengths)
    assert splits["train"].dropped == expected_dropped > 0
    assert len(splits["train"]) == len(rows) - expected_dropped
    assert all(len(ids) <= limit for ids in splits["train"].token_ids)
    assert f"dropped {expected_dropped} of {len(rows)} train prompts" in capsys.readouterr().err


def test_named_eval_sets():
    cfg = data_cfg(
        "data=gsm8k",
        f"data.data_dir={DATA}",
        "data.train_path=gsm8k_sample.jsonl",
        "data.eval_path=gsm8k_sample.jsonl",
        "+data.eval_sets.m5={name: math500, eval_path: " + str(DATA / "math500_sample.jsonl") + "}",
    )
    splits = load_splits(cfg, build_tokenizer())
    assert set(splits) == {"train", "eval", "eval/m5"} and len(splits["eval/m5"]) + splits["eval/m5"].dropped == 40
    with pytest.raises(ConfigError, match=r"data.eval_sets.x.name: 'nope' is not one of"):
        data_cfg("data=gsm8k", "+data.eval_sets.x={name: nope}")


GSM8K_TINY = [
    "data=gsm8k",
    "reward=math_verify",
    "data.data_dir=tests/data",
    "data.train_path=gsm8k_sample.jsonl",
    "data.eval_path=gsm8k_sample.jsonl",
    "data.template='{question}'",
    "data.max_prompt_tokens=240",
]


@pytest.mark.slow
def test_train_on_gsm8k_with_math_verify_and_a_named_eval_set(tmp_path):
    from tests.conftest import read_jsonl, run_train

    run_train(
        *GSM8K_TINY,
        "debug=fast",
        "eval_every=3",
        "+data.eval_sets.m500={name: math500, eval_path: math500_sample.jsonl, template: '{question}'}",
        run_dir=tmp_path,
        check=True,
    )
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    for record in (records[0], records[3]):  # eval at the start and at the last step
        assert "eval_accuracy" in record and 0 <= record["eval/m500/accuracy"] <= 1
    assert all(r["reward_timeouts"] == 0 and r["reward_graded_per_s"] > 0 for r in records[1:])


def test_missing_data_file_is_one_line_exit_2(tmp_path):
    from tests.conftest import run_train

    result = run_train("data=gsm8k", "data.data_dir=/nonexistent", run_dir=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("rlpost-train: config error: data.train_path: file not found: gsm8k_train.jsonl")
    )
    assert not (tmp_path / "metrics.jsonl").exists()
