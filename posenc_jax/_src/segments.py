"""Positions for packed sequences: several examples concatenated along the length axis."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from posenc_jax._src import checks

__all__ = ["positions_from_segment_ids"]


def positions_from_segment_ids(segment_ids: jax.Array) -> jax.Array:
    """Positions that restart at 0 at the start of every packed segment.

    A new segment starts at index 0 and wherever the id differs from the previous token's id along the
    last axis. Padding (often id 0) is numbered like any other segment; mask it in attention as usual.

    Args:
      segment_ids: integer array ``[length]`` or ``[batch, length]`` (any rank >= 1, length last).

    Returns:
      int32 array of the same shape: the index of each token within its segment.

    Raises:
      TypeError: if ``segment_ids`` is not an integer array.
      ValueError: if ``segment_ids`` is a scalar.

    >>> positions_from_segment_ids(jnp.array([1, 1, 1, 2, 2, 3]))
    Array([0, 1, 2, 0, 1, 0], dtype=int32)
    """
    call = "positions_from_segment_ids"
    host = None if isinstance(segment_ids, jax.core.Tracer | jax.Array) else np.asarray(segment_ids)
    array = segment_ids if host is None else host
    dtype = np.dtype(array.dtype)
    if dtype == np.bool_ or dtype.kind not in "iu":
        raise checks.type_error(call, "segment_ids", array, "segment_ids must be an integer array")
    if array.ndim < 1:
        raise checks.value_error(
            call, "segment_ids", array, "segment_ids must have shape [length] or [batch, length]"
        )
    if host is not None:
        # Compared in their own precision: converting 64-bit ids to int32 could merge distinct neighbours
        # (7 and 2**32 + 7). Only "differs from the previous id" matters, so relabel runs 0, 1, 2, ...
        changes = host[..., 1:] != host[..., :-1]
        zeros = np.zeros(host.shape[:-1] + (min(host.shape[-1], 1),), np.int32)
        return _positions(jnp.asarray(np.concatenate([zeros, np.cumsum(changes, axis=-1, dtype=np.int32)], -1)))
    return _positions(segment_ids)


@jax.jit
def _positions(segment_ids: jax.Array) -> jax.Array:
    length = segment_ids.shape[-1]
    index = lax.broadcasted_iota(jnp.int32, segment_ids.shape, segment_ids.ndim - 1)
    if length == 0:
        return index
    starts = jnp.concatenate(
        [
            jnp.ones(segment_ids.shape[:-1] + (1,), dtype=bool),
            segment_ids[..., 1:] != segment_ids[..., :-1],
        ],
        axis=-1,
    )
    segment_start = lax.cummax(jnp.where(starts, index, 0), axis=segment_ids.ndim - 1)
    return index - segment_start
