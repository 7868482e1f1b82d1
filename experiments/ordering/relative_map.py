"""The randomized relative encoding of Ruoss et al. (2023) as its reference code defines it.

Transformer-XL's relative attention (Dai et al. 2019) scores query ``i`` against key ``j`` with
``(q_i + u)·k_j + (q_i + v)·W_R R(d)``, where ``R(d)`` is the sinusoidal encoding (sines then cosines) of the
relative offset ``d = j - i`` (key minus query, the reference code's sign). The randomized version does not
take ``R`` of the offset itself: per layer and batch it draws sorted offsets ``0 < r_1 < … < r_{n-1}`` from
``[1, L)`` and encodes ``d`` as ``R(sign(d) · r_|d|)`` (``compute_attention_with_noisy_relative_encodings``
with ``randomize_both_sides=False``). A random map of relative offsets, not the difference of random absolute
positions (that variant is ``relative_at_random_positions`` in `experiments.ordering.schemes`).

The map travels as the example's "positions": ``0, r_1, …, r_{n-1}`` at its tokens ``0 … n-1`` (a sorted draw
that starts at 0, `experiments.ordering.data.sorted_random_positions` with ``start_at_zero``), so that the
data pipeline, packing and per-layer draws treat it like any randomized position. The offset ``d`` of query
``i`` is mapped through the map of the query's example, read at the token ``|d|`` places after the example's
first token (the last 0 at or before ``i``). Encoder only, as in the reference (which raises for causal
attention).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import posenc_jax as pe

__all__ = ["RandomizedRelative", "mapped_offsets", "randomized_relative_logits"]


def mapped_offsets(positions: jax.Array) -> jax.Array:
    """The mapped offset ``sign(j - i) · r_|j - i|`` of every key ``j`` seen from every query ``i``.

    Args:
      positions: `[batch, length]` int: per packed example, ``0, r_1, …, r_{n-1}`` (one 0 at each example's
        first token, increasing after it).

    Returns:
      `[batch, length, length]` int32 (query, key); entries between two examples are meaningless (masked).
    """
    offset, index = _map_columns(positions)
    mapped = jnp.take_along_axis(
        jnp.broadcast_to(positions[..., None, :], index.shape), index, axis=-1
    )  # r_|j-i| of the query's example
    return (jnp.sign(offset) * mapped).astype(jnp.int32)


def _map_columns(positions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(j - i [q, k], the column holding r_|j-i| of the query's example [batch, q, k])``."""
    length = positions.shape[-1]
    column = jnp.arange(length)
    start = jax.lax.cummax(jnp.where(positions == 0, column, 0), axis=1)  # the query's example's first token
    offset = column[None, :] - column[:, None]
    return offset, jnp.clip(start[:, :, None] + jnp.abs(offset), 0, length - 1)


def randomized_relative_logits(
    q: jax.Array,
    k: jax.Array,
    positions: jax.Array,
    *,
    kernel: jax.Array,
    u: jax.Array,
    v: jax.Array,
    base: float = 10_000.0,
) -> jax.Array:
    """``(u·k_j + (q_i + v)·W_R R(sign(j - i) r_|j-i|)) / √head_dim``: the logits' terms besides ``q·k``.

    No `[batch, q, k, rel_dim]` tensor is formed: the keys' encodings ``W_R R(±p_c)`` are computed per token
    ``c`` of the row (`[batch, length, heads, head_dim]` each sign), scored against every query, and each
    pair reads its column ``start(i) + |j - i|`` of the scores with its sign.

    Args:
      q: queries `[batch, length, heads, head_dim]`.
      k: keys `[batch, length, heads, head_dim]`.
      positions: `[batch, length]` int map values (see `mapped_offsets`).
      kernel: ``W_R`` `[rel_dim, heads, head_dim]`; rows ``0 … rel_dim/2 - 1`` multiply the sines.
      u: content bias `[heads, head_dim]`.
      v: position bias `[heads, head_dim]`.
      base: geometric base of the sinusoid's frequencies.

    Returns:
      `[batch, heads, length, length]` float32.
    """
    rel_dim = kernel.shape[0]
    offset, index = _map_columns(positions)
    index = index[:, None]  # [batch, 1, q, k]
    query = q + v
    scores = []
    for sign in (1, -1):
        encoding = pe.sinusoidal(sign * positions, rel_dim, base=base, layout="split")  # [batch, c, rel_dim]
        keys = jnp.einsum("bcr,rhd->bchd", encoding.astype(q.dtype), kernel)
        score = jnp.einsum("bqhd,bchd->bhqc", query, keys)
        scores.append(
            jnp.take_along_axis(score, jnp.broadcast_to(index, score.shape[:2] + index.shape[2:]), -1)
        )
    position = jnp.where(offset >= 0, scores[0], scores[1])
    content = jnp.einsum("hd,bkhd->bhk", u, k)[:, :, None, :]
    return ((position + content) / jnp.sqrt(jnp.float32(q.shape[-1]))).astype(jnp.float32)


class RandomizedRelative(nn.Module):
    """The reference's randomized relative encoding as a scheme module of the ordering model.

    Parameters ``kernel`` (``W_R`` `[width, heads, head_dim]`), ``content_bias`` (``u``) and
    ``position_bias`` (``v``), shared by all layers as every scheme's are (each layer of the reference has its
    own).

    Attributes:
      num_heads, head_dim: the attention's shape; ``rel_dim`` is ``num_heads * head_dim``.
      base: geometric base of the sinusoid's frequencies.
      kernel_init, bias_init: initializers of ``W_R`` and of ``u``, ``v``.
    """

    num_heads: int
    head_dim: int
    base: float = 10_000.0
    kernel_init: Any = nn.initializers.variance_scaling(
        1.0, "fan_in", "truncated_normal", in_axis=0, out_axis=(1, 2)
    )
    bias_init: Any = nn.initializers.zeros

    def setup(self):
        width = self.num_heads * self.head_dim
        self.kernel = self.param("kernel", self.kernel_init, (width, self.num_heads, self.head_dim))
        self.content_bias = self.param("content_bias", self.bias_init, (self.num_heads, self.head_dim))
        self.position_bias = self.param("position_bias", self.bias_init, (self.num_heads, self.head_dim))

    def embed(self, x, positions):
        return x

    def rotate(self, q, k, q_positions, k_positions):
        return q, k

    def attention_bias(self, q_positions, k_positions):
        return None

    def attention_logits_bias(self, q, k, q_positions, k_positions):
        """The term `[batch, heads, length, length]` (self-attention over whole rows only)."""
        if q_positions.shape != k_positions.shape or q.shape[1] != k.shape[1]:
            raise ValueError(
                "RandomizedRelative.attention_logits_bias(q_positions, k_positions): self-attention over whole "
                f"rows only (got {q_positions.shape} and {k_positions.shape}); the scheme is encoder-only"
            )
        return randomized_relative_logits(
            q,
            k,
            q_positions,
            kernel=self.kernel,
            u=self.content_bias,
            v=self.position_bias,
            base=self.base,
        )

    def __call__(self, q, k, positions):
        return self.attention_logits_bias(q, k, positions, positions)
