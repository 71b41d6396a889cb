"""Benchmarks: rlpost vs TRL's GRPOTrainer at equal work, chunked vs naive log-probs, and (on a GPU) throughput.

    python scripts/bench.py                       # everything; writes docs/performance.json
    python scripts/bench.py --sections e2e        # only rlpost vs TRL
    python scripts/bench.py --sections logprob --logprob-tokens 4096

rlpost and TRL run one after the other in this process on the same tiny model (rlpost/assets/tiny-arith), the
same prompts (TRL's dataset is the sequence of prompts rlpost's sampler drew), group size 8, 16 prompts per step,
one update per step, no KL. Timings on a shared machine are noisy: compare ratios taken in the same invocation.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PROMPTS, GROUP = 16, 8


# -- helpers -------------------------------------------------------------------------------------------------
class PeakRSS:
    """Peak resident set size of this process while inside the block (sampled every 5 ms), in MiB."""

    def __init__(self) -> None:
        import psutil

        self.process, self.peak, self._stop = psutil.Process(), 0, threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return self.peak / 2**20


def summarize(step_seconds: list[float], tokens: list[float], phases: list[dict], peak_mib: float) -> dict:
    median = statistics.median(step_seconds)
    phase_keys = sorted({key for record in phases for key in record})
    return {
        "step_seconds_median": median,
        "step_seconds": step_seconds,
        "tokens_per_step": statistics.mean(tokens),
        "tokens_per_second": statistics.mean(tokens) / median,
        "peak_rss_mib": peak_mib,
        "phases": {key: statistics.median(record.get(key, 0.0) for record in phases) for key in phase_keys},
    }


# -- rlpost --------------------------------------------------------------------------------------------------
def rlpost_config(max_new_tokens: int, min_new_tokens: int, steps: int, extra: list[str]):
    from rlpost.cli import compose_train
    from rlpost.config import validate

    overrides = [
        f"prompts_per_step={PROMPTS}",
        f"n={GROUP}",
        f"steps={steps}",
        "algo.kl_coef=0",
        "ppo_epochs=1",
        "minibatches=1",
        f"rollout.max_new_tokens={max_new_tokens}",
        f"rollout.min_new_tokens={min_new_tokens}",
        *extra,
    ]
    return validate(compose_train(overrides))


def run_rlpost(max_new_tokens: int, min_new_tokens: int, warmup: int, steps: int, extra: list[str]) -> dict:
    from rlpost.trainer import build, train_step

    cfg = rlpost_config(max_new_tokens, min_new_tokens, warmup + steps, extra)
    seconds, tokens, phases, prompt_order = [], [], [], []
    with PeakRSS() as rss:
        parts = build(cfg)
        for step in range(1, warmup + steps + 1):
            start = time.perf_counter()
            metrics, batch = train_step(step, parts, cfg)
            elapsed = time.perf_counter() - start
            prompt_order += batch.prompt_index[::GROUP].tolist()
            if step > warmup:
                seconds.append(elapsed)
                tokens.append(float(batch.prompt_mask.sum() + batch.response_mask.sum()))
                phases.append({k: v for k, v in metrics.items() if k.startswith("time_")})
    result = summarize(seconds, tokens, phases, rss.mib)
    result["prompt_order"] = prompt_order
    result["train_rows"] = [parts.train.rows[i] for i in prompt_order]
    result["completion_length"] = float(metrics["response_length"])
    del parts
    gc.collect()
    return result


# -- TRL -----------------------------------------------------------------------------------------------------
def run_trl(rows: list[dict], max_new_tokens: int, min_new_tokens: int, warmup: int, steps: int, lr: float) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlpost.models import ModelConfig, load_model
    from rlpost.rewards.arith import arith_reward

    model, tokenizer = load_model(ModelConfig())
    dataset = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": row["question"]}], "answer": row["answer"]} for row in rows]
    )

    def correct(completions, answer, **_):
        return [arith_reward(completion[0]["content"], truth)[0] for completion, truth in zip(completions, answer)]

    generation_kwargs = {"min_new_tokens": min_new_tokens} if min_new_tokens else None
    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-bench-"),
        per_device_train_batch_size=PROMPTS * GROUP,
        num_generations=GROUP,
        max_completion_length=max_new_tokens,
        max_steps=warmup + steps,
        learning_rate=lr,
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
        generation_kwargs=generation_kwargs,
    )

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_step_begin(self, *_, **__):
            self.start = time.perf_counter()

        def on_step_end(self, *_, **__):
            self.seconds.append(time.perf_counter() - self.start)

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
    with PeakRSS() as rss:
        trainer.train()
    for record, step_time in zip(phases, timer.seconds):  # TRL has no sync phase: the module generates itself
        scored = record.pop("time_score_all")
        record["time_logprob"] = scored - record.get("time_generate", 0.0) - record.get("time_reward", 0.0)
        record["time_train"] = step_time - scored
    result = summarize(timer.seconds[warmup:], tokens[warmup:], phases[warmup:], rss.mib)
    result["completion_length"] = lengths[-1]
    del trainer, model
    gc.collect()
    return result


def bench_e2e(args) -> list[dict]:
    rows = []
    for label, max_new, min_new in (("default (max 8, EOS stop)", 8, 0), ("4x longer (32 forced)", 32, 32)):
        print(f"\n== {label}: rlpost ...", flush=True)
        ours = run_rlpost(max_new, min_new, args.warmup, args.steps, args.rlpost_override)
        print(f"   rlpost step {ours['step_seconds_median']:.3f}s; TRL ...", flush=True)
        theirs = None
        if not args.skip_trl:
            theirs = run_trl(ours.pop("train_rows"), max_new, min_new, args.warmup, args.steps, lr=1e-4)
        ours.pop("train_rows", None)
        ours.pop("prompt_order")
        ratio = ours["step_seconds_median"] / theirs["step_seconds_median"] if theirs else None
        rows.append(
            {
                "workload": label,
                "max_new_tokens": max_new,
                "min_new_tokens": min_new,
                "rlpost": ours,
                "trl": theirs,
                "step_time_ratio_rlpost_over_trl": ratio,
            }
        )
    print_e2e(rows)
    return rows


def print_e2e(rows: list[dict]) -> None:
    phases = ("time_generate", "time_reward", "time_logprob", "time_train", "time_sync")
    header = f"{'workload':28} {'runner':7} {'step s':>7} {'tok/s':>8} {'RSS MiB':>8} {'len':>5} " + " ".join(
        f"{p[5:]:>8}" for p in phases
    )
    print("\n" + header + "\n" + "-" * len(header))
    for row in rows:
        for runner in ("rlpost", "trl"):
            r = row[runner]
            if r is None:
                continue
            cells = " ".join(f"{r['phases'].get(p, 0.0):8.3f}" for p in phases)
            print(
                f"{row['workload']:28} {runner:7} {r['step_seconds_median']:7.3f} {r['tokens_per_second']:8.0f} "
                f"{r['peak_rss_mib']:8.0f} {r['completion_length']:5.1f} {cells}"
            )
        if row["step_time_ratio_rlpost_over_trl"] is not None:
            print(f"{'':28} ratio rlpost/TRL step time: {row['step_time_ratio_rlpost_over_trl']:.2f}")


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


# -- main ----------------------------------------------------------------------------------------------------
def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--logprob-child":
        variant, sequences, tokens, hidden, vocab, backward, out = sys.argv[2:9]
        chunk_rows = int(sys.argv[9]) if len(sys.argv) > 9 else 2048
        logprob_child(
            variant, int(sequences), int(tokens), int(hidden), int(vocab), bool(int(backward)), out, chunk_rows
        )
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="e2e,logprob,gpu", help="comma list of e2e, logprob, gpu")
    parser.add_argument("--steps", type=int, default=10, help="measured steps per runner and workload")
    parser.add_argument("--warmup", type=int, default=3, help="steps run before measuring")
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for both runners (0: torch default)")
    parser.add_argument("--rlpost-override", action="append", default=[], help="extra rlpost override (repeatable)")
    parser.add_argument("--logprob-tokens", type=int, default=4096, help="tokens per sequence, forward case")
    parser.add_argument("--logprob-backward-tokens", type=int, default=256, help="tokens per sequence, backward case")
    parser.add_argument("--out", default=str(REPO / "docs" / "performance.json"))
    args = parser.parse_args()
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
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        import transformers
        import trl

        report["machine"] |= {"transformers": transformers.__version__, "trl": trl.__version__}
    except ImportError:
        pass
    if "e2e" in sections:
        report["e2e"] = bench_e2e(args)
    if "logprob" in sections:
        print("\n== log-prob memory: chunked vs naive (one subprocess per variant)", flush=True)
        report["logprob"] = bench_logprob(args)
    if "gpu" in sections:
        report["gpu"] = bench_gpu(args)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
