"""Randomized positional encodings (Ruoss et al., 2023, "Randomized Positional Encodings Boost Length
Generalization of Transformers").

During training, a sequence of ``length`` tokens gets positions drawn as a sorted random subset of
``[0, max_length)`` instead of ``0 … length-1``, with ``max_length`` at least the longest test length. The
model thus sees every position of the test range while training on short sequences, and only the order of
positions carries information. Any scheme that takes explicit positions can use them.

The cost of a draw grows with ``length``, not with ``max_length``: when ``max_length > 2 * length`` the
positions are the first ``length`` distinct values of a stream of uniform draws (every subset equally
likely, about ``1.4 * length`` draws on average), so ``max_length`` may be as large as ``2**31 - 1``.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._src import checks

__all__ = ["randomized_positions"]

_MAX_LENGTH = 2**31 - 1  # positions are int32


def _check_key(call: str, key: object) -> jax.Array:
    dtype = getattr(key, "dtype", None)
    shape = tuple(getattr(key, "shape", ()))
    allowed = "key must be a single PRNG key, from jax.random.key(seed) or jax.random.PRNGKey(seed)"
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            raise checks.value_error(call, "key", key, allowed, "use batch_shape for several draws")
        return key  # type: ignore[return-value]
    if dtype is not None and dtype == jnp.uint32 and shape == (2,):
        return key  # type: ignore[return-value]
    raise checks.type_error(call, "key", key, allowed)


def _check_batch_shape(call: str, batch_shape: object) -> tuple[int, ...]:
    allowed = "batch_shape must be a tuple of non-negative Python ints"
    if isinstance(batch_shape, str | numbers.Integral) or not isinstance(batch_shape, Sequence):
        raise checks.type_error(call, "batch_shape", batch_shape, allowed)
    for size in batch_shape:
        if isinstance(size, bool | np.bool_) or not isinstance(size, numbers.Integral):
            raise checks.type_error(call, "batch_shape", tuple(batch_shape), allowed)
        if int(size) < 0:
            raise checks.value_error(call, "batch_shape", tuple(batch_shape), allowed)
    return tuple(int(size) for size in batch_shape)


def randomized_positions(
    key: jax.Array,
    length: int,
    max_length: int,
    *,
    batch_shape: Sequence[int] = (),
) -> jax.Array:
    """A sorted random subset of ``length`` distinct positions from ``[0, max_length)``.

    Every subset of size ``length`` is equally likely. Each example of ``batch_shape`` gets its own
    independent draw; the result is a deterministic function of ``key``. Time and memory grow with
    ``length`` (times ``log length``), not with ``max_length``.

    Args:
      key: a single PRNG key (``jax.random.key`` or legacy ``jax.random.PRNGKey``); may be traced.
      length: number of positions per example (static positive int).
      max_length: size of the range to draw from (static, ``length <= max_length <= 2**31 - 1`` so that
        every position is an int32).
      batch_shape: leading shape of independent draws (static), e.g. ``(batch,)``.

    Returns:
      int32 array ``batch_shape + (length,)``, strictly increasing along the last axis.

    Raises:
      TypeError: non-int ``length`` / ``max_length`` / ``batch_shape`` entries, or ``key`` not a single key.
      ValueError: ``length`` or ``max_length`` not positive, ``max_length < length``,
        ``max_length > 2**31 - 1``, negative ``batch_shape`` entries.

    >>> randomized_positions(jax.random.key(0), 4, 16, batch_shape=(2,)).shape
    (2, 4)
    """
    call = "randomized_positions"
    length = checks.integer(call, "length", length)
    max_length = checks.integer(call, "max_length", max_length)
    if max_length < length:
        raise checks.value_error(
            call,
            "max_length",
            max_length,
            f"max_length must be >= length={length}, since the positions are distinct values from "
            "[0, max_length)",
        )
    if max_length > _MAX_LENGTH:
        raise checks.value_error(
            call, "max_length", max_length, "max_length must be <= 2**31 - 1: positions are int32"
        )
    batch_shape = _check_batch_shape(call, batch_shape)
    key = _check_key(call, key)
    return _draw(key, length=length, max_length=max_length, batch_shape=batch_shape)


def _dense_subset(key: jax.Array, length: int, max_length: int) -> jax.Array:
    """A uniform random ``length``-subset of ``[0, max_length)`` by permuting the range: O(max_length)."""
    return jax.random.choice(key, max_length, shape=(length,), replace=False).astype(jnp.int32)


def _sparse_subset(key: jax.Array, length: int, max_length: int) -> jax.Array:
    """The first ``length`` distinct values of a stream of uniform draws from ``[0, max_length)``.

    Taking values in stream order and skipping repeats is sampling without replacement, so every subset is
    equally likely. Rounds of ``2 * length`` draws are merged into the chosen set by one stable sort (the
    first occurrence of each value is the earliest in the stream); with ``max_length > 2 * length`` the
    first round usually suffices.
    """
    draws = 2 * length
    empty = jnp.int32(max_length)  # a sentinel above every position

    def one_round(state):
        key, chosen, count = state
        key, subkey = jax.random.split(key)
        candidates = jax.random.randint(subkey, (draws,), 0, max_length, dtype=jnp.int32)
        values = jnp.concatenate([chosen, candidates])  # chosen first: they precede the candidates
        order = jnp.argsort(values, stable=True)
        ordered = values[order]
        first = jnp.concatenate([jnp.ones((1,), bool), ordered[1:] != ordered[:-1]])
        fresh = first & (order >= length) & (ordered != empty)
        fresh = jnp.zeros(length + draws, bool).at[order].set(fresh)[length:]  # back in stream order
        slot = count + jnp.cumsum(fresh) - 1
        slot = jnp.where(fresh & (slot < length), slot, length)  # index `length` is dropped
        chosen = chosen.at[slot].set(candidates, mode="drop")
        return key, chosen, jnp.minimum(count + jnp.sum(fresh), length)

    state = (key, jnp.full((length,), empty), jnp.int32(0))
    _, chosen, _ = jax.lax.while_loop(lambda state: state[2] < length, one_round, state)
    return chosen


@functools.partial(jax.jit, static_argnames=("length", "max_length", "batch_shape"))
def _draw(key: jax.Array, *, length: int, max_length: int, batch_shape: tuple[int, ...]) -> jax.Array:
    subset = _sparse_subset if max_length > 2 * length else _dense_subset

    def draw(one_key: jax.Array) -> jax.Array:
        return jnp.sort(subset(one_key, length, max_length))

    if not batch_shape:
        return draw(key)
    keys = jax.random.split(key, math.prod(batch_shape))
    return jax.vmap(draw)(keys).reshape(*batch_shape, length)
