"""xPos (Sun et al. 2022): rotary embeddings with an exponential decay of the pairs' contributions.

"A Length-Extrapolatable Transformer" (ACL 2023) rotates queries and keys as RoPE does and, in addition,
multiplies feature pair ``i`` (``i = 0 … d/2 - 1``, ``d`` = head_dim) of the query at position ``n`` by
``ζ_i ** (n / B)`` and of the key at position ``m`` by ``ζ_i ** (-m / B)``, with::

    ζ_i = (i / (d/2) + γ) / (1 + γ),     γ = 0.4,   B = scale_base = 512,

so that pair ``i`` of the logit ``q_n·k_m`` is weighted by ``ζ_i ** ((n - m) / B)``: a decay with distance
that is fastest for the fast-rotating pairs (``ζ_0 = γ / (1 + γ)``) and slowest for the slow ones.

**Only the relative distance enters.** ``ζ ** (n / B)`` alone overflows or underflows float32 once
``|n|·|log ζ_0| / B`` passes ~87 (``n`` ≈ 35,000 for the defaults). Since only ``n - m`` matters, the
factors are taken relative to a center ``c`` (the integer midpoint of the query positions of each batch
row): queries get ``ζ ** ((n - c) / B)`` and keys ``ζ ** ((c - m) / B)``, whose product is the paper's.
With ``R = 87·B / |log ζ_0|`` (35,556 positions for the defaults), the result equals the paper's formula to
float32 rounding whenever every query and key position ``p`` of the call satisfies ``|p - c| <= R``: any
absolute offset, and in cached decoding (one query, ``c = n``) every key within ``R`` behind it. A factor
beyond ``R`` is clipped at ``e**±87``: a key more than ``R`` behind a decoding query keeps a weight below
``e**-87`` for its fastest pairs (the formula's value there is smaller still), never NaN or inf.

The center depends on the call's queries, so keys scaled in one call belong with that call's queries: a
cache must store keys before :func:`xpos_rotate` (as :class:`posenc_jax.KVCache` does). A model that caches
keys after it passes a fixed ``center`` (``center=0`` gives the paper's absolute factors, exact for every
position within ``R`` of it).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._src import checks
from posenc_jax._src.alibi import exact_difference, float_difference
from posenc_jax._src.layouts import Layout, check_rotary_layout
from posenc_jax._src.rotary import ROTARY_PAIRS, apply_rotary
from posenc_jax._src.schemes import SchemeDefaults, check_heads

__all__ = ["XPos", "xpos_decay_rates", "xpos_rotate"]

#: exp(±EXPONENT_LIMIT) is a normal float32 with room to spare for the multiply with a feature.
EXPONENT_LIMIT = 87.0


def xpos_decay_rates(head_dim: int, *, gamma: float = 0.4) -> np.ndarray:
    """``ζ_i = (i / (head_dim/2) + γ) / (1 + γ)`` for the ``head_dim // 2`` pairs (float64)."""
    pairs = head_dim // 2
    return (np.arange(pairs, dtype=np.float64) / pairs + gamma) / (1.0 + gamma)


def exact_radius(head_dim: int, *, gamma: float = 0.4, scale_base: float = 512.0) -> float:
    """``R``: the distance from the center within which every factor is exact (see the module docstring)."""
    return EXPONENT_LIMIT * scale_base / abs(math.log(xpos_decay_rates(head_dim, gamma=gamma)[0]))


def xpos_rotate(
    q: jax.Array,
    k: jax.Array,
    q_positions: jax.Array,
    k_positions: jax.Array,
    *,
    layout: Layout | None = None,
    base: float = 10_000.0,
    scale_base: float = 512.0,
    gamma: float = 0.4,
    center: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Rotates queries and keys as RoPE and scales their pairs by xPos's ``ζ_i ** (±(p - c) / scale_base)``.

    Pair ``i`` of ``q_n·k_m`` ends up weighted by ``ζ_i ** ((n - m) / scale_base)`` (Sun et al. 2022), exact
    within the range stated in :mod:`posenc_jax._src.xpos`: it depends on ``n - m`` only.

    Integer positions beyond int32 (int64 under ``jax_enable_x64``): concrete ones raise; traced ones give
    NaN rows. With x64 off, JAX converts an int64 argument of ``jax.jit`` to int32 before this function sees
    it (``2**31 + 5`` arrives as ``-2**31 + 5``), which no library can detect: keep positions within int32
    or enable x64.

    Args:
      q: queries ``[batch, q_len, heads, head_dim]``.
      k: keys ``[batch, k_len, kv_heads, head_dim]``.
      q_positions: integer or float32 positions ``[q_len]`` or ``[batch, q_len]``.
      k_positions: integer or float32 positions ``[k_len]`` or ``[batch, k_len]``.
      layout: the rotary pairing, ``"split"`` or ``"interleaved"`` (the paper's code pairs ``(2i, 2i + 1)``).
      base: ``theta`` of the rotary frequencies ``base ** (-2i / head_dim)``.
      scale_base: ``B`` (positive).
      gamma: ``γ`` (positive).
      center: ``c``. ``None`` (default): the integer midpoint of each row's query positions, so that only
        distances enter at any offset. An int: a fixed ``c`` for every call, so keys scaled in one call
        (e.g. stored in a cache of rotated keys) stay valid for the queries of later calls; exact while
        every position lies within ``R`` of it (``center=0``: the paper's absolute factors).

    Returns:
      ``(q', k')`` with the shapes and dtypes of ``q`` and ``k``.

    Raises:
      TypeError, ValueError: as :func:`posenc_jax.apply_rotary`; non-positive ``scale_base`` / ``gamma``.

    >>> q = k = jnp.ones((1, 2, 1, 4))
    >>> [a.shape for a in xpos_rotate(q, k, jnp.arange(2), jnp.arange(2), layout="split")]
    [(1, 2, 1, 4), (1, 2, 1, 4)]
    """
    call = "xpos_rotate"
    layout = check_rotary_layout(call, layout)
    scale_base = checks.real_above(call, "scale_base", scale_base, 0.0)
    gamma = checks.real_above(call, "gamma", gamma, 0.0)
    if center is not None:
        center = checks.integer(call, "center", center, -(2**31))
        if center >= 2**31:
            raise checks.value_error(call, "center", center, "center must be an int32 position or None")
    qp = checks.positions(call, q_positions, "q_positions", split=False)
    kp = checks.positions(call, k_positions, "k_positions", split=False)
    q_rot = apply_rotary(q, qp, base=base, layout=layout)
    k_rot = apply_rotary(k, kp, base=base, layout=layout)
    for name, value in (("q_positions", qp), ("k_positions", kp)):
        if value.ndim not in (1, 2):
            raise checks.value_error(call, name, value, f"{name} must have shape [length] or [batch, length]")
    rates = tuple(np.log(xpos_decay_rates(q.shape[-1], gamma=gamma)).tolist())
    return _scale(q_rot, k_rot, qp, kp, log_rates=rates, scale_base=scale_base, layout=layout, center=center)


def _center(positions: jax.Array) -> jax.Array:
    """The integer midpoint of each row's positions, ``[batch or 1, 1]`` (their integer dtype, or float32)."""
    positions = positions if positions.ndim == 2 else positions[None]
    if jnp.issubdtype(positions.dtype, jnp.integer):
        # In the positions' own dtype (int64 under x64: never narrowed first); high - low as an unsigned
        # magnitude, which cannot overflow where a signed difference would (-2**31 to 2**31 - 1).
        low = jnp.min(positions, axis=-1, keepdims=True)
        high = jnp.max(positions, axis=-1, keepdims=True)
        _, spread = exact_difference(low, high, np.dtype(positions.dtype))
        return low + (spread // 2).astype(positions.dtype)
    low = jnp.min(positions, axis=-1, keepdims=True).astype(jnp.float32)
    high = jnp.max(positions, axis=-1, keepdims=True).astype(jnp.float32)
    return jnp.floor(low + (high - low) / 2)


def _relative(positions: jax.Array, center: jax.Array) -> jax.Array:
    """``positions - center`` as float32 ``[batch or 1, length]``, rounded once from the exact difference."""
    positions = positions if positions.ndim == 2 else positions[None]
    return float_difference(center, positions, "xpos_rotate")  # exact, rounded once to float32


def _features(factor: jax.Array, layout: str) -> jax.Array:
    """Per-pair factors ``[..., d/2]`` spread onto the features ``[..., d]`` of ``layout``."""
    return jnp.repeat(factor, 2, axis=-1) if layout == "interleaved" else jnp.concatenate([factor, factor], -1)


@functools.partial(jax.jit, static_argnames=("log_rates", "scale_base", "layout", "center"))
def _scale(q, k, qp, kp, *, log_rates: tuple[float, ...], scale_base: float, layout: str, center: int | None):
    if center is None:
        c = _center(qp)
    elif jnp.issubdtype(qp.dtype, jnp.integer):
        c = jnp.full((1, 1), center, qp.dtype)
    else:
        c = jnp.full((1, 1), center, jnp.float32)
    rates = jnp.asarray(np.asarray(log_rates) / scale_base, jnp.float32)

    def factors(relative: jax.Array, sign: float) -> jax.Array:  # [batch or 1, length, 1, d]
        exponent = jnp.clip(sign * relative[..., None] * rates, -EXPONENT_LIMIT, EXPONENT_LIMIT)
        return _features(jnp.exp(exponent), layout)[:, :, None, :]

    q_factor = factors(_relative(qp, c), 1.0)
    k_factor = factors(_relative(kp, c), -1.0)
    return (q * q_factor).astype(q.dtype), (k * k_factor).astype(k.dtype)


@dataclasses.dataclass(frozen=True)
class XPos(SchemeDefaults):
    """xPos (Sun et al. 2022): RoPE whose pair ``i`` of ``q_n·k_m`` decays as ``ζ_i ** ((n - m) / B)``.

    ``ζ_i = (i / (head_dim/2) + γ) / (1 + γ)``; queries are scaled by ``ζ ** ((n - c) / B)`` and keys by
    ``ζ ** ((c - m) / B)`` around the queries' midpoint ``c``, so only distances enter: exact within the
    range stated in :func:`posenc_jax.xpos_rotate`. No parameters.

    Attributes:
      head_dim: features per head (positive, even).
      layout: ``"split"`` or ``"interleaved"`` rotary pairing (keyword, no default).
      base: ``theta`` of the rotary frequencies.
      scale_base: ``B`` (512 in the paper).
      gamma: ``γ`` (0.4 in the paper).
      center: ``None`` (the queries' midpoint, per call) or a fixed int ``c`` for models that cache keys
        after :meth:`rotate` (see :func:`posenc_jax.xpos_rotate`).

    Raises:
      ValueError, TypeError: bad ``head_dim``, ``layout``, ``base``, ``scale_base``, ``gamma`` or ``center``.

    >>> q = k = jnp.ones((1, 3, 2, 8))
    >>> [a.shape for a in XPos(8, layout="split").rotate(q, k)]
    [(1, 3, 2, 8), (1, 3, 2, 8)]
    """

    head_dim: int
    _: dataclasses.KW_ONLY
    layout: Layout | None = None
    base: float = 10_000.0
    scale_base: float = 512.0
    gamma: float = 0.4
    center: int | None = None

    def __post_init__(self):
        caller = "XPos"
        object.__setattr__(self, "head_dim", checks.even(caller, "head_dim", self.head_dim, ROTARY_PAIRS))
        check_rotary_layout(caller, self.layout)
        object.__setattr__(self, "base", checks.real_above(caller, "base", self.base, 1.0))
        object.__setattr__(self, "scale_base", checks.real_above(caller, "scale_base", self.scale_base, 0.0))
        object.__setattr__(self, "gamma", checks.real_above(caller, "gamma", self.gamma, 0.0))
        if self.center is not None:
            center = checks.integer(caller, "center", self.center, -(2**31))
            if center >= 2**31:
                raise checks.value_error(caller, "center", center, "center must be an int32 position or None")

    def rotate(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None = None,
        k_positions: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Rotates and scales ``q`` ``[batch, q_len, heads, head_dim]`` and ``k`` by their positions."""
        check_heads("XPos.rotate", self.head_dim, q=q, k=k)
        return xpos_rotate(
            q,
            k,
            jnp.arange(np.shape(q)[1]) if q_positions is None else q_positions,
            jnp.arange(np.shape(k)[1]) if k_positions is None else k_positions,
            layout=self.layout,
            base=self.base,
            scale_base=self.scale_base,
            gamma=self.gamma,
            center=self.center,
        )

    def __call__(self, q, k, q_positions=None, k_positions=None) -> tuple[jax.Array, jax.Array]:
        """Same as :meth:`rotate`."""
        return self.rotate(q, k, q_positions, k_positions)
