"""Relative attention terms: the T5 bucketed bias and Transformer-XL's relative logits.

Both depend only on where a key sits relative to a query, and both take explicit positions, so offsets
(decoding with a cache), packed sequences and randomized positions (Ruoss et al. 2023) need no special code.

* **T5** (Raffel et al. 2020): a learned scalar per head and *bucket* of the relative position
  ``k_pos - q_pos``, added to the attention logits. Small distances get a bucket each; larger ones share
  logarithmically wider buckets up to ``max_distance``, beyond which all distances share the last bucket.
  :func:`t5_buckets` gives the bucket indices, :func:`t5_bias` the bias.
* **Transformer-XL** (Dai et al. 2019): a *content-dependent* term. With ``R_{i-j}`` the sinusoidal
  encoding of the distance between query position ``i`` and key position ``j``, ``W_R`` a learned projection
  and ``u``, ``v`` two learned per-head vectors (``content_bias``, ``position_bias``), the paper's score is
  ``q·k + q·W_R R + u·k + v·W_R R``
  (its terms (a)–(d)). :func:`transformer_xl_logits` returns everything but ``q·k``, i.e. what a scheme adds
  to the logits of ordinary attention.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._src import checks
from posenc_jax._src.alibi import batched_pair, check_positions_1d_or_2d, common_integer_dtype, exact_difference
from posenc_jax._src.angles import sincos
from posenc_jax._src.frequencies import resolve_frequencies

__all__ = ["t5_buckets", "t5_bias", "transformer_xl_logits"]

_INT32_MAX = 2**31 - 1


# ------------------------------------------------------------------------------------------------- T5


def check_t5_config(num_buckets: object, max_distance: object, is_causal: object, call: str) -> None:
    """Validates the T5 bucket parameters (raising ``TypeError`` / ``ValueError`` naming ``call``)."""
    if not isinstance(is_causal, bool | np.bool_):
        raise checks.type_error(
            call,
            "is_causal",
            is_causal,
            "is_causal must be a Python bool",
            "False for an encoder (keys on both sides get their own buckets), True for a decoder",
        )
    bidirectional = not is_causal
    num_buckets = checks.integer(call, "num_buckets", num_buckets, 4 if bidirectional else 2)
    if bidirectional and num_buckets % 2:
        raise checks.value_error(
            call, "num_buckets", num_buckets, "num_buckets must be even when not is_causal (half per direction)"
        )
    max_exact = num_buckets // (4 if bidirectional else 2)
    max_distance = checks.integer(call, "max_distance", max_distance)
    if max_distance <= max_exact:
        raise checks.value_error(
            call,
            "max_distance",
            max_distance,
            f"max_distance must exceed the {max_exact} distances that get a bucket each with "
            f"num_buckets={num_buckets} (num_buckets // {4 if bidirectional else 2})",
        )


@functools.lru_cache(maxsize=64)
def _thresholds(buckets: int, max_distance: int) -> tuple[int, ...]:
    """Smallest distances ``n`` of the logarithmic buckets ``max_exact + 1 … buckets - 1``, exactly.

    The bucket of ``n >= max_exact`` is ``max_exact + floor(log(n / max_exact) / log(max_distance /
    max_exact) * (buckets - max_exact))``, capped at ``buckets - 1``. It reaches ``max_exact + j`` when
    ``(n / max_exact) ** span >= (max_distance / max_exact) ** j`` (``span = buckets - max_exact``), which
    integer arithmetic decides exactly: no rounding of a logarithm can move a boundary.
    """
    max_exact = buckets // 2
    span = buckets - max_exact

    def reaches(n: int, j: int) -> bool:
        return n**span * max_exact**j >= max_distance**j * max_exact**span

    result = []
    for j in range(1, span):
        n = max(max_exact, math.ceil(max_exact * (max_distance / max_exact) ** (j / span)))
        while n > max_exact and reaches(n - 1, j):
            n -= 1
        while not reaches(n, j):
            n += 1
        result.append(n)
    return tuple(result)


def _magnitude_buckets(n: jax.Array, buckets: int, max_distance: int) -> jax.Array:
    """Bucket ``0 … buckets - 1`` of a non-negative distance ``n`` (int32)."""
    thresholds = _thresholds(buckets, max_distance)
    # A few comparisons fuse into one elementwise pass; many are searched by bisection.
    method = "compare_all" if len(thresholds) <= 16 else "scan"
    above = jnp.searchsorted(jnp.asarray(thresholds, jnp.int32), n, side="right", method=method)
    return jnp.minimum(n, buckets // 2) + above.astype(jnp.int32)


def _buckets_of_distances(distance: jax.Array, num_buckets: int, max_distance: int, is_causal: bool):
    if not is_causal:
        half = num_buckets // 2
        direction = jnp.where(distance > 0, half, 0).astype(jnp.int32)
        return direction + _magnitude_buckets(jnp.abs(distance), half, max_distance)
    return _magnitude_buckets(jnp.maximum(-distance, 0), num_buckets, max_distance)


def _saturating_distance(q: jax.Array, k: jax.Array, call: str) -> jax.Array:
    """``k - q`` as int32, saturated to ``±(2**31 - 1)`` instead of wrapping (buckets saturate far earlier).

    The difference is formed exactly in the positions' own width (int64 under ``jax_enable_x64``) before it
    is narrowed: casting the positions to int32 first would turn ``2**32 + 1`` into a distance of 1.
    """
    forward, magnitude = exact_difference(q, k, common_integer_dtype(call, q, k))
    magnitude = jnp.minimum(magnitude, np.array(_INT32_MAX, magnitude.dtype)).astype(jnp.int32)
    return jnp.where(forward, magnitude, -magnitude)


def t5_buckets(
    q_positions: jax.Array,
    k_positions: jax.Array,
    *,
    is_causal: bool,
    num_buckets: int = 32,
    max_distance: int = 128,
) -> jax.Array:
    """T5's bucket index of the relative position ``k_pos - q_pos`` for every query and key.

    With ``d = k_pos - q_pos`` (positive: the key comes after the query):

    * ``is_causal=False`` (encoder): keys after the query use buckets ``num_buckets/2 …``, the others
      ``0 …``; each half buckets ``|d|`` with ``B = num_buckets / 2`` buckets as below.
    * ``is_causal=True`` (decoder): ``n = max(-d, 0)`` (keys after the query share bucket 0 with
      ``d = 0``; mask them separately) bucketed with ``B = num_buckets`` buckets.

    A distance ``n`` gets bucket ``n`` while ``n < B/2``, then
    ``B/2 + floor(log(n / (B/2)) / log(max_distance / (B/2)) * (B - B/2))``, capped at ``B - 1`` (every
    ``n >= max_distance`` shares the last bucket). The bucket boundaries are decided in exact integer
    arithmetic, so no float rounding moves a distance across one.

    Integer positions beyond int32 (int64 under ``jax_enable_x64``): concrete ones raise; traced ones
    saturate into the last bucket of their direction. With x64 off, JAX converts an int64 argument of
    ``jax.jit`` to int32 before this function sees it (``2**31 + 5`` arrives as ``-2**31 + 5``), which no
    library can detect: keep positions within int32 or enable x64.

    Args:
      q_positions: integer positions ``[q_len]`` or ``[batch, q_len]``.
      k_positions: integer positions ``[k_len]`` or ``[batch, k_len]``.
      is_causal: ``False``: the direction of a key gets its own buckets (encoders); ``True``: keys after the
        query share bucket 0 (decoders). No default: either is silently wrong in the other setting.
      num_buckets: number of buckets (``>= 2``; even and ``>= 4`` when not ``is_causal``).
      max_distance: distances from here on share the last bucket (above ``B/2``).

    Returns:
      int32 ``[batch or 1, q_len, k_len]`` in ``[0, num_buckets)``. The difference ``k_pos - q_pos`` is
      formed exactly in the positions' own width (int64 under ``jax_enable_x64``) and saturates at
      ``±(2**31 - 1)``, in the last bucket of its direction, as it should; it never wraps (``q = 0``,
      ``k = 2**32 + 1`` is a far key, not a distance of 1).

    Raises:
      TypeError: non-integer positions, non-int ``num_buckets`` / ``max_distance``, non-bool
        ``is_causal``.
      ValueError: too few or an odd number of buckets, ``max_distance`` not above ``B/2``, positions of rank
        other than 1 or 2 or with batch sizes that do not broadcast.

    >>> t5_buckets(jnp.zeros(1, jnp.int32), jnp.arange(-3, 4), is_causal=False, num_buckets=8,
    ...            max_distance=16).tolist()
    [[[2, 2, 1, 0, 5, 6, 6]]]
    """
    caller = "t5_buckets"
    check_t5_config(num_buckets, max_distance, is_causal, caller)
    q2, k2 = batched_pair(q_positions, k_positions, caller, integer_only=True)
    return _t5_buckets(
        q2,
        k2,
        num_buckets=int(num_buckets),
        max_distance=int(max_distance),
        is_causal=bool(is_causal),
        call=caller,
    )


@functools.partial(jax.jit, static_argnames=("num_buckets", "max_distance", "is_causal", "call"))
def _t5_buckets(q2, k2, *, num_buckets: int, max_distance: int, is_causal: bool, call: str) -> jax.Array:
    distance = _saturating_distance(q2[:, :, None], k2[:, None, :], call)
    return _buckets_of_distances(distance, num_buckets, max_distance, is_causal)


def t5_bias(
    q_positions: jax.Array,
    k_positions: jax.Array,
    *,
    table: jax.Array,
    is_causal: bool,
    max_distance: int = 128,
) -> jax.Array:
    """The T5 relative attention bias: ``table[bucket(k_pos - q_pos), head]`` for every head, query, key.

    Args:
      q_positions: integer positions ``[q_len]`` or ``[batch, q_len]``.
      k_positions: integer positions ``[k_len]`` or ``[batch, k_len]``.
      table: learned floating biases ``[num_buckets, num_heads]``.
      is_causal: as in :func:`t5_buckets`.
      max_distance: as in :func:`t5_buckets`.

    Returns:
      ``[batch or 1, num_heads, q_len, k_len]`` of ``table``'s dtype, to add to the attention logits (T5
      adds it to unscaled ``q·k``; any other scaling is the attention's choice).

    Raises:
      TypeError: a non-floating ``table``, and the errors of :func:`t5_buckets`.
      ValueError: a ``table`` not of rank 2, and the errors of :func:`t5_buckets`.

    >>> table = jnp.array([[0.0, 1.0], [10.0, 11.0], [20.0, 21.0], [30.0, 31.0]])  # 4 buckets, 2 heads
    >>> t5_bias(jnp.arange(3), jnp.arange(3), table=table, is_causal=False, max_distance=4)[0, 0]
    Array([[ 0., 30., 30.],
           [10.,  0., 30.],
           [10., 10.,  0.]], dtype=float32)
    """
    caller = "t5_bias"
    shape = _check_array(table, "table", 2, "[num_buckets, num_heads]", caller)
    check_t5_config(shape[0], max_distance, is_causal, caller)
    q2, k2 = batched_pair(q_positions, k_positions, caller, integer_only=True)
    return _t5_bias(table, q2, k2, max_distance=int(max_distance), is_causal=bool(is_causal))


@functools.partial(jax.jit, static_argnames=("max_distance", "is_causal"))
def _t5_bias(table, q2, k2, *, max_distance: int, is_causal: bool) -> jax.Array:
    buckets = _t5_buckets(
        q2,
        k2,
        num_buckets=table.shape[0],
        max_distance=max_distance,
        is_causal=is_causal,
        call="t5_bias",
    )
    # [heads, batch, q, k]: one gather per head row, then the heads axis moves next to batch.
    return jnp.moveaxis(jnp.take(table.T, buckets, axis=1), 0, 1)


# ----------------------------------------------------------------------------------------- Transformer-XL


def _check_array(value: Any, name: str, rank: int, what: str, call: str) -> tuple[int, ...]:
    dtype = getattr(value, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise checks.type_error(call, name, value, f"{name} must be a floating array {what}")
    shape = tuple(value.shape)
    if len(shape) != rank:
        raise checks.value_error(call, name, value, f"{name} must have shape {what}")
    return shape


def _check_transformer_xl_shapes(q, k, kernel, content_bias, position_bias, caller: str) -> None:
    """Validates the shapes and dtypes of :func:`transformer_xl_logits`' arrays."""
    q_shape = _check_array(q, "q", 4, "[batch, q_len, heads, head_dim]", caller)
    k_shape = _check_array(k, "k", 4, "[batch, k_len, heads, head_dim]", caller)
    heads_dim = q_shape[2:]
    heads, kv_heads = q_shape[2], k_shape[2]
    if (
        k_shape[3] != q_shape[3]
        or heads % kv_heads
        or (k_shape[0] != q_shape[0] and 1 not in (k_shape[0], q_shape[0]))
    ):
        raise checks.value_error(
            caller,
            "k",
            k,
            f"k must agree with q (shape {q_shape}) in head_dim, its heads must divide q's (grouped-query "
            "attention), and the batch sizes must be equal or one of them 1",
        )
    kernel_shape = _check_array(kernel, "kernel", 3, "[rel_dim, heads, head_dim]", caller)
    if kernel_shape[1:] != heads_dim or kernel_shape[0] % 2 or kernel_shape[0] == 0:
        raise checks.value_error(
            caller,
            "kernel",
            kernel,
            f"kernel must have shape [rel_dim, heads, head_dim] = [rel_dim, {heads_dim[0]}, {heads_dim[1]}] "
            "with rel_dim even and positive (the sinusoid width)",
        )
    for name, value in (("content_bias", content_bias), ("position_bias", position_bias)):
        shape = _check_array(value, name, 2, "[heads, head_dim]", caller)
        if shape != heads_dim:
            raise checks.value_error(
                caller, name, value, f"{name} must have shape [heads, head_dim] = {heads_dim}"
            )


def _check_lengths(q_positions: Any, k_positions: Any, q: Any, k: Any, call: str) -> None:
    for name, positions, x in (("q_positions", q_positions, q), ("k_positions", k_positions, k)):
        batch, length = x.shape[0], x.shape[1]
        if positions.shape[-1] != length or (positions.ndim == 2 and positions.shape[0] not in (1, batch)):
            raise checks.value_error(
                call,
                name,
                positions,
                f"{name} must have shape [{length}] or [{batch}, {length}] to match "
                f"{'q' if name[0] == 'q' else 'k'} of shape {tuple(x.shape)}",
            )


def check_scale(scale: object, call: str) -> None:
    """``scale`` must be None or a finite real number."""
    if scale is None:
        return
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise checks.type_error(call, "scale", scale, "scale must be a Python float or None")
    if not math.isfinite(scale):
        raise checks.value_error(call, "scale", scale, "scale must be finite")


def transformer_xl_logits(
    q: jax.Array,
    k: jax.Array,
    q_positions: jax.Array | None,
    k_positions: jax.Array | None,
    *,
    kernel: jax.Array,
    content_bias: jax.Array,
    position_bias: jax.Array,
    base: float = 10_000.0,
    scale: float | None = None,
) -> jax.Array:
    """Transformer-XL's relative terms of the attention logits: ``scale * ((q_i + v)·W_R R_{i-j} + u·k_j)``.

    Dai et al. (2019) score query ``i`` against key ``j`` as ``q_i·k_j + q_i·W_R R_{i-j} + u·k_j +
    v·W_R R_{i-j}``, where ``R_{i-j}`` is the sinusoidal encoding (width ``rel_dim``, the paper's
    frequencies ``base ** (-2m / rel_dim)``, sines then cosines as in the reference code) of the distance
    between query position ``i`` and key position ``j``, and ``W_R`` (``kernel``) maps it to the heads.
    This function returns all but ``q_i·k_j``, multiplied by ``scale``: add it to the logits of ordinary
    attention, ``scale * q·k`` (the paper scales the whole score).

    No ``[q_len, k_len, rel_dim]`` tensor is formed, by one of two routes:

    * **Explicit positions** (any: integer or fractional, per batch row, with gaps as randomized positions
      have, in any order). The angle of ``R_{i-j}`` is the difference of two exact angles, so
      ``sin((i-j)w) = sin(iw)cos(jw) - cos(iw)sin(jw)`` (and likewise the cosine) splits the position term
      into a product of a per-query ``[rel_dim]`` vector (``(q_i + v) W_R`` turned by the query's angles)
      with the key's ``[cos(jw), sin(jw)]``: one batched matrix product of contraction ``rel_dim``, the key
      factors shared by all heads.
    * **Both positions None** (queries and keys at ``0 … q_len-1`` and ``0 … k_len-1``): the reference
      code's relative shift. ``R`` of the ``q_len + k_len - 1`` distinct distances is projected once and
      scored against every query (contraction ``head_dim``), and each query's row is shifted into place by
      a reshape. Cheaper when ``rel_dim`` exceeds ``2 * head_dim`` (see ``python -m experiments.bench
      --sections relative``).

    The angles come from this library's exact kernel (accurate at every ``|pos| < 2**31``); either route is
    within float32 rounding of the paper's formula evaluated with ``R_{i-j}`` in float64.

    Integer positions beyond int32 (int64 under ``jax_enable_x64``): concrete ones raise; traced ones give
    NaN rows. With x64 off, JAX converts an int64 argument of ``jax.jit`` to int32 before this function sees
    it (``2**31 + 5`` arrives as ``-2**31 + 5``), which no library can detect: keep positions within int32
    or enable x64.

    Args:
      q: queries ``[batch, q_len, heads, head_dim]``.
      k: keys ``[batch or 1, k_len, kv_heads, head_dim]``; ``kv_heads`` divides ``heads`` (query head ``h``
        reads key head ``h // (heads / kv_heads)``, as in :func:`jax.nn.dot_product_attention`).
      q_positions: ``[q_len]`` or ``[batch, q_len]`` integer or float32 positions of the queries, or None
        (together with ``k_positions``) for ``0 … q_len-1``.
      k_positions: ``[k_len]`` or ``[batch, k_len]`` positions of the keys, or None (see above).
      kernel: ``W_R`` ``[rel_dim, heads, head_dim]``; rows ``0 … rel_dim/2 - 1`` multiply the sines,
        the rest the cosines.
      content_bias: ``[heads, head_dim]``: the paper's ``u`` (``r_w_bias`` in its code).
      position_bias: ``[heads, head_dim]``: the paper's ``v`` (``r_r_bias``).
      base: geometric base of the sinusoid's frequencies.
      scale: factor of the whole term; ``None`` means ``1 / sqrt(head_dim)``, the factor of ``q·k``.

    Returns:
      ``[batch, heads, q_len, k_len]`` in the promoted dtype of ``q``, ``k``, ``kernel`` and the biases
      (the sinusoids are computed in float32 and rounded once to it).

    Raises:
      TypeError: non-floating arrays, invalid positions (see :func:`posenc_jax.sinusoidal`), a non-real
        ``scale``.
      ValueError: shapes that do not agree, an odd ``rel_dim``, only one of the positions None, a bad
        ``base``, a non-finite ``scale``.

    >>> q = k = jnp.ones((1, 3, 2, 4))
    >>> kernel, bias = jnp.ones((8, 2, 4)), jnp.zeros((2, 4))
    >>> transformer_xl_logits(q, k, jnp.arange(3), jnp.arange(3), kernel=kernel, content_bias=bias,
    ...                       position_bias=bias).shape
    (1, 2, 3, 3)
    """
    caller = "transformer_xl_logits"
    _check_transformer_xl_shapes(q, k, kernel, content_bias, position_bias, caller)
    u, v = content_bias, position_bias
    w = resolve_frequencies(kernel.shape[0], base=base, caller=caller)
    check_scale(scale, caller)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    config = dict(frequencies=tuple(w.tolist()), scale=float(scale))
    if q_positions is None and k_positions is None:
        return _transformer_xl_consecutive(q, k, kernel, u, v, **config)
    if q_positions is None or k_positions is None:
        argument = "q_positions" if q_positions is None else "k_positions"
        raise checks.value_error(
            caller,
            argument,
            None,
            "pass both positions or neither",
            "neither means 0 … length-1 for queries and keys",
        )
    q_pos = check_positions_1d_or_2d(caller, q_positions, "q_positions")
    k_pos = check_positions_1d_or_2d(caller, k_positions, "k_positions")
    _check_lengths(q_pos, k_pos, q, k, caller)
    return _transformer_xl(q, k, q_pos, k_pos, kernel, u, v, **config)


def _promoted(*arrays: jax.Array) -> tuple[jax.Array, ...]:
    dtype = jnp.result_type(*arrays)
    return tuple(a.astype(dtype) for a in arrays)


def _content_term(k: jax.Array, u: jax.Array) -> jax.Array:
    """``u·k_j`` for every head and key: ``[batch, heads, 1, k_len]``.

    With fewer key heads than query heads (grouped-query attention), query head ``h`` reads key head
    ``h // (heads / kv_heads)``, the grouping of :func:`jax.nn.dot_product_attention`.
    """
    kv_heads = k.shape[2]
    grouped = u.reshape(kv_heads, u.shape[0] // kv_heads, u.shape[1])
    content = jnp.einsum("cgd,bkcd->bcgk", grouped, k)
    return content.reshape(k.shape[0], u.shape[0], 1, k.shape[1])


@functools.partial(jax.jit, static_argnames=("frequencies", "scale"))
def _transformer_xl(q, k, q_pos, k_pos, kernel, u, v, *, frequencies: tuple[float, ...], scale: float):
    q, k, kernel, u, v = _promoted(q, k, kernel, u, v)
    dtype = q.dtype
    w = np.asarray(frequencies, dtype=np.float64)
    n = len(frequencies)
    q_sin, q_cos = (t.astype(dtype)[..., None, :] for t in sincos(q_pos, w))  # [(batch,) q, 1, n]
    k_sin, k_cos = (t.astype(dtype) for t in sincos(k_pos, w))  # [(batch,) k, n]
    # Coefficients of sin((i-j)w) and cos((i-j)w) in (q_i + v)·W_R R_{i-j}:  [batch, q, heads, n] each.
    query = q + v
    a = jnp.einsum("bqhd,nhd->bqhn", query, kernel[:n])
    b = jnp.einsum("bqhd,nhd->bqhn", query, kernel[n:])
    # a sin(θi-θj) + b cos(θi-θj) = (a sin θi + b cos θi) cos θj + (b sin θi - a cos θi) sin θj.
    query_factor = jnp.concatenate([a * q_sin + b * q_cos, b * q_sin - a * q_cos], axis=-1)
    key_factor = jnp.concatenate([k_cos, k_sin], axis=-1)  # [(batch,) k, rel_dim]
    if key_factor.ndim == 2:
        position = jnp.einsum("bqhr,kr->bhqk", query_factor, key_factor)
    else:
        batch = max(query_factor.shape[0], key_factor.shape[0])
        query_factor = jnp.broadcast_to(query_factor, (batch, *query_factor.shape[1:]))
        key_factor = jnp.broadcast_to(key_factor, (batch, *key_factor.shape[1:]))
        position = jnp.einsum("bqhr,bkr->bhqk", query_factor, key_factor)
    return (position + _content_term(k, u)) * jnp.asarray(scale, dtype)


@functools.partial(jax.jit, static_argnames=("frequencies", "scale"))
def _transformer_xl_consecutive(q, k, kernel, u, v, *, frequencies: tuple[float, ...], scale: float):
    q, k, kernel, u, v = _promoted(q, k, kernel, u, v)
    dtype = q.dtype
    q_len, k_len = q.shape[1], k.shape[1]
    # Distances i - j from q_len-1 down to -(k_len-1); column m holds distance q_len-1-m.
    distances = jnp.arange(q_len - 1, -k_len, -1, dtype=jnp.int32)
    sin, cos = sincos(distances, np.asarray(frequencies, dtype=np.float64))
    encoding = jnp.concatenate([sin, cos], axis=-1).astype(dtype)  # [m, rel_dim]
    projected = jnp.einsum("mr,rhd->mhd", encoding, kernel)
    scores = jnp.einsum("bqhd,mhd->bhqm", q + v, projected)  # [batch, heads, q, q+k-1]
    if q_len > 1:
        # Row i needs columns q_len-1-i … q_len-1-i+k_len-1. In the flattened rows these start at
        # q_len-1 + i * (m - 1): reading the flat array with row stride m - 1 shifts every row at once.
        m = q_len + k_len - 1
        flat = scores.reshape(*scores.shape[:2], q_len * m)[..., q_len - 1 : q_len - 1 + q_len * (m - 1)]
        scores = flat.reshape(*scores.shape[:2], q_len, m - 1)[..., :k_len]
    return (scores + _content_term(k, u)) * jnp.asarray(scale, dtype)
