"""Bad inputs, as a new user makes them: each is refused before anything runs, with one line naming the key or the
file (and line), exit code 2, and nothing written, not even the run dir. A NaN reward in the middle of a run is a
runtime stop instead: exit code 1, naming the step.

Two tables: PREFLIGHT runs the start-up checks in-process (fast; every class of bad input, several examples
each); CLI runs `python -m rlpost.cli` on one example per class and checks what a user sees (slow).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from rlpost.models import BUILTIN
from rlpost.preflight import explain
from tests.conftest import run_train

TINY = BUILTIN["tiny-arith"]
GROUPS = ("algo", "advantage", "sampler", "reward", "model", "data", "rollout", "trainer", "logger")


def make_files(root: Path) -> dict[str, Path]:
    """The bad files of the tables, under `root`: data files, damaged model dirs, reward modules."""
    root.mkdir(parents=True, exist_ok=True)
    good = '{"question": "What is 1+1?", "answer": "2"}\n'
    files = {
        "latin1": (good + '{"question": "caf\xe9 1+2?", "answer": "3"}\n').encode("latin-1"),
        "null_answer": good + '{"question": "What is 2+2?", "answer": null}\n',
        "list_answer": good + '{"question": "What is 2+2?", "answer": [4]}\n',
        "no_marker": '{"question": "What is 2+2?", "answer": "four"}\n',
        "malformed": good + '{"question": oops}\n',
        "missing_keys": '{"q": "What is 1+1?", "a": "2"}\n',
        "empty": "\n\n",
        "not_an_object": "[1, 2]\n",
    }
    paths = {}
    for name, content in files.items():
        path = root / f"{name}.jsonl"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        paths[name] = path
    for name in ("truncated", "no_tokenizer", "no_weights", "bad_config", "no_chat_template", "bad_tokenizer"):
        shutil.copytree(TINY, root / name)
        paths[name] = root / name
    weights = root / "truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    shutil.copytree(TINY, root / "truncated_bin")
    paths["truncated_bin"] = root / "truncated_bin"
    (root / "truncated_bin" / "model.safetensors").unlink()
    (root / "truncated_bin" / "pytorch_model.bin").write_bytes(b"PK\x03\x04" + bytes(100))  # a zip cut short
    for file in (root / "no_tokenizer").glob("tokenizer*"):
        file.unlink()
    (root / "no_weights" / "model.safetensors").unlink()
    (root / "bad_config" / "config.json").write_text('{"model_type": "qwen3",\n  "hidden_size": }\n')
    (root / "bad_tokenizer" / "tokenizer.json").write_text('{"version": "1.0",\n\n  "model": {,}}\n')
    (root / "bad_tokenizer" / "chat_template.jinja").write_bytes(b"{{ bos_token }}\xff")
    (root / "no_chat_template" / "chat_template.jinja").unlink()
    config = json.loads((root / "no_chat_template" / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (root / "no_chat_template" / "tokenizer_config.json").write_text(json.dumps(config))
    modules = {
        "syntax_reward": "def score(completion, row):\n    return 1.0 +\n",
        "raising_reward": "raise RuntimeError('no GPU grader here')\n\ndef score(completion, row):\n    return 1.0\n",
        "exiting_reward": "import sys\nsys.exit('bye')\n",
        "missing_dep_reward": "import not_a_real_package_xyz\n",
        "arity_reward": "def score(completion):\n    return 1.0\n",
        # NaN once the step-0 eval (16 calls with debug=fast) is over: a fault in the middle of the run
        "nan_reward": "calls = [0]\n\ndef score(completion, row):\n    calls[0] += 1\n"
        "    return float('nan') if calls[0] > 16 else 0.0\n",
    }
    for name, source in modules.items():
        (root / f"{name}.py").write_text(source)
    (root / "a_file").write_text("not a directory")
    return paths


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    make_files(root)
    return root


def fill(text: str, bad: Path) -> str:
    return text.replace("{bad}", str(bad))


def jsonl(name: str) -> list[str]:
    return ["data=jsonl", f"data.train_path={{bad}}/{name}.jsonl", f"data.eval_path={{bad}}/{name}.jsonl"]


def model(name: str) -> list[str]:
    return [f"model.path={{bad}}/{name}"]


# (id, argv with {bad} for the fixture dir, text the one line must contain)
PREFLIGHT = [
    # composition: unknown options and keys, malformed overrides
    *[(f"{group}=nope", [f"{group}=nope"], f"{group}=nope: no such option; choose one of: ") for group in GROUPS],
    ("typo'd group", ["algoo=grpo"], "algoo: no such key (did you mean algo?); allowed keys: "),
    ("added typo'd key", ["+stepz=3"], "stepz: unknown top-level key (did you mean steps?)"),
    ("unknown nested key", ["algo.cliplow=0.2"], "algo.cliplow: no such key (did you mean clip_low?)"),
    ("=5", ["=5"], "'=5': malformed override; write key=value"),
    ("no equals", ["seed"], "Error parsing override 'seed'"),
    ("unclosed list", ["algo.clip_low=[1,2"], "no viable alternative at input '[1,2'"),
    ("empty option", ["algo="], "algo: no option given; choose one of: "),
    ("sweep without -m", ["algo=grpo,dapo"], "Ambiguous value for argument 'algo=grpo,dapo'"),
    # types and ranges
    ("not a float", ["algo.clip_low=abc"], "algo.clip_low: Value 'abc'"),
    ("not a list", ["data.tiers=2+"], "data.tiers: expected a list, e.g. data.tiers=[a,b]"),
    ("not a mapping", ["advantage=gdpo", "advantage.weights=5"], "advantage.weights: Cannot assign int to Dict"),
    ("not an int", ["steps=1e3"], "steps: Value '1000.0' of type 'float' could not be converted to Integer"),
    ("clip_low", ["algo.clip_low=-1"], "algo.clip_low: -1.0 is out of range [0.0, 1.0]"),
    ("seed", ["seed=99999999999999999999"], "seed: must be < 2**63"),
    ("beta1", ["trainer.beta1=1.5"], "trainer.beta1: must be in [0, 1), got 1.5"),
    ("beta2", ["trainer.beta2=1"], "trainer.beta2: must be in [0, 1), got 1.0"),
    ("adam_eps", ["trainer.adam_eps=0"], "trainer.adam_eps: must be > 0"),
    ("weight_decay", ["trainer.weight_decay=-0.1"], "trainer.weight_decay: must be >= 0"),
    ("overlong_factor", ["reward.overlong_factor=-1"], "reward.overlong_factor: must be >= 0"),
    ("warmup", ["trainer.warmup_steps=1000"], "trainer.warmup_steps: 1000 is more than the run's 3 optimizer steps"),
    ("min_group_size", ["+advantage.min_group_size=0"], "advantage.min_group_size: must be >= 1"),
    ("attn", ["model.attn_implementation=foo"], "model.attn_implementation: 'foo' is not one of sdpa"),
    *[("flash without GPU", ["model.attn_implementation=flash_attention_2"], "flash_attention_2 needs a CUDA GPU")]
    * (not torch.cuda.is_available()),
    # every float key of every group: NaN and inf refused
    ("entropy nan", ["algo.entropy_coef=nan"], "algo.entropy_coef: must be a finite number, got nan"),
    ("lr inf", ["trainer.lr=inf"], "trainer.lr: must be a finite number, got inf"),
    ("reward -inf", ["reward.correct=-inf"], "reward.correct: must be a finite number, got -inf"),
    ("sampler nan", ["sampler=xrpo", "n=8", "sampler.exploration=nan"], "sampler.exploration: must be a finite"),
    ("gdpo weight nan", ["advantage=gdpo", "+advantage.weights={correct: nan}"], "advantage.weights.correct: must"),
    # values that would spoil a run silently
    ("gdpo names", ["advantage=gdpo", "+advantage.weights={corect: 2.0}"], "advantage.weights: corect: not a reward"),
    ("overlong > limit", ["reward.overlong_buffer=16"], "reward.overlong_buffer: 16 must be less than"),
    ("xrpo base_n", ["sampler=xrpo", "n=8", "sampler.base_n=6"], "sampler.base_n: 6 is more than n/2 = 4"),
    ("xrpo small n", ["sampler=xrpo", "n=3"], "n: sampler=xrpo needs n >= 4"),
    ("eval_size", ["eval_size=500"], "eval_size: 500 is more than the 200 held-out prompts of data=arith"),
    ("prompts_per_step", [*jsonl("no_marker"), "eval_size=1"], "prompts_per_step: 4 is more than the 1 training"),
    ("arith pool", ["data.tiers=[1+]"], "data.train_size: train_size+eval_size+dev_size needs 4400"),
    ("context", ["rollout.max_new_tokens=300"], "rollout.max_new_tokens: longest prompt + completion is"),
    ("n", ["n=1"], "n: advantage=grpo needs n >= 2"),
    ("minibatches", ["minibatches=3"], "minibatches: 3 does not divide"),
    # data files: the file and the line
    ("non-UTF-8", jsonl("latin1"), "latin1.jsonl:2: not UTF-8 text (byte 0xe9"),
    ("null answer", jsonl("null_answer"), "null_answer.jsonl:2: 'answer' must be a string or a number, got null"),
    ("list answer", jsonl("list_answer"), "list_answer.jsonl:2: 'answer' must be a string or a number, got list"),
    ("answer_after", [*jsonl("no_marker"), "data.answer_after='####'"], "no_marker.jsonl:1: 'answer' has no '####'"),
    ("malformed json", jsonl("malformed"), "malformed.jsonl:2: not valid JSON"),
    ("missing keys", jsonl("missing_keys"), "missing_keys.jsonl:1: needs keys 'question' and 'answer'"),
    ("empty file", jsonl("empty"), "empty.jsonl has no rows"),
    ("not an object", jsonl("not_an_object"), "not_an_object.jsonl:1: needs keys"),
    ("directory as data", ["data=jsonl", "data.train_path={bad}", "data.eval_path={bad}"], "is a directory, not a"),
    ("unknown flag", ["--frobnicate"], "--frobnicate: unknown flag; see rlpost-train --help"),
    ("two commands", ["-m", "--cfg", "job"], "--multirun --cfg: only one of --run, --multirun, --cfg"),
    ("no data path", ["data=jsonl"], "data.train_path: missing mandatory value; set it"),
    # model dirs
    ("truncated weights", model("truncated"), "truncated/model.safetensors is truncated or corrupt"),
    ("truncated .bin", model("truncated_bin"), "pytorch_model.bin is truncated or not a torch checkpoint"),
    ("no tokenizer", model("no_tokenizer"), "no_tokenizer has no tokenizer files"),
    ("no weights", model("no_weights"), "no_weights has no weights"),
    ("bad config.json", model("bad_config"), "bad_config/config.json:2: not valid JSON"),
    ("no chat template", model("no_chat_template"), "the tokenizer has no chat template"),
    ("bad tokenizer.json", model("bad_tokenizer"), "bad_tokenizer/tokenizer.json:3: not valid JSON"),
    ("no such dir", ["model.path=/nonexistent/model"], "model.path: /nonexistent/model is not a model directory"),
    ("builtin", ["model.path=builtin:nope"], "model.path: unknown builtin 'nope'"),
    # custom rewards, imported at start-up
    ("reward syntax", ["reward=custom", "reward.function=syntax_reward:score"], "syntax error in {bad}/syntax_rew"),
    ("reward raises", ["reward=custom", "reward.function=raising_reward:score"], "RuntimeError: no GPU grader here"),
    ("reward exits", ["reward=custom", "reward.function=exiting_reward:score"], "importing 'exiting_reward' failed"),
    ("reward dep", ["reward=custom", "reward.function=missing_dep_reward:f"], "No module named 'not_a_real_pa"),
    ("reward arity", ["reward=custom", "reward.function=arity_reward:score"], "must take (completion: str, row"),
    ("reward module", ["reward=custom", "reward.function=nope_reward:f"], "cannot import 'nope_reward:f': no module"),
    ("reward attr", ["reward=custom", "reward.function=arity_reward:nope"], "has no attribute 'nope'"),
    ("reward value", ["reward=custom", "reward.function=tests.fault_rewards:NOT_CALLABLE"], "is not callable"),
    ("reward no colon", ["reward=custom", "reward.function=no_colon"], "'no_colon' must be 'package.module:function'"),
    # where the outputs go, and what to resume
    ("run dir", ["hydra.run.dir={bad}/a_file/run"], "hydra.run.dir: cannot create {bad}/a_file/run: {bad}/a_file is"),
    ("resume", ["resume=/nonexistent/run"], "resume: no complete checkpoint at /nonexistent/run"),
    # resources the ranks share
    (
        "vLLM engines on CPU",
        ["rollout=vllm", "trainer=deepspeed_zero2", "trainer.device=cpu", "trainer.nproc_per_node=8"],
        "rollout.gpu_memory_utilization: 0.25 of RAM for each of trainer.nproc_per_node=8 vLLM engines on CPU is 2.00",
    ),
    # every job of a multirun, and --cfg job
    ("multirun", ["-m", "algo=grpo,dapo", "trainer.lr=1e-4,5"], "job 1 of 4 (algo=grpo trainer.lr=5): trainer.lr"),
    ("multirun range", ["-m", "seed=range(0,3)", "algo.clip_low=0.2,-1"], "algo.clip_low: -1.0 is out of range"),
    ("multirun interval", ["-m", "trainer.lr=interval(1e-5,2)"], "trainer.lr: 2.0 is out of range"),
    ("cfg job", ["--cfg", "job", "trainer.beta1=2"], "trainer.beta1: must be in [0, 1)"),
]


@pytest.mark.parametrize(("argv", "expected"), [c[1:] for c in PREFLIGHT], ids=[c[0] for c in PREFLIGHT])
def test_preflight_refuses_with_one_line(argv, expected, bad, monkeypatch):
    monkeypatch.syspath_prepend(str(bad))
    run_dir = bad / "runs" / "never"
    args = [fill(arg, bad) for arg in argv] + ["debug=fast"]
    if not any(arg.startswith("hydra.run.dir") for arg in args):
        args += [f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={run_dir}"]
    message = explain(args)
    assert message is not None, f"accepted: {args}"
    assert "\n" not in message and fill(expected, bad) in message, message
    assert "provider=" not in message  # Hydra's search path is not an option
    assert not run_dir.exists()


def test_preflight_accepts_the_default_and_a_good_multirun(tmp_path):
    run_dir = tmp_path / "run"
    assert explain(["debug=fast", f"hydra.run.dir={run_dir}"]) is None
    assert explain(["-m", "algo=grpo,dapo", "seed=0,1", "debug=fast", f"hydra.sweep.dir={run_dir}"]) is None
    assert not run_dir.exists()  # checking creates nothing


def test_hub_id_offline_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty hub cache
    message = explain(["model=qwen3-0.6b", "debug=fast", f"hydra.run.dir={tmp_path / 'run'}"])
    assert message == (
        "model.path: Qwen/Qwen3-0.6B is not a local directory and the hub is offline (HF_HUB_OFFLINE=1), "
        "and it is not in the hub cache; download it first or give a local directory"
    )


def test_hub_id_unreachable_fails_fast(tmp_path, monkeypatch):
    from rlpost.models import hub_reachable

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens, refused at once
    hub_reachable.cache_clear()
    try:
        message = explain(["model=qwen3-0.6b", "debug=fast", f"hydra.run.dir={tmp_path / 'run'}"])
    finally:
        hub_reachable.cache_clear()
    assert message is not None and message.startswith(
        "model.path: Qwen/Qwen3-0.6B is not a local directory and the hub (127.0.0.1) is unreachable"
    )


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    from rlpost.config import ConfigError
    from rlpost.models import ModelConfig, load_model

    shutil.copytree(TINY, tmp_path / "model")
    weights = load_file(tmp_path / "model" / "model.safetensors")
    weights["renamed.model.embed_tokens.weight"] = weights.pop("model.embed_tokens.weight")
    save_file(weights, tmp_path / "model" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=r"the weights do not fit its config.json \(missing keys: .*embed_tokens"):
        load_model(ModelConfig(path=str(tmp_path / "model")))


# one example per class, as the user runs it: (id, argv, text of the one line)
CLI = [
    ("unknown option", ["algo=nope"], "algo=nope: no such option; choose one of: bapo"),
    ("malformed override", ["=5"], "'=5': malformed override"),
    ("range", ["trainer.beta1=2"], "trainer.beta1: must be in [0, 1)"),
    ("non-finite", ["algo.entropy_coef=nan"], "algo.entropy_coef: must be a finite number"),
    ("non-UTF-8 data", jsonl("latin1"), "latin1.jsonl:2: not UTF-8 text"),
    ("null answer", jsonl("null_answer"), "null_answer.jsonl:2: 'answer' must be a string or a number, got null"),
    ("truncated weights", model("truncated"), "model.safetensors is truncated or corrupt"),
    ("no tokenizer", model("no_tokenizer"), "has no tokenizer files"),
    ("reward syntax error", ["reward=custom", "reward.function=syntax_reward:score"], "reward.function: syntax error"),
    ("reward raises on import", ["reward=custom", "reward.function=raising_reward:score"], "RuntimeError: no GPU"),
    ("run dir", ["hydra.run.dir={bad}/a_file/run"], "hydra.run.dir: cannot create"),
    ("gdpo names", ["advantage=gdpo", "+advantage.weights={nope: 1.0}"], "advantage.weights: nope: not a reward"),
    ("eval_size", ["eval_size=500"], "eval_size: 500 is more than the 200 held-out prompts"),
    ("context", ["rollout.max_new_tokens=300"], "rollout.max_new_tokens: longest prompt + completion is"),
    ("attn", ["model.attn_implementation=foo"], "model.attn_implementation: 'foo' is not one of"),
    ("multirun", ["-m", "algo=grpo,dapo", "trainer.lr=1e-4,5"], "job 1 of 4 (algo=grpo trainer.lr=5): trainer.lr"),
    ("cfg job", ["--cfg", "job", "trainer.lr=5"], "trainer.lr: 5.0 is out of range"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("argv", "expected"), [c[1:] for c in CLI], ids=[c[0] for c in CLI])
def test_cli_refuses_with_one_line_and_exit_2(argv, expected, bad, tmp_path):
    run_dir = tmp_path / "run"
    args = [fill(arg, bad) for arg in argv] + ["debug=fast", f"hydra.sweep.dir={run_dir}"]
    result = run_train(*args, run_dir=None if "hydra.run.dir" in argv[0] else run_dir, env={"PYTHONPATH": str(bad)})
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("rlpost-train: config error: ") and expected in lines[0], lines[0]
    assert not run_dir.exists() and result.stdout == ""


@pytest.mark.slow
def test_hub_id_offline_fails_fast_from_the_cli(tmp_path):
    result = run_train(
        "model=qwen3-0.6b", run_dir=tmp_path / "run", env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    )
    assert result.returncode == 2 and "the hub is offline" in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_nan_reward_mid_run_stops_with_exit_1_naming_the_step(bad, tmp_path):
    result = run_train(
        "reward=custom",
        "reward.function=nan_reward:score",
        "debug=fast",
        run_dir=tmp_path / "run",
        env={"PYTHONPATH": str(bad)},
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("rlpost-train: stopped: step 1: reward.custom returned nan for 16 of 16"), lines[-1]
