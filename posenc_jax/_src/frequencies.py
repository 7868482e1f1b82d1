"""The angular frequencies ``w_i`` of sinusoidal and rotary encodings: the one place they are defined.

An encoding of width ``dim`` has ``n = dim / 2`` (sin, cos) pairs. ``i = 0 … n-1`` numbers the pair, not the
dimension: pair ``i`` holds ``sin(pos * w_i)`` and ``cos(pos * w_i)``, on dimensions ``2i`` and ``2i + 1`` in
the interleaved layout (see :func:`posenc_jax.interleaved_to_split`).

Spacings:

* **Paper** ("Attention is all you need", also RoPE with ``base`` as its ``theta``):
  ``w_i = base ** (-2i / dim)``, so ``w_0 = 1`` and the slowest pair has ``w_{n-1} = base ** (-(dim-2)/dim)``
  (wavelength just short of ``2π · base``).
* **tensor2tensor** ("inclusive"): timescales geometric from ``min_timescale`` to ``max_timescale``
  *inclusive*, ``w_i = min_timescale * exp(-i * log(max_timescale / min_timescale) / max(n - 1, 1))``. The
  exponent divides by ``n - 1`` rather than ``n``, so the slowest pair reaches exactly ``1 / max_timescale``.
  tensor2tensor multiplies by ``min_timescale`` (where ``1 / min_timescale`` would be the textbook form);
  with the default ``min_timescale = 1`` the two agree, and we reproduce the code as written.

All helpers return float64 numpy arrays: frequencies are static, and the angle kernel derives its
high-precision constants from these exact values at trace time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from posenc_jax._src import checks

__all__ = ["Frequencies", "paper_frequencies", "tensor2tensor_frequencies"]

#: The type of every ``frequencies=`` argument: concrete angular frequencies ``[n]`` (a numpy array or a
#: sequence of Python floats), known at trace time.
Frequencies = np.ndarray | Sequence[float]


SINUSOID_PAIRS = (
    "every frequency fills a (sin, cos) pair of features; for an odd width, build one more and drop it"
)


def paper_frequencies(dim: int, base: float = 10_000.0) -> np.ndarray:
    """The frequencies of "Attention is all you need": ``w_i = base ** (-2i / dim)``, ``i = 0 … dim/2 - 1``.

    Args:
      dim: the encoding width (positive, even).
      base: the geometric base (``10000`` in the paper; RoPE calls it ``theta``).

    Returns:
      float64 array of shape ``[dim // 2]``.

    >>> paper_frequencies(4)
    array([1.  , 0.01])
    """
    return resolve_frequencies(dim, base=base, caller="paper_frequencies")


def tensor2tensor_frequencies(dim: int, min_timescale: float = 1.0, max_timescale: float = 1.0e4) -> np.ndarray:
    """The frequencies of tensor2tensor's ``get_timing_signal_1d`` (also Flax's older examples' t2t port).

    ``w_i = min_timescale * exp(-i * log(max_timescale / min_timescale) / max(dim/2 - 1, 1))``.
    Used with ``layout="split"`` it reproduces tensor2tensor's table (sines first, then cosines).

    Args:
      dim: the encoding width (positive, even).
      min_timescale: the shortest timescale (``1.0`` in tensor2tensor).
      max_timescale: the longest timescale (``1.0e4`` in tensor2tensor).

    Returns:
      float64 array of shape ``[dim // 2]``.

    >>> tensor2tensor_frequencies(4)
    array([1.e+00, 1.e-04])
    """
    call = "tensor2tensor_frequencies"
    dim = checks.even(call, "dim", dim, SINUSOID_PAIRS)
    low = checks.real_above(call, "min_timescale", min_timescale, 0.0)
    high = checks.real_above(call, "max_timescale", max_timescale, 0.0)
    if high < low:
        raise checks.value_error(
            call, "max_timescale", max_timescale, f"max_timescale must be >= min_timescale={min_timescale!r}"
        )
    n = dim // 2
    increment = math.log(high / low) / max(n - 1, 1)
    return low * np.exp(np.arange(n, dtype=np.float64) * -increment)


def resolve_frequencies(
    dim: int, *, base: float = 10_000.0, frequencies: Frequencies | None = None, caller: str
) -> np.ndarray:
    """Validates ``dim`` and returns the frequencies to use: explicit ones, else the paper's for ``base``.

    Args:
      dim: the encoding width (positive, even).
      base: the paper spacing's base, used when ``frequencies`` is None.
      frequencies: an explicit concrete 1-D array of ``dim // 2`` finite angular frequencies, or None.
      caller: the public function's name, used in error messages.

    Returns:
      float64 numpy array of shape ``[dim // 2]``.

    Raises:
      TypeError: if ``frequencies`` is traced (it must be known at trace time) or not real.
      ValueError: on a bad ``dim``, ``base``, or a ``frequencies`` of the wrong shape or non-finite values.
    """
    dim = checks.even(caller, "dim", dim, SINUSOID_PAIRS)
    if frequencies is None:
        base = checks.real_above(caller, "base", base, 1.0)
        i = np.arange(dim // 2, dtype=np.float64)
        return base ** (-2.0 * i / dim)
    checks.concrete(
        caller,
        "frequencies",
        frequencies,
        "the kernel prepares exact constants from them at trace time; pass them as a static value, not as a "
        "jit argument",
    )
    array = np.asarray(frequencies)
    if array.dtype.kind not in "iuf":
        raise checks.type_error(caller, "frequencies", array, "frequencies must be real numbers")
    if array.shape != (dim // 2,):
        raise checks.value_error(
            caller,
            "frequencies",
            array,
            f"frequencies must have shape ({dim // 2},) for dim={dim}, one per (sin, cos) pair",
        )
    if not np.all(np.isfinite(array)):
        raise checks.value_error(caller, "frequencies", array, "frequencies must be finite")
    return array.astype(np.float64)
