"""Positional schemes as Flax NNX modules.

Every module implements :class:`posenc_jax.PositionalScheme`: ``embed``, ``rotate``, ``attention_bias`` (and
``attention_logits_bias``). A model written against those methods takes any scheme, so swapping one encoding
for another is a one-line change. Each module holds the frozen scheme value of :mod:`posenc_jax.schemes` in
``scheme`` (and, for :class:`Learned`, the table) and delegates to it; :mod:`posenc_jax.linen` has the same
classes for Linen, producing the same numbers. The scheme's fields read as attributes (``module.dim``).

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

from posenc_jax._src import cope, fire, kerple, schemes, xpos
from posenc_jax._src.delegation import Delegating, ParameterDelegating
from posenc_jax._src.frequencies import Frequencies
from posenc_jax._src.layouts import Layout
from posenc_jax._src.scaling import Scaling

__all__ = [
    "ALiBi",
    "CoPE",
    "FIRE",
    "Kerple",
    "Learned",
    "NoPosition",
    "Rotary",
    "Sinusoidal",
    "T5Bias",
    "TransformerXLRelative",
    "XPos",
]

#: The default initializer of :class:`Learned` tables: normal with standard deviation 0.02.
DEFAULT_EMBEDDING_INIT = nnx.initializers.normal(stddev=0.02)


class _Scheme(Delegating, nnx.Module):
    """An NNX module holding a scheme value (a static attribute: it is part of the graph definition)."""

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes the module lacks: the scheme's configuration reads as the module's own.
        scheme = self.__dict__.get("scheme")
        if scheme is not None and name in schemes.configuration_fields(type(scheme)):
            return getattr(scheme, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scheme={self.scheme!r})"

    __str__ = __repr__  # nnx.Module's own __str__ would not show the scheme


class NoPosition(_Scheme):
    """The baseline: no positional information at all (``embed``/``rotate`` identity, no bias).

    >>> NoPosition()(jnp.ones((1, 3, 4))).sum()
    Array(12., dtype=float32)
    """

    def __init__(self):
        self.scheme = schemes.NoPosition()


class Sinusoidal(_Scheme):
    """The fixed sinusoidal encoding of "Attention is all you need", added to the token embeddings.

    No parameters; see :class:`posenc_jax.schemes.Sinusoidal`.

    Args:
      the fields of :class:`posenc_jax.schemes.Sinusoidal`: same names, same defaults, same checks.

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
        frequencies: Frequencies | None = None,
        dtype: Any = None,
    ):
        self.scheme = schemes.Sinusoidal(dim, base=base, layout=layout, frequencies=frequencies, dtype=dtype)


class Learned(ParameterDelegating, _Scheme):
    """A trainable table of ``max_length`` position vectors, added to the token embeddings.

    The table is ``nnx.Param`` ``embedding`` ``[max_length, dim]`` of ``param_dtype`` (the argument names of
    ``nnx.Embed``). Positions outside ``[0, max_length)`` never silently reuse a row: a static length above
    ``max_length`` raises ``ValueError`` at trace time, concrete positions raise at once, and traced ones
    follow ``out_of_range`` (see :func:`posenc_jax.learned_lookup`).

    The default ``out_of_range="nan"`` gives NaN rows for bad traced positions: never silent (the loss turns
    NaN), and free: the program stays a plain gather that the persistent compilation cache and
    ``jax.export`` accept. ``"error"`` raises at run time instead, at the cost of a host callback in every
    program (not cacheable, not exportable); ``"clip"`` and ``"wrap"`` map them into the table on purpose.

    Args:
      max_length: number of rows (positive).
      dim: the model width (positive).
      embedding_init: initializer of the table (``nnx.with_partitioning`` works for sharded tables).
      dtype: output dtype; ``None`` (default) follows ``x`` (``encode``: the table's dtype).
      param_dtype: the table's dtype.
      out_of_range: ``"nan"`` (default), ``"error"``, ``"clip"`` or ``"wrap"``.
      rngs: random streams (keyword-only); the table is drawn from ``rngs.params()``.

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
        embedding_init: nnx.Initializer = DEFAULT_EMBEDDING_INIT,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        out_of_range: str = "nan",
        rngs: nnx.Rngs,
    ):
        self.scheme = schemes.Learned(
            max_length, dim, dtype=dtype, param_dtype=param_dtype, out_of_range=out_of_range
        )
        shape = (self.scheme.max_length, self.scheme.dim)
        self.embedding = nnx.Param(embedding_init(rngs.params(), shape, param_dtype))

    def _parameters(self) -> dict[str, jax.Array]:
        return {"table": self.embedding[...]}


class Rotary(_Scheme):
    """Rotary position embeddings: rotates queries and keys by their positions (:func:`apply_rotary`).

    No parameters; see :class:`posenc_jax.schemes.Rotary`.

    Args:
      the fields of :class:`posenc_jax.schemes.Rotary`: same names, same defaults, same checks.

    Raises:
      TypeError: a missing ``layout`` (``"split"`` for Llama / Hugging Face / Gemma / GPT-NeoX / MaxText
        checkpoints, ``"interleaved"`` for GPT-J / RoFormer / the paper's pairing).
      ValueError, TypeError: bad ``head_dim``, ``rotary_dim``, ``layout``, ``base``, ``frequencies`` or
        ``scaling``.

    >>> q = k = jnp.ones((1, 3, 2, 8))
    >>> [a.shape for a in Rotary(8, layout="split").rotate(q, k)]
    [(1, 3, 2, 8), (1, 3, 2, 8)]
    """

    def __init__(
        self,
        head_dim: int,
        *,
        layout: Layout | None = None,
        base: float = 10_000.0,
        rotary_dim: int | None = None,
        frequencies: Frequencies | None = None,
        scaling: Scaling | None = None,
        proportion: float = 1.0,
    ):
        self.scheme = schemes.Rotary(
            head_dim,
            layout=layout,
            base=base,
            rotary_dim=rotary_dim,
            frequencies=frequencies,
            scaling=scaling,
            proportion=proportion,
        )


class ALiBi(_Scheme):
    """ALiBi: a per-head linear distance penalty on attention logits (:func:`alibi_bias`).

    No parameters; see :class:`posenc_jax.schemes.ALiBi`, which explains the default ``is_causal=False``: right
    in encoders, and equal to the causal bias on every key a decoder's causal mask lets through.

    Args:
      the fields of :class:`posenc_jax.schemes.ALiBi`: same names, same defaults, same checks.

    Raises:
      ValueError, TypeError: ``num_heads <= 0`` or not an int, non-bool ``is_causal``.

    >>> ALiBi(4).attention_bias(jnp.arange(3), jnp.arange(3)).shape
    (1, 4, 3, 3)
    """

    def __init__(self, num_heads: int, *, is_causal: bool = False):
        self.scheme = schemes.ALiBi(num_heads, is_causal=is_causal)


class T5Bias(ParameterDelegating, _Scheme):
    """T5's relative attention bias: a learned scalar per head and bucket of ``k_pos - q_pos``.

    The table is ``nnx.Param`` ``embedding`` ``[num_buckets, num_heads]``; :meth:`attention_bias` gathers it
    by :func:`posenc_jax.t5_buckets` (Raffel et al. 2020). T5 shares one table across its layers and adds
    the bias to unscaled logits; a model decides both. See :class:`posenc_jax.schemes.T5Bias`.

    Args:
      num_heads: attention heads (positive).
      is_causal: ``False`` for an encoder, ``True`` for a decoder (keyword, no default).
      num_buckets: buckets per head (32 in T5).
      max_distance: distances from here on share the last bucket (128 in T5).
      embedding_init: initializer of the table (default: T5X's, uniform of variance 1 / fan_avg).
      dtype: the bias's dtype; ``None`` (default) keeps the table's.
      param_dtype: the table's dtype.
      rngs: random streams (keyword-only); the table is drawn from ``rngs.params()``.

    Raises:
      ValueError, TypeError: as :class:`posenc_jax.schemes.T5Bias`.

    >>> from flax import nnx
    >>> T5Bias(4, is_causal=False, rngs=nnx.Rngs(0)).attention_bias(jnp.arange(3), jnp.arange(3)).shape
    (1, 4, 3, 3)
    """

    def __init__(
        self,
        num_heads: int,
        *,
        is_causal: bool,
        num_buckets: int = 32,
        max_distance: int = 128,
        embedding_init: nnx.Initializer = schemes.T5_EMBEDDING_INIT,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.scheme = schemes.T5Bias(
            num_heads,
            is_causal=is_causal,
            num_buckets=num_buckets,
            max_distance=max_distance,
            dtype=dtype,
            param_dtype=param_dtype,
        )
        self.embedding = nnx.Param(embedding_init(rngs.params(), self.scheme.table_shape, param_dtype))

    def _parameters(self) -> dict[str, jax.Array]:
        return {"table": self.embedding[...]}


class TransformerXLRelative(ParameterDelegating, _Scheme):
    """Transformer-XL's relative attention (Dai et al. 2019): a content-dependent term of the logits.

    :meth:`attention_logits_bias` returns ``scale * ((q_i + v)·W_R R_{i-j} + u·k_j)``
    (:func:`posenc_jax.transformer_xl_logits`), which attention adds to ``scale * q·k``. Parameters:
    ``kernel`` (``W_R``, ``[rel_dim, num_heads, head_dim]``), ``content_bias`` (``u``) and
    ``position_bias`` (``v``), both ``[num_heads, head_dim]``. Works with any positions (randomized ones
    included); ``None`` for both means ``0 … length-1`` and takes the cheaper relative-shift route. See
    :class:`posenc_jax.schemes.TransformerXLRelative`.

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
      ValueError, TypeError: as :class:`posenc_jax.schemes.TransformerXLRelative`.

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
        self.scheme = schemes.TransformerXLRelative(
            num_heads, head_dim, rel_dim=rel_dim, base=base, scale=scale, dtype=dtype, param_dtype=param_dtype
        )
        self.kernel = nnx.Param(kernel_init(rngs.params(), self.scheme.kernel_shape, param_dtype))
        self.content_bias = nnx.Param(bias_init(rngs.params(), self.scheme.bias_shape, param_dtype))
        self.position_bias = nnx.Param(bias_init(rngs.params(), self.scheme.bias_shape, param_dtype))

    def _parameters(self) -> dict[str, jax.Array]:
        return {
            "kernel": self.kernel[...],
            "content_bias": self.content_bias[...],
            "position_bias": self.position_bias[...],
        }


# ------------------------------------------------------------- the length-generalization literature


class Kerple(ParameterDelegating, _Scheme):
    """KERPLE (Chi et al. 2022): ``-r1·log(1 + r2·|i - j|)`` or ``-r1·|i - j|^r2`` per head, learned.

    Parameters ``r1_raw`` and ``r2_raw`` ``[num_heads]``, positive by construction: ``r1 = softplus(r1_raw)``,
    ``r2 = softplus(r2_raw)`` (log) or ``2·sigmoid(r2_raw)`` (power, ``0 < r2 < 2``). :meth:`value` is the
    :class:`posenc_jax.schemes.Kerple` holding them.

    Args:
      the configuration fields of :class:`posenc_jax.schemes.Kerple` (``num_heads``, ``kernel`` (keyword, no
      default), ``param_dtype``), and ``rngs`` (keyword-only).

    Raises:
      ValueError, TypeError: as :class:`posenc_jax.schemes.Kerple`.

    >>> from flax import nnx
    >>> Kerple(4, kernel="log", rngs=nnx.Rngs(0)).attention_bias(jnp.arange(3), jnp.arange(3)).shape
    (1, 4, 3, 3)
    """

    def __init__(self, num_heads: int, *, kernel: str, param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.scheme = kerple.Kerple(num_heads, kernel=kernel, param_dtype=param_dtype)  # type: ignore[arg-type]
        self.r1_raw = nnx.Param(self.scheme.init_r1_raw(rngs.params()))
        self.r2_raw = nnx.Param(self.scheme.init_r2_raw(rngs.params()))

    def _parameters(self) -> dict[str, jax.Array]:
        return self.scheme.constrained(self.r1_raw[...], self.r2_raw[...])


class FIRE(ParameterDelegating, _Scheme):
    """FIRE (Li et al. 2024): ``f_θ(ψ(i - j) / ψ(max(L, i)))``, ``ψ(x) = log(c·x + 1)``, learned.

    Parameters: the MLP's ``hidden_kernel``, ``hidden_bias`` ``[width]``, ``output_kernel``
    ``[width, num_heads]``, ``output_bias`` ``[num_heads]``, the scalars ``c`` and ``threshold_scale``
    (``L = threshold_scale · initial_threshold``). :meth:`value` is the :class:`posenc_jax.schemes.FIRE`
    holding them; :func:`posenc_jax.fire_bias` states the non-causal use.

    Args:
      the configuration fields of :class:`posenc_jax.schemes.FIRE` (``num_heads``, ``width``, ``initial_c``,
      ``initial_threshold``, ``eps``, ``param_dtype``; same defaults), and ``rngs`` (keyword-only).

    Raises:
      ValueError, TypeError: as :class:`posenc_jax.schemes.FIRE`.

    >>> from flax import nnx
    >>> FIRE(4, rngs=nnx.Rngs(0)).attention_bias(jnp.arange(3), jnp.arange(3)).shape
    (1, 4, 3, 3)
    """

    def __init__(
        self,
        num_heads: int,
        *,
        width: int = 32,
        initial_c: float = 0.1,
        initial_threshold: float = 512.0,
        eps: float = 1e-6,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.scheme = fire.FIRE(
            num_heads,
            width=width,
            initial_c=initial_c,
            initial_threshold=initial_threshold,
            eps=eps,
            param_dtype=param_dtype,
        )
        for name in fire.FIRE_PARAMETERS:
            setattr(self, name, nnx.Param(getattr(self.scheme, f"init_{name}")(rngs.params())))

    def _parameters(self) -> dict[str, jax.Array]:
        return self.scheme.from_module(*(getattr(self, name)[...] for name in fire.FIRE_PARAMETERS))


class CoPE(ParameterDelegating, _Scheme):
    """CoPE (Golovneva et al. 2024): the term ``q_i·e[p_ij]`` at contextual positions ``p_ij``, learned ``e``.

    Parameter ``embedding`` ``[npos, head_dim]`` (zeros at first, as in the reference code). :meth:`value` is
    the :class:`posenc_jax.schemes.CoPE` holding it; :func:`posenc_jax.attention` passes it the keys each
    query sees.

    Args:
      the configuration fields of :class:`posenc_jax.schemes.CoPE` (``npos``, ``head_dim``, ``scale``,
      ``param_dtype``), ``embedding_init`` (default zeros) and ``rngs`` (keyword-only).

    Raises:
      ValueError, TypeError: as :class:`posenc_jax.schemes.CoPE`.

    >>> from flax import nnx
    >>> q = k = jnp.ones((1, 3, 2, 4))
    >>> CoPE(8, 4, rngs=nnx.Rngs(0)).attention_logits_bias(q, k, jnp.arange(3), jnp.arange(3)).shape
    (1, 2, 3, 3)
    """

    def __init__(
        self,
        npos: int,
        head_dim: int,
        *,
        scale: float | None = None,
        embedding_init: nnx.Initializer = nnx.initializers.zeros,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.scheme = cope.CoPE(npos, head_dim, scale=scale, param_dtype=param_dtype)
        self.embedding = nnx.Param(embedding_init(rngs.params(), self.scheme.embedding_shape, param_dtype))

    def _parameters(self) -> dict[str, jax.Array]:
        return {"embedding": self.embedding[...]}


class XPos(_Scheme):
    """xPos (Sun et al. 2022): rotary embeddings whose pairs decay with distance (no parameters).

    See :class:`posenc_jax.schemes.XPos`, which states the range where it is exact.

    Args:
      the fields of :class:`posenc_jax.schemes.XPos`: same names, same defaults, same checks.

    >>> q = k = jnp.ones((1, 3, 2, 8))
    >>> [a.shape for a in XPos(8, layout="split").rotate(q, k)]
    [(1, 3, 2, 8), (1, 3, 2, 8)]
    """

    def __init__(
        self,
        head_dim: int,
        *,
        layout: Layout,
        base: float = 10_000.0,
        scale_base: float = 512.0,
        gamma: float = 0.4,
        center: int | None = None,
    ):
        self.scheme = xpos.XPos(
            head_dim, layout=layout, base=base, scale_base=scale_base, gamma=gamma, center=center
        )
