"""What every positional scheme does, written once for the NNX and the Linen modules.

A scheme answers three questions, and the model that holds it never needs to know which scheme it is:

* ``embed(x, positions)``: what to add to the token embeddings ``x`` ``[batch, length, dim]``;
* ``rotate(q, k, q_positions, k_positions)``: how to transform queries and keys
  ``[batch, length, heads, head_dim]``;
* ``attention_bias(q_positions, k_positions)``: what to add to the attention logits
  (``[batch or 1, heads, q_len, k_len]`` float32), or ``None``.

Absolute schemes (sinusoidal, learned) implement ``embed``; rotary implements ``rotate``; ALiBi implements
``attention_bias``; the others are identities / ``None``. The functions here validate arguments and call the
pure functions of the package; the modules in :mod:`posenc_jax.nnx` and :mod:`posenc_jax.linen` are thin
holders around them, so both APIs produce the same numbers.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax.alibi import alibi_bias
from posenc_jax.angles import check_positions
from posenc_jax.frequencies import check_base, check_dim, resolve_frequencies
from posenc_jax.layouts import check_layout
from posenc_jax.learned import check_max_length, check_out_of_range, lookup
from posenc_jax.relative import _check_int, _check_scale, _check_t5_config, t5_bias, transformer_xl_logits
from posenc_jax.rotary import apply_rotary, check_even, check_positions_shape, rotary_frequencies
from posenc_jax.sinusoidal import check_dtype, sinusoidal, sinusoidal_table

__all__ = [
    "check_embed_input",
    "embed_positions",
    "add_encoding",
    "sinusoidal_config",
    "sinusoidal_encode",
    "sinusoidal_embed",
    "learned_config",
    "learned_encode",
    "learned_embed",
    "identity_embed",
    "identity_rotate",
    "SchemeDefaults",
    "rotary_config",
    "rotary_rotate",
    "rotary_apply",
    "alibi_config",
    "alibi_attention_bias",
    "T5BucketBias",
    "TransformerXLLogits",
]


# ----------------------------------------------------------------------------------------------- inputs


def check_embed_input(x: object, caller: str, dim: int | None = None) -> None:
    """``x`` must be a floating ``[batch, length, dim]`` or ``[length, dim]`` array (last axis ``dim``)."""
    shape = tuple(getattr(x, "shape", np.shape(x)))
    dtype = getattr(x, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{caller}(x dtype={dtype}): x must be a floating array of token embeddings")
    if len(shape) not in (2, 3):
        raise ValueError(
            f"{caller}(x shape={shape}): x must have shape [batch, length, dim] or [length, dim] "
            f"(rank 2 or 3), got rank {len(shape)}"
        )
    if dim is not None and shape[-1] != dim:
        raise ValueError(
            f"{caller}(x shape={shape}): the last axis of x must equal the module's dim={dim}, got {shape[-1]}"
        )


def embed_positions(x: jax.Array, positions: object, caller: str, *, integer: bool = False) -> jax.Array:
    """Validated positions for ``x``; ``None`` means ``0 … length-1`` along ``x``'s length axis."""
    leading = tuple(x.shape[:-1])
    if positions is None:
        return jnp.arange(leading[-1], dtype=jnp.int32)
    if integer:
        dtype = getattr(positions, "dtype", None)
        if dtype is None:
            dtype = np.asarray(positions).dtype
        if dtype == np.bool_ or not jnp.issubdtype(dtype, jnp.integer):
            raise TypeError(
                f"{caller}(positions dtype={dtype}): positions must be integers for a learned table"
            )
        positions = jnp.asarray(positions) if not isinstance(positions, jax.Array) else positions
    else:
        positions = check_positions(positions, caller)
    check_positions_shape(tuple(positions.shape), leading, caller)
    return positions


def add_encoding(x: jax.Array, encoding: jax.Array, dtype: object) -> jax.Array:
    """``x + encoding`` computed in ``dtype``, or in the promoted dtype of both when ``dtype`` is None."""
    out_dtype = jnp.promote_types(x.dtype, encoding.dtype) if dtype is None else dtype
    return x.astype(out_dtype) + encoding.astype(out_dtype)


def identity_embed(x: jax.Array, positions: object, caller: str) -> jax.Array:
    """Validates like an absolute scheme would, then returns ``x`` unchanged."""
    check_embed_input(x, caller)
    embed_positions(x, positions, caller)
    return x


def _check_qk(q: object, k: object, caller: str, head_dim: int | None = None) -> None:
    for name, value in (("q", q), ("k", k)):
        shape = tuple(getattr(value, "shape", np.shape(value)))
        if len(shape) != 4:
            raise ValueError(
                f"{caller}({name} shape={shape}): {name} must have shape [batch, length, heads, head_dim]"
            )
        if head_dim is not None and shape[-1] != head_dim:
            raise ValueError(
                f"{caller}({name} shape={shape}): the last axis of {name} must equal the module's "
                f"head_dim={head_dim}, got {shape[-1]}"
            )


def identity_rotate(q, k, q_positions, k_positions, caller: str):
    """Validates query/key shapes, then returns ``(q, k)`` unchanged."""
    _check_qk(q, k, caller)
    return q, k


def _check_dtype_or_none(dtype: object, caller: str) -> np.dtype | None:
    return None if dtype is None else check_dtype(dtype, caller)


# ------------------------------------------------------------------------------------------ sinusoidal


def sinusoidal_config(dim, base, layout, frequencies, dtype, caller: str):
    """Validates the sinusoidal module's fields; returns ``frequencies`` as a static tuple (or None)."""
    resolved = resolve_frequencies(dim, base=base, frequencies=frequencies, caller=caller)
    check_layout(layout, caller)
    _check_dtype_or_none(dtype, caller)
    return None if frequencies is None else tuple(resolved.tolist())


def sinusoidal_encode(positions, dim, base, layout, frequencies, dtype) -> jax.Array:
    """The sinusoidal encoding ``positions.shape + (dim,)``, float32 when ``dtype`` is None."""
    return sinusoidal(
        positions,
        dim,
        base=base,
        layout=layout,
        frequencies=None if frequencies is None else np.asarray(frequencies, dtype=np.float64),
        dtype=jnp.float32 if dtype is None else dtype,
    )


def sinusoidal_embed(x, positions, dim, base, layout, frequencies, dtype, caller: str) -> jax.Array:
    """``x + sinusoidal encoding`` in ``dtype`` (``x``'s dtype when None)."""
    check_embed_input(x, caller, dim)
    out_dtype = x.dtype if dtype is None else dtype
    freqs = None if frequencies is None else np.asarray(frequencies, dtype=np.float64)
    if positions is None:
        encoding = sinusoidal_table(
            x.shape[-2], dim, base=base, layout=layout, frequencies=freqs, dtype=jnp.float32
        )
    else:
        positions = embed_positions(x, positions, caller)
        encoding = sinusoidal_encode(positions, dim, base, layout, frequencies, jnp.float32)
    return add_encoding(x, encoding, out_dtype)


# --------------------------------------------------------------------------------------------- learned


def learned_config(max_length, dim, dtype, param_dtype, out_of_range, caller: str) -> None:
    """Validates the learned module's fields."""
    check_max_length(max_length, caller)
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or int(dim) <= 0:
        raise ValueError(f"{caller}(dim={dim!r}): dim must be a positive integer")
    _check_dtype_or_none(dtype, caller)
    check_dtype(param_dtype, f"{caller}(param_dtype)")
    check_out_of_range(out_of_range, caller)


def learned_encode(table, positions, dtype, out_of_range, caller: str) -> jax.Array:
    """Rows of the table for integer ``positions`` (policy ``out_of_range``), cast to ``dtype`` if set."""
    encoding = lookup(table, positions, out_of_range=out_of_range, caller=caller)
    return encoding if dtype is None else encoding.astype(dtype)


def learned_embed(x, positions, table, dtype, out_of_range, caller: str) -> jax.Array:
    """``x + table[positions]``; a static length beyond the table raises ``ValueError`` at trace time."""
    max_length, dim = table.shape
    check_embed_input(x, caller, dim)
    if positions is None and x.shape[-2] > max_length:
        raise ValueError(
            f"{caller}(x shape={tuple(x.shape)}): sequence length {x.shape[-2]} exceeds "
            f"max_length={max_length} of the learned table"
        )
    positions = embed_positions(x, positions, caller, integer=True)
    encoding = learned_encode(table, positions, dtype, out_of_range, caller)
    return add_encoding(x, encoding, dtype)


# ---------------------------------------------------------------------------------------------- rotary


def rotary_config(head_dim, base, layout, scale, rotary_dim, frequencies, caller: str):
    """Validates the rotary module's fields; returns ``frequencies`` as a static tuple (or None)."""
    head_dim = check_even(head_dim, caller, "head_dim")
    dim = head_dim if rotary_dim is None else check_even(rotary_dim, caller, "rotary_dim")
    if dim > head_dim:
        raise ValueError(f"{caller}(rotary_dim={rotary_dim}): rotary_dim must be <= head_dim={head_dim}")
    check_layout(layout, caller)
    rotary_frequencies(dim, base=base, frequencies=frequencies, scale=scale, caller=caller)
    if frequencies is None:
        return None
    return tuple(np.asarray(frequencies, dtype=np.float64).tolist())


def _default_positions(positions, length: int):
    return jnp.arange(length, dtype=jnp.int32) if positions is None else positions


def rotary_apply(x, positions, head_dim, base, layout, scale, rotary_dim, frequencies, caller: str):
    """Rotates one ``[batch, length, heads, head_dim]`` tensor (default positions ``0 … length-1``)."""
    shape = tuple(getattr(x, "shape", np.shape(x)))
    if len(shape) != 4 or shape[-1] != head_dim:
        raise ValueError(
            f"{caller}(x shape={shape}): x must have shape [batch, length, heads, head_dim={head_dim}]"
        )
    return apply_rotary(
        x,
        _default_positions(positions, shape[1]),
        base=base,
        layout=layout,
        frequencies=None if frequencies is None else np.asarray(frequencies, dtype=np.float64),
        scale=scale,
        rotary_dim=rotary_dim,
    )


def rotary_rotate(
    q, k, q_positions, k_positions, head_dim, base, layout, scale, rotary_dim, frequencies, caller: str
):
    """Rotates queries and keys by their own positions."""
    _check_qk(q, k, caller, head_dim)
    config = (head_dim, base, layout, scale, rotary_dim, frequencies, caller)
    return rotary_apply(q, q_positions, *config), rotary_apply(k, k_positions, *config)


# ----------------------------------------------------------------------------------------------- alibi


def alibi_config(num_heads, causal, caller: str) -> None:
    """Validates the ALiBi module's fields."""
    if isinstance(num_heads, bool) or not isinstance(num_heads, numbers.Integral):
        raise TypeError(f"{caller}(num_heads={num_heads!r}): num_heads must be a positive Python int")
    if int(num_heads) <= 0:
        raise ValueError(f"{caller}(num_heads={num_heads}): num_heads must be a positive integer")
    if not isinstance(causal, bool):
        raise TypeError(f"{caller}(causal={causal!r}): causal must be a Python bool")


def alibi_attention_bias(q_positions, k_positions, num_heads, causal) -> jax.Array:
    """The ALiBi bias ``[batch or 1, num_heads, q_len, k_len]`` float32."""
    return alibi_bias(num_heads, q_positions, k_positions, causal=causal)


class SchemeDefaults:
    """The three protocol methods with the defaults of a scheme that contributes nothing.

    Mixed into ``posenc_jax.nnx.PositionalScheme`` and ``posenc_jax.linen.PositionalScheme`` so both APIs
    share one definition; each scheme overrides the methods it needs.
    """

    def embed(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """Returns ``x`` plus the scheme's absolute encoding (here: ``x`` unchanged).

        Args:
          x: token embeddings ``[batch, length, dim]`` or ``[length, dim]``.
          positions: ``[length]`` or ``[batch, length]``; ``None`` means ``0 … length-1``.

        Returns:
          An array of the shape of ``x``.
        """
        return identity_embed(x, positions, f"{type(self).__name__}.embed")

    def rotate(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None = None,
        k_positions: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Returns queries and keys transformed by the scheme (here: unchanged).

        Args:
          q: queries ``[batch, q_len, heads, head_dim]``.
          k: keys ``[batch, k_len, heads, head_dim]``.
          q_positions: ``[q_len]`` or ``[batch, q_len]``; ``None`` means ``0 … q_len-1``.
          k_positions: ``[k_len]`` or ``[batch, k_len]``; ``None`` means ``0 … k_len-1``.

        Returns:
          ``(q, k)`` with their input shapes.
        """
        return identity_rotate(q, k, q_positions, k_positions, f"{type(self).__name__}.rotate")

    def attention_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array | None:
        """Returns the bias to add to attention logits ``[batch or 1, heads, q_len, k_len]``, or ``None``.

        Args:
          q_positions: ``[q_len]`` or ``[batch, q_len]``.
          k_positions: ``[k_len]`` or ``[batch, k_len]``.

        Returns:
          ``None`` here: the scheme adds no bias.
        """
        return None

    def attention_logits_bias(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None,
        k_positions: jax.Array | None,
    ) -> jax.Array | None:
        """Returns a content-dependent logits term ``[batch, heads, q_len, k_len]``, or ``None``.

        The hook for relative schemes whose term depends on the (rotated) queries and keys as well as on
        positions (Transformer-XL's ``q·R_{i-j}``): attention adds it, beside :meth:`attention_bias`, to the
        scaled logits ``q·k / sqrt(head_dim)``.

        Args:
          q: queries ``[batch, q_len, heads, head_dim]`` (after :meth:`rotate`).
          k: keys ``[batch, k_len, kv_heads, head_dim]`` (after :meth:`rotate`).
          q_positions: ``[q_len]`` or ``[batch, q_len]``.
          k_positions: ``[k_len]`` or ``[batch, k_len]``.

        Returns:
          ``None`` here: the logits depend on positions only through ``rotate`` / ``attention_bias``.
        """
        return None


# ------------------------------------------------------------------------------------ relative schemes


def _check_optional_dtype(dtype: object, caller: str) -> None:
    if dtype is not None:
        check_dtype(dtype, caller)


#: The initial T5 bias table: uniform with variance 1 / fan_avg, as in the T5X reference implementation.
T5_EMBEDDING_INIT = jax.nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
#: The initial Transformer-XL projection ``W_R`` ``[rel_dim, heads, head_dim]``: variance 1 / rel_dim (LeCun
#: normal over its input, the sinusoid), as Flax's ``DenseGeneral`` initializes a kernel of that shape.
TRANSFORMER_XL_KERNEL_INIT = jax.nn.initializers.variance_scaling(
    1.0, "fan_in", "truncated_normal", in_axis=0, out_axis=(1, 2)
)


@dataclasses.dataclass(frozen=True)
class T5BucketBias:
    """What the T5 bias modules share: their checked configuration and the bias given their table.

    Not a scheme by itself: the table ``[num_buckets, num_heads]`` is a parameter that
    :class:`posenc_jax.nnx.T5Bias` and :class:`posenc_jax.linen.T5Bias` hold and pass in.

    Attributes:
      num_heads: attention heads (positive).
      bidirectional: ``True`` for an encoder (keys before and after a query get separate buckets),
        ``False`` for a decoder; no default, since either is silently wrong in the other setting.
      num_buckets: buckets per head (see :func:`posenc_jax.t5_buckets`).
      max_distance: distances from here on share the last bucket.
      dtype: the bias's dtype; ``None`` keeps the table's.
      param_dtype: the table's dtype.

    Raises:
      TypeError, ValueError: as :func:`posenc_jax.t5_buckets`, for ``num_heads`` and for the dtypes.
    """

    num_heads: int
    _: dataclasses.KW_ONLY
    bidirectional: bool
    num_buckets: int = 32
    max_distance: int = 128
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        caller = "T5Bias"
        object.__setattr__(self, "num_heads", _check_int(self.num_heads, caller, "num_heads", 1))
        _check_t5_config(self.num_buckets, self.max_distance, self.bidirectional, caller)
        _check_optional_dtype(self.dtype, caller)
        check_dtype(self.param_dtype, f"{caller}(param_dtype)")

    @property
    def table_shape(self) -> tuple[int, int]:
        """``(num_buckets, num_heads)``."""
        return (int(self.num_buckets), self.num_heads)

    def attention_bias(self, table: jax.Array, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """``table[bucket(k_pos - q_pos)]`` as ``[batch or 1, num_heads, q_len, k_len]``."""
        bias = t5_bias(
            table, q_positions, k_positions, max_distance=self.max_distance, bidirectional=self.bidirectional
        )
        return bias if self.dtype is None else bias.astype(self.dtype)


@dataclasses.dataclass(frozen=True)
class TransformerXLLogits:
    """What the Transformer-XL modules share: their checked configuration and the logits term given their
    parameters (see :func:`posenc_jax.transformer_xl_logits`).

    Attributes:
      num_heads: query heads (positive).
      head_dim: features per head (positive).
      rel_dim: width of the relative sinusoid ``R`` (positive, even); ``None`` means
        ``num_heads * head_dim``, the model width, as in the paper.
      base: geometric base of the sinusoid's frequencies.
      scale: factor of the term; ``None`` means ``1 / sqrt(head_dim)``. It must equal the attention's scale of
        ``q·k`` (the paper scales the whole score), which is ``1 / sqrt(head_dim)`` by default everywhere.
      dtype: computation and output dtype; ``None`` follows the queries' dtype.
      param_dtype: dtype of ``W_R``, ``u`` and ``v``.

    Raises:
      TypeError, ValueError: non-positive sizes, an odd ``rel_dim``, a bad ``base``, ``scale`` or dtype.
    """

    num_heads: int
    head_dim: int
    _: dataclasses.KW_ONLY
    rel_dim: int | None = None
    base: float = 10_000.0
    scale: float | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        caller = "TransformerXLRelative"
        num_heads = _check_int(self.num_heads, caller, "num_heads", 1)
        head_dim = _check_int(self.head_dim, caller, "head_dim", 1)
        rel_dim = num_heads * head_dim if self.rel_dim is None else self.rel_dim
        rel_dim = check_dim(rel_dim, caller, "rel_dim")
        check_base(self.base, caller)
        _check_scale(self.scale, caller)
        _check_optional_dtype(self.dtype, caller)
        check_dtype(self.param_dtype, f"{caller}(param_dtype)")
        object.__setattr__(self, "num_heads", num_heads)
        object.__setattr__(self, "head_dim", head_dim)
        object.__setattr__(self, "rel_dim", int(rel_dim))
        object.__setattr__(self, "base", float(self.base))

    @property
    def kernel_shape(self) -> tuple[int, int, int]:
        """``(rel_dim, num_heads, head_dim)``: the shape of ``W_R``."""
        return (self.rel_dim, self.num_heads, self.head_dim)

    @property
    def bias_shape(self) -> tuple[int, int]:
        """``(num_heads, head_dim)``: the shape of ``u`` and ``v``."""
        return (self.num_heads, self.head_dim)

    def attention_logits_bias(
        self,
        params: tuple[jax.Array, jax.Array, jax.Array],
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None,
        k_positions: jax.Array | None,
    ) -> jax.Array:
        """``scale * ((q_i + v)·W_R R_{i-j} + u·k_j)`` ``[batch, heads, q_len, k_len]``.

        Args:
          params: ``(kernel, content_bias, position_bias)``: ``W_R``, ``u`` and ``v``.
          q: queries ``[batch, q_len, num_heads, head_dim]``.
          k: keys ``[batch, k_len, kv_heads, head_dim]``.
          q_positions: ``[q_len]`` or ``[batch, q_len]``, or None with ``k_positions`` None for
            ``0 … length-1`` (then the relative-shift route runs).
          k_positions: ``[k_len]`` or ``[batch, k_len]``, or None.
        """
        caller = "TransformerXLRelative.attention_logits_bias"
        for name, value in (("q", q), ("k", k)):
            shape = tuple(getattr(value, "shape", np.shape(value)))
            if len(shape) != 4 or shape[-1] != self.head_dim or (name == "q" and shape[2] != self.num_heads):
                heads = self.num_heads if name == "q" else "kv_heads"
                raise ValueError(
                    f"{caller}({name} shape={shape}): {name} must have shape [batch, length, {heads}, "
                    f"{self.head_dim}] for num_heads={self.num_heads}, head_dim={self.head_dim}"
                )
        dtype = q.dtype if self.dtype is None else self.dtype
        kernel, content_bias, position_bias = (jnp.asarray(p).astype(dtype) for p in params)
        return transformer_xl_logits(
            q.astype(dtype),
            k.astype(dtype),
            q_positions,
            k_positions,
            kernel=kernel,
            u=content_bias,
            v=position_bias,
            base=self.base,
            scale=self.scale,
        )
