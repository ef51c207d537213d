"""The run config: one set of key names, declared identically in pyproject.toml."""

import tomllib
from pathlib import Path

import pytest

from shared_models.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_declares_exactly_the_run_config_defaults():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert declared == RunConfig().to_flower()


def test_round_trip_through_flower_values():
    cfg = RunConfig(epsilon=3.5, partition="dirichlet:0.3", hospitals=4, image_size=64)
    assert RunConfig.from_flower(cfg.to_flower()) == cfg


def test_ints_from_toml_become_floats_and_unknown_keys_fail():
    cfg = RunConfig.from_flower({"epsilon": 10, "delta": 0})
    assert isinstance(cfg.epsilon, float) and cfg.epsilon == 10.0
    with pytest.raises(ValueError, match="unknown run-config key 'epsilonn'"):
        RunConfig.from_flower({"epsilonn": 1})
    with pytest.raises(ValueError, match="integer"):
        RunConfig.from_flower({"hospitals": 2.5})


@pytest.mark.parametrize(
    "bad",
    [{"image_size": 48}, {"epsilon": 0.0}, {"delta": 1.0}, {"hospitals": 0}, {"device": "tpu"}, {"holdout_fraction": 1.0}],
)
def test_invalid_values_are_refused(bad):
    with pytest.raises(ValueError):
        RunConfig(**bad)
