"""The compared positional schemes of the ordering experiment: how each one is built as a Flax module."""

from __future__ import annotations

import dataclasses

import flax.linen as nn

from experiments.ordering.model import ModelConfig
from experiments.ordering.relative_map import RandomizedRelative
from posenc_jax import linen as schemes_linen

__all__ = ["LITERATURE_SCHEMES", "RELATIVE_SCHEMES", "SCHEMES", "SchemeSpec", "scheme_spec"]


# One initializer object, so that equal configurations build equal (hashable, cache-friendly) modules.
_UNIT_NORMAL = nn.initializers.normal(stddev=1.0)
# The reference code's (Haiku defaults): hk.Embed's truncated unit normal for learned tables; N(0, 0.02) for
# Transformer-XL's biases u and v; hk.Linear's truncated normal for W_R (fan-in: the sinusoid's width).
_TRUNCATED_UNIT_NORMAL = nn.initializers.truncated_normal(stddev=1.0)
_REFERENCE_BIAS = nn.initializers.normal(stddev=0.02)
_REFERENCE_KERNEL = nn.initializers.variance_scaling(
    0.87962566103423978**2, "fan_in", "truncated_normal", in_axis=0, out_axis=(1, 2)
)


@dataclasses.dataclass(frozen=True)
class SchemeSpec:
    """How one compared scheme is built.

    Attributes:
      name: the scheme's name in tables.
      base: the positional module it uses (``none``, ``sinusoidal``, ``learned``, ``rotary``, ``alibi``,
        ``t5`` (T5's bucketed relative bias), ``relative`` (Transformer-XL's relative attention),
        ``relative_map`` (the reference's randomized relative encoding, `experiments.ordering.relative_map`),
        ``kerple`` (Chi et al. 2022, log kernel), ``fire`` (Li et al. 2024), ``cope`` (Golovneva et al. 2024),
        ``xpos`` (Sun et al. 2022)).
      randomized: positions are a sorted random subset of ``[0, position_range)`` (drawn per example or
        once per batch), at training and at evaluation (Ruoss et al. 2023), instead of ``0, 1, …``; for
        ``relative_map`` the draw is the map of relative offsets and starts at 0.
      modes: the formats the scheme is trained in (the reference refuses its randomized relative encoding
        with causal attention).
      nope_every: ``k > 0``: every ``k``-th layer has no positional encoding (Llama 4's NoPE layers), the
        others the base scheme (one module shared by them); 0: every layer has the base scheme.
    """

    name: str
    base: str
    randomized: bool
    modes: tuple[str, ...] = ("encoder", "decoder")
    nope_every: int = 0

    @property
    def draw_starts_at_zero(self) -> bool:
        """Whether its randomized draws start at 0 (the offsets' map ``0 < r_1 < …``)."""
        return self.base == "relative_map"

    @property
    def absolute(self) -> bool:
        """An absolute scheme at positions ``0, 1, …`` (added to the embeddings, read at one position)."""
        return self.base in ("sinusoidal", "learned") and not self.randomized

    def module(self, model: ModelConfig, *, mode: str, max_positions: int) -> nn.Module | tuple[nn.Module, ...]:
        """The scheme module, or with ``nope_every`` the per-layer pattern (a tuple the model repeats)."""
        base = self._base_module(model, mode=mode, max_positions=max_positions)
        if not self.nope_every:
            return base
        return (base,) * (self.nope_every - 1) + (schemes_linen.NoPosition(),)

    def _base_module(self, model: ModelConfig, *, mode: str, max_positions: int) -> nn.Module:
        """The Flax Linen scheme module for a model of size ``model`` in ``mode``.

        Args:
          model: the model size.
          mode: ``"encoder"`` (bidirectional ALiBi and T5 buckets) or ``"decoder"`` (causal ones).
          max_positions: rows of the learned table (`ExperimentConfig.table_rows`).

        With ``model.init == "reference"`` the parameters start as the reference code's do (Haiku's
        defaults); otherwise as below.
        """
        reference = model.init == "reference"
        if self.base == "none":
            return schemes_linen.NoPosition()
        if self.base == "sinusoidal":
            # The reference concatenates the sines and the cosines ("split").
            return schemes_linen.Sinusoidal(model.width, layout="split" if reference else "interleaved")
        if self.base == "learned":
            # Same initial scale as the token embeddings (unit variance). Positions are inside the table by
            # construction, and the data pipeline checks it for every batch (`check_positions`); the library's
            # default out-of-range policy (NaN rows, no host callback) would make any miss loud.
            init = _TRUNCATED_UNIT_NORMAL if reference else _UNIT_NORMAL
            return schemes_linen.Learned(max_positions, model.width, embedding_init=init)
        if self.base == "rotary":
            return schemes_linen.Rotary(model.head_dim, layout="interleaved")
        if self.base == "alibi":
            return schemes_linen.ALiBi(model.num_heads, is_causal=mode == "decoder")
        if self.base == "t5":
            return schemes_linen.T5Bias(model.num_heads, is_causal=mode == "decoder")
        if self.base == "relative":
            if reference:
                return schemes_linen.TransformerXLRelative(
                    model.num_heads, model.head_dim, kernel_init=_REFERENCE_KERNEL, bias_init=_REFERENCE_BIAS
                )
            return schemes_linen.TransformerXLRelative(model.num_heads, model.head_dim)
        if self.base == "relative_map":
            if reference:
                return RandomizedRelative(
                    model.num_heads, model.head_dim, kernel_init=_REFERENCE_KERNEL, bias_init=_REFERENCE_BIAS
                )
            return RandomizedRelative(model.num_heads, model.head_dim)
        if self.base == "kerple":
            return schemes_linen.Kerple(model.num_heads, kernel="log")
        if self.base == "fire":
            return schemes_linen.FIRE(model.num_heads)
        if self.base == "cope":
            # Contextual positions count keys: at most the longest sequence, the learned table's rows.
            return schemes_linen.CoPE(max_positions, model.head_dim)
        if self.base == "xpos":
            # A fixed center: the decoding step caches keys after `rotate` (positions stay far inside R).
            return schemes_linen.XPos(model.head_dim, layout="split", center=0)
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
        # The reference's randomized relative encoding: Transformer-XL's relative attention reading a sorted
        # random map of relative offsets, drawn per layer and batch (encoder only, as in the reference).
        SchemeSpec("randomized_relative", "relative_map", True, ("encoder",)),
        # Transformer-XL's relative attention at randomized absolute positions: offsets are differences of
        # a sorted random draw (not the reference's method; kept as a variant).
        SchemeSpec("relative_at_random_positions", "relative", True),
        # The length-generalization literature's schemes, and no encoding every 2nd layer (Llama 4: every 4th).
        SchemeSpec("kerple", "kerple", False),
        SchemeSpec("fire", "fire", False),
        SchemeSpec("cope", "cope", False),
        SchemeSpec("xpos", "xpos", False),
        SchemeSpec("rotary_nope_every_2", "rotary", False, nope_every=2),
    )
}

#: The literature's schemes and the per-layer mix, compared by the wide preset (not by the long ones).
LITERATURE_SCHEMES = ("kerple", "fire", "cope", "xpos", "rotary_nope_every_2")

#: The relative-attention schemes, compared by the long presets (the quick one keeps its first-run budget).
RELATIVE_SCHEMES = ("t5", "relative", "randomized_relative", "relative_at_random_positions")


def scheme_spec(name: str) -> SchemeSpec:
    """The scheme called ``name``.

    Raises:
      ValueError: for an unknown name.
    """
    if name not in SCHEMES:
        raise ValueError(f"scheme_spec(name={name!r}): unknown scheme; choose from {list(SCHEMES)}")
    return SCHEMES[name]
