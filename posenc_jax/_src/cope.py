"""CoPE (Golovneva et al. 2024): contextual position encoding, a position that counts what the query sees.

"Contextual Position Encoding: Learning to Count What's Important" (2024) replaces token positions by
positions measured in context. For query ``i`` and key ``j <= i``:

* gates ``g_it = σ(q_i·k_t)``, one per key ``t`` the query sees;
* the contextual position ``p_ij = Σ_{t=j}^{i} g_it``: the sum of the gates from key ``j`` to the query, a
  causal cumulative sum (taken from the query back over the keys), fractional in general;
* a learned embedding ``e[p]`` per integer position ``p = 0 … npos - 1`` (shared by the heads), interpolated
  at fractional ``p``: ``e[p] = (1 - w)·e[⌊p⌋] + w·e[⌈p⌉]``, ``w = p - ⌊p⌋``, positions clipped to
  ``npos - 1``;
* the logits term ``q_i·e[p_ij]``, added to the ordinary ``q_i·k_j`` logits.

As in the authors' reference code, the gates use the attention's scaled logits ``σ(scale·q_i·k_j)`` (``scale
= 1 / sqrt(head_dim)`` by default) and the term ``q_i·e[p_ij]`` is not scaled. Since ``q_i·e[p]`` is linear
in ``e``, ``q_i·e[p_ij] = (1 - w)·(q_i·e[⌊p⌋]) + w·(q_i·e[⌈p⌉])``: the term is computed by taking
``q_i·e[p]`` for the ``npos`` integer positions first (``[batch, heads, q_len, npos]``) and interpolating
those scalars, never forming ``[batch, heads, q_len, k_len, head_dim]``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._src import checks as _checks
from posenc_jax._src.distances import offsets, pair_positions

__all__ = ["cope_logits"]


def check_qk(call: str, q: Any, k: Any, head_dim: int | None = None) -> tuple[int, int, int]:
    """``q`` ``[batch, q_len, heads, head_dim]`` and ``k`` ``[batch, k_len, kv_heads, head_dim]`` (kv_heads
    dividing heads); returns ``(heads, kv_heads, head_dim)``."""
    for name, value in (("q", q), ("k", k)):
        dtype = getattr(value, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise _checks.type_error(call, name, value, f"{name} must be a floating array")
        if np.ndim(value) != 4 or (head_dim is not None and np.shape(value)[-1] != head_dim):
            width = "head_dim" if head_dim is None else str(head_dim)
            raise _checks.value_error(
                call, name, value, f"{name} must have shape [batch, length, heads, {width}]"
            )
    (batch, _, heads, dim), (k_batch, _, kv_heads, k_dim) = np.shape(q), np.shape(k)
    if k_dim != dim or heads % kv_heads or k_batch != batch:
        raise _checks.value_error(
            call, "k", k, f"k must have shape [{batch}, k_len, kv_heads, {dim}] with kv_heads dividing {heads}"
        )
    return heads, kv_heads, dim


def cope_logits(
    q: jax.Array,
    k: jax.Array,
    q_positions: jax.Array,
    k_positions: jax.Array,
    *,
    embeddings: jax.Array,
    mask: jax.Array | None = None,
    scale: float | None = None,
) -> jax.Array:
    """The CoPE logits term ``q_i·e[p_ij]`` of every head, query and key (Golovneva et al. 2024).

    A key ``t`` counts in ``p_ij`` when the query sees it: its position is at most the query's (the causal
    definition ``t <= i``, by position) and ``mask`` allows it. Keys are summed in their order along the key
    axis, from the last one back to ``j``: a decoder's keys are in order of position. Entries of keys that
    the query does not see are finite and meaningless (attention masks them).

    Args:
      q: queries ``[batch, q_len, heads, head_dim]`` (after any rotation).
      k: keys ``[batch, k_len, kv_heads, head_dim]``; ``kv_heads`` divides ``heads``.
      q_positions: ``[q_len]`` or ``[batch, q_len]`` positions of the queries.
      k_positions: ``[k_len]`` or ``[batch, k_len]`` positions of the keys.
      embeddings: ``e``, ``[npos, head_dim]``.
      mask: optional boolean, broadcastable to ``[batch, heads, q_len, k_len]``, ``True`` where a query may
        attend (padding, segments, the slots of a cache).
      scale: the gates' scale of ``q·k``; ``None`` means ``1 / sqrt(head_dim)``.

    Returns:
      float32 ``[batch, heads, q_len, k_len]``.

    Raises:
      TypeError: non-floating ``q`` / ``k`` / ``embeddings``, a non-boolean ``mask``, bad position dtypes.
      ValueError: shapes that do not fit together, a non-positive ``scale``.

    >>> q = k = jnp.ones((1, 3, 1, 2))
    >>> cope_logits(q, k, jnp.arange(3), jnp.arange(3), embeddings=jnp.eye(4, 2)).shape
    (1, 1, 3, 3)
    """
    call = "cope_logits"
    heads, kv_heads, head_dim = check_qk(call, q, k)
    dtype = getattr(embeddings, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise _checks.type_error(call, "embeddings", embeddings, "embeddings must be a floating array")
    if np.ndim(embeddings) != 2 or np.shape(embeddings)[1] != head_dim:
        raise _checks.value_error(
            call, "embeddings", embeddings, f"embeddings must have shape [npos, head_dim={head_dim}]"
        )
    if mask is not None and (getattr(mask, "dtype", None) != jnp.bool_ or np.ndim(mask) != 4):
        raise _checks.type_error(
            call,
            "mask",
            mask,
            "mask must be a boolean rank-4 array broadcastable to [batch, heads, q_len, k_len]",
        )
    scale = 1.0 / math.sqrt(head_dim) if scale is None else _checks.real_above(call, "scale", scale, 0.0)
    q2, k2 = pair_positions(call, q_positions, k_positions)
    return _cope(q, k, q2, k2, jnp.asarray(embeddings), mask, scale=float(scale))


@functools.partial(jax.jit, static_argnames=("scale",))
def _cope(q, k, q2, k2, embeddings, mask, *, scale: float) -> jax.Array:
    batch, q_len, heads, head_dim = q.shape
    kv_heads = k.shape[2]
    q = q.astype(jnp.float32)
    grouped = q.reshape(batch, q_len, kv_heads, heads // kv_heads, head_dim)
    logits = jnp.einsum("bqkgd,btkd->bkgqt", grouped, k.astype(jnp.float32)).reshape(batch, heads, q_len, -1)
    visible = (offsets(q2, k2) >= 0)[:, None]  # key position <= query position: [batch, 1, q_len, k_len]
    if mask is not None:
        visible = visible & mask
    gates = jnp.where(visible, jax.nn.sigmoid(scale * logits), 0.0)
    # p_ij = sum of the gates from key j to the last key: a cumulative sum from the right.
    npos = embeddings.shape[0]
    position = jnp.minimum(jnp.flip(jnp.cumsum(jnp.flip(gates, -1), axis=-1), -1), npos - 1)
    at_integers = jnp.einsum("bqhd,pd->bhqp", q, embeddings.astype(jnp.float32))  # [batch, heads, q_len, npos]
    floor = jnp.floor(position)
    weight = position - floor
    lower = floor.astype(jnp.int32)
    upper = jnp.minimum(lower + 1, npos - 1)
    return (1.0 - weight) * jnp.take_along_axis(at_integers, lower, axis=-1) + weight * jnp.take_along_axis(
        at_integers, upper, axis=-1
    )
