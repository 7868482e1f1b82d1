"""Positional schemes as Flax NNX modules.

Every scheme implements :class:`PositionalScheme`: ``embed``, ``rotate`` and ``attention_bias``. A model
written against those three methods takes any scheme, so swapping one encoding for another is a one-line
change. The modules hold configuration (and, for :class:`Learned`, the table) and call the package's pure
functions; :mod:`posenc_jax.linen` has the same classes for Linen, producing the same numbers.

>>> from flax import nnx
>>> import jax.numpy as jnp
>>> x = jnp.zeros((2, 5, 8))  # [batch, length, dim]
>>> Sinusoidal(8)(x).shape
(2, 5, 8)
>>> Learned(16, 8, rngs=nnx.Rngs(0))(x, positions=jnp.arange(3, 8)).shape
(2, 5, 8)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from posenc_jax import schemes
from posenc_jax.layouts import Layout

__all__ = [
    "ALiBi",
    "Learned",
    "NoPosition",
    "PositionalScheme",
    "Rotary",
    "Sinusoidal",
    "T5Bias",
    "TransformerXLRelative",
]

#: The default initializer of :class:`Learned` tables: normal with standard deviation 0.02.
DEFAULT_LEARNED_INIT = nnx.initializers.normal(stddev=0.02)


class PositionalScheme(schemes.SchemeDefaults, nnx.Module):
    """The protocol every positional scheme implements; the defaults contribute nothing.

    Subclasses override the methods their scheme needs. Shapes: ``x`` ``[batch, length, dim]`` (or
    ``[length, dim]``), ``q`` / ``k`` ``[batch, length, heads, head_dim]``, positions ``[length]`` or
    ``[batch, length]`` (``None`` means ``0 … length-1``).
    """


class NoPosition(PositionalScheme):
    """The baseline: no positional information at all (``embed``/``rotate`` identity, no bias).

    >>> NoPosition()(jnp.ones((1, 3, 4))).sum()
    Array(12., dtype=float32)
    """

    def __call__(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """Returns ``x`` unchanged (after checking its shape like the absolute schemes do)."""
        return self.embed(x, positions)

    def __repr__(self) -> str:
        return "NoPosition(adds nothing: embed and rotate are identities, attention_bias is None)"

    __str__ = __repr__  # nnx.Module's own __str__ would print a bare "NoPosition()"


class Sinusoidal(PositionalScheme):
    """The fixed sinusoidal encoding of "Attention is all you need", added to the token embeddings.

    No parameters. Calls :func:`posenc_jax.sinusoidal` (or :func:`posenc_jax.sinusoidal_table` for the
    default positions ``0 … length-1``), accurate at any position.

    Args:
      dim: the model width (positive, even).
      base: the geometric base of the frequencies.
      layout: ``"interleaved"`` (paper) or ``"split"`` (sines first, then cosines).
      frequencies: optional explicit ``[dim // 2]`` frequencies (concrete), overriding ``base``.
      dtype: computation and output dtype of ``embed`` / ``encode``. ``None``: ``embed`` returns ``x``'s
        dtype and ``encode`` float32. The encoding is always computed in float32 and rounded once.

    Raises:
      ValueError, TypeError: bad ``dim``, ``base``, ``layout``, ``frequencies`` or ``dtype``.

    >>> Sinusoidal(4).encode(jnp.arange(2)).round(3)
    Array([[0.   , 1.   , 0.   , 1.   ],
           [0.841, 0.54 , 0.01 , 1.   ]], dtype=float32)
    """

    def __init__(
        self,
        dim: int,
        *,
        base: float = 10_000.0,
        layout: Layout = "interleaved",
        frequencies: Any = None,
        dtype: Any = jnp.float32,
    ):
        self.frequencies = schemes.sinusoidal_config(dim, base, layout, frequencies, dtype, "Sinusoidal")
        self.dim = int(dim)
        self.base = float(base)
        self.layout = layout
        self.dtype = dtype

    def encode(self, positions: jax.Array) -> jax.Array:
        """The encoding alone: ``positions.shape + (dim,)`` of ``dtype`` (float32 when None)."""
        return schemes.sinusoidal_encode(
            positions, self.dim, self.base, self.layout, self.frequencies, self.dtype
        )

    def embed(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """``x + encoding(positions)``; ``x`` ``[batch, length, dim]`` or ``[length, dim]``."""
        return schemes.sinusoidal_embed(
            x, positions, self.dim, self.base, self.layout, self.frequencies, self.dtype, "Sinusoidal"
        )

    def __call__(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """Same as :meth:`embed`."""
        return self.embed(x, positions)


class Learned(PositionalScheme):
    """A trainable table of ``max_length`` position vectors, added to the token embeddings.

    The table is ``nnx.Param`` ``embedding`` of shape ``[max_length, dim]`` and ``param_dtype``. Positions
    outside ``[0, max_length)`` never silently reuse a row: a static length above ``max_length`` raises
    ``ValueError`` at trace time, and explicit positions follow ``out_of_range`` (see
    :mod:`posenc_jax.learned`): ``"error"`` raises (at run time under ``jit``), ``"clip"`` clamps,
    ``"wrap"`` takes them modulo ``max_length``.

    Args:
      max_length: number of rows (positive).
      dim: the model width (positive).
      init: initializer of the table (``nnx.with_partitioning`` works for sharded tables).
      dtype: computation / output dtype as in ``nnx.Embed``; ``None`` promotes ``x`` and the table.
      param_dtype: the table's dtype.
      out_of_range: ``"error"``, ``"clip"`` or ``"wrap"``.
      rngs: random streams; the table is drawn from ``rngs.params()``.

    Raises:
      ValueError, TypeError: non-positive ``max_length`` / ``dim``, unknown ``out_of_range``, bad dtypes.

    >>> from flax import nnx
    >>> Learned(8, 4, rngs=nnx.Rngs(0)).encode(jnp.array([0, 7])).shape
    (2, 4)
    """

    def __init__(
        self,
        max_length: int,
        dim: int,
        *,
        init: nnx.Initializer = DEFAULT_LEARNED_INIT,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        out_of_range: str = "error",
        rngs: nnx.Rngs,
    ):
        schemes.learned_config(max_length, dim, dtype, param_dtype, out_of_range, "Learned")
        self.max_length = int(max_length)
        self.dim = int(dim)
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.out_of_range = out_of_range
        self.embedding = nnx.Param(init(rngs.params(), (self.max_length, self.dim), param_dtype))

    def encode(self, positions: jax.Array) -> jax.Array:
        """The rows for integer ``positions``: ``positions.shape + (dim,)``."""
        return schemes.learned_encode(self.embedding[...], positions, self.dtype, self.out_of_range, "Learned")

    def embed(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """``x + table[positions]``; ``x`` ``[batch, length, dim]`` or ``[length, dim]``."""
        return schemes.learned_embed(
            x, positions, self.embedding[...], self.dtype, self.out_of_range, "Learned"
        )

    def __call__(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """Same as :meth:`embed`."""
        return self.embed(x, positions)


class Rotary(PositionalScheme):
    """Rotary position embeddings: rotates queries and keys by their positions (:func:`apply_rotary`).

    Args:
      head_dim: features per head (positive, even).
      base: ``theta`` of the frequencies ``w_i = base ** (-2i / rotary_dim)``.
      layout: ``"interleaved"`` (GPT-J, original LLaMA) or ``"split"`` (GPT-NeoX, Hugging Face, Gemma).
      scale: position interpolation factor (positions divided by ``scale``).
      rotary_dim: rotate only the first ``rotary_dim`` features of each head (default: all).
      frequencies: optional explicit ``[rotary_dim // 2]`` frequencies.

    Raises:
      ValueError, TypeError: bad ``head_dim``, ``rotary_dim``, ``layout``, ``base``, ``scale`` or
        ``frequencies``.

    >>> q = k = jnp.ones((1, 3, 2, 8))
    >>> [a.shape for a in Rotary(8).rotate(q, k)]
    [(1, 3, 2, 8), (1, 3, 2, 8)]
    """

    def __init__(
        self,
        head_dim: int,
        *,
        base: float = 10_000.0,
        layout: Layout = "interleaved",
        scale: float = 1.0,
        rotary_dim: int | None = None,
        frequencies: Any = None,
    ):
        self.frequencies = schemes.rotary_config(
            head_dim, base, layout, scale, rotary_dim, frequencies, "Rotary"
        )
        self.head_dim = int(head_dim)
        self.base = float(base)
        self.layout = layout
        self.scale = float(scale)
        self.rotary_dim = None if rotary_dim is None else int(rotary_dim)

    def _config(self):
        return (self.head_dim, self.base, self.layout, self.scale, self.rotary_dim, self.frequencies)

    def rotate(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None = None,
        k_positions: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Rotates ``q`` ``[batch, q_len, heads, head_dim]`` and ``k`` by their positions."""
        return schemes.rotary_rotate(q, k, q_positions, k_positions, *self._config(), "Rotary.rotate")

    def __call__(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """Rotates one tensor ``[batch, length, heads, head_dim]`` (default positions ``0 … length-1``)."""
        return schemes.rotary_apply(x, positions, *self._config(), "Rotary")


class ALiBi(PositionalScheme):
    """ALiBi: a per-head linear distance penalty on attention logits (:func:`alibi_bias`).

    Args:
      num_heads: number of attention heads (positive).
      causal: ``True``: ``-m_h (i - j)`` for ``j <= i``, 0 above the diagonal (mask it separately);
        ``False``: ``-m_h |i - j|``.

    Raises:
      ValueError, TypeError: ``num_heads <= 0`` or not an int, non-bool ``causal``.

    >>> ALiBi(4).attention_bias(jnp.arange(3), jnp.arange(3)).shape
    (1, 4, 3, 3)
    """

    def __init__(self, num_heads: int, *, causal: bool = True):
        schemes.alibi_config(num_heads, causal, "ALiBi")
        self.num_heads = int(num_heads)
        self.causal = causal

    def attention_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """The bias ``[batch or 1, num_heads, q_len, k_len]`` float32."""
        return schemes.alibi_attention_bias(q_positions, k_positions, self.num_heads, self.causal)

    def __call__(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """Same as :meth:`attention_bias`."""
        return self.attention_bias(q_positions, k_positions)


class T5Bias(PositionalScheme):
    """T5's relative attention bias: a learned scalar per head and bucket of ``k_pos - q_pos``.

    The table is ``nnx.Param`` ``embedding`` ``[num_buckets, num_heads]``; :meth:`attention_bias` gathers it
    by :func:`posenc_jax.t5_buckets` (Raffel et al. 2020). T5 shares one table across its layers and adds
    the bias to unscaled logits; a model decides both.

    Args:
      num_heads: attention heads (positive).
      bidirectional: ``True`` for an encoder, ``False`` for a decoder (keyword, no default).
      num_buckets: buckets per head (32 in T5).
      max_distance: distances from here on share the last bucket (128 in T5).
      embedding_init: initializer of the table (default: T5X's, uniform of variance 1 / fan_avg).
      dtype: the bias's dtype; ``None`` (default) keeps the table's.
      param_dtype: the table's dtype.
      rngs: random streams (keyword-only); the table is drawn from ``rngs.params()``.

    Raises:
      ValueError, TypeError: as :class:`posenc_jax.schemes.T5BucketBias`.

    >>> from flax import nnx
    >>> T5Bias(4, bidirectional=True, rngs=nnx.Rngs(0)).attention_bias(jnp.arange(3), jnp.arange(3)).shape
    (1, 4, 3, 3)
    """

    def __init__(
        self,
        num_heads: int,
        *,
        bidirectional: bool,
        num_buckets: int = 32,
        max_distance: int = 128,
        embedding_init: nnx.Initializer = schemes.T5_EMBEDDING_INIT,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.scheme = schemes.T5BucketBias(
            num_heads,
            bidirectional=bidirectional,
            num_buckets=num_buckets,
            max_distance=max_distance,
            dtype=dtype,
            param_dtype=param_dtype,
        )
        self.embedding = nnx.Param(embedding_init(rngs.params(), self.scheme.table_shape, param_dtype))

    def attention_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """The bias ``[batch or 1, num_heads, q_len, k_len]`` for integer positions."""
        return self.scheme.attention_bias(self.embedding[...], q_positions, k_positions)

    def __call__(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """Same as :meth:`attention_bias`."""
        return self.attention_bias(q_positions, k_positions)


class TransformerXLRelative(PositionalScheme):
    """Transformer-XL's relative attention (Dai et al. 2019): a content-dependent term of the logits.

    :meth:`attention_logits_bias` returns ``scale * ((q_i + v)·W_R R_{i-j} + u·k_j)``
    (:func:`posenc_jax.transformer_xl_logits`), which attention adds to ``scale * q·k``. Parameters:
    ``kernel`` (``W_R``, ``[rel_dim, num_heads, head_dim]``), ``content_bias`` (``u``) and
    ``position_bias`` (``v``), both ``[num_heads, head_dim]``. Works with any positions (randomized ones
    included); ``None`` for both means ``0 … length-1`` and takes the cheaper relative-shift route.

    Args:
      num_heads: query heads (positive).
      head_dim: features per head (positive).
      rel_dim: width of the relative sinusoid (even); ``None``: ``num_heads * head_dim``.
      base: geometric base of the sinusoid's frequencies.
      scale: factor of the term, equal to the attention's scale; ``None``: ``1 / sqrt(head_dim)``.
      kernel_init: initializer of ``W_R`` (default: variance ``1 / rel_dim``).
      bias_init: initializer of ``u`` and ``v`` (default: zeros).
      dtype: computation and output dtype; ``None`` (default) follows the queries.
      param_dtype: the parameters' dtype.
      rngs: random streams (keyword-only).

    Raises:
      ValueError, TypeError: as :class:`posenc_jax.schemes.TransformerXLLogits`.

    >>> from flax import nnx
    >>> q = k = jnp.ones((1, 3, 2, 4))
    >>> TransformerXLRelative(2, 4, rngs=nnx.Rngs(0)).attention_logits_bias(q, k, None, None).shape
    (1, 2, 3, 3)
    """

    def __init__(
        self,
        num_heads: int,
        head_dim: int,
        *,
        rel_dim: int | None = None,
        base: float = 10_000.0,
        scale: float | None = None,
        kernel_init: nnx.Initializer = schemes.TRANSFORMER_XL_KERNEL_INIT,
        bias_init: nnx.Initializer = nnx.initializers.zeros,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.scheme = schemes.TransformerXLLogits(
            num_heads, head_dim, rel_dim=rel_dim, base=base, scale=scale, dtype=dtype, param_dtype=param_dtype
        )
        self.kernel = nnx.Param(kernel_init(rngs.params(), self.scheme.kernel_shape, param_dtype))
        self.content_bias = nnx.Param(bias_init(rngs.params(), self.scheme.bias_shape, param_dtype))
        self.position_bias = nnx.Param(bias_init(rngs.params(), self.scheme.bias_shape, param_dtype))

    def attention_logits_bias(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None,
        k_positions: jax.Array | None,
    ) -> jax.Array:
        """The term ``[batch, num_heads, q_len, k_len]`` for queries and keys at their positions."""
        params = (self.kernel[...], self.content_bias[...], self.position_bias[...])
        return self.scheme.attention_logits_bias(params, q, k, q_positions, k_positions)

    def __call__(self, q, k, q_positions=None, k_positions=None) -> jax.Array:
        """Same as :meth:`attention_logits_bias`."""
        return self.attention_logits_bias(q, k, q_positions, k_positions)
