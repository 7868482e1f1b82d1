"""The tiny experiment configuration the ordering tests train (one layer of width 16, lengths 4 and 8)."""

from __future__ import annotations

from experiments.ordering import config as config_lib
from experiments.ordering.model import ModelConfig

TINY = {
    "model": ModelConfig(num_layers=1, width=16, num_heads=2, mlp_ratio=2),
    "train_max_length": 4,
    "test_max_length": 8,
    "batch_size": 16,
    "steps": 20,
    "run_steps": (),
    "check_every": 10,
    "validation_per_length": 2,
    "test_per_length": 2,
    "seeds": (0, 1),
    "warmup_steps": 5,
    "learning_rates": (3e-3,),
}


def tiny_config(**overrides) -> config_lib.ExperimentConfig:
    """The ``quick`` preset with `TINY`, then ``overrides``, applied."""
    return config_lib.preset("quick", **{**TINY, **overrides})
