"""Positional schemes as frozen, checked values: one implementation each, shared by NNX, Linen and attention.

A scheme answers the questions of :class:`PositionalScheme`, and the model that holds it never needs to know
which scheme it is:

* ``embed(x, positions)``: what to add to the token embeddings ``x`` ``[batch, length, dim]``;
* ``rotate(q, k, q_positions, k_positions)``: how to transform queries and keys
  ``[batch, length, heads, head_dim]``;
* ``attention_bias(q_positions, k_positions)``: what to add to the attention logits
  (``[batch or 1, heads, q_len, k_len]`` float32), or ``None``;
* ``attention_logits_bias(q, k, q_positions, k_positions)``: a logits term that depends on the (rotated)
  query and key contents as well as their positions (relative schemes of the Transformer-XL kind), or
  ``None``.

The parameter-free schemes here (:class:`NoPosition`, :class:`Sinusoidal`, :class:`Rotary`, :class:`ALiBi`)
are frozen dataclasses whose fields are checked once, at construction; they can be passed as they are to
:func:`posenc_jax.attention`, or held by a model. :mod:`posenc_jax.nnx` and :mod:`posenc_jax.linen` wrap the
same values (and, for the schemes with parameters, :class:`LearnedLookup`, :class:`T5BucketBias` and
:class:`TransformerXLLogits` with the parameters), so every API computes the same numbers with the same code.

>>> import jax.numpy as jnp
>>> scheme = Rotary(8, layout="split")
>>> q = k = jnp.ones((1, 3, 2, 8))  # [batch, length, heads, head_dim]
>>> [a.shape for a in scheme.rotate(q, k, jnp.arange(3), jnp.arange(3))]
[(1, 3, 2, 8), (1, 3, 2, 8)]
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._src import checks as _checks
from posenc_jax._src.alibi import alibi_bias
from posenc_jax._src.frequencies import _PAIRS as _SINUSOID_PAIRS
from posenc_jax._src.frequencies import _resolve_frequencies
from posenc_jax._src.layouts import Layout, _check_layout
from posenc_jax._src.learned import OUT_OF_RANGE_POLICIES, lookup
from posenc_jax._src.relative import _check_scale, _check_t5_config, t5_bias, transformer_xl_logits
from posenc_jax._src.rotary import (
    _PAIRS,
    _check_rotary_dim,
    _floor_max,
    _rotary_frequencies,
    _rotated_pairs,
    apply_rotary,
)
from posenc_jax._src.scaling import Scaling, _check_scaling, _depends_on_length, _rope_frequencies
from posenc_jax._src.sinusoidal import _encode as _sinusoidal_kernel
from posenc_jax._src.sinusoidal import _table as _sinusoidal_table_kernel

__all__ = [
    "ALiBi",
    "LearnedLookup",
    "NoPosition",
    "PositionalScheme",
    "Rotary",
    "SchemeDefaults",
    "Sinusoidal",
    "T5BucketBias",
    "TransformerXLLogits",
]


@runtime_checkable
class PositionalScheme(Protocol):
    """What every positional scheme implements (the modules of both Flax APIs and the values here).

    Shapes: ``x`` ``[batch, length, dim]`` (or ``[length, dim]``), ``q`` / ``k``
    ``[batch, length, heads, head_dim]``, positions ``[length]`` or ``[batch, length]``.
    :class:`SchemeDefaults` gives every method the value of a scheme that contributes nothing.
    """

    def embed(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """``x`` plus the scheme's absolute encoding of ``positions`` (``None``: ``0 … length-1``)."""
        ...

    def rotate(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None = None,
        k_positions: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Queries and keys transformed by their positions (identity for most schemes)."""
        ...

    def attention_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array | None:
        """A bias ``[batch or 1, heads, q_len, k_len]`` added to the attention logits, or ``None``."""
        ...

    def attention_logits_bias(
        self, q: jax.Array, k: jax.Array, q_positions: jax.Array, k_positions: jax.Array
    ) -> jax.Array | None:
        """A content-dependent logits term ``[batch, heads, q_len, k_len]`` (after ``rotate``), or ``None``.

        Added to the scaled logits ``q·k / sqrt(head_dim)`` beside :meth:`attention_bias`. The hook for
        relative schemes whose bias depends on the query (e.g. Transformer-XL's ``q·R(i - j)`` terms). A
        scheme whose term depends on which keys each query sees (CoPE's contextual positions) sets
        ``needs_mask = True``; :func:`posenc_jax.attention` then also passes ``mask=``, the boolean keys
        each query sees (``[batch or 1, heads or 1, q_len, k_len]``, or ``None`` for all).
        """
        ...


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(getattr(value, "shape", None) or np.shape(value))


def _check_x(x: Any, caller: str, dim: int | None = None) -> None:
    """``x`` must be a floating ``[batch, length, dim]`` or ``[length, dim]`` array (last axis ``dim``)."""
    shape, dtype = _shape(x), getattr(x, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise _checks.type_error(caller, "x", x, "x must be a floating array of token embeddings")
    if len(shape) not in (2, 3):
        raise _checks.value_error(caller, "x", x, "x must have shape [batch, length, dim] or [length, dim]")
    if dim is not None and shape[-1] != dim:
        raise _checks.value_error(caller, "x", x, f"the last axis of x must equal the scheme's dim={dim}")


def _check_heads(caller: str, head_dim: int | None = None, **arrays: Any) -> None:
    """Each array must be ``[batch, length, heads, head_dim]`` (with the scheme's ``head_dim`` if given)."""
    for name, value in arrays.items():
        shape = _shape(value)
        if len(shape) != 4:
            raise _checks.value_error(
                caller, name, value, f"{name} must have shape [batch, length, heads, head_dim]"
            )
        if head_dim is not None and shape[-1] != head_dim:
            raise _checks.value_error(
                caller, name, value, f"the last axis of {name} must equal the scheme's head_dim={head_dim}"
            )


def _check_embed_positions(x: jax.Array, positions: object, caller: str) -> None:
    """Positions (if given) must broadcast to ``x``'s leading axes; their values are the function's job."""
    if positions is not None:
        _checks.positions_shape(caller, positions, tuple(x.shape[:-1]))


def _check_dtype_or_none(dtype: object, caller: str) -> Any:
    return None if dtype is None else _checks.floating_dtype(caller, dtype)


def _add(x: jax.Array, encoding: jax.Array, dtype: Any) -> jax.Array:
    """``x + encoding`` in ``dtype``; ``None`` keeps ``x``'s dtype (the encoding is rounded once to it)."""
    out_dtype = x.dtype if dtype is None else dtype
    return x.astype(out_dtype) + encoding.astype(out_dtype)


class SchemeDefaults:
    """The protocol's methods with the values of a scheme that contributes nothing; schemes override some.

    ``embed`` and ``rotate`` still check their arguments, so a model that swaps schemes keeps its shape
    errors. Subclass it (with a Flax module or a dataclass) to write a new scheme.
    """

    def embed(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """Returns ``x`` plus the scheme's absolute encoding (here: ``x`` unchanged).

        Args:
          x: token embeddings ``[batch, length, dim]`` or ``[length, dim]``.
          positions: ``[length]`` or ``[batch, length]``; ``None`` means ``0 … length-1``.

        Returns:
          An array of the shape of ``x``.
        """
        caller = f"{type(self).__name__}.embed"
        _check_x(x, caller)
        _check_embed_positions(x, positions, caller)
        if positions is not None:
            _checks.positions(caller, positions)  # the values an absolute scheme would accept
        return x

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
        _check_heads(f"{type(self).__name__}.rotate", q=q, k=k)
        return q, k

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
        self, q: jax.Array, k: jax.Array, q_positions: jax.Array, k_positions: jax.Array
    ) -> jax.Array | None:
        """Returns a content-dependent logits term ``[batch, heads, q_len, k_len]``, or ``None``.

        Args:
          q: rotated queries ``[batch, q_len, heads, head_dim]``.
          k: rotated keys ``[batch, k_len, kv_heads, head_dim]``.
          q_positions: ``[q_len]`` or ``[batch, q_len]``.
          k_positions: ``[k_len]`` or ``[batch, k_len]``.

        Returns:
          ``None`` here: the logits depend on positions through ``rotate`` / ``attention_bias`` only.
        """
        return None


@dataclasses.dataclass(frozen=True)
class NoPosition(SchemeDefaults):
    """The baseline: no positional information at all (``embed``/``rotate`` identity, no bias).

    >>> NoPosition()(jnp.ones((1, 3, 4))).sum()
    Array(12., dtype=float32)
    """

    def __call__(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """Returns ``x`` unchanged (after checking its shape like the absolute schemes do)."""
        return self.embed(x, positions)

    def __repr__(self) -> str:
        return "NoPosition(adds nothing: embed and rotate are identities, attention_bias is None)"


def _frequencies_tuple(frequencies: object, resolved: np.ndarray) -> tuple[float, ...] | None:
    """Explicit frequencies as a hashable tuple (so the scheme stays a static value), or None."""
    return None if frequencies is None else tuple(resolved.tolist())


def _frequencies_array(frequencies: tuple[float, ...] | None) -> np.ndarray | None:
    return None if frequencies is None else np.asarray(frequencies, dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class Sinusoidal(SchemeDefaults):
    """The fixed sinusoidal encoding of "Attention is all you need", added to the token embeddings.

    Calls :func:`posenc_jax.sinusoidal` (or :func:`posenc_jax.sinusoidal_table` for the default positions
    ``0 … length-1``), accurate at any position; the encoding is computed in float32 and rounded once.

    Attributes:
      dim: the model width (positive, even).
      base: the geometric base of the frequencies.
      layout: ``"interleaved"`` (paper) or ``"split"`` (sines first, then cosines).
      frequencies: optional explicit ``[dim // 2]`` frequencies (concrete; stored as a tuple), overriding
        ``base``.
      dtype: output dtype of ``embed`` / ``encode``. ``None`` (default): ``embed`` returns ``x``'s dtype
        (bfloat16 activations stay bfloat16) and ``encode`` float32.

    Raises:
      ValueError, TypeError: bad ``dim``, ``base``, ``layout``, ``frequencies`` or ``dtype``.

    >>> Sinusoidal(4).encode(jnp.arange(2)).round(3)
    Array([[0.   , 1.   , 0.   , 1.   ],
           [0.841, 0.54 , 0.01 , 1.   ]], dtype=float32)
    """

    dim: int
    _: dataclasses.KW_ONLY
    base: float = 10_000.0
    layout: Layout = "interleaved"
    frequencies: tuple[float, ...] | None = None
    dtype: Any = None

    def __post_init__(self):
        caller = type(self).__name__
        resolved = _resolve_frequencies(self.dim, base=self.base, frequencies=self.frequencies, caller=caller)
        _check_layout(caller, self.layout)
        _check_dtype_or_none(self.dtype, caller)
        object.__setattr__(self, "dim", int(self.dim))
        object.__setattr__(self, "frequencies", _frequencies_tuple(self.frequencies, resolved))

    @functools.cached_property
    def _kernel_frequencies(self) -> tuple[float, ...]:
        """The checked frequencies, prepared once: calls go straight to the kernels, checking their inputs."""
        w = _resolve_frequencies(self.dim, base=self.base, frequencies=self.frequencies, caller="Sinusoidal")
        return tuple(w.tolist())

    def _encoding(self, caller: str, positions: Any, dtype: Any) -> jax.Array:
        return _sinusoidal_kernel(
            _checks.positions(caller, positions),
            frequencies=self._kernel_frequencies,
            layout=self.layout,
            dtype=np.dtype(jnp.dtype(dtype)),
        )

    def encode(self, positions: jax.Array) -> jax.Array:
        """The encoding alone: ``positions.shape + (dim,)`` of ``dtype`` (float32 when None)."""
        return self._encoding(
            f"{type(self).__name__}.encode", positions, jnp.float32 if self.dtype is None else self.dtype
        )

    def embed(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """``x + encoding(positions)``; ``x`` ``[batch, length, dim]`` or ``[length, dim]``."""
        caller = f"{type(self).__name__}.embed"
        _check_x(x, caller, self.dim)
        _check_embed_positions(x, positions, caller)
        out_dtype = x.dtype if self.dtype is None else self.dtype
        if positions is None:  # 0 … length-1: the table, built by angle addition
            encoding = _sinusoidal_table_kernel(
                jnp.zeros((), jnp.int32),
                length=x.shape[-2],
                frequencies=self._kernel_frequencies,
                layout=self.layout,
                dtype=np.dtype(jnp.dtype(out_dtype)),
            )
        else:
            encoding = self._encoding(caller, positions, out_dtype)
        return _add(x, encoding, out_dtype)

    def __call__(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """Same as :meth:`embed`."""
        return self.embed(x, positions)


@dataclasses.dataclass(frozen=True)
class LearnedLookup:
    """What the learned table's modules share: their checked configuration and the lookup itself.

    Not a scheme by itself: the table ``[max_length, dim]`` is a parameter that :class:`posenc_jax.nnx.Learned`
    and :class:`posenc_jax.linen.Learned` hold and pass in.

    Attributes:
      max_length: number of rows (positive).
      dim: the model width (positive).
      dtype: output dtype. ``None``: ``embed`` returns ``x``'s dtype, ``encode`` the table's.
      param_dtype: the table's dtype (floating).
      out_of_range: ``"nan"`` (default), ``"error"``, ``"clip"`` or ``"wrap"``, as in
        :func:`posenc_jax.learned.lookup`.

    Raises:
      ValueError, TypeError: non-positive ``max_length`` / ``dim``, unknown ``out_of_range``, bad dtypes.
    """

    max_length: int
    dim: int
    _: dataclasses.KW_ONLY
    dtype: Any = None
    param_dtype: Any = jnp.float32
    out_of_range: str = "nan"

    def __post_init__(self):
        caller = "Learned"
        object.__setattr__(self, "max_length", _checks.integer(caller, "max_length", self.max_length))
        object.__setattr__(self, "dim", _checks.integer(caller, "dim", self.dim))
        _check_dtype_or_none(self.dtype, caller)
        _checks.floating_dtype(caller, self.param_dtype, "param_dtype")
        _checks.one_of(caller, "out_of_range", self.out_of_range, OUT_OF_RANGE_POLICIES)

    def encode(self, table: jax.Array, positions: jax.Array) -> jax.Array:
        """The rows for integer ``positions``: ``positions.shape + (dim,)`` (``dtype``, else the table's)."""
        encoding = lookup(table, positions, out_of_range=self.out_of_range, caller="Learned.encode")
        return encoding if self.dtype is None else encoding.astype(self.dtype)

    def embed(self, table: jax.Array, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """``x + table[positions]``; a static length beyond the table raises ``ValueError`` at trace time."""
        caller = "Learned.embed"
        _check_x(x, caller, self.dim)
        if positions is None:
            if x.shape[-2] > self.max_length:
                raise _checks.value_error(
                    caller,
                    "x",
                    x,
                    f"its length {x.shape[-2]} exceeds max_length={self.max_length} of the learned table",
                    "use a larger max_length, or pass the positions explicitly",
                )
            positions = jnp.arange(x.shape[-2], dtype=jnp.int32)
        _check_embed_positions(x, positions, caller)
        # The host values are checked by `lookup` in their own precision, before any conversion.
        encoding = lookup(table, positions, out_of_range=self.out_of_range, caller=caller)
        return _add(x, encoding, self.dtype)


@dataclasses.dataclass(frozen=True)
class Rotary(SchemeDefaults):
    """Rotary position embeddings: rotates queries and keys by their positions (:func:`apply_rotary`).

    Attributes:
      head_dim: features per head (positive, even).
      base: ``theta`` of the frequencies ``w_i = base ** (-2i / rotary_dim)``.
      layout: ``"interleaved"`` (GPT-J, original LLaMA) or ``"split"`` (GPT-NeoX, Hugging Face, Gemma).
      scale: position interpolation factor (positions divided by ``scale``).
      rotary_dim: rotate only the first ``rotary_dim`` features of each head (default: all).
      frequencies: optional explicit ``[rotary_dim // 2]`` frequencies (stored as a tuple).
      scaling: a long-context RoPE scaling (:class:`posenc_jax.YaRN`, :class:`posenc_jax.Llama3`, …; see
        :mod:`posenc_jax.scaling`) of the ``base`` frequencies, or None. Its attention factor multiplies the
        rotated features of queries and keys each (logits by its square). For length-dependent scalings
        (DynamicNTK, LongRoPE) the length is ``max(positions) + 1`` computed in the graph, over the query and
        key positions together in :meth:`rotate` so that both turn with the same frequencies.
      proportion: p-RoPE (Barbero et al. 2025), Gemma's ``rope_proportion``: rotate only the fastest
        ``floor(proportion * rotary_dim / 2)`` pairs, with the frequencies of the full ``rotary_dim``, and
        leave the slower pairs unrotated (``rotary_dim`` instead rotates the first features with frequencies
        of the narrower width); 1 (default) rotates every pair, 0 none.

    Raises:
      ValueError, TypeError: bad ``head_dim``, ``rotary_dim``, ``layout``, ``base``, ``scale``,
        ``frequencies``, ``scaling`` (also: ``scaling`` combined with ``scale`` or ``frequencies``) or
        ``proportion``.

    >>> q = jnp.ones((1, 3, 2, 8))
    >>> Rotary(8)(q, jnp.arange(3)).shape
    (1, 3, 2, 8)
    """

    head_dim: int
    _: dataclasses.KW_ONLY
    base: float = 10_000.0
    layout: Layout = "interleaved"
    scale: float = 1.0
    rotary_dim: int | None = None
    frequencies: tuple[float, ...] | None = None
    scaling: Scaling | None = None
    proportion: float = 1.0

    def __post_init__(self):
        caller = type(self).__name__
        head_dim = _checks.even(caller, "head_dim", self.head_dim, _PAIRS)
        dim = _check_rotary_dim(caller, self.rotary_dim, head_dim)
        _rotated_pairs(caller, self.proportion, dim // 2)
        object.__setattr__(self, "proportion", float(self.proportion))
        _check_layout(caller, self.layout)
        _rotary_frequencies(caller, dim, self.base, self.frequencies, self.scale)
        if _check_scaling(self.scaling, caller) is not None:
            if self.frequencies is not None or self.scale != 1.0:
                raise _checks.value_error(
                    caller,
                    "scaling",
                    self.scaling,
                    "scaling applies to the geometric frequencies of base; it cannot be combined with "
                    "frequencies= or scale=",
                    "use scaling=Linear(scale) for position interpolation",
                )
            # the scaled frequencies must exist for this head (any length; length-dependent ones at length 1)
            _rope_frequencies(caller, head_dim, base=self.base, scaling=self.scaling, rotary_dim=dim, length=1)
        resolved = None if self.frequencies is None else np.asarray(self.frequencies, dtype=np.float64)
        object.__setattr__(self, "head_dim", head_dim)
        object.__setattr__(self, "rotary_dim", None if self.rotary_dim is None else dim)
        object.__setattr__(self, "frequencies", _frequencies_tuple(self.frequencies, resolved))

    def _apply(self, x: jax.Array, positions: jax.Array | None, length: jax.Array | None = None) -> jax.Array:
        return apply_rotary(
            x,
            jnp.arange(x.shape[1], dtype=jnp.int32) if positions is None else positions,
            base=self.base,
            layout=self.layout,
            frequencies=_frequencies_array(self.frequencies),
            scale=self.scale,
            rotary_dim=self.rotary_dim,
            scaling=self.scaling,
            length=length,
            proportion=self.proportion,
        )

    def rotate(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None = None,
        k_positions: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Rotates ``q`` ``[batch, q_len, heads, head_dim]`` and ``k`` by their own positions."""
        call = f"{type(self).__name__}.rotate"
        _check_heads(call, self.head_dim, q=q, k=k)
        length = None
        if _depends_on_length(self.scaling):  # one length (hence one set of frequencies) for q and k
            ends = [
                (jnp.asarray(x.shape[1] - 1, jnp.int32), jnp.bool_(True))
                if p is None
                else _floor_max(_checks.positions(call, p, name))
                for x, p, name in ((q, q_positions, "q_positions"), (k, k_positions, "k_positions"))
            ]
            # uint32, so that the last int32 position's length 2**31 fits; 0 (NaN) when a position is out of
            # the int32 range (an int64 2**32 + 5 under x64 must not turn into a length of 6).
            end = jnp.maximum(jnp.maximum(ends[0][0], ends[1][0]), 0).astype(jnp.uint32)
            length = jnp.where(ends[0][1] & ends[1][1], end + 1, jnp.uint32(0))
        return self._apply(q, q_positions, length), self._apply(k, k_positions, length)

    def __call__(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """Rotates one tensor ``[batch, length, heads, head_dim]`` (default positions ``0 … length-1``)."""
        _check_heads(type(self).__name__, self.head_dim, x=x)
        return self._apply(x, positions)


@dataclasses.dataclass(frozen=True)
class ALiBi(SchemeDefaults):
    """ALiBi: a per-head linear distance penalty on attention logits (:func:`posenc_jax.alibi_bias`).

    The default ``causal=False`` (``-m_h |i - j|`` for every pair) is the one that is right everywhere: in an
    encoder it penalises keys on both sides, and in a decoder, where a causal mask hides the keys after each
    query, the visible keys get exactly the causal bias ``-m_h (i - j)``. ``causal=True`` leaves the keys
    after the query at 0, which is only right when a causal mask removes them: in an encoder without one it
    would silently favour the future over the past.

    Attributes:
      num_heads: number of attention heads (positive).
      causal: ``False`` (default): ``-m_h |i - j|``; ``True``: ``-m_h (i - j)`` for ``j <= i``, 0 above the
        diagonal (for decoders; masking stays the mask's job).

    Raises:
      ValueError, TypeError: ``num_heads <= 0`` or not an int, non-bool ``causal``.

    >>> ALiBi(4).attention_bias(jnp.arange(3), jnp.arange(3)).shape
    (1, 4, 3, 3)
    """

    num_heads: int
    _: dataclasses.KW_ONLY
    causal: bool = False

    def __post_init__(self):
        caller = type(self).__name__
        object.__setattr__(self, "num_heads", _checks.integer(caller, "num_heads", self.num_heads))
        object.__setattr__(self, "causal", _checks.boolean(caller, "causal", self.causal))

    def attention_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """The bias ``[batch or 1, num_heads, q_len, k_len]`` float32."""
        return alibi_bias(self.num_heads, q_positions, k_positions, causal=self.causal)

    def __call__(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """Same as :meth:`attention_bias`."""
        return self.attention_bias(q_positions, k_positions)


class _Delegating:
    """The protocol's methods of a Flax module forwarded to the scheme value it holds in ``self.scheme``.

    Mixed into the module base classes of :mod:`posenc_jax.nnx` and :mod:`posenc_jax.linen`, so that neither
    file repeats a method body: each only declares its fields (and parameters) and builds the value.
    """

    if TYPE_CHECKING:
        scheme: Any  # set by each module: a value of this module

    def embed(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """``x`` plus the scheme's absolute encoding (see :meth:`PositionalScheme.embed`)."""
        return self.scheme.embed(x, positions)

    def rotate(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None = None,
        k_positions: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Queries and keys transformed by the scheme (see :meth:`PositionalScheme.rotate`)."""
        return self.scheme.rotate(q, k, q_positions, k_positions)

    def attention_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array | None:
        """The attention-logit bias, or ``None`` (see :meth:`PositionalScheme.attention_bias`)."""
        return self.scheme.attention_bias(q_positions, k_positions)

    def attention_logits_bias(
        self, q: jax.Array, k: jax.Array, q_positions: jax.Array, k_positions: jax.Array
    ) -> jax.Array | None:
        """The content-dependent logits term, or ``None`` (:meth:`PositionalScheme.attention_logits_bias`)."""
        return self.scheme.attention_logits_bias(q, k, q_positions, k_positions)

    def encode(self, positions: jax.Array) -> jax.Array:
        """The absolute encoding alone, ``positions.shape + (dim,)`` (absolute schemes only)."""
        return self.scheme.encode(positions)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """As the scheme's ``__call__``: ``embed`` for absolute schemes, one rotation for rotary, the bias
        for ALiBi."""
        return self.scheme(*args, **kwargs)


class _LearnedDelegating(SchemeDefaults):
    """The learned table's modules: ``embed`` / ``encode`` through the :class:`LearnedLookup` in
    ``self.scheme`` with the parameter that the module returns from ``_table()``; no rotation, no bias.

    Placed before the module base class, so these methods take precedence over :class:`_Delegating`'s.
    """

    if TYPE_CHECKING:
        scheme: LearnedLookup

    def _table(self) -> jax.Array:  # pragma: no cover - every module defines it
        raise NotImplementedError

    def embed(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """``x + table[positions]``; ``x`` ``[batch, length, dim]`` or ``[length, dim]``."""
        return self.scheme.embed(self._table(), x, positions)

    def encode(self, positions: jax.Array) -> jax.Array:
        """The rows for integer ``positions``: ``positions.shape + (dim,)``."""
        return self.scheme.encode(self._table(), positions)

    def __call__(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """Same as :meth:`embed`."""
        return self.embed(x, positions)


# ------------------------------------------------------------------------------------ relative schemes


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
        object.__setattr__(self, "num_heads", _checks.integer(caller, "num_heads", self.num_heads))
        _check_t5_config(self.num_buckets, self.max_distance, self.bidirectional, caller)
        _check_dtype_or_none(self.dtype, caller)
        _checks.floating_dtype(caller, self.param_dtype, "param_dtype")

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
        num_heads = _checks.integer(caller, "num_heads", self.num_heads)
        head_dim = _checks.integer(caller, "head_dim", self.head_dim)
        rel_dim = num_heads * head_dim if self.rel_dim is None else self.rel_dim
        rel_dim = _checks.even(caller, "rel_dim", rel_dim, _SINUSOID_PAIRS)
        _checks.real_above(caller, "base", self.base, 1.0)
        _check_scale(self.scale, caller)
        _check_dtype_or_none(self.dtype, caller)
        _checks.floating_dtype(caller, self.param_dtype, "param_dtype")
        object.__setattr__(self, "num_heads", num_heads)
        object.__setattr__(self, "head_dim", head_dim)
        object.__setattr__(self, "rel_dim", int(rel_dim))
        object.__setattr__(self, "base", float(self.base))

    @property
    def kernel_shape(self) -> tuple[int, int, int]:
        """``(rel_dim, num_heads, head_dim)``: the shape of ``W_R``."""
        return (
            int(self.num_heads * self.head_dim if self.rel_dim is None else self.rel_dim),
            self.num_heads,
            self.head_dim,
        )

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


class _T5Delegating(SchemeDefaults):
    """The T5 bias modules: ``attention_bias`` through the :class:`T5BucketBias` in ``self.scheme`` with the
    table that the module returns from ``_table()``; no embedding, no rotation, no content term.

    Placed before the module base class, so these methods take precedence over :class:`_Delegating`'s.
    """

    if TYPE_CHECKING:
        scheme: T5BucketBias

    def _table(self) -> jax.Array:  # pragma: no cover - every module defines it
        raise NotImplementedError

    def attention_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """The bias ``[batch or 1, num_heads, q_len, k_len]`` for integer positions."""
        return self.scheme.attention_bias(self._table(), q_positions, k_positions)

    def __call__(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """Same as :meth:`attention_bias`."""
        return self.attention_bias(q_positions, k_positions)


class _TransformerXLDelegating(SchemeDefaults):
    """The Transformer-XL modules: ``attention_logits_bias`` through the :class:`TransformerXLLogits` in
    ``self.scheme`` with the parameters ``(W_R, u, v)`` that the module returns from ``_params()``.

    Placed before the module base class, so these methods take precedence over :class:`_Delegating`'s.
    """

    if TYPE_CHECKING:
        scheme: TransformerXLLogits

    def _params(self) -> tuple[jax.Array, jax.Array, jax.Array]:  # pragma: no cover - every module defines it
        raise NotImplementedError

    def attention_logits_bias(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None,
        k_positions: jax.Array | None,
    ) -> jax.Array:
        """The term ``[batch, num_heads, q_len, k_len]`` for queries and keys at their positions."""
        return self.scheme.attention_logits_bias(self._params(), q, k, q_positions, k_positions)

    def __call__(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None = None,
        k_positions: jax.Array | None = None,
    ) -> jax.Array:
        """Same as :meth:`attention_logits_bias` (positions ``None``: ``0 … length-1``)."""
        return self.attention_logits_bias(q, k, q_positions, k_positions)
