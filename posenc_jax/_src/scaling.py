"""RoPE scalings for long context: frequency rules that plug into the exact angle kernel.

A scaling maps the geometric rotary frequencies ``w_i = base ** (-2i / d)`` (``d`` = rotary_dim, pair
``i = 0 … d/2 - 1``) to new ones, and some also define an *attention factor*. Each is a small frozen,
checked value type (hashable, so it can be a static argument of ``jax.jit``):

* :class:`Linear` — position interpolation (Chen et al. 2023): ``w_i / factor``.
* :class:`NTK` — NTK-aware base scaling: ``base' = base · factor ** (d / (d - 2))``.
* :class:`DynamicNTK` — the NTK rule with a factor that grows with the current length ``L`` beyond the
  original window ``L0``: ``base' = base · (factor · max(L, L0) / L0 - (factor - 1)) ** (d / (d - 2))``.
* :class:`YaRN` — Peng et al. 2023: per pair, a linear ramp between interpolation (``w_i / factor``) and
  extrapolation (``w_i``) over the correction range of pairs that turn between ``beta_slow`` and
  ``beta_fast`` times within ``L0``; attention factor ``0.1 · mscale · ln(factor) + 1``.
* :class:`Llama3` — the Llama 3.1 rule: wavelengths longer than ``L0 / low_freq_factor`` divided by
  ``factor``, shorter than ``L0 / high_freq_factor`` kept, a smooth blend between.
* :class:`LongRoPE` — per-pair factors (``w_i / factor_i``), the short set within ``L0`` and the long set
  beyond; attention factor ``sqrt(1 + ln(factor) / ln(L0))``.

:func:`rope_frequencies` returns the scaled frequencies as float64 numpy on the host, so no precision is lost
before the exact kernel; :func:`rope_attention_factor` returns the attention factor (``1.0`` for the
methods that define none). :func:`posenc_jax.apply_rotary` multiplies the rotated features of queries and
keys each by the attention factor (as the YaRN and LongRoPE reference code scale ``cos`` and ``sin``), so
attention logits are multiplied by its square.

The length-dependent scalings (:class:`DynamicNTK`, :class:`LongRoPE`) also accept a *traced* length
(decoding under ``jax.jit``, one compilation for every length). LongRoPE then selects between the two exact
sets of phase constants. DynamicNTK's frequencies are computed in the graph in double-float32 arithmetic and
converted to the kernel's 64-bit fixed-point phase increments: their relative error is about ``1e-13``
(against ``6e-8`` for a float32 frequency). Measured on CPU against float64 (``experiments/accuracy.py`` and
the tests): sin/cos within ``2e-7`` for positions below ``2**24`` (tested: ``1e-6`` at ``2**20``, ``2e-6`` at
``2**24``), and within ``1e-5`` at any int32 position, where the static path stays within ``1e-6``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._src import checks, double_float
from posenc_jax._src.angles import phase_constants
from posenc_jax._src.frequencies import SINUSOID_PAIRS

__all__ = [
    "NTK",
    "DynamicNTK",
    "Linear",
    "Llama3",
    "LongRoPE",
    "YaRN",
    "rope_attention_factor",
    "rope_frequencies",
]


def _real_at_least(value: object, caller: str, name: str, bound: float) -> float:
    allowed = f"{name} must be a finite real number >= {bound:g}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise checks.type_error(caller, name, value, allowed)
    result = float(value)
    if not math.isfinite(result) or result < bound:
        raise checks.value_error(caller, name, value, allowed)
    return result


def _positive_int(value: object, caller: str, name: str) -> int:
    return checks.integer(caller, name, value)


def _optional_positive(value: object, caller: str, name: str) -> float | None:
    return None if value is None else checks.real_above(caller, name, value, 0.0)


def _geometric(d: int, base: float) -> np.ndarray:
    return base ** (-np.arange(0, d, 2, dtype=np.float64) / d)


def _ntk_exponent(d: int, caller: str) -> float:
    if d <= 2:
        raise checks.value_error(
            caller, "rotary_dim", d, "NTK scalings need rotary_dim >= 4 (the base exponent is d / (d - 2))"
        )
    return d / (d - 2)


@dataclasses.dataclass(frozen=True)
class Linear:
    """Position interpolation (Chen et al. 2023): every frequency divided by ``factor``.

    Args:
      factor: positions are divided by ``factor`` (``> 0``; ``4`` stretches a 4k window over 16k).

    >>> rope_frequencies(4, scaling=Linear(2.0))
    array([0.5  , 0.005])
    """

    factor: float

    def __post_init__(self):
        object.__setattr__(self, "factor", checks.real_above("Linear", "factor", self.factor, 0.0))

    def _frequencies(self, d: int, base: float, length: int | None) -> np.ndarray:
        return _geometric(d, base) / self.factor

    def _attention_factor(self) -> float:
        return 1.0


@dataclasses.dataclass(frozen=True)
class NTK:
    """NTK-aware scaling: the base becomes ``base · factor ** (d / (d - 2))``, so the slowest pair is
    interpolated by exactly ``factor`` and the fastest is kept.

    Args:
      factor: context extension factor (``>= 1``).

    >>> rope_frequencies(4, scaling=NTK(4.0))  # the slowest pair: 0.01 / 4
    array([1.    , 0.0025])
    """

    factor: float

    def __post_init__(self):
        object.__setattr__(self, "factor", _real_at_least(self.factor, "NTK", "factor", 1.0))

    def _frequencies(self, d: int, base: float, length: int | None) -> np.ndarray:
        return _geometric(d, base * np.float64(self.factor) ** _ntk_exponent(d, "rope_frequencies"))

    def _attention_factor(self) -> float:
        return 1.0


@dataclasses.dataclass(frozen=True)
class DynamicNTK:
    """Dynamic NTK scaling: the NTK base grows with the current length ``L`` beyond the original window.

    ``base' = base · (factor · max(L, L0) / L0 - (factor - 1)) ** (d / (d - 2))``: within the window the
    frequencies are the unscaled ones, and at ``L = L0 · k`` the effective factor is ``factor · (k - 1) + 1``.
    ``L`` is the current sequence length (``max(positions) + 1`` by default in :func:`apply_rotary`) and may
    be traced; see the module docstring for the accuracy of the traced frequencies.

    A length must lie in ``[1, 2**31]``: a Python int, or a concrete array, outside it raises (``0`` and
    ``jnp.int32(0)`` alike); a traced one outside it gives NaN. A traced length below ``max(positions) + 1``
    is accepted and not checked against the positions: it selects the frequencies of that length, and every
    position, the later ones included, turns with them. Decoding one token at a time therefore equals the
    full pass over each prefix, not over the whole sequence (``examples/recipes/dynamic_ntk_decoding.py``).

    Args:
      factor: growth rate of the effective factor (``>= 1``).
      original_max_position: the original context window ``L0`` (positive int).

    >>> s = DynamicNTK(2.0, original_max_position=8)
    >>> bool((rope_frequencies(4, scaling=s, length=8) == rope_frequencies(4)).all())
    True
    """

    factor: float
    original_max_position: int

    def __post_init__(self):
        caller = "DynamicNTK"
        object.__setattr__(self, "factor", _real_at_least(self.factor, caller, "factor", 1.0))
        object.__setattr__(
            self,
            "original_max_position",
            _positive_int(self.original_max_position, caller, "original_max_position"),
        )

    def _frequencies(self, d: int, base: float, length: int | None) -> np.ndarray:
        window = self.original_max_position
        length = window if length is None else max(length, window)  # rope_frequencies passes a length
        growth = np.float64(self.factor * length / window - (self.factor - 1.0))
        return _geometric(d, base * growth ** _ntk_exponent(d, "rope_frequencies"))

    def _attention_factor(self) -> float:
        return 1.0


def _yarn_mscale(factor: float, mscale: float) -> float:
    return 1.0 if factor <= 1.0 else 0.1 * mscale * math.log(factor) + 1.0


@dataclasses.dataclass(frozen=True)
class YaRN:
    """YaRN (Peng et al. 2023): NTK-by-parts interpolation plus an attention temperature.

    Pair ``i`` turns ``L0 · w_i / 2π`` times within the original window. Pairs that turn more than
    ``beta_fast`` times keep ``w_i`` (extrapolation), pairs that turn fewer than ``beta_slow`` times use
    ``w_i / factor`` (interpolation), and a linear ramp in ``i`` blends the two between the correction
    bounds ``i(β) = d · ln(L0 / (2π β)) / (2 ln base)`` (floored / ceiled when ``truncate``, then clipped
    to ``[0, d - 1]``).

    The attention factor is ``attention_factor`` when given, else ``m(factor, mscale) / m(factor,
    mscale_all_dim)`` when both are non-zero (the DeepSeek-V2 form), else ``m(factor, 1)``, with
    ``m(s, c) = 0.1 · c · ln(s) + 1`` for ``s > 1`` and ``1`` otherwise.

    Args:
      factor: context extension factor (``>= 1``).
      original_max_position: the original context window ``L0`` (positive int).
      beta_fast: rotations above which a pair is kept (``> beta_slow``).
      beta_slow: rotations below which a pair is interpolated (``> 0``).
      attention_factor: explicit attention factor (``> 0``), or None for the rule above.
      mscale: the ``c`` of the attention factor's numerator (``>= 0``).
      mscale_all_dim: the ``c`` of its denominator (``>= 0``; ``0`` means no denominator).
      truncate: round the correction bounds outward to whole pairs (the reference behaviour).

    >>> YaRN(4.0, original_max_position=4096)  # doctest: +ELLIPSIS
    YaRN(factor=4.0, original_max_position=4096, beta_fast=32.0, beta_slow=1.0, ...)
    >>> round(rope_attention_factor(YaRN(4.0, original_max_position=4096)), 6)
    1.138629
    """

    factor: float
    original_max_position: int
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    attention_factor: float | None = None
    mscale: float = 1.0
    mscale_all_dim: float = 0.0
    truncate: bool = True

    def __post_init__(self):
        caller = "YaRN"
        set_ = _setter(self)
        set_("factor", _real_at_least(self.factor, caller, "factor", 1.0))
        set_(
            "original_max_position",
            _positive_int(self.original_max_position, caller, "original_max_position"),
        )
        set_("beta_slow", checks.real_above(caller, "beta_slow", self.beta_slow, 0.0))
        set_("beta_fast", checks.real_above(caller, "beta_fast", self.beta_fast, self.beta_slow))
        set_("attention_factor", _optional_positive(self.attention_factor, caller, "attention_factor"))
        set_("mscale", _real_at_least(self.mscale, caller, "mscale", 0.0))
        set_("mscale_all_dim", _real_at_least(self.mscale_all_dim, caller, "mscale_all_dim", 0.0))
        if not isinstance(self.truncate, bool):
            checks.boolean("YaRN", "truncate", self.truncate)

    def _correction_bound(self, rotations: float, d: int, base: float) -> float:
        return d * math.log(self.original_max_position / (rotations * 2 * math.pi)) / (2 * math.log(base))

    def _frequencies(self, d: int, base: float, length: int | None) -> np.ndarray:
        low = self._correction_bound(self.beta_fast, d, base)
        high = self._correction_bound(self.beta_slow, d, base)
        if self.truncate:
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, d - 1)
        if low == high:
            high += 0.001  # a step instead of a ramp, as in the reference code
        ramp = np.clip((np.arange(d // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
        keep = 1.0 - ramp  # 1 for the fast pairs (extrapolation), 0 for the slow ones (interpolation)
        w = _geometric(d, base)
        return (w / self.factor) * (1.0 - keep) + w * keep

    def _attention_factor(self) -> float:
        if self.attention_factor is not None:
            return self.attention_factor
        if self.mscale and self.mscale_all_dim:
            return _yarn_mscale(self.factor, self.mscale) / _yarn_mscale(self.factor, self.mscale_all_dim)
        return _yarn_mscale(self.factor, 1.0)


@dataclasses.dataclass(frozen=True)
class Llama3:
    """The Llama 3.1 scaling: long wavelengths interpolated, short ones kept, a smooth blend between.

    With wavelength ``λ_i = 2π / w_i``: ``λ_i > L0 / low_freq_factor`` gives ``w_i / factor``;
    ``λ_i < L0 / high_freq_factor`` keeps ``w_i``; between, ``(1 - t) · w_i / factor + t · w_i`` with
    ``t = (L0 / λ_i - low_freq_factor) / (high_freq_factor - low_freq_factor)``.

    Args:
      factor: interpolation factor of the long wavelengths (``>= 1``).
      low_freq_factor: ``L0 / low_freq_factor`` is the wavelength above which pairs are interpolated (``> 0``).
      high_freq_factor: ``L0 / high_freq_factor`` is the wavelength below which pairs are kept
        (``> low_freq_factor``).
      original_max_position: the original context window ``L0`` (positive int).

    >>> w = rope_frequencies(128, base=500_000.0, scaling=Llama3())
    >>> bool(w[0] == 1.0), float(w[-1] * 8 / rope_frequencies(128, base=500_000.0)[-1])
    (True, 1.0)
    """

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position: int = 8192

    def __post_init__(self):
        caller = "Llama3"
        set_ = _setter(self)
        set_("factor", _real_at_least(self.factor, caller, "factor", 1.0))
        set_("low_freq_factor", checks.real_above(caller, "low_freq_factor", self.low_freq_factor, 0.0))
        set_(
            "high_freq_factor",
            checks.real_above(caller, "high_freq_factor", self.high_freq_factor, self.low_freq_factor),
        )
        set_(
            "original_max_position",
            _positive_int(self.original_max_position, caller, "original_max_position"),
        )

    def _frequencies(self, d: int, base: float, length: int | None) -> np.ndarray:
        w = _geometric(d, base)
        wavelength = 2 * math.pi / w
        window = self.original_max_position
        t = (window / wavelength - self.low_freq_factor) / (self.high_freq_factor - self.low_freq_factor)
        blended = (1.0 - t) * w / self.factor + t * w
        out = np.where(wavelength > window / self.low_freq_factor, w / self.factor, w)
        between = (wavelength >= window / self.high_freq_factor) & (wavelength <= window / self.low_freq_factor)
        return np.where(between, blended, out)

    def _attention_factor(self) -> float:
        return 1.0


@dataclasses.dataclass(frozen=True)
class LongRoPE:
    """LongRoPE (Ding et al. 2024; Phi-3): per-pair rescale factors chosen by the length.

    ``w_i / short_factors[i]`` while the length ``L <= L0``, ``w_i / long_factors[i]`` beyond. The attention
    factor is ``attention_factor`` when given, else ``sqrt(1 + ln(factor) / ln(L0))`` for ``factor > 1``
    (``1`` otherwise), where ``factor`` is the context extension factor (the model's maximum length over
    ``L0``; None means 1). ``L`` may be traced: the exact phase constants of both sets are selected in the
    graph.

    Args:
      short_factors: ``d / 2`` positive factors used within the original window.
      long_factors: ``d / 2`` positive factors used beyond it.
      original_max_position: the original context window ``L0`` (positive int, ``> 1``).
      factor: context extension factor for the attention factor (``>= 1``) or None.
      attention_factor: explicit attention factor (``> 0``), or None for the rule above.

    >>> s = LongRoPE((1.0, 2.0), (4.0, 8.0), original_max_position=16, factor=8.0)
    >>> rope_frequencies(4, scaling=s, length=17)
    array([0.25   , 0.00125])
    """

    short_factors: tuple[float, ...]
    long_factors: tuple[float, ...]
    original_max_position: int
    factor: float | None = None
    attention_factor: float | None = None

    def __post_init__(self):
        caller = "LongRoPE"
        set_ = _setter(self)
        for name in ("short_factors", "long_factors"):
            set_(name, _factor_tuple(getattr(self, name), caller, name))
        if len(self.short_factors) != len(self.long_factors):
            raise checks.value_error(
                caller,
                "long_factors",
                self.long_factors,
                f"long_factors must have as many factors as short_factors ({len(self.short_factors)}), one "
                "per rotated pair",
            )
        window = _positive_int(self.original_max_position, caller, "original_max_position")
        if window < 2:
            raise checks.value_error(
                caller,
                "original_max_position",
                window,
                "original_max_position must be >= 2 (the attention factor divides by its logarithm)",
            )
        set_("original_max_position", window)
        set_("factor", None if self.factor is None else _real_at_least(self.factor, caller, "factor", 1.0))
        set_("attention_factor", _optional_positive(self.attention_factor, caller, "attention_factor"))

    def _factors(self, d: int, long: bool) -> np.ndarray:
        if len(self.short_factors) != d // 2:
            raise checks.value_error(
                "rope_frequencies",
                "rotary_dim",
                d,
                f"LongRoPE has {len(self.short_factors)} factors per set, rotary_dim={d} needs {d // 2} "
                "(one per rotated pair)",
            )
        return np.asarray(self.long_factors if long else self.short_factors, np.float64)

    def _frequencies(self, d: int, base: float, length: int | None) -> np.ndarray:
        long = length is not None and length > self.original_max_position  # rope_frequencies passes a length
        return _geometric(d, base) / self._factors(d, long)

    def _attention_factor(self) -> float:
        if self.attention_factor is not None:
            return self.attention_factor
        if self.factor is None or self.factor <= 1.0:
            return 1.0
        return math.sqrt(1.0 + math.log(self.factor) / math.log(self.original_max_position))


Scaling = Linear | NTK | DynamicNTK | YaRN | Llama3 | LongRoPE
_SCALINGS = (Linear, NTK, DynamicNTK, YaRN, Llama3, LongRoPE)
_LENGTH_DEPENDENT = (DynamicNTK, LongRoPE)


def _setter(instance: object):
    """A setter for the fields of a frozen dataclass, used in ``__post_init__`` to store checked values."""
    return lambda name, value: object.__setattr__(instance, name, value)


def _factor_tuple(values: object, caller: str, name: str) -> tuple[float, ...]:
    checks.concrete(caller, name, values, f"{name} are static factors (a sequence of numbers)")
    array = np.asarray(values)
    if array.dtype.kind not in "iuf":
        raise checks.type_error(caller, name, array, f"{name} must be real numbers")
    if array.ndim != 1 or array.size == 0:
        raise checks.value_error(caller, name, array, f"{name} must be a non-empty 1-D sequence")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array) & (array > 0)):
        raise checks.value_error(caller, name, tuple(array.tolist()), f"{name} must be finite and > 0")
    return tuple(array.tolist())


def check_scaling(scaling: object, caller: str) -> Scaling | None:
    """Returns ``scaling`` if it is None or one of the scaling types, else raises a TypeError."""
    if scaling is None or isinstance(scaling, _SCALINGS):
        return scaling
    names = ", ".join(t.__name__ for t in _SCALINGS)
    raise checks.type_error(caller, "scaling", scaling, f"scaling must be None or one of {names}")


def depends_on_length(scaling: object) -> bool:
    """Whether the scaling's frequencies depend on the current sequence length."""
    return isinstance(scaling, _LENGTH_DEPENDENT)


def _check_length(length: object, caller: str) -> int:
    """A concrete sequence length: a positive Python int (or integer numpy scalar)."""
    return _positive_int(length, caller, "length")


def rope_frequencies(
    head_dim: int,
    *,
    base: float = 10_000.0,
    scaling: Scaling | None = None,
    rotary_dim: int | None = None,
    length: int | None = None,
) -> np.ndarray:
    """The rotary frequencies ``w_i`` with a long-context scaling, in float64 on the host.

    Args:
      head_dim: features per head (positive, even).
      base: ``theta`` of the geometric frequencies ``w_i = base ** (-2i / d)``, ``d = rotary_dim``.
      scaling: None (plain RoPE) or one of :class:`Linear`, :class:`NTK`, :class:`DynamicNTK`,
        :class:`YaRN`, :class:`Llama3`, :class:`LongRoPE`.
      rotary_dim: the number of rotated features ``d`` (even, ``<= head_dim``); defaults to ``head_dim``.
        Frequencies are defined over ``d``, as for partially rotated heads in the reference code.
      length: the current sequence length (positive int); required by :class:`DynamicNTK` and
        :class:`LongRoPE`, ignored by the others.

    Returns:
      float64 numpy array ``[d // 2]``. The attention factor is :func:`rope_attention_factor`.

    Raises:
      TypeError: a non-int ``head_dim`` / ``rotary_dim`` / ``length``, or an unknown ``scaling``.
      ValueError: odd or non-positive dims, ``rotary_dim > head_dim``, ``base <= 1``, a length-dependent
        scaling without ``length``, NTK scalings with ``d < 4``, LongRoPE factors not of length ``d / 2``,
        or factors so extreme that a frequency overflows or underflows.

    >>> rope_frequencies(4)
    array([1.  , 0.01])
    """
    return checked_rope_frequencies(
        "rope_frequencies", head_dim, base=base, scaling=scaling, rotary_dim=rotary_dim, length=length
    )


def checked_rope_frequencies(
    caller: str,
    head_dim: object,
    *,
    base: object,
    scaling: object,
    rotary_dim: object,
    length: Any,
) -> np.ndarray:
    """:func:`rope_frequencies`, with errors naming the public call ``caller``."""
    head_dim = checks.even(caller, "head_dim", head_dim, SINUSOID_PAIRS)
    d = head_dim if rotary_dim is None else checks.even(caller, "rotary_dim", rotary_dim, SINUSOID_PAIRS)
    if d > head_dim:
        raise checks.value_error(
            caller,
            "rotary_dim",
            d,
            f"rotary_dim must be <= head_dim={head_dim} (the number of leading features that are rotated)",
        )
    base = checks.real_above(caller, "base", base, 1.0)
    scaling = check_scaling(scaling, caller)
    if scaling is None:
        return _geometric(d, base)
    if isinstance(scaling, NTK | DynamicNTK):
        _ntk_exponent(d, caller)
    if depends_on_length(scaling):
        if length is None:
            raise checks.value_error(
                caller,
                "length",
                None,
                f"{type(scaling).__name__} frequencies depend on the sequence length",
                "pass length=",
            )
        length = _check_length(length, caller)
    with np.errstate(over="ignore", under="ignore"):
        w = scaling._frequencies(d, base, length)
    if not np.all(np.isfinite(w) & (w > 0)):
        raise checks.value_error(
            caller,
            "scaling",
            scaling,
            f"the scaled frequencies must be finite and > 0 for base={base!r}, got {w.tolist()}",
            "the factors are out of range for this base",
        )
    return w


def rope_attention_factor(scaling: Scaling | None) -> float:
    """The factor by which a scaling multiplies rotated queries and keys (logits by its square).

    Args:
      scaling: None or a scaling; only :class:`YaRN` and :class:`LongRoPE` define a factor other than 1.

    Returns:
      A Python float.

    Raises:
      TypeError: an unknown ``scaling``.

    >>> rope_attention_factor(YaRN(16.0, original_max_position=2048, attention_factor=1.5))
    1.5
    """
    scaling = check_scaling(scaling, "rope_attention_factor")
    return 1.0 if scaling is None else scaling._attention_factor()


# ---- Traced lengths: phase constants computed in the graph (double-float32 arithmetic) ---------------------


def _dynamic_ntk_constants(scaling: DynamicNTK, d: int, base: float, last: jax.Array):
    """DynamicNTK phase constants for a traced length ``L = last + 1``: ``w_i = w0_i · r**i`` with
    ``r = g ** (-1 / (n - 1))``, ``g = 1 + factor · (max(L, L0) - L0) / L0`` (the same as the base rule), all in
    double-float32. ``last`` is int32, so ``L`` may reach ``2**31`` without overflow."""
    n = d // 2
    _ntk_exponent(d, "apply_rotary")
    window = scaling.original_max_position
    excess = jnp.maximum(last, window - 1) - (window - 1)  # max(L, L0) - L0: exact int32, >= 0, no overflow
    excess_hi = (excess & ~0xFFF).astype(jnp.float32)  # at most 19 significant bits: exact
    excess_lo = (excess & 0xFFF).astype(jnp.float32)
    excess_dd = double_float.two_sum(excess_hi, excess_lo)
    # A 1.0 and 0.0 the compiler cannot fold: its algebraic simplifier reassociates additions with
    # constants, which would cancel the error terms of the double-float sums.
    zero = last.astype(jnp.float32) * 0.0
    one = zero + 1.0
    product = double_float.mul(double_float.constant(np.array(scaling.factor / window)), excess_dd)
    growth = double_float.add((one, zero), product)
    # r = growth ** (-1 / (n - 1)): a float32 start, then two corrections r <- r · q ** (-1 / (n - 1)) with
    # q = growth · r ** (n - 1) = 1 - e evaluated in double-float, and q ** (-1/(n-1)) = 1 + δ + δ²/2,
    # δ = (e + e²/2) / (n - 1) (the series of -ln(q) / (n - 1)).
    r = (jnp.exp2(-jnp.log2(growth[0]) / (n - 1)), zero)
    for _ in range(2):
        q = double_float.mul(growth, double_float.power(r, n - 1))
        e = double_float.add((one, zero), (-q[0], -q[1]))
        e = e[0] + e[1]
        delta = (e + 0.5 * e * e) / (n - 1)
        r = double_float.add(r, double_float.mul(r, (delta + 0.5 * delta * delta, zero)))
    # powers r**i for every pair, by the bits of i
    i = np.arange(n)
    power = (jnp.broadcast_to(one, (n,)), jnp.broadcast_to(zero, (n,)))
    square = r
    bit = 0
    while (1 << bit) < n:
        use = jnp.asarray((i >> bit) & 1 == 1)
        product = double_float.mul(power, square)
        power = (jnp.where(use, product[0], power[0]), jnp.where(use, product[1], power[1]))
        bit += 1
        if (1 << bit) < n:
            square = double_float.mul(square, square)
    turns_dd = double_float.mul(double_float.constant(_geometric(d, base) / (2 * np.pi)), power)
    high, low = double_float.turn_words(*turns_dd)
    turns32 = turns_dd[0] + turns_dd[1]
    return high, low, turns32, turns32 * jnp.float32(2 * np.pi)


def traced_phase_constants(
    scaling: Scaling, d: int, base: float, last: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Phase constants ``(high, low, turns32, w32)`` (see :func:`posenc_jax.angles.phase_constants`) of a
    length-dependent scaling for a traced length ``last + 1`` (``last``: an int32 scalar)."""
    if isinstance(scaling, LongRoPE):
        short = phase_constants(scaling._frequencies(d, base, scaling.original_max_position))
        long = phase_constants(scaling._frequencies(d, base, scaling.original_max_position + 1))
        use_long = last >= scaling.original_max_position  # L > L0
        high, low, turns32, w32 = (
            jnp.where(use_long, jnp.asarray(b), jnp.asarray(a)) for a, b in zip(short, long, strict=True)
        )
        return high, low, turns32, w32
    return _dynamic_ntk_constants(cast(DynamicNTK, scaling), d, base, last)
