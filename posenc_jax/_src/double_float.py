"""Double-float32 arithmetic: values as pairs ``(hi, lo)`` of float32 arrays, about 48 significant bits.

``|lo| <= ulp(hi) / 2``. Products are formed from operands split into 12-bit halves by masking their bits, so
every partial product is exact in float32 and no floating-point contraction (a fused multiply-add) can change
the result. Used where a scaling's frequencies must be computed in the graph (a traced sequence length).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["add", "constant", "mul", "power", "turn_words", "two_sum"]


def two_sum(a, b):
    s = a + b
    v = s - a
    return s, (a - (s - v)) + (b - v)


def add(x, y):
    s, e = two_sum(x[0], y[0])
    return two_sum(s, e + (x[1] + y[1]))


def _split_bits(a):
    bits = lax.bitcast_convert_type(a, jnp.uint32) & jnp.uint32(0xFFFFF000)
    high = lax.bitcast_convert_type(bits, jnp.float32)
    return high, a - high


def mul(x, y):
    """The product of two double-floats (``x``, ``y``: pairs of float32 arrays), to about 2**-46."""
    (xh, xl), (yh, yl) = x, y
    a1, a2 = _split_bits(xh)
    b1, b2 = _split_bits(yh)
    s, e1 = two_sum(a1 * b1, a1 * b2)
    s, e2 = two_sum(s, a2 * b1)
    error = e1 + e2 + a2 * b2 + (xh * yl + xl * yh)
    return two_sum(s, error)


def power(x, exponent: int):
    result = None
    power = x
    while exponent:
        if exponent & 1:
            result = power if result is None else mul(result, power)
        exponent >>= 1
        if exponent:
            power = mul(power, power)
    return result


def constant(values: np.ndarray):
    hi = np.asarray(values, np.float64).astype(np.float32)
    lo = (np.asarray(values, np.float64) - hi.astype(np.float64)).astype(np.float32)
    return jnp.asarray(hi), jnp.asarray(lo)


def turn_words(turns_hi: jax.Array, turns_lo: jax.Array) -> tuple[jax.Array, jax.Array]:
    """64-bit fixed-point turns ``round(2**64 * v)`` (as uint32 high/low words) of a double-float ``v`` in
    ``[0, 1)``, exact to about ``2**-56`` turns."""
    a = turns_hi * jnp.float32(2.0**32)  # exact scalings by a power of two
    b = turns_lo * jnp.float32(2.0**32)
    a_whole, b_whole = jnp.floor(a), jnp.floor(b)
    fraction = (a - a_whole) + (b - b_whole)  # in [0, 2); rounding here is below 2**-56 turns
    carry = jnp.floor(fraction)
    # The largest float32 below 2**32; a fraction that rounds up to a full unit is 2**-56 turns short.
    low = jnp.minimum((fraction - carry) * jnp.float32(2.0**32), jnp.float32(4294967040.0)).astype(jnp.uint32)
    high = a_whole.astype(jnp.int32) + b_whole.astype(jnp.int32) + carry.astype(jnp.int32)
    return lax.bitcast_convert_type(high, jnp.uint32), low
