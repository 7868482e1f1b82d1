"""The compared positional schemes of the ordering experiment: how each one is built as a Flax module."""

from __future__ import annotations

import dataclasses

import flax.linen as nn

from experiments.ordering.model import ModelConfig
from posenc_jax import linen as schemes_linen

__all__ = ["SCHEMES", "RELATIVE_SCHEMES", "SchemeSpec", "scheme_spec"]


# One initializer object, so that equal configurations build equal (hashable, cache-friendly) modules.
_UNIT_NORMAL = nn.initializers.normal(stddev=1.0)


@dataclasses.dataclass(frozen=True)
class SchemeSpec:
    """How one compared scheme is built.

    Attributes:
      name: the scheme's name in tables.
      base: the positional module it uses (``none``, ``sinusoidal``, ``learned``, ``rotary``, ``alibi``,
        ``t5`` (T5's bucketed relative bias), ``relative`` (Transformer-XL's relative attention)).
      randomized: positions are a sorted random subset of ``[0, position_range)`` (drawn per example or
        once per batch), at training and at evaluation (Ruoss et al. 2023), instead of ``0, 1, …``.
    """

    name: str
    base: str
    randomized: bool

    def module(self, model: ModelConfig, *, mode: str, max_positions: int) -> nn.Module:
        """The Flax Linen scheme module for a model of size ``model`` in ``mode``.

        Args:
          model: the model size.
          mode: ``"encoder"`` (bidirectional ALiBi and T5 buckets) or ``"decoder"`` (causal ones).
          max_positions: rows of the learned table (`ExperimentConfig.table_rows`).
        """
        if self.base == "none":
            return schemes_linen.NoPosition()
        if self.base == "sinusoidal":
            return schemes_linen.Sinusoidal(model.width)
        if self.base == "learned":
            # Same initial scale as the token embeddings (unit variance). Positions are inside the table by
            # construction, and the data pipeline checks it for every batch (`check_positions`); the library's
            # default out-of-range policy (NaN rows, no host callback) would make any miss loud.
            return schemes_linen.Learned(max_positions, model.width, embedding_init=_UNIT_NORMAL)
        if self.base == "rotary":
            return schemes_linen.Rotary(model.head_dim, layout="interleaved")
        if self.base == "alibi":
            return schemes_linen.ALiBi(model.num_heads, is_causal=mode == "decoder")
        if self.base == "t5":
            return schemes_linen.T5Bias(model.num_heads, is_causal=mode == "decoder")
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

#: The relative-attention schemes, compared by the long presets (the quick one keeps its first-run budget).
RELATIVE_SCHEMES = ("t5", "relative", "randomized_relative")


def scheme_spec(name: str) -> SchemeSpec:
    """The scheme called ``name``.

    Raises:
      ValueError: for an unknown name.
    """
    if name not in SCHEMES:
        raise ValueError(f"scheme_spec(name={name!r}): unknown scheme; choose from {list(SCHEMES)}")
    return SCHEMES[name]
