"""Query-key distances shared by the relative biases of the length-generalization literature.

:func:`pair_positions` validates a pair of position arrays (as the other relative terms do) and
:func:`offsets` forms ``i - j`` for every query position ``i`` and key position ``j`` exactly where it can:
integer positions of any width (int64 under ``jax_enable_x64`` included) subtract exactly and are rounded
once to float32, never wrapped; host float64 positions through their exact whole and fractional parts;
floating positions in the wider of their dtypes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from posenc_jax._src.alibi import float_difference
from posenc_jax._src.relative import batched_pair

__all__: list[str] = []


def pair_positions(call: str, q_positions: object, k_positions: object):
    """Validated positions as ``[batch or 1, length]`` whose batch sizes broadcast (errors name ``call``)."""
    return batched_pair(q_positions, k_positions, call, integer_only=False)


def offsets(q2, k2, call: str) -> jax.Array:
    """``q_pos - k_pos`` as float32 ``[batch, q_len, k_len]`` for positions from :func:`pair_positions`,
    rounded once from the exact difference."""
    rows = jax.tree_util.tree_map(lambda a: a[:, :, None], q2)
    columns = jax.tree_util.tree_map(lambda a: a[:, None, :], k2)
    return float_difference(columns, rows, call)  # rows - columns


def absolute_distances(q2, k2, call: str) -> jax.Array:
    """``|q_pos - k_pos|`` as float32 ``[batch, q_len, k_len]``: the exact distance rounded once (every pair of
    integer positions, int64 under ``jax_enable_x64`` included, no saturation)."""
    return jnp.abs(offsets(q2, k2, call))
