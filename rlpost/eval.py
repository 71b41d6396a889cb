"""`rlpost-eval`: greedy pass@1, mean@k and unbiased pass@k of a checkpoint on a dataset, with per-subject and
per-level breakdowns (MATH-500), a printed table and a JSON file. Needs no optimizer and no sampler.

    rlpost-eval checkpoint=outputs/2026-12-03/10-00-00 data=math500 eval.k=8      # run dir: its latest checkpoint
    rlpost-eval checkpoint=outputs/.../checkpoints/step_200 data=gsm8k            # one checkpoint
    rlpost-eval checkpoint=Qwen/Qwen3-0.6B data=math500 rollout.max_new_tokens=4096 model=qwen3-0.6b

pass@k is the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code",
arXiv 2107.03374, Eq. 1) over n >= k samples per problem with c correct:

    pass@k = E_problems[ 1 - C(n - c, k) / C(n, k) ]

computed as 1 - prod_{i = n-c+1}^{n} (1 - k / i) for numerical stability. mean@k is the mean accuracy of the k
samples, E[c / n]; pass@1 (greedy) is the accuracy of one greedy completion. A completion is correct when its
`correct` reward (or, without one, its total reward) is > 0.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rlpost.cli import CONF_DIR
from rlpost.config import ConfigError, _as_schema, check

EVAL_GROUPS = ("model", "data", "reward", "rollout")


@dataclass
class EvalSchema:
    """The `eval:` keys of conf/eval.yaml."""

    k: int = 8  # sampled completions per problem for mean@k and pass@k (0: greedy pass@1 only)
    n: int = 0  # samples per problem for the estimator, n >= k; 0 = k
    max_problems: int = 0  # evaluate the first this-many problems; 0 = all
    seed: int = 0
    output: str = "eval.json"  # written in the run dir (or an absolute path)

    def __post_init__(self) -> None:
        check(self.k >= 0, "eval.k", f"must be >= 0, got {self.k}")
        check(self.n == 0 or self.n >= self.k, "eval.n", f"must be 0 (= k) or >= k={self.k}, got {self.n}")
        check(self.max_problems >= 0, "eval.max_problems", f"must be >= 0, got {self.max_problems}")

    @property
    def samples(self) -> int:
        return self.n or self.k


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with n samples of which c are correct (Chen et al. 2021)."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def ks_to_report(k: int) -> list[int]:
    """1, 2, 4, ... up to k, and k itself."""
    ks = [j for j in (2**i for i in range(k.bit_length())) if j <= k]
    return sorted(set(ks + [k])) if k else []


def resolve_checkpoint(checkpoint: str) -> str:
    """A run dir -> its latest complete checkpoint; a checkpoint / model dir as is; anything else is a hub id."""
    from rlpost.checkpoint import list_checkpoints

    path = Path(checkpoint).expanduser()
    if path.is_dir():
        found = list_checkpoints(path / "checkpoints") or list_checkpoints(path)
        if found:
            return str(found[-1])
        if (path / "config.json").is_file():
            return str(path)
        raise ConfigError(f"checkpoint: {checkpoint} is neither a run dir with checkpoints nor a model dir")
    if checkpoint.startswith((".", "/", "~")) or checkpoint.count("/") != 1:
        raise ConfigError(f"checkpoint: {checkpoint} does not exist (a run dir, a checkpoint dir or a hub id)")
    return checkpoint  # hub id


def breakdown(rows: list[dict], greedy: list[float], counts: list[int], n: int, k: int) -> dict:
    """Metrics overall and per subject / per level (where rows have them)."""

    def metrics(indices: list[int]) -> dict:
        out = {"problems": len(indices), "pass@1_greedy": float(np.mean([greedy[i] for i in indices]))}
        if k:
            out[f"mean@{k}"] = float(np.mean([counts[i] / n for i in indices]))
            for j in ks_to_report(k):
                out[f"pass@{j}"] = float(np.mean([pass_at_k(n, counts[i], j) for i in indices]))
        return out

    result = {"overall": metrics(list(range(len(rows))))}
    for field in ("subject", "level"):
        groups: dict[str, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            if field in row:
                groups[str(row[field])].append(i)
        if groups:
            result[f"by_{field}"] = {name: metrics(indices) for name, indices in sorted(groups.items())}
    return result


def correct_of(batch) -> list[float]:
    values = batch.rewards.get("correct", batch.reward)
    return [float(v > 0) for v in values.tolist()]


def evaluate_checkpoint(cfg: DictConfig, out_dir: Path) -> dict:
    """Generate greedy and sampled completions, grade them, write the JSON report; return it."""
    from rlpost.models import load_model
    from rlpost.rewards import score
    from rlpost.rollout import Request

    groups, settings = _eval_config(cfg)
    model_path = resolve_checkpoint(str(cfg.checkpoint))
    model, tokenizer = load_model(replace(groups["model"], path=model_path))
    model.eval()
    rows, token_ids = _problems(groups["data"], tokenizer, settings.max_problems)
    rollout = _rollout(model, tokenizer, model_path, groups, token_ids)
    greedy_batch = rollout.generate([Request(i, ids, 1) for i, ids in enumerate(token_ids)], seed=0, greedy=True)
    score(groups["reward"], greedy_batch, rows, max_length=groups["rollout"].max_new_tokens)
    greedy = correct_of(greedy_batch)
    counts = _correct_counts(rollout, groups, rows, token_ids, settings)
    report = {
        "checkpoint": model_path,
        "data": groups["data"].name,
        "k": settings.k,
        "n": settings.samples,
        "metrics": breakdown(rows, greedy, counts, settings.samples, settings.k),
        "problems": [
            {
                "id": row.get("id", i),
                "answer": row["answer"],
                "greedy_correct": bool(greedy[i]),
                "greedy": greedy_batch.texts[i],
                "correct_of_n": counts[i],
                **{key: row[key] for key in ("subject", "level") if key in row},
            }
            for i, row in enumerate(rows)
        ],
    }
    output = Path(settings.output) if os.path.isabs(settings.output) else out_dir / settings.output
    _write_json(output, report)
    print_table(report, output)
    return report


def _eval_config(cfg: DictConfig) -> tuple[dict, EvalSchema]:
    """The validated model, data, reward and rollout groups and the `eval:` settings; `checkpoint` must be set."""
    from rlpost import registries

    groups = {}
    for group in EVAL_GROUPS:
        registry = registries.REGISTRIES[group]
        name = cfg[group].get("name")
        check(name in registry.names(), f"{group}.name", f"{name!r} is not one of {', '.join(registry.names())}")
        groups[group] = _as_schema(registry.get(name).schema, cfg[group], group)
    settings = _as_schema(EvalSchema, cfg.get("eval", {}), "eval")
    check(
        cfg.get("checkpoint") not in (None, "", "???"), "checkpoint", "set checkpoint=<run dir | checkpoint | hub id>"
    )
    return groups, settings


def _problems(data, tokenizer, max_problems: int) -> tuple[list[dict], list[list[int]]]:
    """(rows, prompt token ids) of the first `max_problems` eval problems (0: all)."""
    from rlpost.data import load_splits
    from rlpost.data.tasks import TaskDataConfig

    if isinstance(data, TaskDataConfig):  # only the eval split is needed
        data = replace(data, train_path=data.eval_path, train_split=data.eval_split, eval_sets={})
    prompts = load_splits(data, tokenizer)["eval"]
    count = min(max_problems or len(prompts), len(prompts))
    return prompts.rows[:count], prompts.token_ids[:count]


def _rollout(model, tokenizer, model_path: str, groups: dict, token_ids: list[list[int]]):
    """The rollout engine of the `rollout` group over `model`, sized for the longest prompt + completion."""
    from rlpost.rollout import ROLLOUTS, Policy

    model_cfg, rollout_cfg = groups["model"], groups["rollout"]
    longest = max((len(ids) for ids in token_ids), default=0) + rollout_cfg.max_new_tokens
    policy = Policy(model, tokenizer, model_path, model_cfg.dtype, longest, model_cfg.trust_remote_code)
    return ROLLOUTS.get(rollout_cfg.name).component.from_policy(policy, rollout_cfg)


def _correct_counts(rollout, groups: dict, rows: list[dict], token_ids: list[list[int]], settings: EvalSchema):
    """Per problem, how many of its `settings.samples` sampled completions are correct ([0] * problems when 0)."""
    from rlpost.rewards import score
    from rlpost.rollout import Request

    counts = [0] * len(rows)
    if not settings.samples:
        return counts
    requests = [Request(i, ids, settings.samples) for i, ids in enumerate(token_ids)]
    batch = rollout.generate(requests, seed=settings.seed)
    indices = batch.prompt_index.tolist()
    score(groups["reward"], batch, [rows[i] for i in indices], max_length=groups["rollout"].max_new_tokens)
    for i, ok in zip(indices, correct_of(batch)):
        counts[i] += int(ok)
    return counts


def _write_json(output: Path, report: dict) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(output)


def print_table(report: dict, output: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    metrics = report["metrics"]
    columns = [key for key in metrics["overall"] if key != "problems"]
    table = Table(title=f"{report['checkpoint']} on {report['data']} (k={report['k']}, n={report['n']})")
    for name in ("set", "problems", *columns):
        table.add_column(name, justify="left" if name == "set" else "right")

    def add(label: str, values: dict) -> None:
        table.add_row(label, str(values["problems"]), *(f"{values[c]:.3f}" for c in columns))

    add("overall", metrics["overall"])
    for field in ("subject", "level"):
        for name, values in metrics.get(f"by_{field}", {}).items():
            add(f"{field} {name}", values)
    console = Console()
    console.print(table)
    console.print(f"written: {output}", highlight=False)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def _eval(cfg: DictConfig) -> float | None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        report = evaluate_checkpoint(cfg, Path(HydraConfig.get().runtime.output_dir))
    except ConfigError as error:
        if os.environ.get("RLPOST_USER_FULL_ERROR") == "1":
            raise
        print(f"rlpost-eval: config error: {error}", file=sys.stderr)
        sys.exit(2)
    return report["metrics"]["overall"]["pass@1_greedy"]


def main() -> None:
    """`rlpost-eval checkpoint=... data=... eval.k=...`; configuration errors: one line, exit code 2."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    from rlpost.cli import one_line

    user_wants_trace = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["RLPOST_USER_FULL_ERROR"] = "1" if user_wants_trace else "0"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    errors = (ConfigCompositionException, MissingConfigException, OverrideParseException, OmegaConfBaseException)
    try:
        _eval()
    except errors as error:
        if user_wants_trace:
            raise
        print(f"rlpost-eval: config error: {one_line(error)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
