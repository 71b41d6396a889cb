"""rlpost-compare on hand-made run dirs: grouping by swept keys, hand-computed mean ± std, partial runs, formats."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import yaml

from rlpost.compare import declared_sweep_keys, find_run_dirs, load_run, mean_std, run_keys, swept_keys, table
from rlpost.sweep import INDEX, write_index
from tests.conftest import REPO


def make_run(
    root: Path,
    name: str,
    overrides: list[str],
    choices: dict,
    evals: dict[int, float],
    rewards: list[float],
    finished: bool = True,
    steps: int = 4,
) -> Path:
    """A run dir as rlpost-train leaves it: .hydra/{overrides,hydra,config}.yaml, metrics.jsonl, summary.json."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    hydra = {"hydra": {"runtime": {"choices": {**choices, "hydra/launcher": "slurm"}}, "job": {"num": 0}}}
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"steps": steps, "seed": 0}))
    lines = [{"step": 0, "eval_accuracy": evals[0]}]
    for step, reward in enumerate(rewards, start=1):
        record = {"step": step, "reward_mean": reward, "response_length": 4.0 + step, "rollouts": 16}
        record["step_seconds"] = 0.5
        if step in evals:
            record["eval_accuracy"] = evals[step]
        lines.append(record)
    text = "".join(json.dumps(line) + "\n" for line in lines)
    if not finished:
        text += '{"step": 99, "reward'  # a line being written right now
    (run / "metrics.jsonl").write_text(text)
    if finished:
        (run / "summary.json").write_text(json.dumps({"steps": steps, "seconds": 10.0}))
        (run / "status.json").write_text(json.dumps({"status": "completed"}))
    return run


def sweep(root: Path) -> Path:
    # dhpo_entropy and dhpo share `name: dhpo` inside the group: the option name is what tells them apart
    make_run(
        root, "0_algo=grpo,seed=1", ["algo=grpo", "seed=1"], {"algo": "grpo"}, {0: 0.2, 4: 0.5}, [0.1, 0.2, 0.3, 0.4]
    )
    make_run(
        root, "1_algo=grpo,seed=2", ["algo=grpo", "seed=2"], {"algo": "grpo"}, {0: 0.2, 4: 0.7}, [0.3, 0.4, 0.5, 0.6]
    )
    make_run(
        root,
        "2_algo=dhpo_entropy,seed=1",
        ["algo=dhpo_entropy", "seed=1"],
        {"algo": "dhpo_entropy"},
        {0: 0.2, 2: 0.4},
        [0.2, 0.2],
        finished=False,
    )
    (root / "multirun.yaml").write_text("{}\n")
    return root


def test_mean_and_sample_std_by_hand():
    mean, std, n = mean_std([0.5, 0.7, None])
    assert (round(mean, 12), n) == (0.6, 2)
    assert math.isclose(std, math.sqrt(((0.5 - 0.6) ** 2 + (0.7 - 0.6) ** 2) / 1))  # n - 1 = 1
    assert mean_std([0.3]) == (0.3, None, 1)
    assert mean_std([None]) == (None, None, 0)


def test_groups_by_option_names_with_mean_std_over_seeds_and_a_running_run(tmp_path):
    runs = [load_run(d) for d in find_run_dirs([sweep(tmp_path)])]
    assert [r.run_dir.name for r in runs] == ["0_algo=grpo,seed=1", "1_algo=grpo,seed=2", "2_algo=dhpo_entropy,seed=1"]
    assert run_keys(runs[2].run_dir) == {"algo": "dhpo_entropy", "seed": "1"}  # hydra/* choices left out
    assert swept_keys(runs) == ["algo"]
    keys, records = table(runs, tail=2)
    grpo, dhpo = records
    assert (grpo["algo"], grpo["runs"], grpo["seeds"], grpo["status"], grpo["steps"]) == (
        "grpo",
        2,
        "1,2",
        "completed:2",
        "4/4",
    )
    assert math.isclose(grpo["acc_start"], 0.2) and grpo["acc_start_std"] == 0.0
    assert math.isclose(grpo["acc_final"], 0.6) and math.isclose(grpo["acc_final_std"], math.sqrt(0.02))
    assert math.isclose(grpo["acc_best"], 0.6)
    # reward: mean of the last 2 steps per run (0.35 and 0.55), then over seeds
    assert math.isclose(grpo["reward"], 0.45) and math.isclose(grpo["reward_std"], math.sqrt(0.02))
    assert math.isclose(grpo["response_length"], 7.5)  # steps 3 and 4: 7.0 and 8.0
    assert grpo["rollouts"] == 64 and grpo["seconds"] == 10.0
    # the running run: no summary, a torn last line, steps done out of the configured total, time from step times
    assert (dhpo["status"], dhpo["steps"], dhpo["runs"]) == ("running:1", "2/4", 1)
    assert dhpo["acc_final"] == 0.4 and dhpo["acc_final_std"] is None
    assert dhpo["rollouts"] == 32 and dhpo["seconds"] == 1.0


def test_cli_markdown_csv_json_and_plots(tmp_path):
    root = sweep(tmp_path / "sweep")

    def compare(*args):
        return subprocess.run(
            [sys.executable, "-m", "rlpost.compare", *args], cwd=REPO, capture_output=True, text=True, timeout=120
        )

    markdown = compare(str(root))
    assert markdown.returncode == 0, markdown.stderr
    lines = markdown.stdout.splitlines()
    assert lines[0].startswith("| algo | runs | seeds | status | steps | held-out acc start")
    assert lines[2].startswith("| grpo | 2 | 1,2 | completed:2 | 4/4 | 0.200 ± 0.000 | 0.600 ± 0.141 | 0.600 ± 0.141")
    assert lines[3].startswith("| dhpo_entropy | 1 | 1 | running:1 | 2/4 | 0.200 | 0.400 | 0.400")
    for name in ("reward.png", "eval_accuracy.png"):
        assert (root / "compare" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [r["status"] for r in map(json.loads, (root / "sweep_index.jsonl").read_text().splitlines())] == [
        "completed",
        "completed",
        "started",  # rlpost's status.json not written yet in this hand-made running run
    ]

    csv_out = compare(str(root), "--format", "csv", "--no-plots")
    assert csv_out.stdout.splitlines()[0].startswith("algo,runs,seeds,status,steps,acc_start,acc_start_std,acc_start_n")
    as_json = json.loads(
        compare(*(str(p) for p in sorted(root.glob("[01]_*"))), "--format", "json", "--no-plots").stdout
    )
    assert as_json["swept_keys"] == [] and as_json["groups"][0]["runs"] == 2  # only seeds differ: one group

    missing = compare(str(tmp_path / "nope"))
    assert missing.returncode == 2 and "nope: no such directory" in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    none = compare(str(empty))
    assert none.returncode == 2 and "no run dirs" in none.stderr


def test_a_running_sweep_keeps_its_swept_keys_before_every_value_started(tmp_path):
    """Only algo=grpo has started: algo is still a column, from multirun.yaml's `algo=grpo,dhpo`."""
    make_run(tmp_path, "0_algo=grpo,seed=1", ["algo=grpo", "seed=1"], {"algo": "grpo"}, {0: 0.2}, [0.1], False)
    make_run(tmp_path, "1_algo=grpo,seed=2", ["algo=grpo", "seed=2"], {"algo": "grpo"}, {0: 0.2}, [0.1], False)
    task = {"hydra": {"overrides": {"task": ["algo=grpo,dhpo", "seed=1,2", "debug=fast"]}}}
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(task))
    assert declared_sweep_keys([tmp_path]) == ("algo", "seed")
    runs = [load_run(d) for d in find_run_dirs([tmp_path])]
    keys, records = table(runs, declared=declared_sweep_keys([tmp_path]))
    assert keys == ["algo"] and [(r["algo"], r["runs"], r["status"]) for r in records] == [("grpo", 2, "running:2")]


def test_sweep_index_is_rewritten_only_when_a_job_changed(tmp_path):
    """A job refused before it starts changes no job dir, so the index keeps its bytes and its file time."""
    sweep(tmp_path)
    first = write_index(tmp_path)
    index = tmp_path / INDEX
    before = (index.read_bytes(), index.stat().st_mtime_ns, index.stat().st_ino)
    assert write_index(tmp_path) == first
    assert (index.read_bytes(), index.stat().st_mtime_ns, index.stat().st_ino) == before
    (tmp_path / "2_algo=dhpo_entropy,seed=1" / "status.json").write_text(json.dumps({"status": "stopped"}))
    assert [r["status"] for r in write_index(tmp_path)] == ["completed", "completed", "stopped"]
    assert index.read_bytes() != before[0]
