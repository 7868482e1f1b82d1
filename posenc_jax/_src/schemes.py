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

Each scheme is a frozen dataclass whose fields are checked once, at construction; it can be passed as it is
to :func:`posenc_jax.attention`, or held by a model. The schemes with parameters (:class:`Learned`,
:class:`T5Bias`, :class:`TransformerXLRelative`) take them as optional fields. :mod:`posenc_jax.nnx` and
:mod:`posenc_jax.linen` have a module of the same name for every scheme: it holds the value (and the
parameters) and calls it, so every API computes the same numbers with the same code.

>>> import jax.numpy as jnp
>>> scheme = Rotary(8, layout="split")
>>> q = k = jnp.ones((1, 3, 2, 8))  # [batch, length, heads, head_dim]
>>> [a.shape for a in scheme.rotate(q, k, jnp.arange(3), jnp.arange(3))]
[(1, 3, 2, 8), (1, 3, 2, 8)]
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._src import checks
from posenc_jax._src.alibi import alibi_bias
from posenc_jax._src.frequencies import SINUSOID_PAIRS, Frequencies, resolve_frequencies
from posenc_jax._src.layouts import Layout, check_layout, check_rotary_layout
from posenc_jax._src.learned import OUT_OF_RANGE_POLICIES, lookup
from posenc_jax._src.relative import check_scale, check_t5_config, t5_bias, transformer_xl_logits
from posenc_jax._src.rotary import (
    ROTARY_PAIRS,
    apply_rotary,
    check_rotary_dim,
    floor_max,
    rotated_pair_count,
)
from posenc_jax._src.scaling import Scaling, check_scaling, checked_rope_frequencies, depends_on_length
from posenc_jax._src.sinusoidal import sinusoidal_kernel, sinusoidal_table_kernel

__all__ = [
    "ALiBi",
    "Learned",
    "NoPosition",
    "PositionalScheme",
    "Rotary",
    "SchemeDefaults",
    "Sinusoidal",
    "T5Bias",
    "TransformerXLRelative",
]


@runtime_checkable
class PositionalScheme(Protocol):
    """What every positional scheme implements (the modules of both Flax APIs and the values here).

    Shapes: ``x`` ``[batch, length, dim]`` (or ``[length, dim]``), ``q`` / ``k``
    ``[batch, length, heads, head_dim]``, positions ``[length]`` or ``[batch, length]``.
    :class:`SchemeDefaults` gives every method the value of a scheme that contributes nothing.

    The rule for ``__call__``: calling a scheme (value or module) is its one contribution, with the signature
    of the protocol method that makes it: ``embed(x, positions)`` for the absolute schemes (``NoPosition``,
    ``Sinusoidal``, ``Learned``), ``rotate(q, k, q_positions, k_positions)`` for ``Rotary``,
    ``attention_bias(q_positions, k_positions)`` for ``ALiBi`` and ``T5Bias``, and
    ``attention_logits_bias(q, k, q_positions, k_positions)`` for ``TransformerXLRelative``.
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
        raise checks.type_error(caller, "x", x, "x must be a floating array of token embeddings")
    if len(shape) not in (2, 3):
        raise checks.value_error(caller, "x", x, "x must have shape [batch, length, dim] or [length, dim]")
    if dim is not None and shape[-1] != dim:
        raise checks.value_error(caller, "x", x, f"the last axis of x must equal the scheme's dim={dim}")


def check_heads(caller: str, head_dim: int | None = None, **arrays: Any) -> None:
    """Each array must be ``[batch, length, heads, head_dim]`` (with the scheme's ``head_dim`` if given)."""
    for name, value in arrays.items():
        shape = _shape(value)
        if len(shape) != 4:
            raise checks.value_error(
                caller, name, value, f"{name} must have shape [batch, length, heads, head_dim]"
            )
        if head_dim is not None and shape[-1] != head_dim:
            raise checks.value_error(
                caller, name, value, f"the last axis of {name} must equal the scheme's head_dim={head_dim}"
            )


def _check_embed_positions(x: jax.Array, positions: object, caller: str) -> None:
    """Positions (if given) must broadcast to ``x``'s leading axes; their values are the function's job."""
    if positions is not None:
        checks.positions_shape(caller, positions, tuple(x.shape[:-1]))


def _check_dtype_or_none(dtype: object, caller: str) -> Any:
    return None if dtype is None else checks.floating_dtype(caller, dtype)


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
            checks.positions(caller, positions)  # the values an absolute scheme would accept
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
        check_heads(f"{type(self).__name__}.rotate", q=q, k=k)
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


def _frequencies_array(frequencies: Frequencies | None) -> np.ndarray | None:
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
    frequencies: Frequencies | None = None
    dtype: Any = None

    def __post_init__(self):
        caller = type(self).__name__
        resolved = resolve_frequencies(self.dim, base=self.base, frequencies=self.frequencies, caller=caller)
        check_layout(caller, self.layout)
        _check_dtype_or_none(self.dtype, caller)
        object.__setattr__(self, "dim", int(self.dim))
        object.__setattr__(self, "frequencies", _frequencies_tuple(self.frequencies, resolved))

    @functools.cached_property
    def _kernel_frequencies(self) -> tuple[float, ...]:
        """The checked frequencies, prepared once: calls go straight to the kernels, checking their inputs."""
        w = resolve_frequencies(self.dim, base=self.base, frequencies=self.frequencies, caller="Sinusoidal")
        return tuple(w.tolist())

    def _encoding(self, caller: str, positions: Any, dtype: Any) -> jax.Array:
        return sinusoidal_kernel(
            checks.positions(caller, positions),
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
            encoding = sinusoidal_table_kernel(
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


def _parameter(doc: str) -> Any:
    """A field holding a parameter array: optional, left out of ``==``, ``hash`` and ``repr``."""
    return dataclasses.field(default=None, compare=False, repr=False, metadata={"parameter": doc})


def configuration_fields(scheme_type: type) -> tuple[str, ...]:
    """The names of a scheme value's configuration fields (its parameters, held by the modules, left out)."""
    return tuple(f.name for f in dataclasses.fields(scheme_type) if "parameter" not in f.metadata)


def _check_parameter(value: Any, name: str, shape: tuple[int, ...], caller: str) -> None:
    """A parameter, when given, must be a floating array of the configured shape."""
    if value is None:
        return
    dtype = getattr(value, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise checks.type_error(caller, name, value, f"{name} must be a floating array {list(shape)}")
    if tuple(value.shape) != shape:
        raise checks.value_error(caller, name, value, f"{name} must have shape {list(shape)} for this scheme")


def _require(value: Any, name: str, caller: str, module: str) -> jax.Array:
    if value is None:
        raise checks.value_error(
            caller,
            name,
            None,
            f"this value holds no {name}",
            f"pass {name}= to the value, or use posenc_jax.nnx.{module} / posenc_jax.linen.{module}, which "
            "hold it as a parameter",
        )
    return value


@dataclasses.dataclass(frozen=True)
class Learned(SchemeDefaults):
    """A learned table of position vectors, added to the token embeddings: ``x + table[positions]``.

    The value holds the configuration and, to be used on its own, the ``table`` ``[max_length, dim]``;
    :class:`posenc_jax.nnx.Learned` and :class:`posenc_jax.linen.Learned` hold the table as a parameter and
    call this value with it. Positions outside ``[0, max_length)`` never silently reuse a row: a static length
    above ``max_length`` raises at trace time, concrete positions raise at once, and traced ones follow
    ``out_of_range`` (as :func:`posenc_jax.learned_lookup`).

    Attributes:
      max_length: number of rows (positive).
      dim: the model width (positive).
      table: the table ``[max_length, dim]`` (floating), or None (then ``embed`` / ``encode`` raise).
      dtype: output dtype. ``None``: ``embed`` returns ``x``'s dtype, ``encode`` the table's.
      param_dtype: the table's dtype when a module creates it (floating).
      out_of_range: ``"nan"`` (default), ``"error"``, ``"clip"`` or ``"wrap"``.

    Raises:
      ValueError, TypeError: non-positive ``max_length`` / ``dim``, unknown ``out_of_range``, bad dtypes, a
        table of another shape.

    >>> Learned(8, 4, table=jnp.ones((8, 4))).encode(jnp.array([0, 7])).shape
    (2, 4)
    """

    max_length: int
    dim: int
    _: dataclasses.KW_ONLY
    table: jax.Array | None = _parameter("the table [max_length, dim]")
    dtype: Any = None
    param_dtype: Any = jnp.float32
    out_of_range: str = "nan"

    def __post_init__(self):
        caller = "Learned"
        object.__setattr__(self, "max_length", checks.integer(caller, "max_length", self.max_length))
        object.__setattr__(self, "dim", checks.integer(caller, "dim", self.dim))
        _check_dtype_or_none(self.dtype, caller)
        checks.floating_dtype(caller, self.param_dtype, "param_dtype")
        checks.one_of(caller, "out_of_range", self.out_of_range, OUT_OF_RANGE_POLICIES)
        _check_parameter(self.table, "table", (self.max_length, self.dim), caller)

    def encode(self, positions: jax.Array) -> jax.Array:
        """The rows for integer ``positions``: ``positions.shape + (dim,)`` (``dtype``, else the table's)."""
        caller = "Learned.encode"
        table = _require(self.table, "table", caller, "Learned")
        encoding = lookup(table, positions, out_of_range=self.out_of_range, caller=caller)
        return encoding if self.dtype is None else encoding.astype(self.dtype)

    def embed(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """``x + table[positions]``; a static length beyond the table raises ``ValueError`` at trace time."""
        caller = "Learned.embed"
        table = _require(self.table, "table", caller, "Learned")
        _check_x(x, caller, self.dim)
        if positions is None:
            if x.shape[-2] > self.max_length:
                raise checks.value_error(
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

    def __call__(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """Same as :meth:`embed`."""
        return self.embed(x, positions)


@dataclasses.dataclass(frozen=True)
class Rotary(SchemeDefaults):
    """Rotary position embeddings: rotates queries and keys by their positions (:func:`apply_rotary`).

    Attributes:
      head_dim: features per head (positive, even).
      layout: required (no default): ``"split"`` for Llama / Hugging Face / Gemma / GPT-NeoX / MaxText
        checkpoints, ``"interleaved"`` for GPT-J / RoFormer / the paper's pairing.
      base: ``theta`` of the frequencies ``w_i = base ** (-2i / rotary_dim)``.
      rotary_dim: rotate only the first ``rotary_dim`` features of each head (default: all).
      frequencies: optional explicit ``[rotary_dim // 2]`` frequencies (stored as a tuple).
      scaling: a long-context RoPE scaling (:mod:`posenc_jax.rope`: ``Linear`` for position interpolation,
        ``YaRN``, ``Llama3``, …) of the ``base`` frequencies, or None. Its attention factor multiplies the
        rotated features of queries and keys each (logits by its square). For length-dependent scalings
        (DynamicNTK, LongRoPE) the length is ``max(positions) + 1`` computed in the graph, over the query and
        key positions together in :meth:`rotate` so that both turn with the same frequencies.
      proportion: p-RoPE (Barbero et al. 2025), Gemma's ``rope_proportion``: rotate only the fastest
        ``floor(proportion * rotary_dim / 2)`` pairs, with the frequencies of the full ``rotary_dim``, and
        leave the slower pairs unrotated (``rotary_dim`` instead rotates the first features with frequencies
        of the narrower width); 1 (default) rotates every pair, 0 none.

    Raises:
      TypeError: a missing ``layout``, and the type errors of the other fields.
      ValueError: bad ``head_dim``, ``rotary_dim``, ``layout``, ``base``, ``frequencies``, ``scaling`` (also:
        ``scaling`` combined with ``frequencies``) or ``proportion``.

    >>> q = k = jnp.ones((1, 3, 2, 8))
    >>> [a.shape for a in Rotary(8, layout="split")(q, k)]
    [(1, 3, 2, 8), (1, 3, 2, 8)]
    """

    head_dim: int
    _: dataclasses.KW_ONLY
    layout: Layout | None = None
    base: float = 10_000.0
    rotary_dim: int | None = None
    frequencies: Frequencies | None = None
    scaling: Scaling | None = None
    proportion: float = 1.0

    def __post_init__(self):
        caller = type(self).__name__
        head_dim = checks.even(caller, "head_dim", self.head_dim, ROTARY_PAIRS)
        dim = check_rotary_dim(caller, self.rotary_dim, head_dim)
        rotated_pair_count(caller, self.proportion, dim // 2)
        object.__setattr__(self, "proportion", float(self.proportion))
        check_rotary_layout(caller, self.layout)
        resolved = resolve_frequencies(dim, base=self.base, frequencies=self.frequencies, caller=caller)
        if check_scaling(self.scaling, caller) is not None:
            if self.frequencies is not None:
                raise checks.value_error(
                    caller,
                    "scaling",
                    self.scaling,
                    "scaling applies to the geometric frequencies of base; it cannot be combined with "
                    "frequencies=",
                    "scale explicit frequencies yourself (e.g. divide them by the interpolation factor)",
                )
            # the scaled frequencies must exist for this head (any length; length-dependent ones at length 1)
            checked_rope_frequencies(
                caller, head_dim, base=self.base, scaling=self.scaling, rotary_dim=dim, length=1
            )
        object.__setattr__(self, "head_dim", head_dim)
        object.__setattr__(self, "rotary_dim", None if self.rotary_dim is None else dim)
        object.__setattr__(self, "frequencies", _frequencies_tuple(self.frequencies, resolved))

    def _apply(self, x: jax.Array, positions: jax.Array | None, length: jax.Array | None = None) -> jax.Array:
        return apply_rotary(
            x,
            jnp.arange(x.shape[1], dtype=jnp.int32) if positions is None else positions,
            layout=self.layout,
            base=self.base,
            frequencies=_frequencies_array(self.frequencies),
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
        check_heads(call, self.head_dim, q=q, k=k)
        length = None
        if depends_on_length(self.scaling):  # one length (hence one set of frequencies) for q and k
            ends = [
                (jnp.asarray(x.shape[1] - 1, jnp.int32), jnp.bool_(True))
                if p is None
                else floor_max(checks.positions(call, p, name))
                for x, p, name in ((q, q_positions, "q_positions"), (k, k_positions, "k_positions"))
            ]
            # uint32, so that the last int32 position's length 2**31 fits; 0 (NaN) when a position is out of
            # the int32 range (an int64 2**32 + 5 under x64 must not turn into a length of 6).
            end = jnp.maximum(jnp.maximum(ends[0][0], ends[1][0]), 0).astype(jnp.uint32)
            length = jnp.where(ends[0][1] & ends[1][1], end + 1, jnp.uint32(0))
        return self._apply(q, q_positions, length), self._apply(k, k_positions, length)

    def __call__(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None = None,
        k_positions: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Same as :meth:`rotate`."""
        return self.rotate(q, k, q_positions, k_positions)


@dataclasses.dataclass(frozen=True)
class ALiBi(SchemeDefaults):
    """ALiBi: a per-head linear distance penalty on attention logits (:func:`posenc_jax.alibi_bias`).

    The default ``is_causal=False`` (``-m_h |i - j|`` for every pair) is the one that is right everywhere: in
    an encoder it penalises keys on both sides, and in a decoder, where a causal mask hides the keys after
    each query, the visible keys get exactly the causal bias ``-m_h (i - j)``. ``is_causal=True`` leaves the
    keys after the query at 0, which is only right when a causal mask removes them: in an encoder without one
    it would silently favour the future over the past.

    Attributes:
      num_heads: number of attention heads (positive).
      is_causal: ``False`` (default): ``-m_h |i - j|``; ``True``: ``-m_h (i - j)`` for ``j <= i``, 0 above
        the diagonal (for decoders; masking stays the mask's job).

    Raises:
      ValueError, TypeError: ``num_heads <= 0`` or not an int, non-bool ``is_causal``.

    >>> ALiBi(4).attention_bias(jnp.arange(3), jnp.arange(3)).shape
    (1, 4, 3, 3)
    """

    num_heads: int
    _: dataclasses.KW_ONLY
    is_causal: bool = False

    def __post_init__(self):
        caller = type(self).__name__
        object.__setattr__(self, "num_heads", checks.integer(caller, "num_heads", self.num_heads))
        object.__setattr__(self, "is_causal", checks.boolean(caller, "is_causal", self.is_causal))

    def attention_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """The bias ``[batch or 1, num_heads, q_len, k_len]`` float32."""
        return alibi_bias(q_positions, k_positions, num_heads=self.num_heads, is_causal=self.is_causal)

    def __call__(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """Same as :meth:`attention_bias`."""
        return self.attention_bias(q_positions, k_positions)


# ------------------------------------------------------------------------------------ relative schemes


#: The initial T5 bias table: uniform with variance 1 / fan_avg, as in the T5X reference implementation.
T5_EMBEDDING_INIT = jax.nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
#: The initial Transformer-XL projection ``W_R`` ``[rel_dim, heads, head_dim]``: variance 1 / rel_dim (LeCun
#: normal over its input, the sinusoid), as Flax's ``DenseGeneral`` initializes a kernel of that shape.
TRANSFORMER_XL_KERNEL_INIT = jax.nn.initializers.variance_scaling(
    1.0, "fan_in", "truncated_normal", in_axis=0, out_axis=(1, 2)
)


@dataclasses.dataclass(frozen=True)
class T5Bias(SchemeDefaults):
    """T5's relative attention bias: a learned scalar per head and bucket of ``k_pos - q_pos``.

    :meth:`attention_bias` gathers ``table[bucket(k_pos - q_pos)]`` (:func:`posenc_jax.t5_bias`, Raffel et al.
    2020). The value holds the configuration and, to be used on its own, the ``table``
    ``[num_buckets, num_heads]``; :class:`posenc_jax.nnx.T5Bias` and :class:`posenc_jax.linen.T5Bias` hold
    the table as a parameter and call this value with it.

    Attributes:
      num_heads: attention heads (positive).
      is_causal: ``False`` for an encoder (keys before and after a query get separate buckets), ``True`` for
        a decoder; no default, since either is silently wrong in the other setting.
      num_buckets: buckets per head (see :func:`posenc_jax.t5_buckets`).
      max_distance: distances from here on share the last bucket.
      table: the table ``[num_buckets, num_heads]`` (floating), or None (then ``attention_bias`` raises).
      dtype: the bias's dtype; ``None`` keeps the table's.
      param_dtype: the table's dtype when a module creates it.

    Raises:
      TypeError, ValueError: as :func:`posenc_jax.t5_buckets`, for ``num_heads``, the dtypes and the table.

    >>> scheme = T5Bias(2, is_causal=True, num_buckets=4, max_distance=8, table=jnp.ones((4, 2)))
    >>> scheme.attention_bias(jnp.arange(3), jnp.arange(3)).shape
    (1, 2, 3, 3)
    """

    num_heads: int
    _: dataclasses.KW_ONLY
    is_causal: bool
    num_buckets: int = 32
    max_distance: int = 128
    table: jax.Array | None = _parameter("the table [num_buckets, num_heads]")
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        caller = "T5Bias"
        object.__setattr__(self, "num_heads", checks.integer(caller, "num_heads", self.num_heads))
        check_t5_config(self.num_buckets, self.max_distance, self.is_causal, caller)
        _check_dtype_or_none(self.dtype, caller)
        checks.floating_dtype(caller, self.param_dtype, "param_dtype")
        _check_parameter(self.table, "table", self.table_shape, caller)

    @property
    def table_shape(self) -> tuple[int, int]:
        """``(num_buckets, num_heads)``."""
        return (int(self.num_buckets), self.num_heads)

    def attention_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """``table[bucket(k_pos - q_pos)]`` as ``[batch or 1, num_heads, q_len, k_len]``, integer positions."""
        table = _require(self.table, "table", "T5Bias.attention_bias", "T5Bias")
        bias = t5_bias(
            q_positions, k_positions, table=table, is_causal=self.is_causal, max_distance=self.max_distance
        )
        return bias if self.dtype is None else bias.astype(self.dtype)

    def __call__(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """Same as :meth:`attention_bias`."""
        return self.attention_bias(q_positions, k_positions)


@dataclasses.dataclass(frozen=True)
class TransformerXLRelative(SchemeDefaults):
    """Transformer-XL's relative attention (Dai et al. 2019): a content-dependent term of the logits.

    :meth:`attention_logits_bias` returns ``scale * ((q_i + v)·W_R R_{i-j} + u·k_j)``
    (:func:`posenc_jax.transformer_xl_logits`), which attention adds to ``scale * q·k``. Parameters:
    ``kernel`` (``W_R``, ``[rel_dim, num_heads, head_dim]``), ``content_bias`` (``u``) and ``position_bias``
    (``v``), both ``[num_heads, head_dim]``. The value holds the configuration and, to be used on its own,
    the parameters; :class:`posenc_jax.nnx.TransformerXLRelative` and
    :class:`posenc_jax.linen.TransformerXLRelative` hold them as parameters and call this value with them.
    Works with any positions (randomized ones included); ``None`` for both means ``0 … length-1`` and takes
    the cheaper relative-shift route.

    Attributes:
      num_heads: query heads (positive).
      head_dim: features per head (positive).
      rel_dim: width of the relative sinusoid ``R`` (positive, even); ``None`` means
        ``num_heads * head_dim``, the model width, as in the paper.
      base: geometric base of the sinusoid's frequencies.
      scale: factor of the term; ``None`` means ``1 / sqrt(head_dim)``. It must equal the attention's scale of
        ``q·k`` (the paper scales the whole score), which is ``1 / sqrt(head_dim)`` by default everywhere.
      kernel: ``W_R`` ``[rel_dim, num_heads, head_dim]``, or None (then the logits term raises).
      content_bias: ``u`` ``[num_heads, head_dim]``, or None.
      position_bias: ``v`` ``[num_heads, head_dim]``, or None.
      dtype: computation and output dtype; ``None`` follows the queries' dtype.
      param_dtype: dtype of the parameters when a module creates them.

    Raises:
      TypeError, ValueError: non-positive sizes, an odd ``rel_dim``, a bad ``base``, ``scale``, dtype or
        parameter shape.
    """

    num_heads: int
    head_dim: int
    _: dataclasses.KW_ONLY
    rel_dim: int | None = None
    base: float = 10_000.0
    scale: float | None = None
    kernel: jax.Array | None = _parameter("W_R [rel_dim, num_heads, head_dim]")
    content_bias: jax.Array | None = _parameter("u [num_heads, head_dim]")
    position_bias: jax.Array | None = _parameter("v [num_heads, head_dim]")
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        caller = "TransformerXLRelative"
        num_heads = checks.integer(caller, "num_heads", self.num_heads)
        head_dim = checks.integer(caller, "head_dim", self.head_dim)
        rel_dim = num_heads * head_dim if self.rel_dim is None else self.rel_dim
        rel_dim = checks.even(caller, "rel_dim", rel_dim, SINUSOID_PAIRS)
        checks.real_above(caller, "base", self.base, 1.0)
        check_scale(self.scale, caller)
        _check_dtype_or_none(self.dtype, caller)
        checks.floating_dtype(caller, self.param_dtype, "param_dtype")
        object.__setattr__(self, "num_heads", num_heads)
        object.__setattr__(self, "head_dim", head_dim)
        object.__setattr__(self, "rel_dim", int(rel_dim))
        object.__setattr__(self, "base", float(self.base))
        _check_parameter(self.kernel, "kernel", self.kernel_shape, caller)
        _check_parameter(self.content_bias, "content_bias", self.bias_shape, caller)
        _check_parameter(self.position_bias, "position_bias", self.bias_shape, caller)

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
        """``(num_heads, head_dim)``: the shape of ``content_bias`` and ``position_bias``."""
        return (self.num_heads, self.head_dim)

    def attention_logits_bias(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None = None,
        k_positions: jax.Array | None = None,
    ) -> jax.Array:
        """``scale * ((q_i + v)·W_R R_{i-j} + u·k_j)`` ``[batch, heads, q_len, k_len]``.

        Args:
          q: queries ``[batch, q_len, num_heads, head_dim]``.
          k: keys ``[batch, k_len, kv_heads, head_dim]``.
          q_positions: ``[q_len]`` or ``[batch, q_len]``, or None with ``k_positions`` None for
            ``0 … length-1`` (then the relative-shift route runs).
          k_positions: ``[k_len]`` or ``[batch, k_len]``, or None.
        """
        caller = "TransformerXLRelative.attention_logits_bias"
        params = [
            _require(getattr(self, name), name, caller, "TransformerXLRelative")
            for name in ("kernel", "content_bias", "position_bias")
        ]
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
            content_bias=content_bias,
            position_bias=position_bias,
            base=self.base,
            scale=self.scale,
        )

    def __call__(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None = None,
        k_positions: jax.Array | None = None,
    ) -> jax.Array:
        """Same as :meth:`attention_logits_bias` (positions ``None``: ``0 … length-1``)."""
        return self.attention_logits_bias(q, k, q_positions, k_positions)
