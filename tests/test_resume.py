"""Resume never changes a run silently nor loses what was written: config changes, damaged checkpoints, torn logs,
finished runs, rejected reruns, signal handlers, and the record of the options chosen."""

from __future__ import annotations

import io
import json
import shutil
import signal

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file, save_file

from rlpost import parts as parts_module
from rlpost import trainer
from rlpost.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from rlpost.cli import compose_train
from rlpost.config import ConfigError, validate
from rlpost.logging import ConsoleLoggerConfig, RunLog, truncate_jsonl
from rlpost.resume import applies_for_real, differences
from tests.conftest import read_jsonl, run_train, without_timing

SMALL = (
    "steps=2",
    "prompts_per_step=2",
    "n=2",
    "eval_every=0",
    "eval_size=4",
    "checkpoint_every=1",
    "samples_per_step=1",
)


def config(*overrides: str):
    return validate(compose_train([*SMALL, *overrides]))


def train_in_process(cfg, run_dir) -> tuple[dict, str]:
    """Train in this process; return (summary, console text)."""
    text = io.StringIO()
    console = Console(file=text, width=400, color_system=None)
    log = RunLog(run_dir, ConsoleLoggerConfig(progress=False), cfg.run.steps, console=console)
    summary = trainer.train(cfg, run_dir, log)
    return summary, text.getvalue()


def metrics_without_timing(run_dir):
    return [without_timing(m) for m in read_jsonl(run_dir / "metrics.jsonl")]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-step run with checkpoints step_1 and step_2 (copied by `run` for each test)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    train_in_process(config(), run_dir)
    return run_dir


@pytest.fixture
def run(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def snapshot(run_dir) -> dict:
    """Every file and dir under a run dir: its bytes (None for a dir) and its mtime in ns."""
    return {
        str(path.relative_to(run_dir)): (path.read_bytes() if path.is_file() else None, path.stat().st_mtime_ns)
        for path in sorted([run_dir, *run_dir.rglob("*")])
    }


def forbid_model_load(monkeypatch) -> None:
    """From here any model load in this process fails the test: a refused resume must be refused before one."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded for a command that is refused")

    monkeypatch.setattr(parts_module, "load_model", refuse)


@pytest.fixture
def model_never_loaded(monkeypatch):
    forbid_model_load(monkeypatch)


# -- config changes --------------------------------------------------------------------------------------------


def test_changed_key_is_refused_in_one_line_naming_the_keys(run, model_never_loaded):
    before = snapshot(run)
    with pytest.raises(ConfigError) as error:
        train_in_process(config("steps=4", "algo.clip_high=0.3", "seed=5"), run)
    message = str(error.value)
    assert "\n" not in message
    assert "algo.clip_high (0.2 -> 0.3)" in message and "seed (0 -> 5)" in message
    assert "steps" not in message.split("values of")[1].split(";")[0], "steps is applied, not refused"
    assert "resume=null" in message and "'resume_allow_changes=[algo.clip_high,seed]'" in message
    assert snapshot(run) == before, "a refused resume changed the run dir"


def test_allowed_change_is_applied_and_recorded(run):
    summary, console = train_in_process(config("steps=3", "algo.clip_high=0.3", "resume_allow_changes=[algo]"), run)
    assert summary["config"]["algo"]["clip_high"] == 0.3
    assert summary["resumes"] == [{"step": 2, "changes": {"algo.clip_high": [0.2, 0.3], "steps": [2, 3]}}]
    assert "now algo.clip_high 0.2 -> 0.3, steps 2 -> 3" in console
    state = json.loads((run / "checkpoints" / "step_3" / "trainer_state.json").read_text())
    assert state["resumes"] == summary["resumes"], "the checkpoint carries the history of applied changes"
    assert "clip_high: 0.3" in (run / "checkpoints" / "step_3" / "config.yaml").read_text()


def test_unknown_key_in_resume_allow_changes_is_refused(run, model_never_loaded):
    with pytest.raises(ConfigError, match=r"resume_allow_changes: 'algo.nope' is not a config key"):
        train_in_process(config("steps=3", "resume_allow_changes=[algo.nope]"), run)


def test_new_learning_rate_reaches_optimizer_and_scheduler(run):
    train_in_process(config("steps=4", "trainer.lr=3e-4"), run)
    lrs = [m["lr"] for m in read_jsonl(run / "metrics.jsonl")[1:]]
    assert lrs == pytest.approx([1e-4, 1e-4, 3e-4, 3e-4])
    scheduler = torch.load(run / "checkpoints" / "step_4" / "optimizer.pt", weights_only=True)["scheduler"]
    assert scheduler["base_lrs"] == pytest.approx([3e-4])


def test_new_schedule_is_applied_from_the_resumed_step(run):
    train_in_process(config("steps=4", "trainer.schedule=linear", "trainer.min_lr_ratio=0.5"), run)
    lrs = [m["lr"] for m in read_jsonl(run / "metrics.jsonl")[1:]]
    # optimizer steps 2 and 3 (0-based) of 4 on a linear decay to 0.5 x lr: factors 1 - 0.5 * 2/4, 1 - 0.5 * 3/4
    assert lrs == pytest.approx([1e-4, 1e-4, 0.75e-4, 0.625e-4])


def test_only_keys_the_run_reads_afresh_apply_without_being_allowed():
    assert applies_for_real("steps", ()) and applies_for_real("logger.progress", ())
    assert applies_for_real("trainer.lr", ("lr",)) and not applies_for_real("trainer.lr", ())
    assert not applies_for_real("seed", ("lr",)) and not applies_for_real("algo.clip_high", ("lr",))
    recorded = {"run": {"steps": 2, "resume": "auto"}, "algo": {"clip_high": 0.2, "eps": float("nan")}}
    current = {"run": {"steps": 3, "resume": "/x"}, "algo": {"clip_high": 0.2, "eps": float("nan"), "new": 1}}
    assert differences(recorded, current) == {"algo.new": ("<absent>", 1), "steps": (2, 3)}


# -- finished runs, fresh starts over a run ------------------------------------------------------------------


def test_resuming_at_or_past_the_last_step_refuses(run, model_never_loaded):
    before = snapshot(run)
    for steps in (2, 1):
        with pytest.raises(ConfigError, match=rf"steps={steps}: .*step_2 is at step 2, so this run is already done"):
            train_in_process(config(f"steps={steps}"), run)
    assert snapshot(run) == before


def test_fresh_start_over_a_runs_checkpoints_refuses(run, model_never_loaded):
    before = snapshot(run)
    with pytest.raises(ConfigError, match=r"resume=null: .* already holds a run \(checkpoints up to step_2\)"):
        train_in_process(config("resume=null"), run)
    assert snapshot(run) == before


def test_checkpoint_of_another_world_size_is_refused_before_the_model_loads(run, model_never_loaded):
    """trainer=deepspeed shards are per rank: a checkpoint written by 2 ranks cannot resume in 1."""
    target = run / "checkpoints" / "step_2"
    (target / "deepspeed" / "state").mkdir(parents=True)
    (target / "deepspeed_world_size").write_text("2\n")
    before = snapshot(run)
    cfg = config("steps=3", "trainer=deepspeed_zero2", "resume_allow_changes=[trainer]")
    with pytest.raises(ConfigError, match=r"written by 2 processes, this run has 1; .*trainer.nproc_per_node=2"):
        train_in_process(cfg, run)
    assert snapshot(run) == before


# -- damaged and mismatched checkpoints ----------------------------------------------------------------------


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "model.safetensors": _truncate,
    "optimizer.pt": _truncate,
    "state.pt": lambda path: path.write_bytes(b"not a zip archive"),
    "trainer_state.json": lambda path: path.write_text('{"step": 2, "eval_hist'),
    "config.yaml": lambda path: path.write_text("run: [unclosed"),
}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_auto_falls_back_to_the_newest_intact_checkpoint(run, finished, name):
    DAMAGE[name](run / "checkpoints" / "step_2" / name)
    summary, console = train_in_process(config(), run)
    fallback = [line for line in console.splitlines() if line.startswith("resume=auto:")]
    assert len(fallback) == 1 and "damaged step_2 (" in fallback[0] and name in fallback[0]
    assert fallback[0].endswith("resuming from step_1 instead")
    assert metrics_without_timing(run) == metrics_without_timing(finished), "the replayed step 2 differs"


def test_auto_with_every_checkpoint_damaged_refuses(run, model_never_loaded):
    for step in (1, 2):
        _truncate(run / "checkpoints" / f"step_{step}" / "model.safetensors")
    with pytest.raises(ConfigError, match=r"resume=auto: no intact checkpoint .*step_2 .*step_1 "):
        train_in_process(config(), run)


def test_explicit_path_to_a_damaged_checkpoint_names_the_file(run, tmp_path, model_never_loaded):
    target = run / "checkpoints" / "step_2"
    _truncate(target / "optimizer.pt")
    with pytest.raises(ConfigError, match=r"^resume: .*step_2/optimizer.pt: unreadable") as error:
        train_in_process(config("steps=3", f"resume={target}"), tmp_path / "new")
    assert "\n" not in str(error.value)


def test_other_model_shape_fails_before_anything_is_restored(run, tmp_path):
    """The last weight in the file has the wrong shape: a loader that copies as it goes would have half-restored."""
    target = run / "checkpoints" / "step_2"
    weights = load_file(target / "model.safetensors")
    last = sorted(weights)[-1]
    weights[last] = torch.zeros(*(size + 1 for size in weights[last].shape))
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    cfg = config("steps=3")
    parts = trainer.build(cfg)
    before = {k: v.clone() for k, v in parts.engine.model.state_dict().items()}
    optimizer_before = parts.engine.optimizer.state_dict()["param_groups"][0]["lr"]
    rng_before = torch.get_rng_state()
    with pytest.raises(CheckpointError, match=rf"model weight {last} has shape .* \(another model\?\)"):
        load_checkpoint(target, parts.engine, parts.sampler)
    after = parts.engine.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "weights changed by a failed load"
    assert parts.engine.optimizer.state_dict()["param_groups"][0]["lr"] == optimizer_before
    assert not parts.engine.optimizer.state_dict()["state"], "optimizer state restored by a failed load"
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_other_sampler_state_fails_naming_state_pt(tmp_path, monkeypatch):
    """A vade checkpoint over 4000 prompts resumed on a 3000-prompt pool (data change explicitly allowed)."""
    first = tmp_path / "first"
    train_in_process(config("sampler=vade", "steps=1"), first)
    forbid_model_load(monkeypatch)
    with pytest.raises(ConfigError, match=r"state.pt: sampler state does not fit this run \(.*\(4000,\).*\(3000,\)"):
        train_in_process(
            config(
                "sampler=vade",
                "steps=2",
                "data.train_size=3000",
                "resume_allow_changes=[data]",
                f"resume={first / 'checkpoints' / 'step_1'}",
            ),
            tmp_path / "second",
        )


# -- torn logs ----------------------------------------------------------------------------------------------


def test_torn_last_lines_do_not_stop_a_resume(finished, tmp_path):
    """A kill during the append leaves half a line in metrics.jsonl and samples.jsonl."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    shutil.rmtree(run / "checkpoints" / "step_2")  # the kill came before step 2's checkpoint
    for name in ("metrics.jsonl", "samples.jsonl"):
        with (run / name).open("a") as handle:
            handle.write('{"step": 3, "reward_m')
    train_in_process(config(), run)
    assert metrics_without_timing(run) == metrics_without_timing(finished)
    assert [r["step"] for r in read_jsonl(run / "samples.jsonl")] == [1, 2]


def test_truncate_keeps_lines_it_cannot_read_except_a_torn_last_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0}\nnot json\n{"step": 1}\n{"step": 2}\n{"step": 3, "x')
    truncate_jsonl(path, 1)
    assert path.read_text() == '{"step": 0}\nnot json\n{"step": 1}\n'


# -- signal handlers --------------------------------------------------------------------------------------------


def _sentinel(signum, frame):  # pragma: no cover - never delivered
    pass


@pytest.mark.parametrize("outcome", ["returns", "raises"])
def test_signal_handlers_are_restored_after_train(tmp_path, monkeypatch, outcome):
    previous = {sig: signal.signal(sig, _sentinel) for sig in trainer.Preemption.SIGNALS}
    try:
        if outcome == "raises":

            def fails(*args, **kwargs):
                raise RuntimeError("step failed")

            monkeypatch.setattr(trainer, "train_step", fails)
            with pytest.raises(RuntimeError, match="step failed"):
                train_in_process(config("steps=1"), tmp_path)
        else:
            train_in_process(config("steps=1"), tmp_path)
        assert all(signal.getsignal(sig) is _sentinel for sig in previous)
        assert {signal.SIGTERM, signal.SIGUSR1} <= set(previous)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- the command line: .hydra files, choices, exit codes ------------------------------------------------------


@pytest.mark.slow
def test_rejected_reruns_leave_the_run_dir_byte_identical_and_accepted_ones_keep_history(tmp_path):
    """Rejected commands in a finished run's dir (bad input, refused resumes) exit 2 in one line and leave every
    file and dir of it as it was, bytes and mtimes: status.json, run_info.json, .hydra, metrics, TensorBoard."""
    run = tmp_path / "run"
    first = run_train(*SMALL, "algo=dr_grpo", "logger=tensorboard", run_dir=run, check=True)
    assert "algo=dr_grpo" in first.stderr and "overrides: " in first.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["choices"]["algo"] == "dr_grpo" and summary["config"]["algo"]["name"] == "grpo"
    assert "algo=dr_grpo" in summary["overrides"]
    damaged = tmp_path / "damaged" / "step_2"
    shutil.copytree(run / "checkpoints" / "step_2", damaged)
    _truncate(damaged / "model.safetensors")
    before = snapshot(run)
    expected = {".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "status.json", "run_info.json"}
    assert expected <= set(before) and any(name.startswith("tensorboard/") for name in before)
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    rerun = (*SMALL, "algo=dr_grpo", "logger=tensorboard")
    for rejected, reason in (
        ((*rerun, "trainer.lr=-1"), "trainer.lr"),  # bad input (more kinds: tests/test_bad_inputs.py)
        ((*rerun,), "already done"),  # at the last step (past it, other keys: the in-process tests above)
        ((*SMALL, "algo=dapo", "logger=tensorboard", "steps=3"), "trained with other values of algo."),
        ((*rerun, "steps=3", f"resume={damaged}"), "model.safetensors: unreadable"),
        ((*rerun, "resume=null"), "already holds a run"),  # a fresh start over it
    ):
        result = run_train(*rejected, run_dir=run)
        errors = [line for line in result.stderr.splitlines() if line.startswith("rlpost-train: config error:")]
        assert result.returncode == 2 and len(errors) == 1 and reason in errors[0], result.stderr
        assert snapshot(run) == before, f"{rejected[len(SMALL) :]} changed the run dir"
    run_train(*rerun, "steps=3", run_dir=run, check=True)
    history = run / ".hydra" / "history" / "1"
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        assert (history / name).read_bytes() == before[f".hydra/{name}"][0]
    assert "steps=3" in (run / ".hydra" / "overrides.yaml").read_text()
    launches = json.loads((run / "run_info.json").read_text())["launches"]
    assert [launch["resumed_from_step"] for launch in launches] == [0, 2]
    assert launches[1]["changes"] == {"steps": [2, 3]} and launches[1]["choices"]["algo"] == "dr_grpo"
    assert json.loads((run / "status.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_damaged_checkpoint_path_exits_2_in_one_line(tmp_path):
    run = tmp_path / "run"
    run_train(*SMALL, run_dir=run, check=True)
    target = list_checkpoints(run / "checkpoints")[-1]
    _truncate(target / "model.safetensors")
    result = run_train(*SMALL, "steps=3", f"resume={target}", run_dir=tmp_path / "new")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors[-1].startswith("rlpost-train: config error: resume: ")
    assert "model.safetensors: unreadable" in errors[-1]
    assert "Traceback" not in result.stderr
