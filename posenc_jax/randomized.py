"""Randomized positional encodings (Ruoss et al., 2023, "Randomized Positional Encodings Boost Length
Generalization of Transformers").

During training, a sequence of ``length`` tokens gets positions drawn as a sorted random subset of
``[0, max_length)`` instead of ``0 … length-1``, with ``max_length`` at least the longest test length. The
model thus sees every position of the test range while training on short sequences, and only the order of
positions carries information. Any scheme that takes explicit positions can use them.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = ["randomized_positions"]


def _check_positive_int(value: object, name: str, caller: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{caller}({name}={value!r}): {name} must be a positive Python int (static)")
    if int(value) <= 0:
        raise ValueError(f"{caller}({name}={value}): {name} must be a positive integer")
    return int(value)


def _check_key(key: object, caller: str) -> jax.Array:
    dtype = getattr(key, "dtype", None)
    shape = tuple(getattr(key, "shape", ()))
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            raise ValueError(
                f"{caller}(key shape={shape}): key must be a single PRNG key; use batch_shape for several draws"
            )
        return key
    if dtype is not None and dtype == jnp.uint32 and shape == (2,):
        return key
    raise TypeError(
        f"{caller}(key={type(key).__name__} dtype={dtype} shape={shape}): key must be a single PRNG key, "
        "from jax.random.key(seed) or jax.random.PRNGKey(seed)"
    )


def randomized_positions(
    key: jax.Array,
    length: int,
    max_length: int,
    *,
    batch_shape: Sequence[int] = (),
) -> jax.Array:
    """A sorted random subset of ``length`` distinct positions from ``[0, max_length)``.

    Every subset of size ``length`` is equally likely. Each example of ``batch_shape`` gets its own
    independent draw; the result is a deterministic function of ``key``.

    Args:
      key: a single PRNG key (``jax.random.key`` or legacy ``jax.random.PRNGKey``); may be traced.
      length: number of positions per example (static positive int).
      max_length: size of the range to draw from (static, ``>= length``).
      batch_shape: leading shape of independent draws (static), e.g. ``(batch,)``.

    Returns:
      int32 array ``batch_shape + (length,)``, strictly increasing along the last axis.

    Raises:
      TypeError: non-int ``length`` / ``max_length`` / ``batch_shape`` entries, or ``key`` not a single key.
      ValueError: ``length`` or ``max_length`` not positive, ``max_length < length``, negative
        ``batch_shape`` entries.

    >>> randomized_positions(jax.random.key(0), 4, 16, batch_shape=(2,)).shape
    (2, 4)
    """
    caller = "randomized_positions"
    length = _check_positive_int(length, "length", caller)
    max_length = _check_positive_int(max_length, "max_length", caller)
    if max_length < length:
        raise ValueError(
            f"{caller}(length={length}, max_length={max_length}): max_length must be >= length, since the "
            "positions are distinct values from [0, max_length)"
        )
    if isinstance(batch_shape, numbers.Integral) or not isinstance(batch_shape, Sequence):
        raise TypeError(f"{caller}(batch_shape={batch_shape!r}): batch_shape must be a tuple of ints")
    for size in batch_shape:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or int(size) < 0:
            raise ValueError(
                f"{caller}(batch_shape={tuple(batch_shape)!r}): batch_shape entries must be non-negative ints"
            )
    batch_shape = tuple(int(size) for size in batch_shape)
    key = _check_key(key, caller)

    return _draw(key, length=length, max_length=max_length, batch_shape=batch_shape)


@functools.partial(jax.jit, static_argnames=("length", "max_length", "batch_shape"))
def _draw(key: jax.Array, *, length: int, max_length: int, batch_shape: tuple[int, ...]) -> jax.Array:
    def draw(one_key: jax.Array) -> jax.Array:
        subset = jax.random.choice(one_key, max_length, shape=(length,), replace=False)
        return jnp.sort(subset).astype(jnp.int32)

    if not batch_shape:
        return draw(key)
    keys = jax.random.split(key, math.prod(batch_shape))
    return jax.vmap(draw)(keys).reshape(*batch_shape, length)
