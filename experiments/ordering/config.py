"""Configuration of the ordering experiment: schemes, presets and the frozen config saved with the results."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import flax.linen as nn

from experiments.ordering import tasks
from experiments.ordering.model import ModelConfig
from posenc_jax import linen as schemes_linen

__all__ = [
    "SCHEMES",
    "RELATIVE_SCHEMES",
    "SchemeSpec",
    "scheme_spec",
    "ExperimentConfig",
    "PRESETS",
    "preset",
    "position_range",
    "check_positions",
]


# One initializer object, so that equal configurations build equal (hashable, cache-friendly) modules.
_UNIT_NORMAL = nn.initializers.normal(stddev=1.0)


@dataclasses.dataclass(frozen=True)
class SchemeSpec:
    """How one compared scheme is built.

    Attributes:
      name: the scheme's name in tables.
      base: the positional module it uses (``none``, ``sinusoidal``, ``learned``, ``rotary``, ``alibi``,
        ``t5`` (T5's bucketed relative bias), ``relative`` (Transformer-XL's relative attention)).
      randomized: positions are a sorted random subset of ``[0, position_range)`` drawn per example, at
        training and at evaluation (Ruoss et al. 2023), instead of ``0, 1, …``.
    """

    name: str
    base: str
    randomized: bool

    def module(self, model: ModelConfig, *, mode: str, max_positions: int) -> nn.Module:
        """The Flax Linen scheme module for a model of size ``model`` in ``mode``.

        Args:
          model: the model size.
          mode: ``"encoder"`` (bidirectional ALiBi and T5 buckets) or ``"decoder"`` (causal ones).
          max_positions: rows of the learned table (the longest whole test sequence, or the randomized
            range).
        """
        if self.base == "none":
            return schemes_linen.NoPosition()
        if self.base == "sinusoidal":
            return schemes_linen.Sinusoidal(model.width)
        if self.base == "learned":
            # Same initial scale as the token embeddings (unit variance).
            return schemes_linen.Learned(max_positions, model.width, embedding_init=_UNIT_NORMAL)
        if self.base == "rotary":
            return schemes_linen.Rotary(model.head_dim)
        if self.base == "alibi":
            return schemes_linen.ALiBi(model.num_heads, causal=mode == "decoder")
        if self.base == "t5":
            return schemes_linen.T5Bias(model.num_heads, bidirectional=mode == "encoder")
        if self.base == "relative":
            return schemes_linen.TransformerXLRelative(model.num_heads, model.head_dim)
        raise AssertionError(self.base)  # pragma: no cover - SCHEMES holds only the bases above


SCHEMES: dict[str, SchemeSpec] = {
    spec.name: spec
    for spec in (
        SchemeSpec("none", "none", False),
        SchemeSpec("sinusoidal", "sinusoidal", False),
        SchemeSpec("learned", "learned", False),
        SchemeSpec("rotary", "rotary", False),
        SchemeSpec("alibi", "alibi", False),
        SchemeSpec("randomized_sinusoidal", "sinusoidal", True),
        SchemeSpec("randomized_rotary", "rotary", True),
        SchemeSpec("randomized_learned", "learned", True),
        SchemeSpec("t5", "t5", False),
        SchemeSpec("relative", "relative", False),
        # Transformer-XL's relative attention at randomized positions: the best scheme of Ruoss et al. 2023.
        SchemeSpec("randomized_relative", "relative", True),
    )
}

#: The relative-attention schemes, compared by the full preset (the quick one keeps its first-run budget).
RELATIVE_SCHEMES = ("t5", "relative", "randomized_relative")


def scheme_spec(name: str) -> SchemeSpec:
    """The scheme called ``name``.

    Raises:
      ValueError: for an unknown name.
    """
    if name not in SCHEMES:
        raise ValueError(f"scheme_spec(name={name!r}): unknown scheme; choose from {list(SCHEMES)}")
    return SCHEMES[name]


def position_range(task: tasks.Task, test_max_length: int) -> int:
    """Tokens of the longest test example: the learned table's rows and the randomized range."""
    return int(task.sequence_length(test_max_length))


def check_positions(positions, max_positions: int, where: str) -> None:
    """Raises if any position lies outside ``[0, max_positions)`` (the learned table's rows).

    Raises:
      ValueError: naming ``where`` and the offending range.
    """
    low, high = int(positions.min(initial=0)), int(positions.max(initial=0))
    if low < 0 or high >= max_positions:
        raise ValueError(
            f"check_positions({where}): positions span {low} … {high}, outside [0, {max_positions}) of the "
            "learned table"
        )


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything that determines the results of a run (saved as ``config.json``).

    Attributes:
      preset: name of the preset the config started from.
      runs: ``(task, mode)`` pairs; each is trained with every scheme.
      schemes: scheme names (keys of `SCHEMES`).
      seeds: training seeds; the seeds of one (task, mode, scheme) group train together under ``jax.vmap``.
      model: the Transformer size.
      train_max_length: ``N``: training input lengths are uniform on ``1 … N``.
      test_max_length: evaluation covers every input length ``1 … test_max_length``.
      batch_size: examples per training step and seed (even: rows hold two examples).
      learning_rate: Adam's peak learning rate (linear warm-up, then constant).
      warmup_steps: steps of linear warm-up.
      max_steps: the step cap.
      check_every: steps between two checks of the criterion (one compiled chunk).
      criterion: in-distribution exact-match accuracy that ends training of a seed.
      validation_per_length: examples per length ``1 … N`` of the fixed criterion set.
      test_per_length: examples per length of the fixed test set.
      data_seed: seed of the fixed validation and test sets (shared by every scheme and seed: a paired
        comparison).
      grad_clip: global gradient-norm clip.
    """

    preset: str = "quick"
    runs: tuple[tuple[str, str], ...] = (("sort", "encoder"), ("majority", "encoder"), ("sort", "decoder"))
    schemes: tuple[str, ...] = tuple(SCHEMES)
    seeds: tuple[int, ...] = (0, 1, 2)
    model: ModelConfig = ModelConfig(num_layers=2, width=64, num_heads=4, mlp_ratio=4)
    train_max_length: int = 10
    test_max_length: int = 40
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    max_steps: int = 1500
    check_every: int = 50
    criterion: float = 0.99
    validation_per_length: int = 32
    test_per_length: int = 16
    data_seed: int = 1234
    grad_clip: float = 1.0

    def __post_init__(self):
        def fail(field, value, allowed):
            raise ValueError(f"ExperimentConfig({field}={value!r}): {allowed}")

        if not self.runs:
            fail("runs", self.runs, "at least one (task, mode) pair is needed")
        for run in self.runs:
            if not (isinstance(run, tuple) and len(run) == 2):
                fail("runs", self.runs, "each run must be a (task, mode) pair")
            if run[0] not in tasks.TASKS:
                fail("runs", run, f"task must be one of {sorted(tasks.TASKS)}")
            if run[1] not in tasks.MODES:
                fail("runs", run, f"mode must be one of {tasks.MODES}")
        if len(set(self.runs)) != len(self.runs):
            fail("runs", self.runs, "runs must be distinct")
        if not self.schemes or len(set(self.schemes)) != len(self.schemes):
            fail("schemes", self.schemes, "a non-empty list of distinct scheme names is needed")
        for name in self.schemes:
            if name not in SCHEMES:
                fail("schemes", name, f"scheme must be one of {list(SCHEMES)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            fail("seeds", self.seeds, "a non-empty list of distinct seeds is needed")
        if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in self.seeds):
            fail("seeds", self.seeds, "seeds must be non-negative integers")
        for name in ("train_max_length", "test_max_length", "max_steps", "check_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(name, value, "must be a positive integer")
        if self.test_max_length < self.train_max_length:
            fail("test_max_length", self.test_max_length, "must be at least train_max_length")
        if not isinstance(self.batch_size, int) or self.batch_size < 2 or self.batch_size % 2:
            fail("batch_size", self.batch_size, "must be a positive even integer (two examples per row)")
        if self.max_steps % self.check_every:
            fail("max_steps", self.max_steps, f"must be a multiple of check_every={self.check_every}")
        for name in ("validation_per_length", "test_per_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 2 or value % 2:
                fail(name, value, "must be a positive even integer")
        if not 0.0 < self.criterion <= 1.0:
            fail("criterion", self.criterion, "must be in (0, 1]")
        if not self.learning_rate > 0:
            fail("learning_rate", self.learning_rate, "must be positive")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            fail("warmup_steps", self.warmup_steps, "must be a non-negative integer")
        if not self.grad_clip > 0:
            fail("grad_clip", self.grad_clip, "must be positive")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExperimentConfig:
        """Inverse of `to_json`."""
        data = dict(data)
        data["model"] = ModelConfig(**data["model"])
        data["runs"] = tuple(tuple(run) for run in data["runs"])
        for name in ("schemes", "seeds"):
            data[name] = tuple(data[name])
        return cls(**data)

    def group_fingerprint(self, task: str, mode: str, scheme: str, device_count: int) -> str:
        """A hash of everything that determines one group's results (to refuse stale resumed groups)."""
        data = self.to_json()
        data.pop("preset")
        data.pop("runs")
        data.pop("schemes")
        data["group"] = [task, mode, scheme, device_count]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


PRESETS: dict[str, ExperimentConfig] = {
    "quick": ExperimentConfig(schemes=tuple(name for name in SCHEMES if name not in RELATIVE_SCHEMES)),
    "full": ExperimentConfig(
        preset="full",
        runs=tuple((task, "encoder") for task in ("sort", "reverse", "duplicate", "odds_first", "majority"))
        + (("sort", "decoder"), ("reverse", "decoder")),
        seeds=(0, 1, 2, 3, 4),
        model=ModelConfig(num_layers=5, width=64, num_heads=8, mlp_ratio=4),
        train_max_length=40,
        test_max_length=500,
        batch_size=128,
        learning_rate=1e-3,
        warmup_steps=500,
        max_steps=20_000,
        check_every=500,
        validation_per_length=8,
        test_per_length=8,
    ),
}


def preset(name: str, **overrides: Any) -> ExperimentConfig:
    """The preset called ``name`` with fields replaced by ``overrides``.

    Raises:
      ValueError: for an unknown preset or field.
    """
    if name not in PRESETS:
        raise ValueError(f"preset(name={name!r}): unknown preset; choose one of {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"preset(overrides={sorted(unknown)}): unknown fields; allowed: {sorted(fields)}")
    return dataclasses.replace(PRESETS[name], **overrides)
