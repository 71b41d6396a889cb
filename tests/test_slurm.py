"""Sweeps on a real Slurm cluster (scripts/slurm_local.sh starts a one-node one; .ci/run does so before the tests).

Outside CI a machine without a running cluster skips these, naming what is missing; with RLPOST_REQUIRE_SLURM=1
(set by .ci/run) a missing cluster fails them instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlpost.launch import distributed_env
from tests.conftest import REPO, read_jsonl

# A run long enough to be interrupted a few times: ~0.1-0.2 s per step on 2 cores.
LONG = ("prompts_per_step=4", "n=4", "eval_every=0", "eval_size=16", "samples_per_step=1", "logger.progress=false")


def _slurm_missing() -> str | None:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "Slurm client commands (sbatch, sinfo) not installed: run scripts/slurm_local.sh"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20).stdout
    except subprocess.SubprocessError:
        return "sinfo does not answer: start the cluster with scripts/slurm_local.sh"
    if not any(s.strip("*~#") in ("idle", "mixed", "allocated", "completing") for s in states.split()):
        return f"no Slurm node up (sinfo: {states.strip() or 'nothing'}): run scripts/slurm_local.sh"
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        return "hydra-submitit-launcher not installed (pip install hydra-submitit-launcher)"
    return None


@pytest.fixture(scope="module")
def slurm():
    missing = _slurm_missing()
    if missing and os.environ.get("RLPOST_REQUIRE_SLURM") == "1":
        pytest.fail(missing)
    if missing:
        pytest.skip(missing)


def multirun(*overrides: str, sweep_dir: Path) -> subprocess.Popen:
    """`rlpost-train -m hydra/launcher=slurm <overrides>` in the background (it waits for its Slurm jobs)."""
    args = [
        sys.executable,
        "-m",
        "rlpost.cli",
        "-m",
        "hydra/launcher=slurm",
        *overrides,
        f"hydra.sweep.dir={sweep_dir}",
    ]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | {"PYTHONHASHSEED": "0"}
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finish(process: subprocess.Popen, timeout: int = 900) -> str:
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        raise AssertionError(f"multirun still running after {timeout}s:\n{out[-4000:]}") from None
    assert process.returncode == 0, f"multirun exited {process.returncode}:\n{out[-4000:]}"
    return out


def run_dir_of(sweep_dir: Path, num: int = 0, timeout: float = 300) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = [p for p in sweep_dir.glob(f"{num}_*") if p.is_dir()]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"job {num} never started under {sweep_dir}")


def wait_for(condition, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def steps_logged(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def job_logs(sweep_dir: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((sweep_dir / ".submitit").glob("*/*_log.*")))


def assert_every_step_once(run_dir: Path, steps: int) -> None:
    logged = [record["step"] for record in read_jsonl(run_dir / "metrics.jsonl")]
    assert logged == list(range(steps + 1)), f"lost or duplicated steps: {logged}"


@pytest.mark.slow
def test_sweep_of_four_slurm_jobs_then_compare(slurm, tmp_path):
    """The issue's sweep: 4 real Slurm jobs (one array), each in its own run dir, indexed; compare reads them."""
    sweep = tmp_path / "sweep"
    out = finish(multirun("algo=grpo,dhpo", "seed=1,2", "debug=fast", "logger.progress=false", sweep_dir=sweep))
    assert "Submitit 'slurm' sweep output dir" in out
    index = read_jsonl(sweep / "sweep_index.jsonl")
    assert [r["num"] for r in index] == [0, 1, 2, 3]
    assert {r["status"] for r in index} == {"completed"}
    assert len({r["run_dir"] for r in index}) == 4 and len({r["job_id"] for r in index}) == 4
    assert [(r["choices"]["algo"], r["overrides"][1]) for r in index] == [
        ("grpo", "seed=1"),
        ("grpo", "seed=2"),
        ("dhpo", "seed=1"),
        ("dhpo", "seed=2"),
    ]
    for record in index:
        run_dir = Path(record["run_dir"])
        assert json.loads((run_dir / "summary.json").read_text())["steps"] == 3
        assert_every_step_once(run_dir, 3)
        assert status(run_dir)["slurm_job_id"], "status.json lacks the Slurm job id"

    result = subprocess.run(
        [sys.executable, "-m", "rlpost.compare", str(sweep), "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout)
    assert table["swept_keys"] == ["algo"]
    assert [(g["algo"], g["runs"], g["seeds"], g["steps"]) for g in table["groups"]] == [
        ("grpo", 2, "1,2", "3/3"),
        ("dhpo", 2, "1,2", "3/3"),
    ]
    for group in table["groups"]:
        assert group["rollouts"] == 3 * 4 * 4  # steps x prompts_per_step x n of debug=fast
        assert 0 <= group["acc_final"] <= 1 and group["acc_final_n"] == 2
    for name in ("reward.png", "eval_accuracy.png"):
        assert (sweep / "compare" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_usr2_then_scontrol_requeue_resume_without_lost_or_duplicated_steps(slurm, tmp_path):
    """submitit's signal (USR2) and a `scontrol requeue` (SIGTERM) during one job: each time the run checkpoints at
    the step boundary, the job is requeued and resumes in the same run dir; every step is logged exactly once."""
    sweep, steps = tmp_path / "sweep", 150
    process = multirun(*LONG, f"steps={steps}", "checkpoint_every=40", sweep_dir=sweep)
    run_dir = run_dir_of(sweep)
    wait_for(lambda: steps_logged(run_dir) >= 12, 300, "12 steps of the first attempt")
    job = status(run_dir)["slurm_job_id"]
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    first = wait_for(lambda: status(run_dir).get("status") == "requeued" and status(run_dir), 120, "requeue on USR2")
    assert first["exit_code"] == -1  # submitit's requeue exits the job: never read as a success
    wait_for(lambda: status(run_dir).get("slurm_restarts") == 1 and steps_logged(run_dir) >= 60, 300, "restart 1")
    subprocess.run(["scontrol", "requeue", job], check=True)
    second = wait_for(lambda: status(run_dir).get("status") == "preempted" and status(run_dir), 120, "SIGTERM stop")
    assert second["exit_code"] == 75
    finish(process)
    assert status(run_dir)["status"] == "completed" and status(run_dir)["slurm_restarts"] == 2
    assert_every_step_once(run_dir, steps)
    logs = job_logs(sweep)
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs
    resumed = [line for line in logs.splitlines() if line.startswith("resumed from")]
    assert len(resumed) == 2, logs[-3000:]
    written = [line for line in logs.splitlines() if line.startswith("preempted: checkpoint written at step")]
    assert len(written) == 2 and int(written[0].split()[5]) >= 12


@pytest.mark.slow
def test_time_limit_signal_checkpoint_requeue_resume(slurm, tmp_path):
    """A 2-minute job whose first attempt needs longer (its reward sleeps until the first requeue): Slurm's USR2,
    signal_delay_s before the limit -> checkpoint at the step boundary -> submitit's timed-out requeue; the
    requeued job finishes with the full step count, each step logged once."""
    sweep, steps = tmp_path / "sweep", 40
    process = multirun(
        *LONG,
        f"steps={steps}",
        "checkpoint_every=10",
        "reward=custom",
        "reward.function=tests.slurm_rewards:slow_until_requeued",
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.signal_delay_s=60",
        sweep_dir=sweep,
    )
    finish(process, timeout=900)
    run_dir = run_dir_of(sweep)
    assert status(run_dir)["status"] == "completed"
    assert status(run_dir)["slurm_restarts"] >= 1, "the job never hit its time limit"
    assert_every_step_once(run_dir, steps)
    logs = job_logs(sweep)
    assert "Caught signal SIGUSR2" in logs and "this job is timed-out" in logs and "Requeued job" in logs


@pytest.mark.slow
def test_distributed_env_in_a_two_task_slurm_job(slurm, tmp_path):
    """One process per Slurm task: RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT from the Slurm environment."""
    code = "import json, os; from rlpost.launch import distributed_env; print(json.dumps(distributed_env(os.environ)))"
    out = subprocess.run(
        ["srun", "--ntasks=2", "--cpus-per-task=1", "--mem=500M", "--time=5", sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    envs = sorted((json.loads(line) for line in out.stdout.splitlines()), key=lambda e: e["RANK"])
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    assert [(e["RANK"], e["WORLD_SIZE"], e["LOCAL_RANK"], e["LOCAL_WORLD_SIZE"]) for e in envs] == [
        ("0", "2", "0", "2"),
        ("1", "2", "1", "2"),
    ]
    assert {e["MASTER_ADDR"] for e in envs} == {host}
    assert len({e["MASTER_PORT"] for e in envs}) == 1 and 20000 <= int(envs[0]["MASTER_PORT"]) < 40000


@pytest.mark.slow
def test_two_task_job_with_deepspeed(slurm, tmp_path):
    """tasks_per_node=2 with trainer=deepspeed_zero2: waits for the DeepSpeed engine (issue 'trainer=deepspeed')."""
    if not (REPO / "conf" / "trainer" / "deepspeed_zero2.yaml").is_file():
        pytest.skip("conf/trainer/deepspeed_zero2.yaml not in this checkout: the DeepSpeed engine has not landed")
    sweep = tmp_path / "sweep"
    process = multirun(
        "trainer=deepspeed_zero2",
        "debug=fast",
        "hydra.launcher.tasks_per_node=2",
        "logger.progress=false",
        sweep_dir=sweep,
    )
    finish(process)
    run_dir = run_dir_of(sweep)
    assert status(run_dir)["status"] == "completed"
    assert_every_step_once(run_dir, 3)


def test_distributed_env_mapping():
    """The pure mapping, including a nodelist expanded by the given resolver and an id-derived port."""
    environ = {
        "SLURM_PROCID": "3",
        "SLURM_NTASKS": "4",
        "SLURM_STEP_NUM_TASKS": "4",
        "SLURM_LOCALID": "1",
        "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
        "SLURM_JOB_ID": "123457",
    }
    env = distributed_env(environ, hostnames=lambda nodes: ["gpu07", "gpu08"] if nodes == "gpu[07-08]" else [])
    assert env == {
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "gpu07",
        "MASTER_PORT": str(20000 + 123457 % 20000),
    }
    assert distributed_env({**environ, "RANK": "0", "WORLD_SIZE": "8"}) == {}  # torchrun already set them
    assert distributed_env({"PATH": "/bin"}) == {}  # not under Slurm
    batch_script = {k: v for k, v in environ.items() if not k.startswith("SLURM_STEP")}
    assert distributed_env(batch_script) == {}  # an sbatch script is one process whatever SLURM_NTASKS says
