"""Positional schemes as Flax Linen modules: the classes of :mod:`posenc_jax.nnx`, same names, same numbers.

Constructor arguments become dataclass fields (no ``rngs``: :class:`Learned` draws its table in ``init``;
its initializer field is ``embedding_init``, since ``init`` is the name of ``Module.init`` in Linen).
Use them as submodules of a Linen model, or directly through ``init`` / ``apply``; methods other than
``__call__`` are reached with ``apply(..., method=...)`` or from a parent module.

>>> import jax
>>> import jax.numpy as jnp
>>> x = jnp.zeros((2, 5, 8))  # [batch, length, dim]
>>> Sinusoidal(8).apply({}, x).shape
(2, 5, 8)
>>> learned = Learned(16, 8)
>>> variables = learned.init(jax.random.key(0), x)
>>> learned.apply(variables, x, positions=jnp.arange(3, 8)).shape
(2, 5, 8)
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from posenc_jax import schemes

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


class PositionalScheme(schemes.SchemeDefaults, nn.Module):
    """The protocol every positional scheme implements; the defaults contribute nothing.

    Shapes: ``x`` ``[batch, length, dim]`` (or ``[length, dim]``), ``q`` / ``k``
    ``[batch, length, heads, head_dim]``, positions ``[length]`` or ``[batch, length]`` (``None`` means
    ``0 … length-1``).
    """


class NoPosition(PositionalScheme):
    """The baseline: no positional information at all (``embed``/``rotate`` identity, no bias).

    >>> NoPosition().apply({}, jnp.ones((1, 3, 4))).sum()
    Array(12., dtype=float32)
    """

    def __call__(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """Returns ``x`` unchanged (after checking its shape like the absolute schemes do)."""
        return self.embed(x, positions)

    def __repr__(self) -> str:
        return "NoPosition(adds nothing: embed and rotate are identities, attention_bias is None)"


class Sinusoidal(PositionalScheme):
    """The fixed sinusoidal encoding of "Attention is all you need", added to the token embeddings.

    No parameters. Fields as :class:`posenc_jax.nnx.Sinusoidal`.

    Attributes:
      dim: the model width (positive, even).
      base: the geometric base of the frequencies.
      layout: ``"interleaved"`` (paper) or ``"split"`` (sines first, then cosines).
      frequencies: optional explicit ``[dim // 2]`` frequencies (a tuple keeps the module hashable).
      dtype: computation and output dtype. ``None``: ``embed`` returns ``x``'s dtype, ``encode`` float32.

    >>> Sinusoidal(4).apply({}, jnp.arange(2), method="encode").shape
    (2, 4)
    """

    dim: int
    base: float = 10_000.0
    layout: str = "interleaved"
    frequencies: Any = None
    dtype: Any = jnp.float32

    def __post_init__(self):
        schemes.sinusoidal_config(self.dim, self.base, self.layout, self.frequencies, self.dtype, "Sinusoidal")
        super().__post_init__()

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

    The table is the parameter ``embedding`` ``[max_length, dim]`` of ``param_dtype``. Out-of-range
    positions follow ``out_of_range`` exactly as in :class:`posenc_jax.nnx.Learned`.

    Attributes:
      max_length: number of rows (positive).
      dim: the model width (positive).
      embedding_init: initializer of the table (``nn.with_partitioning`` works for sharded tables). The
        NNX module calls it ``init``; in Linen that name is taken by ``Module.init``.
      dtype: computation / output dtype as in ``nn.Embed``; ``None`` promotes ``x`` and the table.
      param_dtype: the table's dtype.
      out_of_range: ``"error"``, ``"clip"`` or ``"wrap"``.

    >>> module = Learned(8, 4)
    >>> variables = module.init(jax.random.key(0), jnp.zeros((1, 8, 4)))
    >>> variables["params"]["embedding"].shape
    (8, 4)
    """

    max_length: int
    dim: int
    embedding_init: Any = nn.initializers.normal(stddev=0.02)
    dtype: Any = None
    param_dtype: Any = jnp.float32
    out_of_range: str = "error"

    def __post_init__(self):
        schemes.learned_config(
            self.max_length, self.dim, self.dtype, self.param_dtype, self.out_of_range, "Learned"
        )
        super().__post_init__()

    def setup(self):
        self.embedding = self.param(
            "embedding", self.embedding_init, (self.max_length, self.dim), self.param_dtype
        )

    def encode(self, positions: jax.Array) -> jax.Array:
        """The rows for integer ``positions``: ``positions.shape + (dim,)``."""
        return schemes.learned_encode(
            jnp.asarray(self.embedding), positions, self.dtype, self.out_of_range, "Learned"
        )

    def embed(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """``x + table[positions]``; ``x`` ``[batch, length, dim]`` or ``[length, dim]``."""
        return schemes.learned_embed(
            x, positions, jnp.asarray(self.embedding), self.dtype, self.out_of_range, "Learned"
        )

    def __call__(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """Same as :meth:`embed`."""
        return self.embed(x, positions)


class Rotary(PositionalScheme):
    """Rotary position embeddings: rotates queries and keys by their positions (:func:`apply_rotary`).

    Attributes:
      head_dim: features per head (positive, even).
      base: ``theta`` of the frequencies ``w_i = base ** (-2i / rotary_dim)``.
      layout: ``"interleaved"`` (GPT-J, original LLaMA) or ``"split"`` (GPT-NeoX, Hugging Face, Gemma).
      scale: position interpolation factor (positions divided by ``scale``).
      rotary_dim: rotate only the first ``rotary_dim`` features of each head (default: all).
      frequencies: optional explicit ``[rotary_dim // 2]`` frequencies (a tuple keeps it hashable).

    >>> q = k = jnp.ones((1, 3, 2, 8))
    >>> [a.shape for a in Rotary(8).apply({}, q, k, method="rotate")]
    [(1, 3, 2, 8), (1, 3, 2, 8)]
    """

    head_dim: int
    base: float = 10_000.0
    layout: str = "interleaved"
    scale: float = 1.0
    rotary_dim: int | None = None
    frequencies: Any = None

    def __post_init__(self):
        schemes.rotary_config(
            self.head_dim,
            self.base,
            self.layout,
            self.scale,
            self.rotary_dim,
            self.frequencies,
            "Rotary",
        )
        super().__post_init__()

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

    Attributes:
      num_heads: number of attention heads (positive).
      causal: ``True``: ``-m_h (i - j)`` for ``j <= i``, 0 above the diagonal (mask it separately);
        ``False``: ``-m_h |i - j|``.

    >>> ALiBi(4).apply({}, jnp.arange(3), jnp.arange(3)).shape
    (1, 4, 3, 3)
    """

    num_heads: int
    causal: bool = True

    def __post_init__(self):
        schemes.alibi_config(self.num_heads, self.causal, "ALiBi")
        super().__post_init__()

    def attention_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """The bias ``[batch or 1, num_heads, q_len, k_len]`` float32."""
        return schemes.alibi_attention_bias(q_positions, k_positions, self.num_heads, self.causal)

    def __call__(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """Same as :meth:`attention_bias`."""
        return self.attention_bias(q_positions, k_positions)


class T5Bias(PositionalScheme):
    """T5's relative attention bias: a learned scalar per head and bucket of ``k_pos - q_pos``.

    The table is the parameter ``embedding`` ``[num_buckets, num_heads]``. Fields as
    :class:`posenc_jax.nnx.T5Bias` (see :class:`posenc_jax.schemes.T5BucketBias`).

    Attributes:
      num_heads: attention heads (positive).
      bidirectional: ``True`` for an encoder, ``False`` for a decoder (no default).
      num_buckets: buckets per head (32 in T5).
      max_distance: distances from here on share the last bucket (128 in T5).
      embedding_init: initializer of the table (default: T5X's, uniform of variance 1 / fan_avg).
      dtype: the bias's dtype; ``None`` (default) keeps the table's.
      param_dtype: the table's dtype.

    >>> module = T5Bias(4, bidirectional=False)
    >>> variables = module.init(jax.random.key(0), jnp.arange(3), jnp.arange(3))
    >>> module.apply(variables, jnp.arange(3), jnp.arange(3)).shape
    (1, 4, 3, 3)
    """

    num_heads: int
    bidirectional: bool
    num_buckets: int = 32
    max_distance: int = 128
    embedding_init: Any = schemes.T5_EMBEDDING_INIT
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        scheme = schemes.T5BucketBias(
            self.num_heads,
            bidirectional=self.bidirectional,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        object.__setattr__(self, "scheme", scheme)  # Linen modules are frozen dataclasses
        super().__post_init__()

    def setup(self):
        self.embedding = self.param("embedding", self.embedding_init, self.scheme.table_shape, self.param_dtype)

    def attention_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """The bias ``[batch or 1, num_heads, q_len, k_len]`` for integer positions."""
        return self.scheme.attention_bias(jnp.asarray(self.embedding), q_positions, k_positions)

    def __call__(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """Same as :meth:`attention_bias`."""
        return self.attention_bias(q_positions, k_positions)


class TransformerXLRelative(PositionalScheme):
    """Transformer-XL's relative attention (Dai et al. 2019): a content-dependent term of the logits.

    Parameters ``kernel`` (``W_R``), ``content_bias`` (``u``) and ``position_bias`` (``v``); fields as
    :class:`posenc_jax.nnx.TransformerXLRelative` (see :class:`posenc_jax.schemes.TransformerXLLogits`).

    Attributes:
      num_heads: query heads (positive).
      head_dim: features per head (positive).
      rel_dim: width of the relative sinusoid (even); ``None``: ``num_heads * head_dim``.
      base: geometric base of the sinusoid's frequencies.
      scale: factor of the term, equal to the attention's scale; ``None``: ``1 / sqrt(head_dim)``.
      kernel_init: initializer of ``W_R`` (default: variance ``1 / rel_dim``).
      bias_init: initializer of ``u`` and ``v`` (default: zeros).
      dtype: computation and output dtype; ``None`` (default) follows the queries.
      param_dtype: the parameters' dtype.

    >>> q = k = jnp.ones((1, 3, 2, 4))
    >>> module = TransformerXLRelative(2, 4)
    >>> variables = module.init(jax.random.key(0), q, k)
    >>> module.apply(variables, q, k, jnp.arange(3), jnp.arange(3)).shape
    (1, 2, 3, 3)
    """

    num_heads: int
    head_dim: int
    rel_dim: int | None = None
    base: float = 10_000.0
    scale: float | None = None
    kernel_init: Any = schemes.TRANSFORMER_XL_KERNEL_INIT
    bias_init: Any = nn.initializers.zeros
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        scheme = schemes.TransformerXLLogits(
            self.num_heads,
            self.head_dim,
            rel_dim=self.rel_dim,
            base=self.base,
            scale=self.scale,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        object.__setattr__(self, "scheme", scheme)
        super().__post_init__()

    def setup(self):
        self.kernel = self.param("kernel", self.kernel_init, self.scheme.kernel_shape, self.param_dtype)
        self.content_bias = self.param("content_bias", self.bias_init, self.scheme.bias_shape, self.param_dtype)
        self.position_bias = self.param(
            "position_bias", self.bias_init, self.scheme.bias_shape, self.param_dtype
        )

    def attention_logits_bias(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None,
        k_positions: jax.Array | None,
    ) -> jax.Array:
        """The term ``[batch, num_heads, q_len, k_len]`` for queries and keys at their positions."""
        params = (jnp.asarray(self.kernel), jnp.asarray(self.content_bias), jnp.asarray(self.position_bias))
        return self.scheme.attention_logits_bias(params, q, k, q_positions, k_positions)

    def __call__(self, q, k, q_positions=None, k_positions=None) -> jax.Array:
        """Same as :meth:`attention_logits_bias`."""
        return self.attention_logits_bias(q, k, q_positions, k_positions)
