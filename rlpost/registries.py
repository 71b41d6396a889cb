"""The registry behind each config group, by group name (imports every component so that all are registered)."""

from rlpost.advantages import ADVANTAGES
from rlpost.algos import ALGOS
from rlpost.data import DATASETS
from rlpost.engine import ENGINES
from rlpost.logging import LOGGERS
from rlpost.models import MODELS
from rlpost.rewards import REWARDS
from rlpost.rollout import ROLLOUTS
from rlpost.samplers import SAMPLERS

REGISTRIES = {
    "algo": ALGOS,
    "advantage": ADVANTAGES,
    "sampler": SAMPLERS,
    "reward": REWARDS,
    "model": MODELS,
    "data": DATASETS,
    "rollout": ROLLOUTS,
    "trainer": ENGINES,
    "logger": LOGGERS,
}
