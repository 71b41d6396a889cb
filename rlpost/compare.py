"""`rlpost-compare <sweep dir | run dirs...>`: one table and two plots for a sweep, finished or still running.

For each run dir (a dir with metrics.jsonl) it reads metrics.jsonl, summary.json (absent while running),
status.json, and what tells runs apart: the overrides in .hydra/overrides.yaml and the chosen option of each config
group in .hydra/hydra.yaml (`hydra.runtime.choices`: option names such as algo=dhpo_entropy, never the `name:` inside
a group, which variants share). Keys whose value differs between runs, other than the seed, define the groups;
each metric is shown as mean ± sample std over the seeds of a group.

Metrics: held-out greedy accuracy at the start, at the last eval (final) and its best; reward and response length
(mean of the last `--tail` logged steps); rollouts generated (sum of `rollouts`); wall time (summary.json
`seconds`; for a run without a summary yet, the sum of its step times); steps done. Plots (PNG, matplotlib):
reward and held-out accuracy against the step, one line per group (the mean over seeds), the seeds' range shaded.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

SEED_KEYS = ("seed",)
IGNORED_KEYS = ("logger.progress", "hydra.", "resume")  # keys that never tell runs apart
METRICS = (
    ("acc_start", "held-out acc start"),
    ("acc_final", "held-out acc final"),
    ("acc_best", "held-out acc best"),
    ("reward", "reward"),
    ("response_length", "response length"),
    ("rollouts", "rollouts"),
    ("seconds", "wall time s"),
)


@dataclass
class Run:
    run_dir: Path
    metrics: list[dict]
    summary: dict | None
    status: str
    keys: dict[str, str] = field(default_factory=dict)  # overrides and group choices, as strings
    total_steps: int | None = None


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Every dir holding a metrics.jsonl at or below `paths` (a sweep dir or run dirs), in a stable order."""
    found: list[Path] = []
    for path in paths:
        if (path / "metrics.jsonl").is_file():
            found.append(path)
        else:
            found.extend(sorted(p.parent for p in path.glob("**/metrics.jsonl") if ".submitit" not in p.parts))
    return list(dict.fromkeys(found))


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:  # the line a running job is writing right now
                continue
    return records


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_keys(run_dir: Path) -> dict[str, str]:
    """The group choices (hydra.runtime.choices) and command-line overrides of a run, as key -> value strings."""
    keys: dict[str, str] = {}
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    if hydra_yaml.is_file():
        choices = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.runtime.choices", default=None) or {}
        for group, option in OmegaConf.to_container(choices).items():
            if not group.startswith("hydra/") and option is not None:
                keys[group.replace("/", ".")] = str(option)
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        for item in OmegaConf.to_container(OmegaConf.load(overrides)):
            key, _, value = str(item).lstrip("+~").partition("=")
            keys[key] = value
    return {k: v for k, v in keys.items() if not any(k == i or k.startswith(i) for i in IGNORED_KEYS)}


def load_run(run_dir: Path) -> Run:
    summary = _read_json(run_dir / "summary.json")
    status = (_read_json(run_dir / "status.json") or {}).get("status") or ("completed" if summary else "running")
    total = summary.get("steps") if summary else None
    config_yaml = run_dir / ".hydra" / "config.yaml"
    if total is None and config_yaml.is_file():
        total = OmegaConf.select(OmegaConf.load(config_yaml), "steps", default=None)
    return Run(run_dir, _read_jsonl(run_dir / "metrics.jsonl"), summary, status, run_keys(run_dir), total)


def run_row(run: Run, tail: int = 10) -> dict[str, float | None]:
    """The table's metrics for one run (None where the run has no such value yet)."""
    evals = [(m["step"], m["eval_accuracy"]) for m in run.metrics if _finite(m.get("eval_accuracy"))]
    steps = [m for m in run.metrics if m.get("step", 0) > 0]
    last = steps[-tail:]
    seconds = run.summary.get("seconds") if run.summary else None
    if seconds is None and steps:
        seconds = sum(float(m.get("step_seconds", 0.0)) for m in steps)
    return {
        "acc_start": evals[0][1] if evals and evals[0][0] == 0 else None,
        "acc_final": evals[-1][1] if evals else None,
        "acc_best": max(acc for _, acc in evals) if evals else None,
        "reward": _mean([m["reward_mean"] for m in last if _finite(m.get("reward_mean"))]),
        "response_length": _mean([m["response_length"] for m in last if _finite(m.get("response_length"))]),
        "rollouts": float(sum(m.get("rollouts", 0) for m in steps)) if steps else None,
        "seconds": seconds,
        "step": float(steps[-1]["step"]) if steps else 0.0,
    }


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def mean_std(values: list[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample standard deviation (n - 1) of the values present; std is None below two values."""
    present = [v for v in values if v is not None]
    if not present:
        return None, None, 0
    mean = sum(present) / len(present)
    if len(present) < 2:
        return mean, None, len(present)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in present) / (len(present) - 1)), len(present)


def swept_keys(runs: list[Run], declared: tuple[str, ...] = ()) -> list[str]:
    """Keys whose value differs between runs (a key missing from a run counts as a value), plus the `declared`
    sweep keys (from multirun.yaml: a still-running sweep may not have started every value yet); seeds excluded."""
    names = sorted({k for run in runs for k in run.keys} | set(declared))
    differ = [k for k in names if len({run.keys.get(k) for run in runs}) > 1 or k in declared]
    return [k for k in differ if k not in SEED_KEYS]


def declared_sweep_keys(paths: list[Path]) -> tuple[str, ...]:
    """Keys swept over in the multirun.yaml of any sweep dir given (`key=a,b`, `key=range(...)`, ...)."""
    keys: list[str] = []
    for path in paths:
        multirun = path / "multirun.yaml"
        if multirun.is_file():
            task = OmegaConf.select(OmegaConf.load(multirun), "hydra.overrides.task", default=None) or []
            for item in task:
                key, _, value = str(item).lstrip("+~").partition("=")
                if "," in value or value.split("(")[0] in ("range", "choice", "interval", "glob"):
                    keys.append(key)
    return tuple(dict.fromkeys(k for k in keys if not k.startswith("hydra")))


def group_runs(runs: list[Run], declared: tuple[str, ...] = ()) -> tuple[list[str], dict[tuple, list[Run]]]:
    keys = swept_keys(runs, declared)
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(run.keys.get(k, "-") for k in keys), []).append(run)
    return keys, groups


def _label(keys: list[str], values: tuple) -> str:
    return " ".join(f"{k}={v}" for k, v in zip(keys, values)) or "all runs"


def table(runs: list[Run], tail: int = 10, declared: tuple[str, ...] = ()) -> tuple[list[str], list[dict]]:
    """One record per group: its swept values, number of runs, status counts, and mean/std of each metric."""
    keys, groups = group_runs(runs, declared)
    records = []
    for values, members in groups.items():
        rows = [run_row(run, tail) for run in members]
        record: dict = dict(zip(keys, values))
        record["runs"] = len(members)
        record["seeds"] = ",".join(sorted({run.keys.get("seed", "-") for run in members}))
        statuses = sorted({run.status for run in members})
        record["status"] = ",".join(f"{s}:{sum(run.status == s for run in members)}" for s in statuses)
        done = [int(row["step"]) for row in rows]
        totals = [run.total_steps for run in members if run.total_steps]
        record["steps"] = f"{min(done)}/{max(totals)}" if totals else str(min(done))
        for name, _ in METRICS:
            mean, std, count = mean_std([row[name] for row in rows])
            record[name], record[f"{name}_std"], record[f"{name}_n"] = mean, std, count
        records.append(record)
    return keys, records


def _cell(mean: float | None, std: float | None, name: str) -> str:
    if mean is None:
        return "-"
    digits = 0 if name in ("rollouts", "seconds") else (1 if name == "response_length" else 3)
    text = f"{mean:.{digits}f}"
    return text + (f" ± {std:.{digits}f}" if std is not None else "")


def to_markdown(keys: list[str], records: list[dict]) -> str:
    header = [*keys, "runs", "seeds", "status", "steps", *(title for _, title in METRICS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for record in records:
        cells = [str(record[k]) for k in keys] + [str(record[k]) for k in ("runs", "seeds", "status", "steps")]
        cells += [_cell(record[name], record[f"{name}_std"], name) for name, _ in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(keys: list[str], records: list[dict]) -> str:
    columns = [*keys, "runs", "seeds", "status", "steps"]
    columns += [c for name, _ in METRICS for c in (name, f"{name}_std", f"{name}_n")]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({c: "" if record.get(c) is None else record.get(c) for c in columns})
    return out.getvalue()


def curves(members: list[Run], metric: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """Steps where any seed logged `metric`, and the mean, min and max over the seeds that have it there."""
    by_step: dict[int, list[float]] = {}
    for run in members:
        for m in run.metrics:
            if _finite(m.get(metric)):
                by_step.setdefault(int(m["step"]), []).append(float(m[metric]))
    steps = sorted(by_step)
    return (
        steps,
        [sum(by_step[s]) / len(by_step[s]) for s in steps],
        [min(by_step[s]) for s in steps],
        [max(by_step[s]) for s in steps],
    )


def plot(runs: list[Run], out_dir: Path, declared: tuple[str, ...] = ()) -> list[Path]:
    """reward.png and eval_accuracy.png in `out_dir`: one line per group (mean over seeds), the seeds' range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys, groups = group_runs(runs, declared)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for metric, title in (("reward_mean", "reward"), ("eval_accuracy", "held-out accuracy")):
        figure, axis = plt.subplots(figsize=(7, 4.2), dpi=110)
        for values, members in groups.items():
            steps, mean, low, high = curves(members, metric)
            if not steps:
                continue
            label = f"{_label(keys, values)} (n={len(members)})"
            (line,) = axis.plot(steps, mean, marker="o" if len(steps) < 30 else None, markersize=3, label=label)
            axis.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        axis.set_xlabel("step")
        axis.set_ylabel(title)
        axis.set_title(f"{title}: mean over seeds, range shaded")
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=8)
        figure.tight_layout()
        path = out_dir / ("reward.png" if metric == "reward_mean" else "eval_accuracy.png")
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rlpost-compare", description="Compare the runs of a sweep (or any run dirs): a table and plots."
    )
    parser.add_argument("paths", nargs="+", type=Path, help="a sweep dir, or run dirs")
    parser.add_argument("--format", choices=("markdown", "csv", "json"), default="markdown")
    parser.add_argument(
        "--plots",
        type=Path,
        default=None,
        help="dir for reward.png/eval_accuracy.png "
        "(default: <sweep dir>/compare when one dir is given, else ./compare)",
    )
    parser.add_argument("--no-plots", action="store_true", help="print the table only")
    parser.add_argument("--tail", type=int, default=10, help="steps averaged for reward and response length")
    args = parser.parse_args(argv)
    missing = [p for p in args.paths if not p.is_dir()]
    if missing:
        print(f"rlpost-compare: {missing[0]}: no such directory", file=sys.stderr)
        return 2
    run_dirs = find_run_dirs(args.paths)
    if not run_dirs:
        print(
            f"rlpost-compare: no run dirs (with metrics.jsonl) under {', '.join(map(str, args.paths))}", file=sys.stderr
        )
        return 2
    _index_sweeps(args.paths)
    runs = [load_run(d) for d in run_dirs]
    declared = declared_sweep_keys(args.paths)
    keys, records = table(runs, args.tail, declared)
    if args.format == "markdown":
        sys.stdout.write(to_markdown(keys, records))
    elif args.format == "csv":
        sys.stdout.write(to_csv(keys, records))
    else:
        sys.stdout.write(json.dumps({"swept_keys": keys, "groups": records}, indent=2) + "\n")
    if not args.no_plots:
        out = args.plots or (args.paths[0] / "compare" if len(args.paths) == 1 else Path("compare"))
        for path in plot(runs, out, declared):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _index_sweeps(paths: list[Path]) -> None:
    """Refresh sweep_index.jsonl of any sweep dir given (a multirun.yaml marks one)."""
    from rlpost.sweep import write_index

    for path in paths:
        if (path / "multirun.yaml").is_file():
            try:
                write_index(path)
            except OSError:
                pass


def main_exit() -> None:
    """The `rlpost-compare` console script."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
