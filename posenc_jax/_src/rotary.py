"""Rotary position embeddings (RoPE, Su et al. 2021) on the package's one accurate angle kernel.

RoPE rotates each (first, second) feature pair ``i`` of a query or key at position ``p`` by the angle
``p * w_i``. Because rotations compose, the dot product of a query rotated to position ``m`` and a key rotated
to position ``n`` depends on positions only through ``m - n``.

The angles come from the same exact kernel that builds sinusoidal tables, so
rotary embeddings are accurate to float32 rounding at any position in the int32 range. Sine and cosine are
computed once at the shape of ``positions`` (never per head or per feature of ``x``) and in float32; they
are cast to ``x``'s dtype only for the final multiply-add.

Layouts use the words of :func:`posenc_jax.interleaved_to_split`: ``"interleaved"`` rotates dimensions
``(2i, 2i + 1)`` (GPT-J, RoFormer, the paper's pairing); ``"split"`` rotates ``(i, i + d/2)`` (Llama, Hugging
Face, Gemma, GPT-NeoX, MaxText). The rotary functions, values and modules have no default layout.
:func:`rotary_interleaved_to_split` and :func:`rotary_split_to_interleaved` convert query/key projection
weights between the two, so a checkpoint trained with one layout runs with the other.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._src import checks
from posenc_jax._src.angles import SplitPositions, computed_once, outside_int32, sincos
from posenc_jax._src.frequencies import Frequencies, resolve_frequencies
from posenc_jax._src.grids import check_sections
from posenc_jax._src.layouts import (
    Layout,
    check_rotary_layout,
    interleaved_permutation,
    merge_pairs,
    split_permutation,
    unmerge_pairs,
)
from posenc_jax._src.scaling import (
    Scaling,
    check_scaling,
    checked_rope_frequencies,
    depends_on_length,
    rope_attention_factor,
    traced_phase_constants,
)

__all__ = [
    "apply_rotary",
    "rotary_interleaved_to_split",
    "rotary_split_to_interleaved",
]

ROTARY_PAIRS = "rotary embeddings rotate pairs of features"


def check_rotary_dim(call: str, rotary_dim: object, head_dim: int) -> int:
    if rotary_dim is None:
        return head_dim
    rotary_dim = checks.even(call, "rotary_dim", rotary_dim, ROTARY_PAIRS)
    if rotary_dim > head_dim:
        raise checks.value_error(
            call,
            "rotary_dim",
            rotary_dim,
            f"rotary_dim must be <= head_dim={head_dim} (the number of leading features that are rotated)",
        )
    return rotary_dim


def apply_rotary(
    x: jax.Array,
    positions: jax.Array,
    *,
    layout: Layout | None = None,
    base: float = 10_000.0,
    frequencies: Frequencies | None = None,
    rotary_dim: int | None = None,
    scaling: Scaling | None = None,
    length: int | jax.Array | None = None,
    sections: int | tuple[int, ...] | None = None,
    section_layout: SectionLayout = "contiguous",
    proportion: float = 1.0,
) -> jax.Array:
    """Rotates the feature pairs of ``x`` by the angles ``positions * w_i``.

    For pair ``i`` with members ``(a, b)`` (dims ``(2i, 2i+1)`` interleaved, ``(i, i + r/2)`` split) at
    position ``p``: ``a' = a cos(p w_i) - b sin(p w_i)``, ``b' = b cos(p w_i) + a sin(p w_i)``.

    With ``sections`` (N-D rotary, see :func:`posenc_jax.grid_positions`), ``positions`` carries one
    coordinate per axis in a trailing axis, and pair ``i`` turns by ``p_a * w_i`` with ``a`` the axis that
    owns pair ``i``:
    with ``section_layout="contiguous"`` (Qwen2-VL's M-RoPE) axis ``a`` owns a block of ``sections[a]``
    consecutive pairs; with ``"interleaved"`` (Qwen3-VL's) the axes take turns, ``t, h, w, t, h, w, …``:
    pair ``i`` belongs to axis ``a >= 1`` when ``i % n_axes == a`` and ``i < n_axes * sections[a]``, and
    to axis 0 otherwise, so every axis has fast and slow frequencies.

    Two ways to rotate part of a head, both from Gemma's and GPT-NeoX's codebases:

    * ``rotary_dim`` (GPT-NeoX's ``rotary_pct``): rotate the first ``rotary_dim`` *features* with the
      frequencies of a ``rotary_dim``-wide head, ``w_i = base ** (-2i / rotary_dim)``; the rest pass through.
    * ``proportion`` (p-RoPE, Barbero et al. 2025; Gemma's ``rope_proportion``): keep the frequencies of the
      full width, ``w_i = base ** (-2i / rotary_dim)``, and rotate only the fastest ``floor(proportion *
      rotary_dim / 2)`` pairs, leaving the slower pairs (in the layout's pairing) unrotated. The two
      combine: ``proportion`` applies within the ``rotary_dim`` features.

    With a long-context ``scaling`` (see :mod:`posenc_jax.rope`) the frequencies are
    :func:`posenc_jax.rope_frequencies`, and the rotated features are multiplied by
    :func:`posenc_jax.rope_attention_factor` (queries and keys each, so logits by its square), as in the
    reference implementations; features beyond ``rotary_dim`` are never scaled.

    Integer positions beyond int32 (int64 under ``jax_enable_x64``): concrete ones raise; traced ones give
    NaN rows (with a length-dependent scaling, NaN in every rotated feature), never the rotation of a
    wrapped position. With x64 off, JAX converts an int64 argument of ``jax.jit`` to int32 before this
    function sees it (``2**31 + 5`` arrives as ``-2**31 + 5``), which no library can detect: keep positions
    within int32 or enable x64.

    Args:
      x: floating array ``[..., length, heads, head_dim]`` (the heads axis is required; use a size-1 axis for
        a single head).
      positions: integer or float32 array broadcastable to ``x.shape[:-2]`` whose last axis is ``length``,
        e.g. ``[length]`` or ``[batch, length]``; with ``sections``, the same followed by an axis of
        ``n_axes`` coordinates, e.g. ``[length, n_axes]``.
      layout: the pairing of the rotated features, required (no default): ``"split"`` (pair ``i`` is
        features ``(i, i + r/2)``) for Llama / Hugging Face / Gemma / GPT-NeoX / MaxText checkpoints,
        ``"interleaved"`` (features ``(2i, 2i+1)``) for GPT-J / RoFormer / the paper's pairing.
      base: ``theta`` of the geometric frequencies ``w_i = base ** (-2i / rotary_dim)``.
      frequencies: explicit ``[rotary_dim // 2]`` frequencies (concrete), replacing ``base``.
      rotary_dim: rotate only the first ``rotary_dim`` features (even, ``<= head_dim``); the others pass
        through unchanged. Defaults to ``head_dim``.
      scaling: a RoPE scaling of the geometric frequencies (:mod:`posenc_jax.rope`: ``Linear`` for position
        interpolation, ``NTK``, ``DynamicNTK``, ``YaRN``, ``Llama3``, ``LongRoPE``), or None.
      length: the current sequence length for length-dependent scalings (DynamicNTK, LongRoPE). A Python
        int gives exact float64 frequencies (one compilation per value); a jax integer scalar, or None
        (``max(positions) + 1``, computed in the graph), gives frequencies computed in the graph, one
        compilation for every length (see :mod:`posenc_jax.rope` for their accuracy). Ignored by the
        other scalings. It must lie in ``[1, 2**31]``: a Python int or a concrete array outside raises
        (``jnp.int32(0)`` as ``0`` does); a traced one outside (``0``, ``-5``, an int64 ``2**32 + 5``)
        gives NaN in every rotated feature, never the frequencies of a wrapped or clamped length. A traced
        length below ``max(positions) + 1`` is accepted: it selects the frequencies of that length, and
        every position, the later ones included, is rotated with them (as when a decoder keeps the
        frequencies of its prompt length); it is not checked against the positions.
      sections: None for 1-D positions; for N-D positions the number of axes (pairs split equally) or the
        pair count of each axis (summing to ``rotary_dim // 2``).
      section_layout: ``"contiguous"`` (default) or ``"interleaved"`` assignment of the pairs to the axes.
      proportion: the fraction of the pairs (fastest first) that rotate, in ``[0, 1]``; 1 rotates all.

    Returns:
      Array of the shape and dtype of ``x``. The angles are computed in float32 at the shape of
      ``positions`` and cast to ``x.dtype`` for the final multiply-add.

    Raises:
      TypeError: a missing ``layout``; non-floating ``x``; boolean, complex or 16-bit floating positions;
        an unknown ``scaling``; bad ``sections`` or ``length`` types.
      ValueError: ``x`` of rank < 3, odd ``head_dim`` or ``rotary_dim``, ``rotary_dim > head_dim``, unknown
        ``layout``, ``positions`` whose shape does not match ``x``'s leading axes (and ``sections``), bad
        ``base`` or ``frequencies``, ``scaling`` combined with ``frequencies``.

    >>> q = jnp.ones((2, 4, 1, 8))  # [batch, length, heads, head_dim]
    >>> apply_rotary(q, jnp.arange(4), layout="split").shape
    (2, 4, 1, 8)
    """
    call = "apply_rotary"
    layout = check_rotary_layout(call, layout)
    if getattr(x, "dtype", None) is None:
        x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise checks.type_error(call, "x", x, "x must be a floating array (queries or keys)")
    x_shape = tuple(x.shape)
    if len(x_shape) < 3:
        raise checks.value_error(
            call,
            "x",
            x,
            "x must have shape [..., length, heads, head_dim] (rank >= 3)",
            "add a size-1 heads axis for a single head",
        )
    head_dim = x_shape[-1]
    if head_dim <= 0 or head_dim % 2:
        raise checks.value_error(
            call, "x", x, f"x's last axis (head_dim) must be positive and even, got {head_dim}", ROTARY_PAIRS
        )
    rotary_dim = check_rotary_dim(call, rotary_dim, head_dim)
    scaling = check_scaling(scaling, call)
    if scaling is not None and frequencies is not None:
        raise checks.value_error(
            call,
            "scaling",
            scaling,
            "scaling applies to the geometric frequencies of base; it cannot be combined with frequencies=",
            "scale explicit frequencies yourself (e.g. divide them by the interpolation factor)",
        )
    w: np.ndarray | None = resolve_frequencies(rotary_dim, base=base, frequencies=frequencies, caller=call)
    traced_length = None
    if scaling is not None:
        base = checks.real_above(call, "base", base, 1.0)
        if depends_on_length(scaling) and not isinstance(length, numbers.Integral):
            traced_length = _traced_length(length, call)
            w = None
        else:
            w = checked_rope_frequencies(
                call, rotary_dim, base=base, scaling=scaling, rotary_dim=None, length=length
            )
    checks.one_of(call, "section_layout", section_layout, SECTION_LAYOUTS)
    rotated_pairs = rotated_pair_count(call, proportion, rotary_dim // 2)
    checked = checks.positions(call, positions)
    if sections is None:
        checks.positions_shape(call, checked, x_shape[:-2])
    else:
        sections = check_sections(sections, rotary_dim // 2, call)
        if checked.ndim < 2 or checked.shape[-1] != len(sections):
            raise checks.value_error(
                call,
                "positions",
                checked,
                f"N-D positions must end in an axis of {len(sections)} coordinates, one per section "
                f"(sections={sections})",
            )
        checks.positions_shape(call, checked, x_shape[:-2], coordinates=True)
        if section_layout == "interleaved":
            _check_interleaved_sections(call, sections)
    return _rotate(
        x,
        checked,
        traced_length,
        frequencies=None if w is None else tuple(w.tolist()),
        scaling=scaling if w is None else None,
        base=float(base),
        layout=layout,
        rotary_dim=rotary_dim,
        sections=sections,
        section_layout=section_layout,
        rotated_pairs=rotated_pairs,
        factor=rope_attention_factor(scaling),
    )


_LENGTH_LIMIT = 2**31  # a length covers positions 0 … 2**31 - 1 at most


SectionLayout = Literal["contiguous", "interleaved"]
SECTION_LAYOUTS = ("contiguous", "interleaved")


def rotated_pair_count(call: str, proportion: object, pairs: int) -> int:
    """``floor(proportion * pairs)``, as Gemma's ``int(rope_proportion * head_dim // 2)``."""
    allowed = "proportion must be a real number in [0, 1] (the fraction of the pairs that rotate)"
    if isinstance(proportion, bool) or not isinstance(proportion, numbers.Real):
        raise checks.type_error(call, "proportion", proportion, allowed)
    if not 0.0 <= float(proportion) <= 1.0:
        raise checks.value_error(call, "proportion", proportion, allowed)
    return int(float(proportion) * (2 * pairs) // 2)


def _check_interleaved_sections(call: str, sections: tuple[int, ...]) -> None:
    """Axis ``a >= 1`` takes pairs ``a, a + n, …``: its last, ``a + n (sections[a] - 1)``, must exist."""
    n, pairs = len(sections), sum(sections)
    for a, count in enumerate(sections[1:], start=1):
        if a + n * (count - 1) >= pairs:
            raise checks.value_error(
                call,
                "sections",
                sections,
                f"interleaved sections give axis {a} the pairs {a}, {a + n}, … (every {n}th), and {count} of "
                f"them do not fit in {pairs} pairs",
                "give axis 0 the largest count, as Qwen3-VL's (24, 20, 20)",
            )


def section_owners(sections: tuple[int, ...], section_layout: str) -> np.ndarray:
    """The axis that owns each pair, ``[sum(sections)]`` int (see :func:`apply_rotary`)."""
    n = len(sections)
    if section_layout == "contiguous":
        return np.repeat(np.arange(n), sections)
    owners = np.zeros(sum(sections), dtype=np.int64)
    for a, count in enumerate(sections[1:], start=1):
        owners[a : n * count : n] = a
    return owners


def _traced_length(length: object, call: str) -> jax.Array | None:
    """None (derive it from the positions in the graph) or a checked integer scalar array.

    A concrete array is checked on the host as a Python int would be (``jnp.int32(0)`` raises as ``0``
    does); a traced one cannot raise, and :func:`_length_and_validity` turns an invalid one into NaN.
    """
    if length is None:
        return None
    dtype = getattr(length, "dtype", None)
    shape = getattr(length, "shape", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.integer) or shape != ():
        raise checks.type_error(
            call, "length", length, "length must be a Python int, an integer scalar array, or None"
        )
    if not isinstance(length, jax.core.Tracer):
        value = int(np.asarray(length))
        if not 1 <= value <= _LENGTH_LIMIT:
            raise checks.value_error(
                call,
                "length",
                checks.Shown(f"<{np.dtype(dtype)}[] containing {value}>"),
                "length must be a positive integer <= 2**31 (the length of int32 positions)",
            )
    return jnp.asarray(length)


def _length_and_validity(length: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``length - 1`` as int32 and whether ``1 <= length <= 2**31``, compared in the length's own dtype
    (an int64 ``2**32 + 5`` is invalid, not 5)."""
    dtype = np.dtype(length.dtype)
    valid = length >= 1
    if dtype.itemsize > 4 or dtype.kind == "u":
        valid = valid & (length <= np.array(_LENGTH_LIMIT, dtype))
        length = jnp.minimum(length, np.array(_LENGTH_LIMIT, dtype))
    last = jnp.where(valid, length - 1, 0).astype(jnp.int32)
    return last, valid


def _index_last(positions, index: int):
    """``positions[..., index]`` for an array or exactly split host positions."""
    return jax.tree_util.tree_map(lambda a: a[..., index], positions)


def floor_max(positions) -> tuple[jax.Array, jax.Array]:
    """``floor(max(positions))`` as int32, also for exactly split host positions, and whether it lies in the
    int32 range (compared before the conversion: an int64 ``2**32 + 5`` is out of range, not 5)."""
    if isinstance(positions, SplitPositions):
        return jnp.max(positions.whole - (positions.fraction < 0).astype(jnp.int32)), jnp.bool_(True)
    top = jnp.max(positions)
    if jnp.issubdtype(top.dtype, jnp.integer):
        outside = outside_int32(top)
        valid = jnp.bool_(True) if outside is None else ~outside
    else:
        top = jnp.floor(top)
        valid = (top >= -(2.0**31)) & (top < 2.0**31)  # False for NaN
    return jnp.where(valid, top, 0).astype(jnp.int32), valid


@functools.partial(
    jax.jit,
    static_argnames=(
        "frequencies",
        "scaling",
        "base",
        "layout",
        "rotary_dim",
        "sections",
        "section_layout",
        "rotated_pairs",
        "factor",
    ),
)
def _rotate(
    x,
    positions,
    length,
    *,
    frequencies: tuple[float, ...] | None,
    scaling,
    base: float,
    layout: Layout,
    rotary_dim: int,
    sections: tuple[int, ...] | None,
    section_layout: str = "contiguous",
    rotated_pairs: int | None = None,
    factor: float,
):
    constants: np.ndarray | tuple[jax.Array, ...]
    valid = None
    if frequencies is not None:
        constants = np.array(frequencies, dtype=np.float64)
    else:  # a length-dependent scaling at a traced length, handled as its last position (no int32 overflow)
        last, valid = floor_max(positions) if length is None else _length_and_validity(length)
        constants = traced_phase_constants(scaling, rotary_dim, base, last)
    if sections is None:
        sin, cos = sincos(positions, constants)  # [..., length, r/2] float32
    else:  # each axis turns its own pairs, on the same kernel
        owners = section_owners(sections, section_layout)
        parts, order = [], []
        for axis in range(len(sections)):
            pairs = np.flatnonzero(owners == axis)
            part: np.ndarray | tuple[jax.Array, ...] = (
                constants[pairs]
                if isinstance(constants, np.ndarray)
                else tuple(c[jnp.asarray(pairs)] for c in constants)
            )
            parts.append(sincos(_index_last(positions, axis), part))
            order.append(pairs)
        sin = jnp.concatenate([p[0] for p in parts], axis=-1)
        cos = jnp.concatenate([p[1] for p in parts], axis=-1)
        inverse = np.argsort(np.concatenate(order))
        if np.any(inverse != np.arange(inverse.size)):  # interleaved: back to pair order
            sin, cos = sin[..., inverse], cos[..., inverse]
    if rotated_pairs is not None and rotated_pairs < sin.shape[-1]:  # p-RoPE: the slow pairs stay put
        keep = jnp.arange(sin.shape[-1]) < rotated_pairs
        sin, cos = jnp.where(keep, sin, 0.0), jnp.where(keep, cos, 1.0)
    if valid is not None:  # a length that cannot be one: no frequencies exist, every value is NaN
        sin = jnp.where(valid, sin, jnp.float32(jnp.nan))
        cos = jnp.where(valid, cos, jnp.float32(jnp.nan))
    if factor != 1.0:  # the scaling's attention factor, on the rotated features of q and k alike
        sin, cos = sin * jnp.float32(factor), cos * jnp.float32(factor)
    # Computed once at the positions' shape, not once per head and batch row of the rotation.
    sin, cos = computed_once(sin, cos)
    sin = sin[..., None, :].astype(x.dtype)  # broadcast over heads
    cos = cos[..., None, :].astype(x.dtype)
    head_dim = x.shape[-1]
    rotated = x if rotary_dim == head_dim else x[..., :rotary_dim]
    first, second = unmerge_pairs(rotated, layout)
    rotated = merge_pairs(first * cos - second * sin, second * cos + first * sin, layout)
    if rotary_dim == head_dim:
        return rotated
    return jnp.concatenate([rotated, x[..., rotary_dim:]], axis=-1)


def _convert_weights(call: str, w: Any, head_dim: object, axis: object, rotary_dim: object, to_split: bool):
    head_dim = checks.even(call, "head_dim", head_dim, ROTARY_PAIRS)
    rotary_dim = check_rotary_dim(call, rotary_dim, head_dim)
    xp: Any = np if isinstance(w, np.ndarray) else jnp
    w = w if xp is np else jnp.asarray(w)
    axis = checks.axis(call, axis, w.ndim)
    size = w.shape[axis]
    if size % head_dim:
        raise checks.value_error(
            call,
            "head_dim",
            head_dim,
            f"the size of axis {axis} ({size}) must be a multiple of head_dim (heads * head_dim features)",
        )
    permutation = split_permutation(rotary_dim) if to_split else interleaved_permutation(rotary_dim)
    per_head = np.concatenate([permutation, np.arange(rotary_dim, head_dim)])
    full = (np.arange(size // head_dim)[:, None] * head_dim + per_head[None, :]).reshape(-1)
    return xp.take(w, full, axis=axis)


def rotary_interleaved_to_split(
    w: jax.Array, *, head_dim: int, axis: int = -1, rotary_dim: int | None = None
) -> jax.Array:
    """Converts query/key projection weights from the interleaved to the split rotary layout.

    A model trained with ``layout="interleaved"`` computes the same attention scores with
    ``layout="split"`` once its query and key projections (kernels and biases) are converted. Within each
    head, the first ``rotary_dim`` output features are permuted; the rest are left in place.

    Args:
      w: a weight whose ``axis`` holds ``heads * head_dim`` output features (e.g. a ``[d_model,
        heads * head_dim]`` kernel or a ``[heads * head_dim]`` bias) or ``head_dim`` features (e.g. a
        ``[d_model, heads, head_dim]`` kernel with ``axis=-1``). numpy in, numpy out; otherwise jax.
      head_dim: features per head (even).
      axis: the output-feature axis of ``w``.
      rotary_dim: number of rotated features per head (even, ``<= head_dim``); defaults to ``head_dim``.

    Returns:
      ``w`` with its output features reordered.

    Raises:
      ValueError: odd or non-positive ``head_dim`` / ``rotary_dim``, a bad ``axis``, or an axis size that is
        not a multiple of ``head_dim``.

    >>> rotary_interleaved_to_split(np.arange(8), head_dim=4)
    array([0, 2, 1, 3, 4, 6, 5, 7])
    """
    return _convert_weights("rotary_interleaved_to_split", w, head_dim, axis, rotary_dim, True)


def rotary_split_to_interleaved(
    w: jax.Array, *, head_dim: int, axis: int = -1, rotary_dim: int | None = None
) -> jax.Array:
    """Converts query/key projection weights from the split to the interleaved rotary layout.

    The inverse of :func:`rotary_interleaved_to_split`; same arguments.

    Args:
      w: a weight whose ``axis`` holds ``heads * head_dim`` (or ``head_dim``) output features.
      head_dim: features per head (even).
      axis: the output-feature axis of ``w``.
      rotary_dim: number of rotated features per head (even, ``<= head_dim``); defaults to ``head_dim``.

    Returns:
      ``w`` with its output features reordered.

    Raises:
      ValueError: as :func:`rotary_interleaved_to_split`.

    >>> rotary_split_to_interleaved(np.array([0, 2, 1, 3]), head_dim=4)
    array([0, 1, 2, 3])
    """
    return _convert_weights("rotary_split_to_interleaved", w, head_dim, axis, rotary_dim, False)
