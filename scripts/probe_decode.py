"""Decoding-step probe behind docs/performance.md "Long completions": 128 steps of 128 rows on the tiny model.

Four ways to run the same decoding loop (multinomial sampling, 16-token prompts, 2 threads):
  eager + DynamicCache (transformers' default, torch.cat per step),
  eager + rlpost's in-place cache layer (rollout=hf's `_GrowingLayer`),
  eager + StaticCache (attention over the full prompt + completion length every step),
  torch.compile + StaticCache (inductor; the compile time is printed separately).

    python scripts/probe_decode.py [--rows 128] [--prompt 16] [--steps 128] [--no-compile]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import DynamicCache, StaticCache
from transformers.cache_utils import Cache

from rlpost.models.attention import attention_backend
from rlpost.models.tiny import build_model, build_tokenizer
from rlpost.rollout.hf import _GrowingLayer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model(build_tokenizer()).eval()
    model.set_attn_implementation(attention_backend("sdpa"))
    rows, width, steps = args.rows, args.prompt, args.steps
    ids = torch.randint(10, 100, (rows, width))

    def step(token, mask, position, cache, cache_position=None):
        out = model.model(
            input_ids=token,
            attention_mask=mask,
            position_ids=position,
            past_key_values=cache,
            use_cache=True,
            cache_position=cache_position,
        )
        return out.last_hidden_state[:, -1]

    @torch.no_grad()
    def loop(kind: str, decode=step) -> None:
        torch.manual_seed(0)
        mask = torch.ones(rows, width + steps, dtype=torch.long)
        static = kind.startswith("static")
        cache = StaticCache(config=model.config, max_cache_len=width + steps) if static else None
        prefill = model.model(
            input_ids=ids,
            attention_mask=mask[:, :width],
            past_key_values=cache,
            use_cache=True,
            cache_position=torch.arange(width) if static else None,
        )
        if kind == "growing":
            layers = prefill.past_key_values.layers
            cache = Cache(layers=[_GrowingLayer(layer.keys, layer.values, width + steps) for layer in layers])
        elif kind == "dynamic":
            cache = prefill.past_key_values
        assert isinstance(cache, (DynamicCache, StaticCache, Cache))
        hidden = prefill.last_hidden_state[:, -1]
        for t in range(steps):
            token = torch.multinomial(model.lm_head(hidden).softmax(-1), 1)
            position = torch.full((rows, 1), width + t)
            live = mask if static else mask[:, : width + t + 1]
            hidden = decode(token, live, position, cache, torch.tensor([width + t]) if static else None)

    def timed(kind: str, decode=step, repeats: int = 3) -> float:
        loop(kind, decode)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            loop(kind, decode)
        return (time.perf_counter() - start) / repeats

    print(f"{rows} rows x {steps} decoding steps, prompt {width}, {args.threads} threads; seconds per loop")
    for kind in ("dynamic", "growing", "static"):
        print(f"eager {kind:8s} {timed(kind):.3f}")
    if not args.no_compile:
        compiled = torch.compile(step, dynamic=False)
        start = time.perf_counter()
        loop("static", compiled)
        print(f"compiled static: first loop (compilation included) {time.perf_counter() - start:.1f}")
        print(f"compiled static  {timed('static', compiled):.3f}")


if __name__ == "__main__":
    main()
