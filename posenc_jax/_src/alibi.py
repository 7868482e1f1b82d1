"""ALiBi: attention with linear biases (Press, Smith and Lewis, 2022).

Each head ``h`` adds ``-m_h * distance`` to its attention logits, with head-specific slopes ``m_h`` forming a
geometric sequence. No embedding is added to the tokens.
"""

from __future__ import annotations

import functools
import math
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._src import checks
from posenc_jax._src.angles import SplitPositions

__all__ = ["alibi_bias", "alibi_slopes"]


def _power_of_two_slopes(n: int) -> list[float]:
    # The reference code builds start * ratio**h with start = ratio = 2**(-8/n); the closed form below is
    # the same sequence without the accumulated float64 rounding.
    return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]


def _slopes(n: int) -> list[float]:
    if math.log2(n).is_integer():
        return _power_of_two_slopes(n)
    closest = 2 ** math.floor(math.log2(n))
    return _power_of_two_slopes(closest) + _slopes(2 * closest)[0::2][: n - closest]


def alibi_slopes(num_heads: int) -> np.ndarray:
    """The per-head ALiBi slopes ``m_h``, in the order of the paper's reference code.

    For ``n`` a power of two the slopes are the geometric sequence ``2 ** (-8 (h + 1) / n)``,
    ``h = 0 … n-1`` (``1/2, 1/4, …, 1/256`` for 8 heads). Otherwise, with ``c`` the largest power of two
    below ``n``, they are the ``c`` slopes for ``c`` heads followed by the first ``n - c`` of the even-indexed
    slopes for ``2c`` heads (``[0::2]``), as in the reference implementation.

    Args:
      num_heads: number of attention heads (a positive int).

    Returns:
      float64 numpy array ``[num_heads]``.

    Raises:
      TypeError: if ``num_heads`` is not an int.
      ValueError: if ``num_heads <= 0``.

    >>> alibi_slopes(4)
    array([0.25      , 0.0625    , 0.015625  , 0.00390625])
    """
    num_heads = checks.integer("alibi_slopes", "num_heads", num_heads)
    return np.asarray(_slopes(num_heads), dtype=np.float64)


def common_integer_dtype(call: str, q: object, k: object) -> np.dtype:
    """The integer dtype in which ``k - q`` is formed exactly: the wider of two signed (or two unsigned)
    dtypes; unsigned 32-bit with signed ones widens to int64 under ``jax_enable_x64``.

    Raises:
      TypeError: signed and unsigned positions that no available dtype holds together (uint32 with signed
        positions without x64, or uint64 with signed positions).
    """
    q_dtype, k_dtype = np.dtype(cast(Any, q).dtype), np.dtype(cast(Any, k).dtype)
    width = max(q_dtype.itemsize, k_dtype.itemsize, 4)
    if (q_dtype.kind == "u") == (k_dtype.kind == "u"):
        return np.dtype(f"{q_dtype.kind}{width}")
    unsigned = q_dtype if q_dtype.kind == "u" else k_dtype
    if unsigned.itemsize <= 4 and jax.config.read("jax_enable_x64"):
        return np.dtype(np.int64)
    raise checks.type_error(
        call,
        "k_positions" if k_dtype.kind == "u" else "q_positions",
        k if k_dtype.kind == "u" else q,
        "signed and unsigned integer positions must fit one signed dtype together "
        "(uint32 with signed positions needs jax_enable_x64; uint64 never does)",
        "pass both as the same integer dtype",
    )


def check_signedness(call: str, q: object, k: object) -> None:
    """Raises (at trace time, naming the arrays as given) where integer ``q`` and ``k`` have no common dtype."""
    integer = [
        not isinstance(p, SplitPositions) and jnp.issubdtype(cast(Any, p).dtype, jnp.integer) for p in (q, k)
    ]
    if all(integer):
        common_integer_dtype(call, q, k)


def exact_difference(q: jax.Array, k: jax.Array, dtype: np.dtype) -> tuple[jax.Array, jax.Array]:
    """``k - q`` of integer arrays, exactly, as ``(k >= q, |k - q|)`` with the magnitude unsigned.

    Both are first converted to ``dtype`` (which holds every value of each, see
    :func:`common_integer_dtype`), then mapped to an order-preserving unsigned view (signed values with the
    sign bit flipped), where the larger minus the smaller never wraps: the magnitude of any difference fits
    the unsigned type of that width. The subtraction ``k - q`` itself would wrap in the signed type.
    """
    bits = 8 * dtype.itemsize
    unsigned = np.dtype(f"u{dtype.itemsize}")
    q, k = q.astype(dtype), k.astype(dtype)
    if dtype.kind == "i":
        sign = np.array(1 << (bits - 1), unsigned)
        q = jax.lax.bitcast_convert_type(q, unsigned) ^ sign
        k = jax.lax.bitcast_convert_type(k, unsigned) ^ sign
    forward = k >= q
    return forward, jnp.where(forward, k - q, q - k)


def float_difference(q, k, call: str = "alibi_bias") -> jax.Array:
    """``k - q`` in float32, rounded once from the exact value (integer, split or floating positions); a
    mixed-signedness error names ``call``."""
    if isinstance(q, SplitPositions) or isinstance(k, SplitPositions):
        # Host float64 positions: whole parts subtract exactly as integers, fractions in float32.
        qw, qf = _parts(q)
        kw, kf = _parts(k)
        forward, magnitude = exact_difference(qw, kw, np.dtype(np.int32))
        whole = magnitude.astype(jnp.float32)
        return jnp.where(forward, whole, -whole) + (kf - qf)
    if jnp.issubdtype(q.dtype, jnp.integer) and jnp.issubdtype(k.dtype, jnp.integer):
        forward, magnitude = exact_difference(q, k, common_integer_dtype(call, q, k))
        distance = magnitude.astype(jnp.float32)
        return jnp.where(forward, distance, -distance)
    # Floating positions: subtracted in the wider of their dtypes (float64 under x64), then rounded once.
    dtype = jnp.promote_types(jnp.result_type(q), jnp.result_type(k))
    dtype = dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.float32
    return (k.astype(dtype) - q.astype(dtype)).astype(jnp.float32)


def check_positions_1d_or_2d(call: str, value: object, name: str) -> jax.Array | SplitPositions:
    positions = checks.positions(call, value, name)
    if positions.ndim not in (1, 2):
        raise checks.value_error(call, name, positions, f"{name} must have shape [length] or [batch, length]")
    return positions


def batched(positions: jax.Array | SplitPositions) -> jax.Array | SplitPositions:
    """``[length]`` -> ``[1, length]``; ``[batch, length]`` unchanged."""
    if positions.ndim == 2:
        return positions
    return jax.tree_util.tree_map(lambda a: a[None], positions)


def batched_pair(
    q_positions: object, k_positions: object, call: str, *, integer_only: bool
) -> tuple[jax.Array | SplitPositions, jax.Array | SplitPositions]:
    """Validated positions as ``[batch or 1, length]`` whose batch sizes broadcast."""
    if integer_only:  # checked on the values given, before any conversion
        checks.positions(call, q_positions, "q_positions", integer_only=True)
        checks.positions(call, k_positions, "k_positions", integer_only=True)
    q = check_positions_1d_or_2d(call, q_positions, "q_positions")
    k = check_positions_1d_or_2d(call, k_positions, "k_positions")
    check_signedness(call, q, k)
    q2, k2 = batched(q), batched(k)
    if q2.shape[0] != k2.shape[0] and 1 not in (q2.shape[0], k2.shape[0]):
        raise checks.value_error(
            call,
            "k_positions",
            k_positions,
            f"the batch sizes of q_positions (shape {tuple(q2.shape)}) and k_positions must be equal or one "
            "of them 1",
        )
    return q2, k2


def alibi_bias(
    q_positions: jax.Array,
    k_positions: jax.Array,
    *,
    num_heads: int,
    is_causal: bool,
) -> jax.Array:
    """The ALiBi attention-logit bias ``-m_h * distance(i, j)`` for every head, query ``i`` and key ``j``.

    * ``is_causal=True``: ``-m_h * (i - j)`` where ``j <= i`` and ``0`` above the diagonal (``j > i``). Those
      entries are left at zero, not ``-inf``: hiding future keys is the attention mask's job.
    * ``is_causal=False`` (bidirectional): ``-m_h * |i - j|``.

    ``i`` and ``j`` are the given positions, so offsets (decoding with a cache) and packed sequences work.
    Some implementations add ``m_h * j`` instead of ``-m_h * (i - j)`` in the causal case. The two differ
    by ``-m_h * i``, which is constant across each softmax row over keys, so they give the same attention
    weights but a different bias.

    Integer positions beyond int32 (int64 under ``jax_enable_x64``): concrete ones raise; traced ones are
    used exactly: the distance is formed in their own width. With x64 off, JAX converts an int64 argument of
    ``jax.jit`` to int32 before this function sees it (``2**31 + 5`` arrives as ``-2**31 + 5``), which no
    library can detect: keep positions within int32 or enable x64.

    Args:
      q_positions: integer or float32 positions ``[q_len]`` or ``[batch, q_len]``.
      k_positions: integer or float32 positions ``[k_len]`` or ``[batch, k_len]``.
      num_heads: number of heads (positive int).
      is_causal: whether keys after the query get zero bias (causal) or are penalised by ``|i - j|``.

    Returns:
      float32 array ``[batch or 1, num_heads, q_len, k_len]`` (batch 1 when both positions are 1-D).
      The distance ``j - i`` is formed exactly (integer positions of any width, int64 under
      ``jax_enable_x64`` included, never wrap: ``i = -2**31, j = 2**31 - 1`` is ``2**32 - 1``) and rounded
      once to float32 before the multiply by the slope.

    Raises:
      TypeError: bad ``num_heads`` type, non-bool ``is_causal``, boolean / complex / 16-bit floating positions,
        signed and unsigned integer positions that no dtype holds together.
      ValueError: ``num_heads <= 0``, positions of rank other than 1 or 2, or batch sizes that do not
        broadcast.

    >>> alibi_bias(jnp.arange(3), jnp.arange(3), num_heads=2, is_causal=True)[0, 0]
    Array([[ 0.    ,  0.    ,  0.    ],
           [-0.0625,  0.    ,  0.    ],
           [-0.125 , -0.0625,  0.    ]], dtype=float32)
    """
    call = "alibi_bias"
    num_heads = checks.integer(call, "num_heads", num_heads)
    is_causal = checks.boolean(call, "is_causal", is_causal)
    q2, k2 = batched_pair(q_positions, k_positions, call, integer_only=False)
    return _bias(q2, k2, num_heads=num_heads, is_causal=is_causal)


@functools.partial(jax.jit, static_argnames=("num_heads", "is_causal"))
def _bias(q2, k2, *, num_heads: int, is_causal: bool) -> jax.Array:
    rows = jax.tree_util.tree_map(lambda a: a[:, :, None], q2)
    columns = jax.tree_util.tree_map(lambda a: a[:, None, :], k2)
    offset = float_difference(rows, columns)  # j - i, float32 rounded once from the exact difference
    # -distance, built so that the diagonal is +0.0 (never -0.0): causal keeps j <= i, zero above.
    negative_distance = jnp.where(offset > 0, jnp.zeros_like(offset) if is_causal else -offset, offset)
    slopes = jnp.asarray(alibi_slopes(num_heads), dtype=jnp.float32)
    return slopes[None, :, None, None] * negative_distance[:, None, :, :]


def _parts(positions) -> tuple[jax.Array, jax.Array]:
    """Whole (int32) and fractional (float32) parts of validated positions."""
    if isinstance(positions, SplitPositions):
        return positions.whole, positions.fraction
    if jnp.issubdtype(positions.dtype, jnp.integer):
        return positions.astype(jnp.int32), jnp.zeros(positions.shape, jnp.float32)
    whole = jnp.round(positions)
    return whole.astype(jnp.int32), (positions - whole).astype(jnp.float32)
