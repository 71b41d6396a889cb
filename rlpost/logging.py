"""Run outputs: metrics.jsonl (one JSON object per step), samples.jsonl, and the rich console progress bar."""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from rlpost.registry import Registry

LOGGERS = Registry("logger")


@dataclass
class ConsoleLoggerConfig:
    name: str = "console"
    progress: bool = True  # rich progress bar (off in non-interactive logs if you prefer plain lines)


LOGGERS.register("console", ConsoleLoggerConfig)(None)


def _register_sinks() -> None:
    from rlpost.tensorboard_logger import TensorBoardLoggerConfig, TensorBoardSink
    from rlpost.wandb_logger import WandbLoggerConfig, WandbSink

    LOGGERS.register("wandb", WandbLoggerConfig)(WandbSink)
    LOGGERS.register("tensorboard", TensorBoardLoggerConfig)(TensorBoardSink)


_register_sinks()


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _step_of(line: str) -> int | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get("step") if isinstance(record, dict) and isinstance(record.get("step"), int) else None


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop records with step > last_step (a resumed run rewrites them), atomically.

    A last line cut short by a kill during the append is dropped too; any other line without a step is kept as is.
    """
    if not path.exists():
        return
    lines = [line for line in path.read_text(errors="surrogateescape").splitlines() if line.strip()]
    if lines and _step_of(lines[-1]) is None:
        lines.pop()  # torn append
    kept = [line for line in lines if (step := _step_of(line)) is None or step <= last_step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), errors="surrogateescape")
    tmp.replace(path)


def sample_rows(batch, rows: list[dict], count: int) -> list[dict]:
    """samples.jsonl rows of the first `count` rollouts of a step: prompt, answer, completion, reward, advantage."""
    out = []
    for b in range(min(count, len(batch))):
        row = rows[int(batch.prompt_index[b])]
        out.append(
            {
                "prompt": row["question"],
                "answer": row["answer"],
                "completion": batch.texts[b],
                "reward": float(batch.reward[b]),
                "advantage": float(batch.advantages[b].flatten()[0]),
            }
        )
    return out


class RunLog:
    """Appends metrics and samples; drives the console."""

    def __init__(self, run_dir: Path, cfg: ConsoleLoggerConfig, total_steps: int, console: Console | None = None):
        self.metrics_path, self.samples_path = run_dir / "metrics.jsonl", run_dir / "samples.jsonl"
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("step {task.completed}/{task.total}"),
            BarColumn(),
            TextColumn("reward {task.fields[reward]:.3f}  eval acc {task.fields[eval]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not cfg.progress,
        )
        self.task = self.progress.add_task("train", total=total_steps, reward=0.0, eval="-")
        sink = LOGGERS.get(cfg.name).component if cfg.name in LOGGERS.names() else None
        self.sink = sink(run_dir, cfg) if sink is not None else None  # logger=wandb: a W&B run beside the files

    def __enter__(self) -> RunLog:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()
        if self.sink is not None:
            self.sink.close()

    def metrics(self, record: dict) -> None:
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        if self.sink is not None:
            self.sink.metrics(record)
        fields = {"completed": record["step"]}
        if "reward_mean" in record:
            fields["reward"] = record["reward_mean"]
        if "eval_accuracy" in record:
            fields["eval"] = f"{record['eval_accuracy']:.3f}"
        self.progress.update(self.task, **fields)

    def samples(self, step: int, rows: list[dict]) -> None:
        with self.samples_path.open("a") as handle:
            for row in rows:
                handle.write(json.dumps({"step": step, **row}) + "\n")
        if self.sink is not None:
            self.sink.samples(step, rows)

    def print(self, message: str) -> None:
        self.console.print(message, highlight=False, soft_wrap=True)


class SilentLog:
    """What ranks other than 0 log: nothing (rank 0 writes metrics, samples and the console)."""

    def __enter__(self) -> SilentLog:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def metrics(self, record: dict) -> None:
        pass

    def samples(self, step: int, rows: list[dict]) -> None:
        pass

    def print(self, message: str) -> None:
        pass


class PhaseTimer:
    """Seconds per named phase of a step: `with timer("generate"): ...` -> {"time_generate": s}."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        except Exception as error:  # the innermost phase names where a step failed (e.g. out of memory)
            if not hasattr(error, "phase"):
                with suppress(AttributeError):  # a few built-in exception types take no attributes
                    error.phase = phase
            raise
        finally:
            key = f"time_{phase}"
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start
