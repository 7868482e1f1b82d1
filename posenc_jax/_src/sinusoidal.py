"""The sinusoidal encoding of "Attention is all you need", exact in layout and accurate at any position.

For position ``pos``, width ``dim`` and pair index ``i = 0 … dim/2 - 1``::

    PE(pos, 2i)     = sin(pos * w_i)        w_i = base ** (-2i / dim)     (base = 10000 in the paper)
    PE(pos, 2i + 1) = cos(pos * w_i)

``i`` numbers the (sin, cos) *pair*; ``2i`` and ``2i + 1`` are the *dimensions* it occupies. The paper writes
``sin(pos / 10000^(2i/d))``, the same thing. That is ``layout="interleaved"``. ``layout="split"`` stores the
same pairs as all sines first, then all cosines (dimension ``i`` and ``i + dim/2``), as the Flax examples,
tensor2tensor, praxis and MaxText do. tensor2tensor also spaces its frequencies slightly differently:
pass ``frequencies=tensor2tensor_frequencies(dim)`` with ``layout="split"`` to reproduce its tables.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._src import checks
from posenc_jax._src.angles import (
    computed_once,
    outside_int32,
    phase_turns,
    quarter_turns,
    sincos,
    sincos_of_turns,
)
from posenc_jax._src.frequencies import Frequencies, resolve_frequencies
from posenc_jax._src.layouts import Layout, check_layout

__all__ = ["sinusoidal", "sinusoidal_table"]


def _feature_frequencies(frequencies: tuple[float, ...], layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Per output feature: its frequency and its phase offset in quarter turns (1 = cosine, via sin(θ+π/2)).

    Writing each feature as ``sin(pos * w + q π/2)`` lays the output out directly, with no interleaving
    shuffle of a large array (which XLA on CPU executes slowly).
    """
    w = np.array(frequencies, dtype=np.float64)
    quarters = np.array([0, 1], dtype=np.uint32)
    if layout == "interleaved":
        return np.repeat(w, 2), np.tile(quarters, len(w))
    return np.tile(w, 2), np.repeat(quarters, len(w))


@functools.partial(jax.jit, static_argnames=("frequencies", "layout", "dtype"))
def sinusoidal_kernel(positions, *, frequencies: tuple[float, ...], layout: Layout, dtype: np.dtype):
    feature_w, feature_quarters = _feature_frequencies(frequencies, layout)
    encoding, _ = sincos(positions, feature_w, feature_quarters)
    # Computed once at the positions' shape, not once per batch row of a broadcasting consumer.
    (encoding,) = computed_once(encoding)
    return encoding.astype(dtype)


def sinusoidal(
    positions: jax.Array,
    dim: int,
    *,
    base: float = 10_000.0,
    layout: Layout = "interleaved",
    frequencies: Frequencies | None = None,
    dtype: jnp.dtype = jnp.float32,
) -> jax.Array:
    """The sinusoidal positional encoding of arbitrary positions.

    ``PE(pos, 2i) = sin(pos * w_i)``, ``PE(pos, 2i+1) = cos(pos * w_i)`` with ``w_i = base ** (-2i / dim)``,
    ``i = 0 … dim/2 - 1`` numbering the (sin, cos) pairs (layout ``"interleaved"``, the paper's). With
    ``layout="split"`` the same values are ordered ``[sin(pos*w_0) … sin(pos*w_{n-1}), cos(pos*w_0) …]``.

    Accuracy: within 1e-6 (about 3e-7 measured) of a float64 evaluation of the formula for every integer
    ``|pos| < 2**31`` and any ``dim``, with ``jax_enable_x64`` off; floating positions are encoded exactly as
    the floating-point value given. A plain float32 ``sin(pos * w)`` is off by 7e-2 at ``pos = 2**20``.
    Low-precision ``dtype`` outputs are the accurate float32 values rounded once.

    Positions that cannot be encoded raise when they are concrete (numpy arrays, Python numbers, arrays that
    are not traced); under ``jit`` they cannot raise, so non-finite floating positions or ``|pos| >= 2**31``
    (int64 under ``jax_enable_x64`` included) give NaN rows, never the encoding of a wrapped position. With
    x64 off, JAX converts an int64 argument of ``jax.jit`` to int32 before this function sees it
    (``2**31 + 5`` arrives as ``-2**31 + 5``), which no library can detect: keep positions within int32 or
    enable x64.

    Args:
      positions: integer or floating array of any shape ``[...]``: ``arange(L)``, offsets for decoding with
        a cache, packed sequences' per-segment positions, per-row positions ``[batch, length]``, fractional
        or negative positions. Traced under ``jit``. Host float64 positions (numpy arrays, Python floats)
        are split exactly into an integer and a fraction before any conversion, so ``123456789.0`` encodes
        as ``123456789`` does, with ``jax_enable_x64`` off (an argument of ``jax.jit`` is converted by JAX
        itself before this function sees it: pass integer positions there).
      dim: the encoding width, a positive even integer (static). Odd widths are rejected rather than padded
        with a zero column (tensor2tensor's behaviour): build ``dim + 1`` features and slice if needed.
      base: the geometric base of the frequencies (static).
      layout: ``"interleaved"`` (paper) or ``"split"`` (sines first, then cosines).
      frequencies: optional concrete ``[dim // 2]`` angular frequencies overriding ``base``, e.g.
        :func:`posenc_jax.tensor2tensor_frequencies`. Must not be traced.
      dtype: floating output dtype (static).

    Returns:
      Array ``positions.shape + (dim,)`` of ``dtype``.

    Raises:
      TypeError: boolean/complex/16-bit floating positions, non-floating ``dtype``, non-integer ``dim``,
        traced ``frequencies``.
      ValueError: odd or non-positive ``dim``, ``base <= 1`` or non-finite, wrong ``frequencies`` length,
        unknown ``layout``, host positions out of range or non-finite.

    >>> import jax.numpy as jnp, numpy as np
    >>> table = sinusoidal(jnp.arange(3), 4)  # rows: [sin p, cos p, sin p/100, cos p/100]
    >>> np.asarray(table, np.float64).round(3).tolist()
    [[0.0, 1.0, 0.0, 1.0], [0.841, 0.54, 0.01, 1.0], [0.909, -0.416, 0.02, 1.0]]
    """
    call = "sinusoidal"
    w = resolve_frequencies(dim, base=base, frequencies=frequencies, caller=call)
    check_layout(call, layout)
    resolved = checks.floating_dtype(call, dtype)
    positions = checks.positions(call, positions)
    return sinusoidal_kernel(positions, frequencies=tuple(w.tolist()), layout=layout, dtype=resolved)


def _block_size(length: int) -> int:
    """Rows per block for angle addition: a power of two near sqrt(length), so both factor tables are small."""
    return 1 << max(0, round(math.log2(max(length, 1)) / 2))


@functools.partial(jax.jit, static_argnames=("length", "frequencies", "layout", "dtype"))
def sinusoidal_table_kernel(
    offset, *, length: int, frequencies: tuple[float, ...], layout: Layout, dtype: np.dtype
):
    feature_w, feature_quarters = _feature_frequencies(frequencies, layout)
    block = _block_size(length)
    num_blocks = -(-length // block)
    # pos = offset + block * h + r. Fixed-point phases add exactly, so sines are evaluated only for the
    # num_blocks coarse and block fine positions, and each output is one multiply-add of those:
    # sin(a + b) = sin(a) cos(b) + cos(a) sin(b), with a the coarse phase (cosine features shifted by π/2).
    coarse = phase_turns(jnp.arange(num_blocks, dtype=jnp.int32) * block, feature_w)
    coarse = coarse + phase_turns(offset, feature_w)[..., None, :] + quarter_turns(feature_quarters)
    coarse_sin, coarse_cos = sincos_of_turns(coarse)  # [..., num_blocks, dim]
    # Both small tables are computed once, not once per element of the large loop: the fine one is a
    # constant (evaluated at trace time), the coarse one depends on the offsets and is kept from fusing.
    coarse_sin, coarse_cos = computed_once(coarse_sin, coarse_cos)
    with jax.ensure_compile_time_eval():
        fine_sin, fine_cos = sincos_of_turns(phase_turns(jnp.arange(block, dtype=jnp.int32), feature_w))
    table = coarse_sin[..., :, None, :] * fine_cos + coarse_cos[..., :, None, :] * fine_sin
    table = table.reshape(*table.shape[:-3], num_blocks * block, len(feature_w))[..., :length, :]
    outside = outside_int32(offset)  # 64-bit or unsigned offsets: compared before any conversion
    if outside is not None:
        table = jnp.where(outside[..., None, None], jnp.float32(jnp.nan), table)
    return table.astype(dtype)


def sinusoidal_table(
    length: int,
    dim: int,
    *,
    offset: int | jax.Array = 0,
    base: float = 10_000.0,
    layout: Layout = "interleaved",
    frequencies: Frequencies | None = None,
    dtype: jnp.dtype = jnp.float32,
) -> jax.Array:
    """The encoding of the consecutive positions ``offset, offset + 1, …, offset + length - 1``.

    Equal (within 1e-6 of the float64 formula) to ``sinusoidal(offset[..., None] + arange(length), dim)``,
    but faster: it evaluates sines only for about ``2 * sqrt(length)`` positions and builds the rest by exact
    angle addition.

    Args:
      length: the number of positions (static, >= 0).
      dim: the encoding width, a positive even integer (static).
      offset: the first position: an integer, or an integer array of shape ``[batch]`` for per-row offsets
        (decoding with a cache, packed rows). Traced under ``jit``. It must lie in the int32 range: host
        values and concrete arrays outside it raise; traced 64-bit (``jax_enable_x64``) or unsigned
        offsets outside it give rows of NaN, never the table of a wrapped offset. The rows themselves may
        run past ``2**31 - 1`` (phases add exactly). With x64 off, JAX converts an int64 argument of
        ``jax.jit`` to int32 before this function sees it, which it cannot detect: pass int32 offsets.
      base: the geometric base of the frequencies (static).
      layout: ``"interleaved"`` (paper) or ``"split"``.
      frequencies: optional concrete ``[dim // 2]`` angular frequencies overriding ``base``.
      dtype: floating output dtype (static).

    Returns:
      ``[length, dim]``, or ``[batch, length, dim]`` for an offset of shape ``[batch]``.

    Raises:
      TypeError: non-integer ``length``/``dim``/``offset``, non-floating ``dtype``.
      ValueError: negative ``length``, offset of rank > 1 or out of the int32 range, and the errors of
        :func:`sinusoidal`.

    >>> sinusoidal_table(2, 4, offset=jnp.array([0, 10])).shape
    (2, 2, 4)
    """
    call = "sinusoidal_table"
    length = checks.integer(call, "length", length, minimum=0)
    w = resolve_frequencies(dim, base=base, frequencies=frequencies, caller=call)
    check_layout(call, layout)
    resolved = checks.floating_dtype(call, dtype)
    offsets = checks.positions(call, offset, "offset", integer_only=True)
    if offsets.ndim > 1:
        raise checks.value_error(
            call,
            "offset",
            offsets,
            "offset must be a scalar or of shape [batch]",
            "use sinusoidal() for other shapes",
        )
    return sinusoidal_table_kernel(
        offsets, length=length, frequencies=tuple(w.tolist()), layout=layout, dtype=resolved
    )
