"""Looking up a learned position table with an explicit policy for positions outside it.

A plain JAX gather never fails: ``table[i]`` clamps an out-of-range ``i`` to the last row, negative indices
wrap around. For position tables each of these hides a bug (a sequence longer than the table silently reuses
the last position). :func:`learned_lookup` never maps a bad position to a valid row unless asked to:

* Concrete positions (host arrays, or jax arrays that are not traced) are checked on the host in their own
  precision under every policy but ``"clip"`` / ``"wrap"``, and raise ``ValueError`` at once.
* ``"nan"`` (default): traced positions outside ``[0, max_length)`` (inside ``jax.jit`` / ``nnx.jit``,
  ``vmap``, ``grad``) give rows of NaN; int64 positions (``jax_enable_x64``) are compared in int64, so
  ``2**32 + 3`` is a NaN row, never row 3. A NaN row poisons everything computed from it, so the loss of the
  step turns NaN: loud, yet the compiled program is a plain gather, with no host round trip, so it can be
  stored in the persistent compilation cache and serialized by ``jax.export``.
* ``"error"``: traced positions are also checked at run time by a host callback that raises when a bad
  position occurs (from a jitted call as ``jax.errors.JaxRuntimeError`` whose message contains the
  ``ValueError`` text; from an un-jitted ``vmap`` as the ``ValueError`` itself). The cost: the program then
  contains a host callback, so JAX will not write it to the persistent compilation cache and ``jax.export``
  refuses to serialize it, and every call waits for the check. Bad rows are NaN as under ``"nan"``.
* ``"clip"``: positions are clamped to ``[0, max_length - 1]`` (negative -> row 0, large -> the last row).
* ``"wrap"``: positions are taken modulo ``max_length`` (``-1`` -> the last row, ``max_length`` -> row 0).
"""

from __future__ import annotations

import functools
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from posenc_jax._src import checks

__all__ = ["OUT_OF_RANGE_POLICIES", "learned_lookup", "lookup"]

#: The out-of-range policies of :func:`learned_lookup`, the default first.
OUT_OF_RANGE_POLICIES: tuple[str, ...] = ("nan", "error", "clip", "wrap")


def _out_of_range_message(caller: str, max_length: int, low: int, high: int) -> str:
    return str(
        checks.value_error(
            caller,
            "positions",
            checks.Shown(f"<values from {low} to {high}>"),
            f"positions must lie in [0, {max_length}) for max_length={max_length}",
            "use a larger max_length, or out_of_range='clip' / 'wrap' to map them into the table on purpose",
        )
    )


def _check_at_run_time(positions: jax.Array, max_length: int, caller: str) -> None:
    if positions.size == 0:  # nothing to check (and min / max of nothing is undefined)
        return
    bad = jnp.any((positions < 0) | (positions >= max_length))
    low = jnp.min(positions)  # in the positions' own dtype: an int64 2**32 + 3 is reported as such
    high = jnp.max(positions)
    message = functools.partial(_out_of_range_message, caller, max_length)
    checks.error_if(bad, lambda low, high: message(int(low), int(high)), low, high)


def learned_lookup(positions: jax.Array, *, table: jax.Array, out_of_range: str = "nan") -> jax.Array:
    """Gathers ``table[positions]`` with an explicit policy for positions outside ``[0, max_length)``.

    A plain gather clamps or wraps a bad index silently; here concrete bad positions raise at once, and
    traced ones follow ``out_of_range``: ``"nan"`` (default) gives NaN rows, ``"error"`` raises at run time
    (a host callback: not cacheable, not exportable), ``"clip"`` and ``"wrap"`` map them into the table on
    purpose.

    Integer positions beyond int32 (int64 under ``jax_enable_x64``): concrete ones raise; traced ones give
    NaN rows (``"nan"``, ``"error"``) or are clipped or reduced in their own dtype (``"clip"``, ``"wrap"``),
    never a wrapped row. With x64 off, JAX converts an int64 argument of ``jax.jit`` to int32 before this
    function sees it (``2**31 + 5`` arrives as ``-2**31 + 5``), which no library can detect: keep positions
    within int32 or enable x64.

    Args:
      positions: integer array of any shape.
      table: the learned table ``[max_length, dim]``.
      out_of_range: ``"nan"`` (default), ``"error"``, ``"clip"`` or ``"wrap"``.

    Returns:
      ``positions.shape + (dim,)`` array of ``table``'s dtype.

    Raises:
      TypeError: non-integer positions.
      ValueError: an unknown policy, a table that is not 2-D or empty, host integer positions outside the
        int32 range, or (policies ``"nan"`` and ``"error"``) concrete positions out of range. Traced
        out-of-range positions give NaN rows (``"nan"``) or raise at run time (``"error"``).

    >>> learned_lookup(jnp.array([2, 0]), table=jnp.eye(3))
    Array([[0., 0., 1.],
           [1., 0., 0.]], dtype=float32)
    """
    return lookup(table, positions, out_of_range=out_of_range, caller="learned_lookup")


def lookup(
    table: jax.Array,
    positions: jax.Array,
    *,
    out_of_range: str,
    caller: str,
) -> jax.Array:
    """:func:`learned_lookup` with errors naming the public call ``caller`` (a module's method).

    Args:
      table: ``[max_length, dim]`` array.
      positions: integer array of any shape.
      out_of_range: ``"nan"``, ``"error"``, ``"clip"`` or ``"wrap"`` (see the module docstring).
      caller: name used in error messages.

    Returns:
      ``positions.shape + (dim,)`` array of ``table``'s dtype.

    Raises:
      TypeError: non-integer positions.
      ValueError: an unknown policy, a table that is not 2-D or empty, host integer positions outside the
        int32 range, or (policies ``"nan"`` and ``"error"``) concrete positions out of range. Traced
        out-of-range positions give NaN rows (``"nan"``) or raise at run time (``"error"``).
    """
    out_of_range = checks.one_of(caller, "out_of_range", out_of_range, OUT_OF_RANGE_POLICIES)
    table_shape = tuple(getattr(table, "shape", np.shape(table)))
    if len(table_shape) != 2 or table_shape[0] == 0:
        raise checks.value_error(
            caller, "table", table, "table must have shape [max_length, dim], max_length > 0"
        )
    max_length = table_shape[0]
    # Host values are checked in their own precision (an int64 2**32 + 3 is an error, not row 3).
    positions = cast(jax.Array, checks.positions(caller, positions, integer_only=True))  # never split
    table = jnp.asarray(table)
    out_sharding = _gather_sharding(table, positions)
    sharding: dict[str, Any] = {} if out_sharding is None else {"out_sharding": out_sharding}
    if out_of_range in ("clip", "wrap"):
        # Clipped or reduced in the positions' own dtype (int64 under x64), then small enough for any index.
        rows = (
            jnp.clip(positions, 0, max_length - 1) if out_of_range == "clip" else jnp.mod(positions, max_length)
        )
        return table.at[rows.astype(jnp.int32)].get(mode="promise_in_bounds", **sharding)
    if not isinstance(positions, jax.core.Tracer):
        if positions.size:
            host = np.asarray(positions)  # concrete (also when closed over inside a jit trace)
            low, high = int(host.min()), int(host.max())
            if low < 0 or high >= max_length:
                raise ValueError(_out_of_range_message(caller, max_length, low, high))
    elif out_of_range == "error":
        _check_at_run_time(positions, max_length, caller)
    if np.dtype(positions.dtype).itemsize > 4 or np.dtype(positions.dtype).kind == "u":
        # JAX narrows gather indices to int32, which would wrap 2**32 + 3 to row 3: positions outside the
        # table are replaced, in their own dtype, by -1 (a NaN row under mode="fill") before that happens.
        inside = (positions >= 0) & (positions < max_length)
        positions = jnp.where(inside, jnp.where(inside, positions, 0).astype(jnp.int32), -1)
    return table.at[positions].get(mode="fill", fill_value=jnp.nan, wrap_negative_indices=False, **sharding)


def _axis_names(entry: Any) -> set[str]:
    if entry is None:
        return set()
    return {entry} if isinstance(entry, str) else set(entry)


def _gather_sharding(table: jax.Array, positions: jax.Array) -> PartitionSpec | None:
    """The output spec of ``table[positions]`` under explicit sharding (None otherwise).

    With explicitly sharded inputs, JAX asks for the gather's output sharding: the rows follow the positions'
    sharding and the feature axis the table's (unless that mesh axis already shards the positions).
    """
    typeof: Any = getattr(jax, "typeof", None)  # explicit sharding exists only where jax.typeof does
    try:
        table_spec = tuple(typeof(table).sharding.spec)
        positions_spec = tuple(typeof(positions).sharding.spec)
    except (AttributeError, TypeError):
        return None
    if all(entry is None for entry in table_spec + positions_spec):
        return None
    positions_spec = positions_spec + (None,) * (positions.ndim - len(positions_spec))
    feature = table_spec[1] if len(table_spec) > 1 else None
    used = set().union(*(_axis_names(entry) for entry in positions_spec))
    if _axis_names(feature) & used:
        feature = None
    return PartitionSpec(*positions_spec, feature)
