"""Query-key distances shared by the relative biases of the length-generalization literature.

:func:`pair_positions` validates a pair of position arrays (as the other relative terms do) and
:func:`offsets` forms ``i - j`` for every query position ``i`` and key position ``j`` exactly where it can:
integer positions subtract in int32 (saturating instead of wrapping), host float64 positions through their
exact whole and fractional parts, float32 positions in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from posenc_jax._src.alibi import _parts
from posenc_jax._src.angles import _SplitPositions
from posenc_jax._src.relative import _pair, _saturating_distance

__all__: list[str] = []


def pair_positions(call: str, q_positions: object, k_positions: object):
    """Validated positions as ``[batch or 1, length]`` whose batch sizes broadcast (errors name ``call``)."""
    return _pair(q_positions, k_positions, call, integer_only=False)


def offsets(q2, k2) -> jax.Array:
    """``q_pos - k_pos`` as float32 ``[batch, q_len, k_len]`` for positions from :func:`pair_positions`."""
    if isinstance(q2, _SplitPositions) or isinstance(k2, _SplitPositions):
        qw, qf = _parts(q2)
        kw, kf = _parts(k2)
        whole = -_saturating_distance(qw[:, :, None], kw[:, None, :])
        return whole.astype(jnp.float32) + (qf[:, :, None] - kf[:, None, :])
    if jnp.issubdtype(q2.dtype, jnp.integer) and jnp.issubdtype(k2.dtype, jnp.integer):
        return (-_saturating_distance(q2[:, :, None], k2[:, None, :])).astype(jnp.float32)
    return q2.astype(jnp.float32)[:, :, None] - k2.astype(jnp.float32)[:, None, :]


def absolute_distances(q2, k2) -> jax.Array:
    """``|q_pos - k_pos|`` as float32 ``[batch, q_len, k_len]``: integer positions exactly in uint32 (every
    pair of int32 positions, no saturation), the others as :func:`offsets`."""
    if isinstance(q2, _SplitPositions) or isinstance(k2, _SplitPositions):
        return jnp.abs(offsets(q2, k2))
    if jnp.issubdtype(q2.dtype, jnp.integer) and jnp.issubdtype(k2.dtype, jnp.integer):
        q = q2.astype(jnp.int32)[:, :, None]
        k = k2.astype(jnp.int32)[:, None, :]
        wrapped = (q - k).astype(jnp.uint32)  # the difference modulo 2**32
        return jnp.where(q >= k, wrapped, -wrapped).astype(jnp.float32)
    return jnp.abs(offsets(q2, k2))
