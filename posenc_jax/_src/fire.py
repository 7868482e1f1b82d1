"""FIRE (Li et al. 2024): functional interpolation of relative positions.

"Functional Interpolation for Relative Positions Improves Long Context Transformers" (ICLR 2024) adds to
the attention logits of head ``h`` a learned function of the *normalized* distance::

    b(i, j) = f_θ( ψ(i - j) / ψ(max(L, i)) ),        ψ(x) = log(c·x + 1),

with ``f_θ: R -> R^heads`` a small MLP (one hidden ReLU layer of width 32 in the paper, the hidden layer
shared by the heads and one output per head), a learned ``c > 0`` and a learned threshold ``L``: below ``L``
the query position ``i`` itself normalizes the distance (progressive interpolation, so the input of ``f_θ``
stays in ``[0, 1]`` at every length), and from ``L`` on the normalizer is fixed.

As in the authors' reference code, ``c`` and ``L`` enter through their absolute values, ``ψ`` of the
distance is ``log(|c·(i - j)| + 1)`` and the normalizer gets ``+ eps``. The definition is causal (keys
``j <= i``). **Non-causal use** (keys after the query, i.e. no causal mask) follows the same code: the
distance enters as ``|i - j|``, so a key ``d`` positions after the query gets the bias of the key ``d``
positions before it, normalized by the query's position as always.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._src import checks
from posenc_jax._src.angles import computed_once
from posenc_jax._src.delegation import is_array
from posenc_jax._src.distances import offsets, pair_positions
from posenc_jax._src.schemes import SchemeDefaults

__all__ = ["FIRE", "FIREParameters", "fire_bias"]


def check_mlp(call: str, mlp: object, num_heads: int | None = None) -> tuple[int, int]:
    """``mlp`` must be ``(w1 [width], b1 [width], w2 [width, heads], b2 [heads])``; returns (width, heads)."""
    allowed = "mlp must be a tuple (w1 [width], b1 [width], w2 [width, num_heads], b2 [num_heads]) of arrays"
    if not isinstance(mlp, tuple | list) or len(mlp) != 4:
        raise checks.type_error(call, "mlp", mlp, allowed)
    shapes = [tuple(np.shape(p)) for p in mlp]
    for part in mlp:
        dtype = getattr(part, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise checks.type_error(call, "mlp", part, allowed)
    ok = (
        len(shapes[0]) == 1
        and shapes[1] == shapes[0]
        and len(shapes[2]) == 2
        and shapes[2][0] == shapes[0][0]
        and shapes[3] == shapes[2][1:]
        and (num_heads is None or shapes[3] == (num_heads,))
    )
    if not ok:
        raise checks.value_error(
            call,
            "mlp",
            checks.Shown(f"<shapes {shapes}>"),
            allowed.replace("num_heads", str(num_heads or "heads")),
        )
    return shapes[0][0], shapes[3][0]


def _check_scalar(call: str, name: str, value: Any) -> None:
    dtype = getattr(value, "dtype", None)
    if isinstance(value, bool) or (dtype is None and not isinstance(value, int | float)):
        raise checks.type_error(call, name, value, f"{name} must be a real scalar (a float or a scalar array)")
    if dtype is not None and (not jnp.issubdtype(dtype, jnp.floating) or np.shape(value) != ()):
        raise checks.type_error(call, name, value, f"{name} must be a floating scalar array")


def fire_bias(
    q_positions: jax.Array,
    k_positions: jax.Array,
    *,
    mlp: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
    c: jax.Array | float,
    threshold: jax.Array | float,
    eps: float = 1e-6,
) -> jax.Array:
    """The FIRE bias of every head, query and key (Li et al. 2024).

    ``b(i, j) = f_θ(ψ(|i - j|) / (ψ(max(|L|, i)) + eps))`` with ``ψ(x) = log(|c|·x + 1)`` and
    ``f_θ(u) = relu(u·w1 + b1) @ w2 + b2``, one output per head. ``i`` is the query position: keys after
    the query (``j > i``, non-causal use) get the bias of the key as far before it.

    Args:
      q_positions: integer or floating positions ``[q_len]`` or ``[batch, q_len]``.
      k_positions: integer or floating positions ``[k_len]`` or ``[batch, k_len]``.
      mlp: ``(w1 [width], b1 [width], w2 [width, num_heads], b2 [num_heads])``.
      c: the scale of ``ψ`` (its absolute value is used).
      threshold: ``L``, the position from which the normalizer stops growing (absolute value used).
      eps: added to the normalizer (the reference code's ``1e-6``), which keeps it positive.

    Returns:
      float32 ``[batch or 1, num_heads, q_len, k_len]``.

    Raises:
      TypeError: a malformed ``mlp``, non-scalar ``c`` / ``threshold``, bad position dtypes.
      ValueError: ``mlp`` shapes that do not fit together, a non-positive ``eps``, positions of rank other
        than 1 or 2 or with batch sizes that do not broadcast.

    >>> mlp = (jnp.ones(2), jnp.zeros(2), jnp.ones((2, 1)), jnp.zeros(1))  # f(u) = 2u for u >= 0
    >>> bias = fire_bias(jnp.arange(3), jnp.arange(3), mlp=mlp, c=1.0, threshold=1.0)
    >>> [round(float(b), 3) for b in bias[0, 0, 2]]  # 2 log(1 + |2 - j|) / log(3)
    [2.0, 1.262, 0.0]
    """
    call = "fire_bias"
    check_mlp(call, mlp)
    _check_scalar(call, "c", c)
    _check_scalar(call, "threshold", threshold)
    eps = checks.real_above(call, "eps", eps, 0.0)
    q2, k2 = pair_positions(call, q_positions, k_positions)
    return _fire(q2, k2, tuple(jnp.asarray(p) for p in mlp), jnp.asarray(c), jnp.asarray(threshold), eps=eps)


def query_positions_f32(q2) -> jax.Array:
    """Query positions as float32 ``[batch, q_len]`` (host float64 ones through their exact parts)."""
    if hasattr(q2, "whole"):
        return q2.whole.astype(jnp.float32) + q2.fraction
    return q2.astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("eps",))
def _fire(q2, k2, mlp, c, threshold, *, eps: float) -> jax.Array:
    w1, b1, w2, b2 = (p.astype(jnp.float32) for p in mlp)
    c = jnp.abs(c.astype(jnp.float32))
    threshold = jnp.abs(threshold.astype(jnp.float32))
    distance = jnp.log(c * jnp.abs(offsets(q2, k2, "fire_bias")) + 1.0)  # [batch, q_len, k_len]
    normalizer = jnp.log(c * jnp.maximum(query_positions_f32(q2), threshold) + 1.0) + eps  # [batch, q_len]
    # The normalized distance once at [batch, q_len, k_len], not once per hidden unit of the MLP's fusion.
    (u,) = computed_once(distance / normalizer[:, :, None])
    hidden = jax.nn.relu(u[..., None] * w1 + b1)  # [batch, q_len, k_len, width]
    out = jnp.einsum("bqkw,wh->bhqk", hidden, w2) + b2[None, :, None, None]
    return out


@dataclasses.dataclass(frozen=True)
class FIRE(SchemeDefaults):
    """FIRE (Li et al. 2024): a learned function of the progressively normalized distance, as a logits bias.

    ``b(i, j) = f_θ(ψ(|i - j|) / (ψ(max(|L|, i)) + eps))``, ``ψ(x) = log(|c|·x + 1)``, see
    :func:`posenc_jax.fire_bias` (and there how non-causal use is defined). A pytree whose leaves are the MLP's
    four arrays, ``c`` and ``threshold``; :class:`posenc_jax.nnx.FIRE` and :class:`posenc_jax.linen.FIRE`
    hold them as parameters and build it.

    Attributes:
      mlp: ``(w1 [width], b1 [width], w2 [width, num_heads], b2 [num_heads])``.
      c: scalar, the scale of ``ψ``.
      threshold: scalar ``L``.
      eps: added to the normalizer (keyword; the reference code's ``1e-6``).

    Raises:
      TypeError, ValueError: a malformed ``mlp``, non-scalar ``c`` / ``threshold``, a non-positive ``eps``.

    >>> mlp = (jnp.ones(4), jnp.zeros(4), jnp.ones((4, 2)), jnp.zeros(2))
    >>> FIRE(mlp, 0.1, 512.0).attention_bias(jnp.arange(3), jnp.arange(3)).shape
    (1, 2, 3, 3)
    """

    mlp: Any
    c: Any
    threshold: Any
    _: dataclasses.KW_ONLY
    eps: float = 1e-6

    def __post_init__(self):
        caller = "FIRE"
        if isinstance(self.mlp, tuple | list) and all(is_array(p) for p in self.mlp):
            check_mlp(caller, tuple(self.mlp))
            object.__setattr__(self, "mlp", tuple(self.mlp))
        for name in ("c", "threshold"):
            value = getattr(self, name)
            if is_array(value) or isinstance(value, int | float):
                _check_scalar(caller, name, value)
        object.__setattr__(self, "eps", checks.real_above(caller, "eps", self.eps, 0.0))

    def attention_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """The bias ``[batch or 1, num_heads, q_len, k_len]`` float32."""
        return fire_bias(
            q_positions, k_positions, mlp=self.mlp, c=self.c, threshold=self.threshold, eps=self.eps
        )

    def __call__(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """Same as :meth:`attention_bias`."""
        return self.attention_bias(q_positions, k_positions)


jax.tree_util.register_dataclass(FIRE, data_fields=["mlp", "c", "threshold"], meta_fields=["eps"])


#: The FIRE modules' parameter names, in the order of :meth:`FIREParameters.value`.
FIRE_PARAMETERS = ("hidden_kernel", "hidden_bias", "output_kernel", "output_bias", "c", "threshold_scale")


@dataclasses.dataclass(frozen=True)
class FIREParameters:
    """What the FIRE modules share: their checked fields, how the parameters are drawn, the value they build.

    Parameters (the reference code's): the MLP ``hidden_kernel`` ``[width]``, ``hidden_bias`` ``[width]``,
    ``output_kernel`` ``[width, num_heads]``, ``output_bias`` ``[num_heads]``, drawn uniform in
    ``±1/sqrt(fan_in)`` as a PyTorch ``Linear`` (fan_in 1, then ``width``); ``c`` (initially ``c``) and
    ``threshold_scale`` (initially 1): the threshold is ``L = threshold_scale · threshold``, so that a
    learning rate moves ``L`` in proportion to its size.
    """

    num_heads: int
    _: dataclasses.KW_ONLY
    width: int = 32
    c: float = 0.1
    threshold: float = 512.0
    eps: float = 1e-6
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        caller = "FIRE"
        object.__setattr__(self, "num_heads", checks.integer(caller, "num_heads", self.num_heads))
        object.__setattr__(self, "width", checks.integer(caller, "width", self.width))
        object.__setattr__(self, "c", checks.real_above(caller, "c", self.c, 0.0))
        object.__setattr__(self, "threshold", checks.real_above(caller, "threshold", self.threshold, 0.0))
        object.__setattr__(self, "eps", checks.real_above(caller, "eps", self.eps, 0.0))
        checks.floating_dtype(caller, self.param_dtype, "param_dtype")

    def _uniform(self, key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
        bound = 1.0 / np.sqrt(fan_in)
        return jax.random.uniform(key, shape, jnp.float32, -bound, bound).astype(self.param_dtype)

    def init_hidden_kernel(self, key: jax.Array, *_: Any) -> jax.Array:
        """``[width]``."""
        return self._uniform(key, (self.width,), 1)

    def init_hidden_bias(self, key: jax.Array, *_: Any) -> jax.Array:
        """``[width]``."""
        return self._uniform(key, (self.width,), 1)

    def init_output_kernel(self, key: jax.Array, *_: Any) -> jax.Array:
        """``[width, num_heads]``."""
        return self._uniform(key, (self.width, self.num_heads), self.width)

    def init_output_bias(self, key: jax.Array, *_: Any) -> jax.Array:
        """``[num_heads]``."""
        return self._uniform(key, (self.num_heads,), self.width)

    def init_c(self, *_: Any) -> jax.Array:
        """The initial ``c`` (a scalar)."""
        return jnp.asarray(self.c, self.param_dtype)

    def init_threshold_scale(self, *_: Any) -> jax.Array:
        """1 (a scalar)."""
        return jnp.ones((), self.param_dtype)

    def value(self, hidden_kernel, hidden_bias, output_kernel, output_bias, c, threshold_scale) -> FIRE:
        """The scheme value of these parameters."""
        mlp = (hidden_kernel, hidden_bias, output_kernel, output_bias)
        return FIRE(mlp, c, threshold_scale * self.threshold, eps=self.eps)
