"""Every conf/algo/*.yaml validates against its schema; bad values fail with the key's name."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rlpost.algos import ALGOS
from rlpost.cli import compose_train
from rlpost.config import ConfigError, _as_schema

YAMLS = sorted((Path(__file__).parents[2] / "conf" / "algo").glob("*.yaml"))


def load(path: Path):
    """The algo group as composed by Hydra (yaml variants may build on another option via defaults)."""
    return compose_train([f"algo={path.stem}"]).algo


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_yaml_matches_its_schema(path):
    node = load(path)
    cfg = _as_schema(ALGOS.get(node.name).schema, node, "algo")
    assert cfg.name == node.name


def test_every_registered_algo_has_a_yaml():
    assert {load(p).name for p in YAMLS} == set(ALGOS.names())


@pytest.mark.parametrize(
    "name, key, value",
    [
        ("gspo", "clip_low", -1.0),
        ("grpo", "loss_agg", "mean"),
        ("sapo", "tau_neg", 0.0),
        ("dcpo", "ratio_max", 0.5),
        ("clip_cov", "clip_cov_ratio", 0.0),
        ("kl_cov", "kl_cov_coef", -1.0),
        ("ctpo", "ratio_mode", "sum"),
        ("prefix_ratio", "prefix", "max"),
        ("cispo", "kl_estimator", "k4"),
    ],
)
def test_bad_value_names_the_key(name, key, value):
    node = OmegaConf.create({"name": name, key: value})
    with pytest.raises(ConfigError, match=f"algo.{key}"):
        _as_schema(ALGOS.get(name).schema, node, "algo")
