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

import dataclasses
import functools
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._src import checks
from posenc_jax._src.distances import offsets, pair_positions
from posenc_jax._src.schemes import SchemeDefaults, _check_parameter, _parameter, _require

__all__ = ["CoPE", "cope_logits"]


def check_qk(call: str, q: Any, k: Any, head_dim: int | None = None) -> tuple[int, int, int]:
    """``q`` ``[batch, q_len, heads, head_dim]`` and ``k`` ``[batch, k_len, kv_heads, head_dim]`` (kv_heads
    dividing heads); returns ``(heads, kv_heads, head_dim)``."""
    for name, value in (("q", q), ("k", k)):
        dtype = getattr(value, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise checks.type_error(call, name, value, f"{name} must be a floating array")
        if np.ndim(value) != 4 or (head_dim is not None and np.shape(value)[-1] != head_dim):
            width = "head_dim" if head_dim is None else str(head_dim)
            raise checks.value_error(
                call, name, value, f"{name} must have shape [batch, length, heads, {width}]"
            )
    (batch, _, heads, dim), (k_batch, _, kv_heads, k_dim) = np.shape(q), np.shape(k)
    if k_dim != dim or heads % kv_heads or k_batch != batch:
        raise checks.value_error(
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

    Integer positions beyond int32 (int64 under ``jax_enable_x64``): concrete ones raise; traced ones are
    compared exactly (which keys a query sees). With x64 off, JAX converts an int64 argument of ``jax.jit``
    to int32 before this function sees it (``2**31 + 5`` arrives as ``-2**31 + 5``), which no library can
    detect: keep positions within int32 or enable x64.

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
        raise checks.type_error(call, "embeddings", embeddings, "embeddings must be a floating array")
    if np.ndim(embeddings) != 2 or np.shape(embeddings)[1] != head_dim:
        raise checks.value_error(
            call, "embeddings", embeddings, f"embeddings must have shape [npos, head_dim={head_dim}]"
        )
    if mask is not None and (getattr(mask, "dtype", None) != jnp.bool_ or np.ndim(mask) != 4):
        raise checks.type_error(
            call,
            "mask",
            mask,
            "mask must be a boolean rank-4 array broadcastable to [batch, heads, q_len, k_len]",
        )
    scale = 1.0 / math.sqrt(head_dim) if scale is None else checks.real_above(call, "scale", scale, 0.0)
    q2, k2 = pair_positions(call, q_positions, k_positions)
    return _cope(q, k, q2, k2, jnp.asarray(embeddings), mask, scale=float(scale))


@functools.partial(jax.jit, static_argnames=("scale",))
def _cope(q, k, q2, k2, embeddings, mask, *, scale: float) -> jax.Array:
    batch, q_len, heads, head_dim = q.shape
    kv_heads = k.shape[2]
    q = q.astype(jnp.float32)
    grouped = q.reshape(batch, q_len, kv_heads, heads // kv_heads, head_dim)
    logits = jnp.einsum("bqkgd,btkd->bkgqt", grouped, k.astype(jnp.float32)).reshape(batch, heads, q_len, -1)
    visible = (offsets(q2, k2, "cope_logits") >= 0)[
        :, None
    ]  # key position <= query position: [batch, 1, q_len, k_len]
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


@dataclasses.dataclass(frozen=True)
class CoPE(SchemeDefaults):
    """CoPE (Golovneva et al. 2024): contextual positions, through the content-dependent logits hook.

    :meth:`attention_logits_bias` returns ``q_i·e[p_ij]`` with ``p_ij = Σ_{t=j}^{i} σ(scale·q_i·k_t)`` over
    the keys the query sees (:func:`posenc_jax.cope_logits`). Because ``p_ij`` depends on which keys are
    visible, :func:`posenc_jax.attention` and :meth:`posenc_jax.KVCache.attend` pass it the attention's mask
    (``needs_mask``): a decoder's causal mask, padding or the filled slots of a cache count, as in the
    reference code. The value holds the configuration and, to be used on its own, the ``embedding`` ``e``;
    :class:`posenc_jax.nnx.CoPE` and :class:`posenc_jax.linen.CoPE` hold it as a parameter (zeros at first,
    as in the reference code: the term is 0 until it learns).

    Attributes:
      npos: the integer positions ``e`` holds (contextual positions are clipped to ``npos - 1``).
      head_dim: features per head.
      scale: the gates' scale of ``q·k`` (keyword); ``None``: ``1 / sqrt(head_dim)``, the attention's.
      embedding: ``e``, ``[npos, head_dim]``, shared by the heads, or None (then the term raises).
      param_dtype: the dtype of the modules' parameter.

    Raises:
      TypeError, ValueError: non-positive sizes or ``scale``, a bad ``param_dtype``, an ``embedding`` of
        another shape.

    >>> q = k = jnp.ones((1, 3, 2, 4))
    >>> CoPE(8, 4, embedding=jnp.zeros((8, 4))).attention_logits_bias(q, k, jnp.arange(3), jnp.arange(3)).shape
    (1, 2, 3, 3)
    """

    npos: int
    head_dim: int
    _: dataclasses.KW_ONLY
    scale: float | None = None
    embedding: Any = _parameter("the position embeddings e [npos, head_dim]")
    param_dtype: Any = jnp.float32

    #: :func:`posenc_jax.attention` passes ``mask=`` (the keys each query sees) to ``attention_logits_bias``.
    needs_mask: ClassVar[bool] = True

    def __post_init__(self):
        caller = "CoPE"
        object.__setattr__(self, "npos", checks.integer(caller, "npos", self.npos))
        object.__setattr__(self, "head_dim", checks.integer(caller, "head_dim", self.head_dim))
        if self.scale is not None:
            object.__setattr__(self, "scale", checks.real_above(caller, "scale", self.scale, 0.0))
        checks.floating_dtype(caller, self.param_dtype, "param_dtype")
        _check_parameter(self.embedding, "embedding", self.embedding_shape, caller)

    @property
    def embedding_shape(self) -> tuple[int, int]:
        """``(npos, head_dim)``."""
        return (self.npos, self.head_dim)

    def attention_logits_bias(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None,
        k_positions: jax.Array | None,
        *,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        """The term ``[batch, heads, q_len, k_len]`` float32; positions ``None``: ``0 … length-1``.

        ``mask`` (boolean, broadcastable to ``[batch, heads, q_len, k_len]``) restricts the keys that count.
        """
        embedding = _require(self.embedding, "embedding", "CoPE.attention_logits_bias", "CoPE")
        q_positions = jnp.arange(np.shape(q)[1]) if q_positions is None else q_positions
        k_positions = jnp.arange(np.shape(k)[1]) if k_positions is None else k_positions
        return cope_logits(q, k, q_positions, k_positions, embeddings=embedding, mask=mask, scale=self.scale)

    def __call__(self, q, k, q_positions=None, k_positions=None, *, mask=None) -> jax.Array:
        """Same as :meth:`attention_logits_bias`."""
        return self.attention_logits_bias(q, k, q_positions, k_positions, mask=mask)
