"""Build the embedded default model: a tiny Qwen3 with a character tokenizer, warm-started on arithmetic.

Answer-only teacher forcing (AdamW, lr 1e-3, batch 64) until the dev split's greedy accuracy reaches
`--target` (default 0.25), so that GRPO starts from a policy that is sometimes right. Deterministic for a seed.
Writes an HF-format directory (safetensors + tokenizer), by default rlpost/assets/tiny-arith.

    python scripts/make_tiny_model.py [--out DIR] [--seed 0] [--target 0.25]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from rlpost.data import render
from rlpost.data.arith import ArithConfig, arith_splits
from rlpost.models.tiny import build_model, build_tokenizer
from rlpost.rewards.arith import arith_reward
from rlpost.rollout import Request, SamplingConfig
from rlpost.rollout.hf import HFRollout, pad_left


def greedy_accuracy(model, tokenizer, prompts) -> float:
    rollout = HFRollout(model, tokenizer, SamplingConfig(max_new_tokens=8))
    requests = [Request(i, ids, 1) for i, ids in enumerate(prompts.token_ids)]
    batch = rollout.generate(requests, seed=0, greedy=True)
    answers = [row["answer"] for row in prompts.rows]
    return sum(arith_reward(text, answer)[0] for text, answer in zip(batch.texts, answers)) / len(answers)


def supervised_batch(prompts, indices, tokenizer):
    """Prompt + answer + EOS, with labels only on the answer and EOS (answer-only teacher forcing)."""
    sequences, label_rows = [], []
    for i in indices:
        answer = tokenizer(prompts.rows[i]["answer"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        sequences.append(prompts.token_ids[i] + answer)
        label_rows.append([-100] * len(prompts.token_ids[i]) + answer)
    input_ids, mask = pad_left(sequences, tokenizer.pad_token_id)
    labels = torch.full_like(input_ids, -100)
    for row, target in enumerate(label_rows):
        labels[row, input_ids.shape[1] - len(target) :] = torch.tensor(target)
    return input_ids, mask.long(), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "rlpost/assets/tiny-arith"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.25, help="stop when dev greedy accuracy reaches this")
    parser.add_argument("--max-steps", type=int, default=20000)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed=args.seed)
    splits = {name: render(rows, tokenizer) for name, rows in arith_splits(ArithConfig()).items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = random.Random(args.seed)
    start, step, dev_accuracy = time.time(), 0, 0.0
    while step < args.max_steps:
        step += 1
        indices = rng.sample(range(len(splits["train"])), 64)
        input_ids, mask, labels = supervised_batch(splits["train"], indices, tokenizer)
        position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
        loss = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 25 == 0:
            dev_accuracy = greedy_accuracy(model, tokenizer, splits["dev"])
            print(f"step {step} loss {loss.item():.3f} dev {dev_accuracy:.3f} ({time.time() - start:.0f}s)", flush=True)
            if dev_accuracy >= args.target:
                break
    held_out = greedy_accuracy(model, tokenizer, splits["eval"])
    out = Path(args.out)
    model.generation_config.do_sample = False
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    info = {
        "seed": args.seed,
        "sft_steps": step,
        "dev_accuracy": dev_accuracy,
        "held_out_accuracy": held_out,
        "seconds": round(time.time() - start, 1),
    }
    (out / "warm_start.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
