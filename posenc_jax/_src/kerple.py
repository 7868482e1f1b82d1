"""KERPLE (Chi et al. 2022): kernelized relative positional biases for length extrapolation.

"KERPLE: Kernelized Relative Positional Embedding for Length Extrapolation" (NeurIPS 2022) adds to the
attention logits of head ``h`` a conditionally positive definite kernel of the distance ``|i - j|`` between
query position ``i`` and key position ``j``, with two learned positive parameters per head:

* logarithmic: ``b_h(i, j) = -r1_h * log(1 + r2_h * |i - j|)``;
* power: ``b_h(i, j) = -r1_h * |i - j| ** r2_h`` with ``0 < r2_h <= 2``.

The bias depends on the distance only (keys after a query get the same bias as keys as far before it; a
decoder's causal mask hides them), so offsets, packed sequences and cached decoding need no special code.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._src import checks
from posenc_jax._src.angles import computed_once
from posenc_jax._src.delegation import is_concrete
from posenc_jax._src.distances import absolute_distances, pair_positions
from posenc_jax._src.schemes import SchemeDefaults, _check_parameter, _parameter, _require

__all__ = ["KERNELS", "Kerple", "kerple_bias"]

#: The two kernels of the paper.
KERNELS = ("log", "power")
Kernel = Literal["log", "power"]


def check_head_parameters(call: str, num_heads: int | None, **parameters: Any) -> int:
    """Each parameter must be a floating ``[num_heads]`` array (the same ``num_heads`` for all); returns it."""
    for name, value in parameters.items():
        dtype = getattr(value, "dtype", None)
        shape = tuple(np.shape(value))
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise checks.type_error(call, name, value, f"{name} must be a floating array [num_heads]")
        if len(shape) != 1 or (num_heads is not None and shape[0] != num_heads):
            heads = "num_heads" if num_heads is None else str(num_heads)
            raise checks.value_error(
                call, name, value, f"{name} must have shape [{heads}] (one value per head)"
            )
        num_heads = shape[0]
    return int(num_heads or 0)


def kerple_bias(
    q_positions: jax.Array,
    k_positions: jax.Array,
    *,
    r1: jax.Array,
    r2: jax.Array,
    kernel: Kernel,
) -> jax.Array:
    """The KERPLE bias of every head, query and key (Chi et al. 2022).

    * ``kernel="log"``: ``-r1_h * log(1 + r2_h * |i - j|)``;
    * ``kernel="power"``: ``-r1_h * |i - j| ** r2_h`` (the paper keeps ``0 < r2_h <= 2``).

    ``i`` and ``j`` are the given positions (integer distances are formed exactly, in the positions' own
    width, int64 under ``jax_enable_x64`` included, then rounded once to float32: they never wrap). ``r1``
    and ``r2`` must be positive; :class:`posenc_jax.nnx.Kerple` keeps them so by construction. The power
    kernel's gradient with respect to ``r2`` is defined (zero) at distance 0.

    Integer positions beyond int32 (int64 under ``jax_enable_x64``): concrete ones raise; traced ones are
    used exactly: the distance is formed in their own width. With x64 off, JAX converts an int64 argument of
    ``jax.jit`` to int32 before this function sees it (``2**31 + 5`` arrives as ``-2**31 + 5``), which no
    library can detect: keep positions within int32 or enable x64.

    Args:
      q_positions: integer or floating positions ``[q_len]`` or ``[batch, q_len]``.
      k_positions: integer or floating positions ``[k_len]`` or ``[batch, k_len]``.
      r1: ``[num_heads]`` positive scales.
      r2: ``[num_heads]`` positive rates (log) or exponents in ``(0, 2]`` (power).
      kernel: ``"log"`` or ``"power"``.

    Returns:
      float32 ``[batch or 1, num_heads, q_len, k_len]``.

    Raises:
      TypeError: non-floating ``r1`` / ``r2``, bad position dtypes.
      ValueError: an unknown ``kernel``, ``r1`` and ``r2`` not both ``[num_heads]``, positions of rank other
        than 1 or 2 or with batch sizes that do not broadcast.

    >>> kerple_bias(jnp.array([3]), jnp.arange(3), r1=jnp.ones(1), r2=jnp.ones(1), kernel="power")[0, 0]
    Array([[-3., -2., -1.]], dtype=float32)
    """
    call = "kerple_bias"
    checks.one_of(call, "kernel", kernel, KERNELS)
    check_head_parameters(call, None, r1=r1, r2=r2)
    q2, k2 = pair_positions(call, q_positions, k_positions)
    return _kerple(q2, k2, jnp.asarray(r1), jnp.asarray(r2), kernel=kernel)


@functools.partial(jax.jit, static_argnames=("kernel",))
def _kerple(q2, k2, r1, r2, *, kernel: str) -> jax.Array:
    # Computed once at [batch, q_len, k_len], not once per head inside the consumer's fusion.
    distance = absolute_distances(q2, k2, "kerple_bias")[:, None]  # [batch, 1, q_len, k_len]
    (distance,) = computed_once(distance)
    negative_r1 = -r1.astype(jnp.float32)[None, :, None, None]  # negated per head, not per element
    r2 = r2.astype(jnp.float32)[None, :, None, None]
    if kernel == "log":
        return negative_r1 * jnp.log1p(r2 * distance)
    # |i - j| ** r2 as exp(r2 log d) away from d = 0, so that d/dr2 is 0 there instead of 0 * -inf.
    positive = distance > 0
    log_distance = jnp.log(jnp.where(positive, distance, 1.0))
    return negative_r1 * jnp.where(positive, jnp.exp(r2 * log_distance), 0.0)


def _check_positive(call: str, name: str, value: Any, upper: float | None = None) -> None:
    if is_concrete(value):
        host = np.asarray(value, np.float64)
        if not np.all(host > 0) or (upper is not None and not np.all(host <= upper)):
            allowed = f"{name} must be positive" + ("" if upper is None else f" and <= {upper:g}")
            raise checks.value_error(call, name, value, allowed, "the modules keep it so by construction")


#: KERPLE's reference code draws ``r1 ~ U(0, 2)`` and ``r2 ~ U(0, 1)`` and clamps both at 0.01.
_INITIAL_R1 = (0.01, 2.0)
_INITIAL_R2 = (0.01, 1.0)


def _inverse_softplus(y: jax.Array) -> jax.Array:
    return y + jnp.log(-jnp.expm1(-y))


@dataclasses.dataclass(frozen=True)
class Kerple(SchemeDefaults):
    """KERPLE (Chi et al. 2022): a learned kernel of the distance added to the attention logits.

    ``b_h(i, j) = -r1_h * log(1 + r2_h * |i - j|)`` (``kernel="log"``) or ``-r1_h * |i - j| ** r2_h``
    (``kernel="power"``, ``0 < r2_h <= 2``), see :func:`posenc_jax.kerple_bias`. The value holds the
    configuration and, to be used on its own, the parameters ``r1`` and ``r2``; :class:`posenc_jax.nnx.Kerple`
    and :class:`posenc_jax.linen.Kerple` hold unconstrained parameters ``r1_raw`` and ``r2_raw`` and fill in
    ``r1 = softplus(r1_raw)`` and ``r2 = softplus(r2_raw)`` (log) or ``2·sigmoid(r2_raw)`` (power, ``0 < r2 <
    2``, where the paper's kernel is conditionally positive definite): positive by construction. Their
    initial values follow the reference code: ``r1`` uniform in ``[0.01, 2]``, ``r2`` in ``[0.01, 1]``.

    Attributes:
      num_heads: attention heads (positive).
      kernel: ``"log"`` or ``"power"`` (keyword, no default: the paper's two variants).
      r1: ``[num_heads]`` positive scales, or None (then ``attention_bias`` raises).
      r2: ``[num_heads]`` positive rates (log), exponents in ``(0, 2]`` (power), or None.
      param_dtype: the dtype of the modules' parameters.

    Raises:
      TypeError, ValueError: non-positive ``num_heads``, an unknown ``kernel``, a bad ``param_dtype``, ``r1`` /
        ``r2`` not floating ``[num_heads]`` or (when concrete) out of range.

    >>> scheme = Kerple(2, kernel="log", r1=jnp.ones(2), r2=jnp.ones(2))
    >>> scheme.attention_bias(jnp.arange(3), jnp.arange(3)).shape
    (1, 2, 3, 3)
    """

    num_heads: int
    _: dataclasses.KW_ONLY
    kernel: Kernel
    r1: Any = _parameter("the scales r1 [num_heads], positive")
    r2: Any = _parameter("the rates or exponents r2 [num_heads], positive")
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        caller = "Kerple"
        object.__setattr__(self, "num_heads", checks.integer(caller, "num_heads", self.num_heads))
        checks.one_of(caller, "kernel", self.kernel, KERNELS)
        checks.floating_dtype(caller, self.param_dtype, "param_dtype")
        for name in ("r1", "r2"):
            _check_parameter(getattr(self, name), name, (self.num_heads,), caller)
        _check_positive(caller, "r1", self.r1)
        _check_positive(caller, "r2", self.r2, 2.0 if self.kernel == "power" else None)

    def attention_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """The bias ``[batch or 1, num_heads, q_len, k_len]`` float32."""
        call = "Kerple.attention_bias"
        r1 = _require(self.r1, "r1", call, "Kerple")
        r2 = _require(self.r2, "r2", call, "Kerple")
        return kerple_bias(q_positions, k_positions, r1=r1, r2=r2, kernel=self.kernel)

    def __call__(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """Same as :meth:`attention_bias`."""
        return self.attention_bias(q_positions, k_positions)

    # What the modules use: their unconstrained parameters, drawn and mapped here once for NNX and Linen.

    def _raw(self, key: jax.Array, bounds: tuple[float, float], kind: str) -> jax.Array:
        value = jax.random.uniform(key, (self.num_heads,), jnp.float32, *bounds)
        raw = jnp.log(value / (2.0 - value)) if kind == "sigmoid" else _inverse_softplus(value)
        return raw.astype(self.param_dtype)

    def init_r1_raw(self, key: jax.Array, *_: Any) -> jax.Array:
        """The modules' initial ``r1_raw`` ``[num_heads]``."""
        return self._raw(key, _INITIAL_R1, "softplus")

    def init_r2_raw(self, key: jax.Array, *_: Any) -> jax.Array:
        """The modules' initial ``r2_raw`` ``[num_heads]``."""
        return self._raw(key, _INITIAL_R2, "sigmoid" if self.kernel == "power" else "softplus")

    def constrained(self, r1_raw: jax.Array, r2_raw: jax.Array) -> dict[str, jax.Array]:
        """``{"r1": softplus(r1_raw), "r2": ...}``, the parameters the modules fill in."""
        raw = jnp.asarray(r2_raw, jnp.float32)
        r2 = 2.0 * jax.nn.sigmoid(raw) if self.kernel == "power" else jax.nn.softplus(raw)
        return {"r1": jax.nn.softplus(jnp.asarray(r1_raw, jnp.float32)), "r2": r2}
