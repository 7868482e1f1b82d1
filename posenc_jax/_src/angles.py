"""The one angle kernel: ``(positions, frequencies) -> (sin(pos * w), cos(pos * w))``, accurate in float32.

Why not ``jnp.sin(pos * w)``? In float32 the product ``pos * w`` carries a relative error of ``2**-24``, i.e.
an absolute angle error of ``|pos * w| * 6e-8``: 1e-3 at position 16k and 7e-2 at position 2**20. The sine of a
wrong angle is wrong, however accurate ``sin`` is.

This kernel never forms the angle in floating point. For each frequency it prepares, at trace time and in
exact rational arithmetic, the phase increment per position in *turns* as a 64-bit fixed-point fraction
``F_i = round(2**64 * w_i / (2π)) mod 2**64``. For an integer position ``p`` the phase ``frac(p * w_i / 2π)`` is
then ``p * F_i mod 2**64`` — wrapping integer arithmetic, exact up to the rounding of ``F_i`` (at most
``2**-34`` turns for ``|p| < 2**31``). Only the top 32 bits are kept, which are computed with uint32
multiplies alone (no 64-bit types, so it works with ``jax_enable_x64`` off and on every backend). The phase
in turns is split into a quadrant (top two bits) and a remainder in ``[-π/4, π/4)``, where short polynomials
give sine and cosine to float32 rounding; one reduction serves both.

Floating positions are split exactly as ``p = n + f`` with ``n = round(p)`` and ``|f| <= 1/2``; ``n`` goes
through the integer path and ``f * w_i / 2π`` (small, so its float32 rounding is tiny) is added in fixed
point. The result is exact for the floating-point value given: the error is that of the integer path plus
``|f| * w_i * 2**-24`` (below 3e-8 radians for ``w_i <= 1``, i.e. every ``base > 1`` spacing).

Accuracy (max abs error against a float64 reference of ``sin(pos * w_i)``): about 3e-7 for any integer
``|pos| < 2**31`` and any ``dim``. Gradients w.r.t. floating positions are the analytic ones
(``d sin = w cos dp``), through a ``custom_jvp``.
"""

from __future__ import annotations

import dataclasses
import functools
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Internal module: the kernel serves the public functions and is not part of the API.
__all__: list[str] = []

# π to 64 significant digits: enough for 2**64-scaled phases of any float64 frequency with room to spare.
_PI = Fraction("3.141592653589793238462643383279502884197169399375105820974944592307816406286")
_TWO_POW_64 = 1 << 64
INT32_MIN = -(2**31)
INT32_LIMIT = 2**31
# round(p) must be an int32 (round half to even): |floating position| must be below this.
FLOAT_LIMIT = 2.0**31 - 0.5

# Taylor coefficients of sin and cos on [-π/4, π/4]; the first omitted terms are below 2e-9 and 3e-8 there.
_S3, _S5, _S7, _S9 = -1.0 / 6, 1.0 / 120, -1.0 / 5040, 1.0 / 362880
_C2, _C4, _C6, _C8 = -0.5, 1.0 / 24, -1.0 / 720, 1.0 / 40320
_RADIANS_PER_UNIT = float(2 * np.pi / 2.0**32)


@functools.lru_cache(maxsize=256)
def _phase_constants_cached(frequencies_bytes: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    frequencies = np.frombuffer(frequencies_bytes, dtype=np.float64)
    words = [round(Fraction(w) * _TWO_POW_64 / (2 * _PI)) % _TWO_POW_64 for w in frequencies.tolist()]
    high = np.array([word >> 32 for word in words], dtype=np.uint32)
    low = np.array([word & 0xFFFFFFFF for word in words], dtype=np.uint32)
    turns_f32 = (frequencies / (2 * np.pi)).astype(np.float32)
    return high, low, turns_f32, frequencies.astype(np.float32)


def phase_constants(
    frequencies: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fixed-point phase constants for concrete float64 ``frequencies`` (computed once, cached).

    Returns:
      ``(high, low, turns32, w32)``: the upper and lower uint32 words of ``F_i = round(2**64 w_i / 2π)``, the
      float32 turns per unit position ``w_i / 2π``, and ``w_i`` in float32 (for derivatives).
    """
    frequencies = np.ascontiguousarray(frequencies, dtype=np.float64)
    return _phase_constants_cached(frequencies.tobytes())


# Concrete float64 frequencies, or the (possibly traced) phase constants of :func:`phase_constants`.
_Frequencies = np.ndarray | tuple[jax.Array, ...]


def _constants(frequencies) -> tuple:
    """Phase constants of concrete frequencies, or the given ``(high, low, turns32, w32)`` arrays as they are
    (traced constants, e.g. frequencies that depend on a traced sequence length)."""
    if isinstance(frequencies, tuple):
        return frequencies
    return phase_constants(frequencies)


def _mulhi_u32(a: jax.Array, b: np.ndarray) -> jax.Array:
    """The upper 32 bits of the 64-bit product of uint32 ``a`` and constant uint32 ``b``, in uint32 ops."""
    a0, a1 = a & 0xFFFF, a >> 16
    b0 = jnp.asarray(b & 0xFFFF, jnp.uint32)
    b1 = jnp.asarray(b >> 16, jnp.uint32)
    low_low = a0 * b0
    high_low = a1 * b0
    low_high = a0 * b1
    middle = (low_low >> 16) + (high_low & 0xFFFF) + (low_high & 0xFFFF)
    return a1 * b1 + (high_low >> 16) + (low_high >> 16) + (middle >> 16)


def quarter_turns(quarters: np.ndarray | None) -> jax.Array | int:
    """Exact fixed-point phase offsets of ``quarters * π/2`` (``sin(θ + π/2) = cos θ``), or 0 for None."""
    if quarters is None:
        return 0
    return jnp.asarray((np.asarray(quarters, dtype=np.uint32) % 4) << 30, dtype=jnp.uint32)


def phase_turns(positions: jax.Array, frequencies: _Frequencies) -> jax.Array:
    """The phases ``frac(pos * w_i / 2π)`` as uint32 fixed-point turns (``2**32`` = one full turn).

    Args:
      positions: int32 array ``[...]`` (any int32 value is exact).
      frequencies: concrete float64 ``[n]``, or the tuple of (possibly traced) arrays that
        :func:`phase_constants` returns for them.

    Returns:
      uint32 array ``[..., n]``. Adding two such phases (wrapping) adds the angles exactly.
    """
    high, low, _, _ = _constants(frequencies)
    p = positions.astype(jnp.int32)[..., None]
    unsigned = lax.bitcast_convert_type(p, jnp.uint32)
    # For a negative p the uint32 view is p + 2**32; the extra 2**32 * F contributes F_low to the top word.
    negative_correction = jnp.where(p < 0, jnp.asarray(low, jnp.uint32), jnp.uint32(0))
    return unsigned * jnp.asarray(high, jnp.uint32) + _mulhi_u32(unsigned, low) - negative_correction


def sincos_of_turns(phase: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sine and cosine (float32) of uint32 fixed-point phases, with one shared exact reduction."""
    quadrant = (phase + jnp.uint32(1 << 29)) >> 30
    remainder = lax.bitcast_convert_type(phase - (quadrant << 30), jnp.int32)  # in [-2**29, 2**29)
    x = remainder.astype(jnp.float32) * jnp.float32(_RADIANS_PER_UNIT)
    x2 = x * x
    s = x + x * x2 * (_S3 + x2 * (_S5 + x2 * (_S7 + x2 * _S9)))
    c = 1.0 + x2 * (_C2 + x2 * (_C4 + x2 * (_C6 + x2 * _C8)))
    odd = (quadrant & 1) == 1
    sin = jnp.where(odd, c, s)
    cos = jnp.where(odd, s, c)
    sin = jnp.where((quadrant & 2) == 2, -sin, sin)
    cos = jnp.where(((quadrant + 1) & 2) == 2, -cos, cos)
    return sin, cos


# The switch for the benchmark that measures what `computed_once` costs or saves on a backend; set it only
# through `posenc_jax.internal.computing_once`. It is read at trace time, so functions traced while it is off
# keep that choice: flip it only around fresh traces (``jax.clear_caches()``).
COMPUTE_ONCE = True


def computed_once(*arrays: jax.Array) -> tuple[jax.Array, ...]:
    """Makes XLA compute each array once instead of fusing it into, and recomputing it in, its consumers.

    The kernel is built from multiplies and adds, which XLA's fusion counts as cheap and duplicates freely:
    a ``[length, dim]`` encoding added to a ``[batch, length, dim]`` input is recomputed once per batch row,
    and the small factor tables of :func:`posenc_jax.sinusoidal_table` once per output element.
    ``lax.optimization_barrier`` does not prevent this on CPU (the pass pipeline removes it before fusion).
    XLA never duplicates an *expensive* producer (a floating division) into a consumer that reuses its
    elements, so each array is divided, elementwise, by a 1.0 computed from itself that the compiler cannot
    fold (``a * 0`` is not foldable under IEEE rules; non-finite entries divide by 1 too). Consumers that
    use each element once still fuse. Cost: a few operations per element of ``arrays``; elementwise, so
    sharded arrays need no communication.
    """
    if not COMPUTE_ONCE:
        return tuple(arrays)
    result = []
    for a in arrays:
        zero = a * 0.0  # NaN where a is not finite
        result.append(a / (jnp.where(jnp.isfinite(zero), zero, 0.0) + 1.0))
    return tuple(result)


def outside_int32(values: jax.Array) -> jax.Array | None:
    """A mask of integer ``values`` outside ``[-2**31, 2**31)``, compared in their own dtype (None when the
    dtype cannot hold such values). Converting them to int32 first would wrap ``2**32 + 3`` to ``3``."""
    dtype = np.dtype(values.dtype)
    if dtype.kind == "u" and dtype.itemsize >= 4:
        return values >= np.array(INT32_LIMIT, dtype)
    if dtype.itemsize > 4:
        return (values < INT32_MIN) | (values >= INT32_LIMIT)
    return None


def _integer_turns(positions: jax.Array, frequencies: _Frequencies) -> tuple[jax.Array, jax.Array | None]:
    """Phases of integer positions plus a mask of those outside the int32 range (None when impossible)."""
    return phase_turns(positions.astype(jnp.int32), frequencies), outside_int32(positions)


def _split_turns(whole: jax.Array, fraction: jax.Array, frequencies: _Frequencies) -> jax.Array:
    """Phases of ``whole + fraction`` for int32 ``whole`` and float32 ``|fraction| <= 1/2``."""
    _, _, turns32, _ = _constants(frequencies)
    fractional_turns = fraction[..., None] * jnp.asarray(turns32)
    fractional_turns = fractional_turns - jnp.round(fractional_turns)  # only matters for w_i > π
    fixed = jnp.round(fractional_turns * jnp.float32(2.0**32)).astype(jnp.int32)
    return phase_turns(whole, frequencies) + lax.bitcast_convert_type(fixed, jnp.uint32)


def _floating_turns(positions: jax.Array, frequencies: _Frequencies) -> tuple[jax.Array, jax.Array]:
    """Phases of floating positions (exact split into integer and fraction) plus a mask of invalid ones."""
    # round(p) must be an int32; a float32 limit rounds to 2**31, which is right for float32 positions.
    invalid = ~(jnp.abs(positions) < FLOAT_LIMIT)  # also catches NaN
    safe = jnp.where(invalid, jnp.zeros_like(positions), positions)
    whole = jnp.round(safe)
    fraction = (safe - whole).astype(jnp.float32)  # exact: |fraction| <= 1/2
    return _split_turns(whole.astype(jnp.int32), fraction, frequencies), invalid


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class SplitPositions:
    """Host float64 positions without x64, split exactly as ``whole + fraction`` before any rounding.

    ``whole`` is ``round(p)`` as int32 and ``fraction = p - whole`` (exact in float64, ``|fraction| <= 1/2``)
    rounded once to float32, which moves the angle by at most ``|fraction| * w_i * 2**-24``. Converting ``p``
    itself to float32 would move it by up to 64 at ``p = 2**30``.
    """

    whole: jax.Array
    fraction: jax.Array

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.whole.shape)

    @property
    def ndim(self) -> int:
        return len(self.whole.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float64)

    def tree_flatten(self):
        return (self.whole, self.fraction), None

    @classmethod
    def tree_unflatten(cls, _, children):
        return cls(*children)


def _nan_rows(values: jax.Array, invalid: jax.Array | None) -> jax.Array:
    if invalid is None:
        return values
    return jnp.where(invalid[..., None], jnp.float32(jnp.nan), values)


def sincos(
    positions: jax.Array | SplitPositions,
    frequencies: _Frequencies,
    quarters: np.ndarray | None = None,
) -> tuple[jax.Array, jax.Array]:
    """``sin(pos * w_i + q_i π/2)`` and ``cos(pos * w_i + q_i π/2)`` in float32, accurate at any position.

    Args:
      positions: integer or floating array ``[...]`` (or host float64 positions split exactly), already
        validated by ``checks.positions``. Traced values that cannot be encoded (non-finite
        floats, ``|pos| >= 2**31``, floats that do not round to an int32) give NaN rows.
      frequencies: concrete float64 ``[n]`` angular frequencies, or the tuple of (possibly traced) arrays
        that :func:`phase_constants` returns for them.
      quarters: optional concrete integers ``[n]``: exact phase offsets in quarter turns (``q_i = 1`` turns
        a sine into a cosine). None means no offset: plain ``sin(pos * w_i)``, ``cos(pos * w_i)``.

    Returns:
      ``(sin, cos)``, float32 arrays of shape ``[..., n]``.
    """
    if not isinstance(frequencies, tuple):
        frequencies = np.asarray(frequencies, dtype=np.float64)
    if isinstance(positions, SplitPositions):
        return sincos_of_turns(
            _split_turns(positions.whole, positions.fraction, frequencies) + quarter_turns(quarters)
        )
    positions = jnp.asarray(positions)
    if jnp.issubdtype(positions.dtype, jnp.integer):
        phase, invalid = _integer_turns(positions, frequencies)
        sin, cos = sincos_of_turns(phase + quarter_turns(quarters))
        return _nan_rows(sin, invalid), _nan_rows(cos, invalid)
    return _floating_sincos(positions, frequencies, quarters)


def _floating_sincos(
    positions: jax.Array, frequencies: _Frequencies, quarters: np.ndarray | None
) -> tuple[jax.Array, jax.Array]:
    # Traced phase constants are arguments of the custom_jvp function (it cannot close over tracers);
    # concrete frequencies stay closed over, so their constants remain compile-time constants.
    traced = isinstance(frequencies, tuple)

    @jax.custom_jvp
    def kernel(p, *constants):
        phase, invalid = _floating_turns(p, constants if traced else frequencies)
        sin, cos = sincos_of_turns(phase + quarter_turns(quarters))
        return _nan_rows(sin, invalid), _nan_rows(cos, invalid)

    @kernel.defjvp
    def kernel_jvp(primals, tangents):
        (p, *constants), dp = primals, tangents[0]
        sin, cos = kernel(p, *constants)
        w32 = constants[3] if traced else _constants(frequencies)[3]
        angle_rate = dp.astype(jnp.float32)[..., None] * jnp.asarray(w32)
        return (sin, cos), (cos * angle_rate, -sin * angle_rate)

    return kernel(positions, *(frequencies if traced else ()))
