"""Training engines: log-probs, forward, backward/step, save/load and named tensors. torch now, DeepSpeed later."""

from rlpost.registry import Registry

ENGINES = Registry("trainer")

from rlpost.engine import deepspeed as _deepspeed_engine  # noqa: E402,F401  (registers trainer=deepspeed)
from rlpost.engine import torch as _torch_engine  # noqa: E402,F401  (registers trainer=torch)
