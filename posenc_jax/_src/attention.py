"""Attention with any positional scheme, and a key/value cache for incremental decoding at explicit positions.

:func:`attention` applies a scheme (:class:`posenc_jax.PositionalScheme`: its ``rotate``,
``attention_bias`` and ``attention_logits_bias``) and then calls :func:`jax.nn.dot_product_attention`, so
the fused cuDNN kernel is one argument away on NVIDIA GPUs (``implementation="cudnn"``, for the shapes and
dtypes it supports) and XLA's implementation runs everywhere else. :class:`KVCache` stores the keys and
values of a decoded prefix with their positions, so decoding one token at a time gives the same result as
attention over the whole sequence.

>>> import jax.numpy as jnp
>>> from posenc_jax.schemes import Rotary
>>> q = k = v = jnp.ones((1, 4, 2, 8))  # [batch, length, heads, head_dim]
>>> scheme = Rotary(8, layout="split")
>>> attention(q, k, v, scheme=scheme, q_positions=jnp.arange(4), k_positions=jnp.arange(4)).shape
(1, 4, 2, 8)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from posenc_jax._src import checks
from posenc_jax._src.angles import FLOAT_LIMIT, INT32_MIN, outside_int32
from posenc_jax._src.schemes import PositionalScheme

__all__ = ["KVCache", "attention"]


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(getattr(value, "shape", None) or np.shape(value))


def _exceeds(size: Any, limit: Any) -> bool:
    """``size > limit`` where it is known at trace time; False for symbolic sizes of ``jax.export`` that may
    or may not exceed it (the cache then marks overflowing rows at run time, as for any traced length)."""
    try:
        return bool(size > limit)
    except jax.errors.InconclusiveDimensionOperation:
        return False


def _check_array(value: Any, name: str, caller: str) -> None:
    dtype = getattr(value, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise checks.type_error(caller, name, value, f"{name} must be a floating jax or numpy array")
    if len(_shape(value)) != 4:
        raise checks.value_error(
            caller, name, value, f"{name} must have shape [batch, length, heads, head_dim]"
        )


def _check_scheme(scheme: object, caller: str) -> None:
    if not isinstance(scheme, PositionalScheme):
        raise checks.type_error(
            caller,
            "scheme",
            scheme,
            "scheme must implement posenc_jax.PositionalScheme (embed, rotate, attention_bias, "
            "attention_logits_bias)",
            'e.g. posenc_jax.schemes.Rotary(head_dim, layout="split") or a module of posenc_jax.nnx',
        )


def _check_mask(mask: Any, caller: str) -> None:
    if mask is not None and (getattr(mask, "dtype", None) != jnp.bool_ or len(_shape(mask)) != 4):
        raise checks.type_error(
            caller,
            "mask",
            mask,
            "mask must be a boolean rank-4 array broadcastable to [batch, heads, q_len, k_len] (True = attend)",
        )


def _heads(count: int) -> str:
    return f"{count} head" if count == 1 else f"{count} heads"


def _check_bias_heads(term: jax.Array | None, heads: int, scheme: object, caller: str) -> None:
    """A scheme's bias ``[batch or 1, heads, q_len, k_len]`` must have q's number of heads, not 1 (which
    would broadcast one head's bias to all) nor another count."""
    if term is None:
        return
    shape = tuple(term.shape)
    if len(shape) != 4 or shape[1] != heads:
        has = _heads(shape[1]) if len(shape) == 4 else f"the shape {shape}, not [batch, heads, q, k]"
        raise checks.value_error(
            caller,
            "scheme",
            checks.Shown(f"<{type(scheme).__name__} with {has}>"),
            f"the scheme's attention bias has {has}, but q has {_heads(heads)}",
            f"build the scheme with num_heads={heads}",
        )


def _sum_terms(*terms: jax.Array | None) -> jax.Array | None:
    present = [term for term in terms if term is not None]
    if not present:
        return None
    total = present[0].astype(jnp.float32)
    for term in present[1:]:
        total = total + term.astype(jnp.float32)
    return total


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    scheme: PositionalScheme,
    q_positions: jax.Array,
    k_positions: jax.Array,
    mask: jax.Array | None = None,
    is_causal: bool = False,
    local_window_size: int | tuple[int, int] | None = None,
    scale: float | None = None,
    implementation: Literal["xla", "cudnn"] | None = None,
) -> jax.Array:
    """Softmax attention with a positional scheme applied, on :func:`jax.nn.dot_product_attention`.

    Computes ``softmax(q'·k'ᵀ · scale + B) v`` per head, where ``(q', k') = scheme.rotate(q, k, q_positions,
    k_positions)`` and ``B`` is the sum (float32) of ``scheme.attention_bias(q_positions, k_positions)`` and
    ``scheme.attention_logits_bias(q', k', q_positions, k_positions)``, each when not ``None``. A scheme
    whose term depends on which keys a query sees (``scheme.needs_mask``, e.g. CoPE) also gets ``mask=``:
    ``mask``, ``is_causal`` and ``local_window_size`` combined. Absolute
    schemes (sinusoidal, learned) act on the token embeddings (``scheme.embed``) and are identities here.

    Integer positions beyond int32 (int64 under ``jax_enable_x64``): concrete ones raise; traced ones follow
    the scheme's own rule: NaN rows for rotary, xPos and Transformer-XL, exact distances for ALiBi, Kerple,
    FIRE and CoPE, saturated T5 buckets. With x64 off, JAX converts an int64 argument of ``jax.jit`` to
    int32 before this function sees it (``2**31 + 5`` arrives as ``-2**31 + 5``), which no library can
    detect: keep positions within int32 or enable x64.

    Args:
      q: queries ``[batch, q_len, heads, head_dim]``.
      k: keys ``[batch, k_len, kv_heads, head_dim]``; ``heads`` must be a multiple of ``kv_heads`` (grouped
        and multi-query attention).
      v: values, the shape of ``k``.
      scheme: a :class:`posenc_jax.PositionalScheme` (a value of :mod:`posenc_jax.schemes` or a module of
        :mod:`posenc_jax.nnx`; a Linen module from inside its parent's ``apply``).
      q_positions: ``[q_len]`` or ``[batch, q_len]`` positions of the queries.
      k_positions: ``[k_len]`` or ``[batch, k_len]`` positions of the keys.
      mask: optional boolean ``[batch or 1, heads or 1, q_len, k_len]``, ``True`` where a query may attend.
      is_causal: as in :func:`jax.nn.dot_product_attention`: query ``i`` sees keys ``0 … i`` by index
        (which lets fused kernels skip the masked half); only for ``q_len == k_len``. Decoding against a
        longer prefix uses :meth:`KVCache.attend`, or a ``mask`` built from positions.
      local_window_size: sliding-window attention, as in :func:`jax.nn.dot_product_attention`: an int ``w``
        or ``(left, right)``; query ``i`` sees keys ``i - left … i + right`` by index (``w``: ``(w, w)``;
        with ``is_causal``, ``i - left … i``). ``None``: every key. Gemma-style local layers use
        ``is_causal=True, local_window_size=(window - 1, 0)``.
      scale: the logits' scale; ``None`` means ``1 / sqrt(head_dim)``.
      implementation: ``None`` or ``"xla"`` (XLA's attention), or ``"cudnn"`` (the fused kernel on NVIDIA
        GPUs; bfloat16/float16 inputs).

    Returns:
      ``[batch, q_len, heads, head_dim]`` of ``q``'s dtype (softmax in float32).

    Raises:
      TypeError: non-floating ``q`` / ``k`` / ``v``, a ``scheme`` that does not implement the protocol, a
        mask that is not a rank-4 boolean array, bad position dtypes.
      ValueError: shapes that do not fit together, ``is_causal`` with ``q_len != k_len``, a scheme whose
        bias has another number of heads than ``q`` (at trace time; a one-head bias is not broadcast).
    """
    return _attention(
        "attention",
        q,
        k,
        v,
        scheme=scheme,
        q_positions=q_positions,
        k_positions=k_positions,
        mask=mask,
        is_causal=is_causal,
        scale=scale,
        local_window_size=local_window_size,
        implementation=implementation,
    )


def _attention(
    caller: str,
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    scheme: PositionalScheme,
    q_positions: jax.Array,
    k_positions: jax.Array,
    mask: jax.Array | None,
    is_causal: bool,
    scale: float | None,
    local_window_size: int | tuple[int, int] | None,
    implementation: Literal["xla", "cudnn"] | None,
) -> jax.Array:
    for name, value in (("q", q), ("k", k), ("v", v)):
        _check_array(value, name, caller)
    batch, q_len, heads, head_dim = _shape(q)
    k_batch, k_len, kv_heads, k_head_dim = _shape(k)
    if k_batch != batch or k_head_dim != head_dim or heads % kv_heads:
        raise checks.value_error(
            caller,
            "k",
            k,
            f"k must have shape [batch={batch}, k_len, kv_heads, head_dim={head_dim}] with kv_heads dividing "
            f"q's {heads} heads",
        )
    if _shape(v) != _shape(k):
        raise checks.value_error(caller, "v", v, f"v must have k's shape {_shape(k)}")
    _check_scheme(scheme, caller)
    checks.positions_shape(caller, q_positions, (batch, q_len), "q_positions", of="q")
    checks.positions_shape(caller, k_positions, (batch, k_len), "k_positions", of="k")
    _check_mask(mask, caller)
    if checks.boolean(caller, "is_causal", is_causal) and q_len != k_len:
        raise checks.value_error(
            caller,
            "is_causal",
            is_causal,
            f"is_causal aligns queries and keys by index and needs q_len == k_len, got {q_len} and {k_len}",
            "pass a mask built from the positions instead (or use KVCache.attend)",
        )
    window = _check_window(local_window_size, caller)
    q, k = scheme.rotate(q, k, q_positions, k_positions)
    if getattr(scheme, "needs_mask", False):
        visible = _visible(mask, is_causal, window, q_len, k_len)
        masked_hook: Any = scheme.attention_logits_bias  # takes mask= besides the protocol's arguments
        logits_term = masked_hook(q, k, q_positions, k_positions, mask=visible)
    else:
        logits_term = scheme.attention_logits_bias(q, k, q_positions, k_positions)
    terms = (scheme.attention_bias(q_positions, k_positions), logits_term)
    for term in terms:
        _check_bias_heads(term, heads, scheme, caller)
    bias = _sum_terms(*terms)
    return jax.nn.dot_product_attention(
        q,
        k,
        jnp.asarray(v),
        bias,
        mask,
        scale=scale,
        is_causal=is_causal,
        local_window_size=window,
        implementation=implementation,
    )


def _check_window(local_window_size: object, caller: str) -> tuple[int, int] | None:
    """``None``, or ``(left, right)`` non-negative ints (an int ``w`` means ``(w, w)``)."""
    if local_window_size is None:
        return None
    allowed = "local_window_size must be None, a non-negative int w, or a pair (left, right) of them"
    sizes = local_window_size if isinstance(local_window_size, tuple | list) else (local_window_size,) * 2
    if len(sizes) != 2:
        raise checks.value_error(caller, "local_window_size", local_window_size, allowed)
    left, right = (checks.integer(caller, "local_window_size", size, 0) for size in sizes)
    return left, right


def _window_mask(window: tuple[int, int], query_index: jax.Array, key_index: jax.Array) -> jax.Array:
    """Key ``j`` is in query ``i``'s window when ``i - left <= j <= i + right`` (indices)."""
    left, right = window
    return (key_index >= query_index - left) & (key_index <= query_index + right)


def _visible(mask, is_causal: bool, window, q_len: int, k_len: int) -> jax.Array | None:
    """The keys each query sees, ``[batch or 1, heads or 1, q_len, k_len]``, or None for all."""
    parts = [] if mask is None else [jnp.asarray(mask)]
    query_index = jnp.arange(q_len)[:, None]
    key_index = jnp.arange(k_len)[None, :]
    if is_causal:
        parts.append((key_index <= query_index)[None, None])
    if window is not None:
        parts.append(_window_mask(window, query_index, key_index)[None, None])
    if not parts:
        return None
    visible = parts[0]
    for part in parts[1:]:
        visible = visible & part
    return visible


# Why a float32 cache refuses float64 positions it would round (host values, or concrete ones under x64).
_ROUNDS_FLOATS = "this cache stores float32 positions, which would round these float64 values"
_ROUNDS_FLOATS_FIX = "pass float32 positions, or integers to an int32 cache"


def _rounded_in_float32(positions: jax.Array) -> jax.Array | None:
    """Where ``positions`` are not exactly a float32 (integers above ``2**24`` in magnitude, float64 values
    with more digits), or ``None`` for float32 positions (stored as they are)."""
    dtype = np.dtype(positions.dtype)
    if dtype == np.float32:
        return None
    as_float = positions.astype(jnp.float32)
    exact = as_float.astype(dtype) == positions
    if dtype.kind in "iu":
        # 2**(bits) is a power of two, exact in float32; a value that rounds up to it is not in the dtype.
        exact &= as_float < np.float32(2.0 ** (dtype.itemsize * 8 - (dtype.kind == "i")))
    return ~exact


@dataclasses.dataclass(frozen=True)
class KVCache:
    """Keys and values of a decoded prefix, with their positions: a pytree, so it passes through ``jit``.

    Rows of a batch may hold different numbers of entries (ragged prompts). Keys are stored as given (not
    rotated): the scheme is applied in :meth:`attend`, so every scheme works, including those whose logits
    depend on the keys' content; for rotary this rotates the cached keys at each step, work linear in the
    cache length like the attention itself.

    Attributes:
      keys: ``[batch, capacity, kv_heads, head_dim]``.
      values: ``[batch, capacity, kv_heads, head_dim]``.
      positions: ``[batch, capacity]`` positions of the stored entries (int32 or float32).
      length: ``[batch]`` int32, the number of entries appended to each row. Above ``capacity`` the row has
        overflowed: :meth:`attend` returns NaN for it (a traced length cannot raise).

    >>> cache = KVCache.init(batch=1, capacity=8, num_kv_heads=2, head_dim=4)
    >>> k = v = jnp.ones((1, 3, 2, 4))
    >>> cache = cache.append(k, v, positions=jnp.arange(3))
    >>> cache.length
    Array([3], dtype=int32)
    """

    keys: jax.Array
    values: jax.Array
    positions: jax.Array
    length: jax.Array

    @classmethod
    def init(
        cls,
        *,
        batch: int,
        capacity: int,
        num_kv_heads: int,
        head_dim: int,
        dtype: Any = jnp.float32,
        position_dtype: Any = jnp.int32,
    ) -> KVCache:
        """An empty cache (zeros) for ``capacity`` entries per row.

        Args:
          batch: rows (positive; a symbolic dimension when exported with a symbolic batch).
          capacity: entries per row (positive).
          num_kv_heads: key/value heads (positive).
          head_dim: features per key and value (positive).
          dtype: dtype of the stored keys and values (floating).
          position_dtype: ``int32`` (default) or ``float32`` positions.

        Returns:
          A :class:`KVCache` with ``length`` 0 in every row.

        Raises:
          TypeError: a size that is not a Python int, a non-floating ``dtype``, another ``position_dtype``.
          ValueError: a size that is not positive.
        """
        caller = "KVCache.init"
        sizes = {"batch": batch, "capacity": capacity, "num_kv_heads": num_kv_heads, "head_dim": head_dim}
        for name, size in sizes.items():
            if not export.is_symbolic_dim(size):  # a symbolic batch of jax.export is a size too
                checks.integer(caller, name, size)
        dtype = checks.floating_dtype(caller, dtype)
        if np.dtype(position_dtype) not in (np.dtype(np.int32), np.dtype(np.float32)):
            raise checks.type_error(
                caller, "position_dtype", position_dtype, "position_dtype must be int32 or float32"
            )
        return cls(
            keys=jnp.zeros((batch, capacity, num_kv_heads, head_dim), dtype),
            values=jnp.zeros((batch, capacity, num_kv_heads, head_dim), dtype),
            positions=jnp.zeros((batch, capacity), position_dtype),
            length=jnp.zeros((batch,), jnp.int32),
        )

    @property
    def capacity(self) -> int:
        """Entries per row (static)."""
        return self.keys.shape[1]

    def append(self, k: jax.Array, v: jax.Array, positions: jax.Array) -> KVCache:
        """Stores ``new`` keys and values per row after the row's current entries, with their positions.

        Args:
          k: ``[batch, new, kv_heads, head_dim]`` keys (cast to the cache's dtype).
          v: ``[batch, new, kv_heads, head_dim]`` values (cast to the cache's dtype).
          positions: ``[new]`` or ``[batch, new]`` positions of the new entries; integer for an int32 cache.

        Returns:
          The updated cache. Entries beyond ``capacity`` are not stored; the row's ``length`` still counts
          them, so :meth:`attend` returns NaN for that row instead of a silently truncated context. Positions
          must lie in the int32 range: host values and concrete arrays outside it raise; traced int64 (or
          float64) positions outside it (``jax_enable_x64``) mark their row overflowed (``length`` above
          ``capacity``), so :meth:`attend` returns NaN for it, never attention at a wrapped position. With
          x64 off, JAX converts an int64 argument of ``jax.jit`` to int32 before this method sees it, which
          it cannot detect: pass int32 positions. A float32 cache holds every integer only up to ``2**24``:
          integer or float64 positions that float32 would round raise when concrete and mark their row
          overflowed (NaN from :meth:`attend`) when traced; an int32 cache (the default) stores any int32
          position.

        Raises:
          TypeError: non-floating ``k`` / ``v``; floating positions for an int32 cache, or bad position dtypes.
          ValueError: shapes that do not match the cache, ``new > capacity``, or concrete positions a float32
            cache would round.
        """
        caller = "KVCache.append"
        _check_array(k, "k", caller)
        _check_array(v, "v", caller)
        batch, capacity = self.keys.shape[:2]
        new = _shape(k)[1]
        if _shape(k)[0] != batch or _shape(k)[2:] != self.keys.shape[2:]:
            raise checks.value_error(
                caller, "k", k, f"k must have shape [{batch}, new, {self.keys.shape[2]}, {self.keys.shape[3]}]"
            )
        if _shape(v) != _shape(k):
            raise checks.value_error(caller, "v", v, f"v must have k's shape {_shape(k)}")
        if _exceeds(new, capacity):
            raise checks.value_error(
                caller, "k", k, f"{new} new entries exceed the capacity {capacity}", "use a larger capacity"
            )
        checks.positions_shape(caller, positions, (batch, new), "positions", of="k")
        dtype = getattr(positions, "dtype", None)  # before any conversion
        dtype = np.asarray(positions).dtype if dtype is None else dtype
        if jnp.issubdtype(dtype, jnp.floating) and jnp.issubdtype(self.positions.dtype, jnp.integer):
            raise checks.type_error(
                caller,
                "positions",
                positions,
                "this cache stores integer positions",
                "create it with position_dtype=jnp.float32 for fractional positions",
            )
        given = positions  # as passed, for messages
        checked = checks.positions(caller, positions)
        if not isinstance(checked, jax.Array):  # host float64 positions: stored as float32 only if exact
            host = np.asarray(positions)
            if not np.array_equal(host.astype(np.float32), host):
                raise checks.value_error(caller, "positions", positions, _ROUNDS_FLOATS, _ROUNDS_FLOATS_FIX)
            checked = jnp.asarray(host.astype(np.float32))
        positions = jnp.broadcast_to(checked, (batch, new))
        slots = self.length[:, None] + jnp.arange(new, dtype=jnp.int32)  # [batch, new]
        rows = jnp.arange(batch)[:, None]
        length = self.length + new
        # Traced 64-bit (x64) or unsigned positions outside the int32 range cannot be stored (int32 would
        # wrap 2**32 + 7 to 7) nor raise: their rows are marked overflowed, so attend() returns NaN for them.
        outside = outside_int32(positions) if jnp.issubdtype(positions.dtype, jnp.integer) else None
        if outside is None and np.dtype(positions.dtype).itemsize > 4:  # float64 under x64
            outside = ~(jnp.abs(positions) < FLOAT_LIMIT)
        rounded = _rounded_in_float32(positions) if self.positions.dtype == jnp.float32 else None
        if rounded is not None:
            if not isinstance(rounded, jax.core.Tracer) and bool(jnp.any(rounded)):
                if jnp.issubdtype(positions.dtype, jnp.floating):  # float64 under x64
                    raise checks.value_error(caller, "positions", given, _ROUNDS_FLOATS, _ROUNDS_FLOATS_FIX)
                first = np.asarray(positions)[np.asarray(rounded)][0]
                raise checks.value_error(
                    caller,
                    "positions",
                    given,
                    f"this cache stores float32 positions, which hold every integer only up to 2**24; {first} "
                    "would round",
                    "use an int32 cache (the default) for integer positions",
                )
            outside = rounded if outside is None else outside | rounded
        if outside is not None:
            length = jnp.where(jnp.any(outside, axis=1), jnp.maximum(length, capacity + 1), length)
            # stored saturated, never wrapped (the row is unusable either way)
            low = 0 if np.dtype(positions.dtype).kind == "u" else INT32_MIN
            high = 2**31 - 1
            positions = jnp.clip(positions, np.array(low, positions.dtype), np.array(high, positions.dtype))
        return KVCache(
            keys=self.keys.at[rows, slots].set(k.astype(self.keys.dtype), mode="drop"),
            values=self.values.at[rows, slots].set(v.astype(self.values.dtype), mode="drop"),
            positions=self.positions.at[rows, slots].set(positions.astype(self.positions.dtype), mode="drop"),
            length=length,
        )

    def attend(
        self,
        q: jax.Array,
        *,
        scheme: PositionalScheme,
        q_positions: jax.Array | None = None,
        is_causal: bool = True,
        mask: jax.Array | None = None,
        local_window_size: int | tuple[int, int] | None = None,
        scale: float | None = None,
        implementation: Literal["xla", "cudnn"] | None = None,
    ) -> jax.Array:
        """Attention of the ``q_len`` most recently appended entries' queries over the cached prefix.

        Call it after :meth:`append` of the same step's keys and values: query ``t`` belongs to the entry in
        slot ``length - q_len + t`` of its row and (``is_causal``) attends to the slots up to its own, by order
        of insertion, whatever the positions' values.

        Args:
          q: ``[batch, q_len, heads, head_dim]`` queries.
          scheme: a :class:`posenc_jax.PositionalScheme`, as in :func:`attention`.
          q_positions: ``[q_len]`` or ``[batch, q_len]``; ``None`` (default) takes the positions stored with
            the queries' own entries.
          is_causal: each query sees only the entries appended up to its own (default), else every entry.
          mask: optional boolean ``[batch or 1, heads or 1, q_len, capacity]`` further restricting the keys.
          local_window_size: sliding window, as in :func:`attention` but by order of insertion: the query
            of slot ``s`` sees slots ``s - left … s + right`` (``(window - 1, 0)`` for a causal local layer).
          scale: the logits' scale; ``None`` means ``1 / sqrt(head_dim)``.
          implementation: as in :func:`attention`.

        Returns:
          ``[batch, q_len, heads, head_dim]``; NaN in rows whose ``length`` exceeds ``capacity`` or is
          below ``q_len`` (the queries' entries were not appended).

        Raises:
          TypeError, ValueError: as :func:`attention`; ``q_len`` above ``capacity``.
        """
        caller = "KVCache.attend"
        _check_array(q, "q", caller)
        q_len = _shape(q)[1]
        if _exceeds(q_len, self.capacity):
            raise checks.value_error(caller, "q", q, f"q_len={q_len} exceeds the capacity {self.capacity}")
        checks.boolean(caller, "is_causal", is_causal)
        _check_mask(mask, caller)
        window = _check_window(local_window_size, caller)
        own_slots = self.length[:, None] - q_len + jnp.arange(q_len, dtype=jnp.int32)  # [batch, q_len]
        if q_positions is None:
            q_positions = jnp.take_along_axis(self.positions, jnp.clip(own_slots, 0, self.capacity - 1), axis=1)
        slots = jnp.arange(self.capacity, dtype=jnp.int32)
        allowed = slots[None, None, :] < self.length[:, None, None]  # [batch, 1, capacity]
        if is_causal:
            allowed = allowed & (slots[None, None, :] <= own_slots[:, :, None])  # [batch, q_len, capacity]
        if window is not None:
            allowed = allowed & _window_mask(window, own_slots[:, :, None], slots[None, None, :])
        allowed = allowed[:, None]
        if mask is not None:
            allowed = allowed & mask
        out = _attention(
            caller,
            q,
            self.keys,
            self.values,
            scheme=scheme,
            q_positions=q_positions,
            k_positions=self.positions,
            mask=allowed,
            is_causal=False,
            scale=scale,
            local_window_size=None,  # applied above, by order of insertion
            implementation=implementation,
        )
        # A traced length cannot raise: rows that overflowed, or that hold fewer entries than queries (attend
        # called before append), come out NaN instead of attending to a truncated or empty context.
        invalid = ((self.length > self.capacity) | (self.length < q_len))[:, None, None, None]
        return jnp.where(invalid, jnp.asarray(jnp.nan, out.dtype), out)


jax.tree_util.register_dataclass(KVCache, data_fields=["keys", "values", "positions", "length"], meta_fields=[])
