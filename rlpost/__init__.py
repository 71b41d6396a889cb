"""rlpost: a readable, fast, resumable runner for GRPO-family RL post-training of language models."""

__version__ = "0.1.0"
