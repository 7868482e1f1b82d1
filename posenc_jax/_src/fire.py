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
from posenc_jax._src.distances import offsets, pair_positions
from posenc_jax._src.schemes import SchemeDefaults, _check_parameter, _parameter, _require

__all__ = ["FIRE", "FIRE_PARAMETERS", "fire_bias"]


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

    Integer positions beyond int32 (int64 under ``jax_enable_x64``): concrete ones raise; traced ones are
    used exactly: the distance is formed in their own width. With x64 off, JAX converts an int64 argument of
    ``jax.jit`` to int32 before this function sees it (``2**31 + 5`` arrives as ``-2**31 + 5``), which no
    library can detect: keep positions within int32 or enable x64.

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


#: The FIRE modules' parameter names.
FIRE_PARAMETERS = ("hidden_kernel", "hidden_bias", "output_kernel", "output_bias", "c", "threshold_scale")


@dataclasses.dataclass(frozen=True)
class FIRE(SchemeDefaults):
    """FIRE (Li et al. 2024): a learned function of the progressively normalized distance, as a logits bias.

    ``b(i, j) = f_θ(ψ(|i - j|) / (ψ(max(|L|, i)) + eps))``, ``ψ(x) = log(|c|·x + 1)``, see
    :func:`posenc_jax.fire_bias` (and there how non-causal use is defined). The value holds the configuration
    and, to be used on its own, the parameters: the MLP's ``hidden_kernel`` ``[width]``, ``hidden_bias``
    ``[width]``, ``output_kernel`` ``[width, num_heads]``, ``output_bias`` ``[num_heads]``, and the scalars
    ``c`` and ``threshold`` (``L``). :class:`posenc_jax.nnx.FIRE` and :class:`posenc_jax.linen.FIRE` hold the
    reference code's parameters: the MLP's, drawn uniform in ``±1/sqrt(fan_in)`` as a PyTorch ``Linear``;
    ``c`` (starting at ``initial_c``) and ``threshold_scale`` (starting at 1), with ``L = threshold_scale ·
    initial_threshold``, so that a learning rate moves ``L`` in proportion to its size.

    Attributes:
      num_heads: attention heads (positive).
      width: the MLP's hidden width (32 in the paper).
      initial_c: the modules' initial ``c`` (0.1 in the reference code).
      initial_threshold: the modules' initial ``L`` (512 in the reference code).
      eps: added to the normalizer (the reference code's ``1e-6``).
      hidden_kernel, hidden_bias, output_kernel, output_bias, c, threshold: the parameters, or None (then
        ``attention_bias`` raises).
      param_dtype: the dtype of the modules' parameters.

    Raises:
      TypeError, ValueError: non-positive sizes, ``initial_c``, ``initial_threshold`` or ``eps``, a bad
        ``param_dtype``, parameters of the wrong shape.

    >>> mlp = dict(hidden_kernel=jnp.ones(4), hidden_bias=jnp.zeros(4), output_kernel=jnp.ones((4, 2)),
    ...            output_bias=jnp.zeros(2))
    >>> scheme = FIRE(2, width=4, c=jnp.float32(0.1), threshold=jnp.float32(512.0), **mlp)
    >>> scheme.attention_bias(jnp.arange(3), jnp.arange(3)).shape
    (1, 2, 3, 3)
    """

    num_heads: int
    _: dataclasses.KW_ONLY
    width: int = 32
    initial_c: float = 0.1
    initial_threshold: float = 512.0
    eps: float = 1e-6
    hidden_kernel: Any = _parameter("the MLP's hidden kernel [width]")
    hidden_bias: Any = _parameter("the MLP's hidden bias [width]")
    output_kernel: Any = _parameter("the MLP's output kernel [width, num_heads]")
    output_bias: Any = _parameter("the MLP's output bias [num_heads]")
    c: Any = _parameter("the scale c of psi (a scalar)")
    threshold: Any = _parameter("the threshold L (a scalar)")
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        caller = "FIRE"
        object.__setattr__(self, "num_heads", checks.integer(caller, "num_heads", self.num_heads))
        object.__setattr__(self, "width", checks.integer(caller, "width", self.width))
        object.__setattr__(self, "initial_c", checks.real_above(caller, "initial_c", self.initial_c, 0.0))
        initial_threshold = checks.real_above(caller, "initial_threshold", self.initial_threshold, 0.0)
        object.__setattr__(self, "initial_threshold", initial_threshold)
        object.__setattr__(self, "eps", checks.real_above(caller, "eps", self.eps, 0.0))
        checks.floating_dtype(caller, self.param_dtype, "param_dtype")
        shapes = {
            "hidden_kernel": (self.width,),
            "hidden_bias": (self.width,),
            "output_kernel": (self.width, self.num_heads),
            "output_bias": (self.num_heads,),
            "c": (),
            "threshold": (),
        }
        for name, shape in shapes.items():
            _check_parameter(getattr(self, name), name, shape, caller)

    def attention_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """The bias ``[batch or 1, num_heads, q_len, k_len]`` float32."""
        call = "FIRE.attention_bias"
        names = ("hidden_kernel", "hidden_bias", "output_kernel", "output_bias", "c", "threshold")
        w1, b1, w2, b2, c, threshold = (_require(getattr(self, n), n, call, "FIRE") for n in names)
        return fire_bias(q_positions, k_positions, mlp=(w1, b1, w2, b2), c=c, threshold=threshold, eps=self.eps)

    def __call__(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
        """Same as :meth:`attention_bias`."""
        return self.attention_bias(q_positions, k_positions)

    # What the modules use: their parameters, drawn here once for NNX and Linen.

    def _uniform(self, key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
        bound = 1.0 / np.sqrt(fan_in)
        return jax.random.uniform(key, shape, jnp.float32, -bound, bound).astype(self.param_dtype)

    def init_hidden_kernel(self, key: jax.Array, *_: Any) -> jax.Array:
        """``[width]``, uniform in ±1 (fan-in 1)."""
        return self._uniform(key, (self.width,), 1)

    def init_hidden_bias(self, key: jax.Array, *_: Any) -> jax.Array:
        """``[width]``, uniform in ±1."""
        return self._uniform(key, (self.width,), 1)

    def init_output_kernel(self, key: jax.Array, *_: Any) -> jax.Array:
        """``[width, num_heads]``, uniform in ``±1/sqrt(width)``."""
        return self._uniform(key, (self.width, self.num_heads), self.width)

    def init_output_bias(self, key: jax.Array, *_: Any) -> jax.Array:
        """``[num_heads]``, uniform in ``±1/sqrt(width)``."""
        return self._uniform(key, (self.num_heads,), self.width)

    def init_c(self, *_: Any) -> jax.Array:
        """``initial_c`` (a scalar)."""
        return jnp.asarray(self.initial_c, self.param_dtype)

    def init_threshold_scale(self, *_: Any) -> jax.Array:
        """1 (a scalar)."""
        return jnp.ones((), self.param_dtype)

    def from_module(self, hidden_kernel, hidden_bias, output_kernel, output_bias, c, threshold_scale) -> dict:
        """The value's parameters from the modules' (``threshold = threshold_scale · initial_threshold``)."""
        return {
            "hidden_kernel": hidden_kernel,
            "hidden_bias": hidden_bias,
            "output_kernel": output_kernel,
            "output_bias": output_bias,
            "c": c,
            "threshold": threshold_scale * self.initial_threshold,
        }
