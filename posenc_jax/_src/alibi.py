"""ALiBi: attention with linear biases (Press, Smith and Lewis, 2022).

Each head ``h`` adds ``-m_h * distance`` to its attention logits, with head-specific slopes ``m_h`` forming a
geometric sequence. No embedding is added to the tokens.
"""

from __future__ import annotations

import functools
import math

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

    Args:
      q_positions: integer or float32 positions ``[q_len]`` or ``[batch, q_len]``.
      k_positions: integer or float32 positions ``[k_len]`` or ``[batch, k_len]``.
      num_heads: number of heads (positive int).
      is_causal: whether keys after the query get zero bias (causal) or are penalised by ``|i - j|``.

    Returns:
      float32 array ``[batch or 1, num_heads, q_len, k_len]`` (batch 1 when both positions are 1-D).
      Integer distances are formed in int32 (exact while ``|i - j| < 2**31``) before the float32 multiply.

    Raises:
      TypeError: bad ``num_heads`` type, non-bool ``is_causal``, boolean / complex / 16-bit floating positions.
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
    q = check_positions_1d_or_2d(call, q_positions, "q_positions")
    k = check_positions_1d_or_2d(call, k_positions, "k_positions")
    q2, k2 = batched(q), batched(k)
    if q2.shape[0] != k2.shape[0] and 1 not in (q2.shape[0], k2.shape[0]):
        raise checks.value_error(
            call,
            "k_positions",
            k_positions,
            f"the batch sizes of q_positions (shape {tuple(q.shape)}) and k_positions must be equal or "
            "one of them 1",
        )
    return _bias(q2, k2, num_heads=num_heads, is_causal=is_causal)


@functools.partial(jax.jit, static_argnames=("num_heads", "is_causal"))
def _bias(q2, k2, *, num_heads: int, is_causal: bool) -> jax.Array:
    if isinstance(q2, SplitPositions) or isinstance(k2, SplitPositions):
        # Host float64 positions: whole parts subtract exactly in int32, fractions in float32.
        qw, qf = _parts(q2)
        kw, kf = _parts(k2)
        whole = kw[:, None, :] - qw[:, :, None]
        offset = whole.astype(jnp.float32) + (kf[:, None, :] - qf[:, :, None])
    elif jnp.issubdtype(q2.dtype, jnp.integer) and jnp.issubdtype(k2.dtype, jnp.integer):
        offset = k2.astype(jnp.int32)[:, None, :] - q2.astype(jnp.int32)[:, :, None]  # j - i
    else:
        offset = k2.astype(jnp.float32)[:, None, :] - q2.astype(jnp.float32)[:, :, None]
    # -distance, built so that the diagonal is +0.0 (never -0.0): causal keeps j <= i, zero above.
    negative_distance = jnp.where(offset > 0, jnp.zeros_like(offset) if is_causal else -offset, offset)
    slopes = jnp.asarray(alibi_slopes(num_heads), dtype=jnp.float32)
    return slopes[None, :, None, None] * negative_distance.astype(jnp.float32)[:, None, :, :]


def _parts(positions) -> tuple[jax.Array, jax.Array]:
    """Whole (int32) and fractional (float32) parts of validated positions."""
    if isinstance(positions, SplitPositions):
        return positions.whole, positions.fraction
    if jnp.issubdtype(positions.dtype, jnp.integer):
        return positions.astype(jnp.int32), jnp.zeros(positions.shape, jnp.float32)
    whole = jnp.round(positions)
    return whole.astype(jnp.int32), (positions - whole).astype(jnp.float32)
