"""Argument checks and their error messages: the one place every public function validates its input.

Every error reads ``call(argument=value): what is allowed; the fix``. A wrong *type* raises ``TypeError``, a
wrong *value* of the right type raises ``ValueError``. Host values (Python numbers, numpy arrays, lists) are
checked in their own precision before any conversion to a JAX array, so nothing wraps or rounds silently.

API (internal; each check takes the public call's name ``call`` first, then the ``argument`` checked, then
its value, and returns the value in its checked form):

* :func:`type_error` / :func:`value_error` build (not raise) an exception in the common format:
  ``raise type_error(call, argument, value, allowed, fix)``. ``value`` is shown by :func:`shown`: ``repr``
  for scalars, ``<dtype[shape]>`` for arrays, ``<traced dtype[shape]>`` under ``jit``.
* :class:`Shown` wraps a ready-made description of a value (e.g. ``"<int64[2] containing 4294967296>"``).
* :func:`integer` (a non-bool int ``>= minimum``), :func:`even` (a positive even int), :func:`real_above`
  (a finite real above a bound), :func:`one_of` (a string among choices), :func:`boolean`, :func:`axis`
  (an axis of an array of a given rank), :func:`concrete` (not traced), :func:`floating_dtype` (an output
  dtype JAX can produce under the current x64 setting).
* :func:`positions` (integer or floating positions, checked on the host in their own precision; host
  float64 positions without x64 come back split exactly into an int32 whole part and a float32 fraction,
  which the angle kernel accepts) and :func:`positions_shape` (positions ending in the length axis of an
  input and broadcasting to its leading axes).
* :func:`error_if` raises :class:`RuntimeCheckError` (a ``ValueError``) from compiled code when a traced
  predicate holds, reported once: JAX's own log of the callback's exception is filtered for these errors.

>>> value_error("sinusoidal", "dim", 7, "dim must be even", "build 8 features and drop the last one")
ValueError('sinusoidal(dim=7): dim must be even; build 8 features and drop the last one')
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from posenc_jax._src.angles import SplitPositions

__all__: list[str] = []

INT32_MIN = -(2**31)
INT32_LIMIT = 2**31
# Floating positions are split as round(p) + fraction; round(p) must be an int32 (round half to even).
FLOAT_LIMIT = 2.0**31 - 0.5


class Shown(str):
    """A value's description used verbatim in a message (for arrays: dtype, shape and the bad entry)."""


def shown(value: object) -> str:
    """How a value appears in a message: ``repr`` for scalars, ``<dtype[shape]>`` for arrays."""
    if isinstance(value, Shown):
        return str(value)
    if isinstance(value, jax.core.Tracer):
        return f"<traced {_array_text(value)}>"
    if isinstance(value, np.generic):
        return repr(value.item())
    if isinstance(value, np.ndarray | jax.Array | SplitPositions):
        return f"<{_array_text(value)}>"
    if isinstance(value, np.dtype):
        return str(value)
    return repr(value)


def _array_text(value: Any) -> str:
    shape = ",".join(str(size) for size in value.shape)
    return f"{value.dtype}[{shape}]"


def _message(call: str, argument: str, value: object, allowed: str, fix: str | None) -> str:
    text = f"{call}({argument}={shown(value)}): {allowed}"
    return f"{text}; {fix}" if fix else text


def type_error(call: str, argument: str, value: object, allowed: str, fix: str | None = None) -> TypeError:
    """``TypeError("call(argument=value): allowed; fix")``, to be raised by the caller."""
    return TypeError(_message(call, argument, value, allowed, fix))


def value_error(call: str, argument: str, value: object, allowed: str, fix: str | None = None) -> ValueError:
    """``ValueError("call(argument=value): allowed; fix")``, to be raised by the caller."""
    return ValueError(_message(call, argument, value, allowed, fix))


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def integer(call: str, argument: str, value: object, minimum: int = 1, fix: str | None = None) -> int:
    """``value`` as an ``int`` if it is a (non-bool) integer ``>= minimum``.

    Raises:
      TypeError: not an integer (floats, bools, arrays).
      ValueError: below ``minimum``.
    """
    bound = "a positive Python int" if minimum == 1 else f"a Python int >= {minimum}"
    allowed = f"{argument} must be {bound}"
    if not _is_int(value):
        raise type_error(call, argument, value, allowed, fix)
    if int(value) < minimum:  # type: ignore[call-overload]
        raise value_error(call, argument, value, allowed, fix)
    return int(value)  # type: ignore[call-overload]


def even(call: str, argument: str, value: object, why: str) -> int:
    """``value`` as an ``int`` if it is a positive even integer; ``why`` says why it must be even."""
    allowed = f"{argument} must be a positive even Python int"
    if not _is_int(value):
        raise type_error(call, argument, value, allowed)
    number = int(value)  # type: ignore[call-overload]
    if number <= 0:
        raise value_error(call, argument, value, allowed)
    if number % 2:
        raise value_error(call, argument, value, f"{argument} must be even, got {number}", why)
    return number


def real_above(call: str, argument: str, value: object, bound: float) -> float:
    """``value`` as a ``float`` if it is a finite real number ``> bound``."""
    allowed = f"{argument} must be a finite real number > {bound:g}"
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise type_error(call, argument, value, allowed)
    result = float(value)
    if not math.isfinite(result) or result <= bound:
        raise value_error(call, argument, value, allowed)
    return result


def one_of(call: str, argument: str, value: object, choices: Sequence[str]) -> str:
    """``value`` if it is one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise value_error(call, argument, value, f"{argument} must be one of {tuple(choices)}")
    return value


def boolean(call: str, argument: str, value: object) -> bool:
    """``value`` as a ``bool`` if it is a Python or numpy bool."""
    if not isinstance(value, bool | np.bool_):
        raise type_error(call, argument, value, f"{argument} must be a Python bool")
    return bool(value)


def axis(call: str, value: object, ndim: int, argument: str = "axis") -> int:
    """``value`` as a non-negative axis index of an array of rank ``ndim``."""
    allowed = f"{argument} must be an int in [-{ndim}, {ndim}) for an array of rank {ndim}"
    if not _is_int(value):
        raise type_error(call, argument, value, allowed)
    if not -ndim <= int(value) < ndim:  # type: ignore[call-overload]
        raise value_error(call, argument, value, allowed)
    return int(value) % ndim  # type: ignore[call-overload]


def concrete(call: str, argument: str, value: object, why: str) -> None:
    """Raises ``TypeError`` if ``value`` is traced; ``why`` says why it must be known at trace time."""
    if isinstance(value, jax.core.Tracer):
        raise type_error(
            call,
            argument,
            value,
            f"{argument} must be concrete (a numpy array, a list or a non-traced jax array)",
            why,
        )


def floating_dtype(call: str, value: object, argument: str = "dtype") -> np.dtype:
    """``value`` as a numpy dtype if it is a floating type JAX can produce under the current config."""
    allowed = f"{argument} must be a floating dtype: float32, bfloat16, float16, or float64 with jax_enable_x64"
    if value is None:
        raise type_error(call, argument, value, allowed, "this function has no input dtype to follow")
    try:
        resolved = np.dtype(jnp.dtype(cast(Any, value)))
    except TypeError as error:
        raise type_error(call, argument, value, allowed) from error
    if not jnp.issubdtype(resolved, jnp.floating):
        raise type_error(call, argument, resolved, allowed)
    if resolved.itemsize == 8 and not jax.config.read("jax_enable_x64"):
        raise value_error(
            call,
            argument,
            resolved,
            "float64 output needs jax_enable_x64",
            "the values are float32-accurate either way; enable x64 or ask for float32",
        )
    return resolved


def _array_dtype(value: object) -> np.dtype | None:
    dtype = getattr(value, "dtype", None)
    return None if dtype is None else np.dtype(dtype)


def _concrete_wide(value: object, dtype: np.dtype) -> bool:
    """A concrete jax array whose values may lie outside what the angle kernel encodes (64-bit under
    ``jax_enable_x64``, or unsigned 32-bit): those are read back and checked on the host."""
    if isinstance(value, jax.core.Tracer) or not isinstance(value, jax.Array):
        return False
    if not (dtype.itemsize == 8 or (dtype.kind == "u" and dtype.itemsize == 4)):
        return False
    return bool(getattr(value, "is_fully_addressable", True))


def positions(
    call: str, value: object, argument: str = "positions", *, integer_only: bool = False, split: bool = True
) -> Any:
    """Validates positions and returns them ready for the angle kernel.

    Host values (Python numbers, lists, numpy arrays) and concrete 64-bit or unsigned jax arrays are
    checked *before* conversion, in their own precision: integers must lie in the int32 range; floating
    positions must be finite with ``|pos| < 2**31 - 1/2`` (so that ``round(pos)`` is an int32). Host float64
    positions with ``jax_enable_x64`` off are split exactly into an int32 whole part and a small float32
    fraction, so that ``123456789.0`` encodes as ``123456789`` does (plain conversion would round it to
    float32).

    Args:
      call: the public function's name.
      value: the positions.
      argument: the argument's name in messages.
      integer_only: reject floating positions (``TypeError``).
      split: split host float64 positions exactly (without x64); False converts them to float32, for
        callers that store positions in a float32 array by design.

    Returns:
      A jax array (int32 / float32, or 64-bit under x64), or, for host float64 positions without x64, a
      split pair understood by the angle kernel (``angles.SplitPositions``, typed ``Any``).

    Raises:
      TypeError: boolean, complex, non-numeric or 16-bit floating positions (bfloat16 cannot represent 257,
        and upcasting cannot undo that rounding), floating ones with ``integer_only``.
      ValueError: host integers outside ``[-2**31, 2**31)``, host floats non-finite or too large.
    """
    if isinstance(value, SplitPositions):
        if integer_only:
            raise type_error(call, argument, value.whole, f"{argument} must be integers")
        return value
    dtype = _array_dtype(value) if isinstance(value, jax.core.Tracer | jax.Array) else None
    host = None
    if dtype is None:
        host = np.asarray(value)
        dtype = host.dtype
    elif _concrete_wide(value, dtype):
        host = np.asarray(value)  # checked like host values: raises at once instead of NaN rows
    floating = dtype.kind == "f" or jnp.issubdtype(dtype, jnp.floating)
    if dtype == np.bool_ or not (floating or dtype.kind in "iu"):
        allowed = f"{argument} must be an integer or float32/float64 array (bool and complex are not positions)"
        raise type_error(call, argument, value if host is None else host, allowed)
    if floating and integer_only:
        raise type_error(call, argument, value if host is None else host, f"{argument} must be integers")
    if floating and dtype.itemsize < 4:
        raise type_error(
            call,
            argument,
            value if host is None else host,
            f"16-bit floating {argument} are rejected: they cannot represent every integer above 256 "
            "(bfloat16) or 2048 (float16)",
            "pass int32 or float32 positions",
        )
    if host is None:
        return value
    if dtype.kind in "iu":
        if host.size and (host.min() < INT32_MIN or host.max() >= INT32_LIMIT):
            bad = host.max() if host.max() >= INT32_LIMIT else host.min()
            raise value_error(
                call,
                argument,
                Shown(f"<{_array_text(host)} containing {int(bad)}>"),
                f"integer {argument} must lie in [-2**31, 2**31) = [{INT32_MIN}, {INT32_LIMIT - 1}]",
            )
        return jnp.asarray(host.astype(np.int32))
    ok = np.isfinite(host) & (np.abs(host) < FLOAT_LIMIT)
    if not np.all(ok):
        bad = host[~ok].flat[0]
        raise value_error(
            call,
            argument,
            Shown(f"<{_array_text(host)} containing {bad}>"),
            f"floating {argument} must be finite with |pos| < 2**31 - 1/2",
        )
    if split and dtype.itemsize == 8 and not jax.config.read("jax_enable_x64"):
        whole = np.round(host)
        return SplitPositions(
            jnp.asarray(whole.astype(np.int32)), jnp.asarray((host - whole).astype(np.float32))
        )
    return jnp.asarray(host)


def positions_shape(
    call: str,
    value: Any,
    leading: tuple[int, ...],
    argument: str = "positions",
    coordinates: bool = False,
    of: str = "x",
) -> None:
    """Positions must end in the length axis and broadcast to ``leading`` (x's leading axes) without growing.

    With ``coordinates``, ``value`` has one more trailing axis (N-D coordinates) that is not checked here.
    ``of`` names the array whose leading axes ``leading`` are.
    """
    shape = tuple(value.shape) if hasattr(value, "shape") else tuple(np.shape(value))
    shape = shape[:-1] if coordinates else shape
    length = leading[-1]
    ok = len(shape) >= 1 and shape[-1] == length
    if ok:
        try:
            ok = jnp.broadcast_shapes(tuple(shape), leading) == leading  # symbolic sizes too (export)
        except ValueError:
            ok = False
    if not ok:
        raise value_error(
            call,
            argument,
            value,
            f"{argument} must broadcast to {of}'s leading axes {leading} with the length axis ({length}) last",
            f"use ({length},) or {leading}",
        )


class RuntimeCheckError(ValueError):
    """A check of traced values that failed at run time (raised from a host callback by :func:`error_if`)."""


class _QuietCallbackFailures(logging.Filter):
    """Drops the callback machinery's own log of a :class:`RuntimeCheckError`: the error itself is raised."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, RuntimeCheckError)


_FILTER = _QuietCallbackFailures()
for _name in ("jax._src.debugging", "jax._src.callback"):
    if not any(isinstance(f, _QuietCallbackFailures) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_FILTER)


def error_if(predicate: jax.Array, message: Callable[..., str], *operands: jax.Array) -> None:
    """Raises ``RuntimeCheckError(message(*operands))`` at run time when the traced ``predicate`` holds.

    Under ``jit`` the error surfaces as ``jax.errors.JaxRuntimeError`` whose text contains the message; it
    is reported once (no second "callback failed" traceback). The program keeps a host callback, so it
    cannot be exported or persisted in the compilation cache; use it only where the user asked for it.
    """

    def fail(bad, *values) -> None:
        if bool(np.any(bad)):
            raise RuntimeCheckError(message(*values))

    # The cond skips the host round trip when the predicate is false (under vmap it becomes a select and the
    # callback runs for every example, checking the predicate itself).
    lax.cond(predicate, lambda: jax.debug.callback(fail, predicate, *operands), lambda: None)
