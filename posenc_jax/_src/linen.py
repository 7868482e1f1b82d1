"""Positional schemes as Flax Linen modules: the classes of :mod:`posenc_jax.nnx`, same names, same numbers.

Constructor arguments become dataclass fields (no ``rngs``: :class:`Learned` draws its table in ``init``).
Each module builds the frozen scheme value of :mod:`posenc_jax.schemes` from its fields (checked at
construction) and delegates to it. Use them as submodules of a Linen model, or directly through ``init`` /
``apply``; methods other than ``__call__`` are reached with ``apply(..., method=...)`` or from a parent module.

>>> import jax
>>> import jax.numpy as jnp
>>> x = jnp.zeros((2, 5, 8))  # [batch, length, dim]
>>> Sinusoidal(8).apply({}, x).shape
(2, 5, 8)
>>> learned = Learned(16, 8)
>>> variables = learned.init(jax.random.key(0), x)
>>> learned.apply(variables, x, positions=jnp.arange(3, 8)).shape
(2, 5, 8)
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from posenc_jax._src import cope, fire, kerple, schemes, xpos
from posenc_jax._src.delegation import Delegating, ParameterDelegating
from posenc_jax._src.frequencies import Frequencies

__all__ = [
    "ALiBi",
    "CoPE",
    "FIRE",
    "Kerple",
    "Learned",
    "NoPosition",
    "Rotary",
    "Sinusoidal",
    "T5Bias",
    "TransformerXLRelative",
    "XPos",
]


class _Scheme(Delegating, nn.Module):
    """A Linen module whose fields build a scheme value (class attribute ``scheme_type``) at construction."""

    scheme_type: ClassVar[type[Any]] = schemes.NoPosition

    def __post_init__(self):
        fields = {name: getattr(self, name) for name in schemes.configuration_fields(self.scheme_type)}
        object.__setattr__(self, "scheme", self.scheme_type(**fields))  # Linen modules are frozen
        super().__post_init__()


class NoPosition(_Scheme):
    """The baseline: no positional information at all (``embed``/``rotate`` identity, no bias).

    >>> NoPosition().apply({}, jnp.ones((1, 3, 4))).sum()
    Array(12., dtype=float32)
    """

    def __repr__(self) -> str:
        return repr(self.scheme)


class Sinusoidal(_Scheme):
    """The fixed sinusoidal encoding of "Attention is all you need", added to the token embeddings.

    No parameters. Fields as :class:`posenc_jax.nnx.Sinusoidal` (see :class:`posenc_jax.schemes.Sinusoidal`).

    Attributes:
      the fields of :class:`posenc_jax.schemes.Sinusoidal`: same names, same defaults, same checks.

    >>> Sinusoidal(4).apply({}, jnp.arange(2), method="encode").shape
    (2, 4)
    """

    scheme_type = schemes.Sinusoidal
    dim: int
    base: float = 10_000.0
    layout: str = "interleaved"
    frequencies: Frequencies | None = None
    dtype: Any = None


class Learned(ParameterDelegating, _Scheme):
    """A trainable table of ``max_length`` position vectors, added to the token embeddings.

    The table is the parameter ``embedding`` ``[max_length, dim]`` of ``param_dtype`` (the field names of
    ``nn.Embed``). Out-of-range positions follow ``out_of_range`` exactly as in
    :class:`posenc_jax.nnx.Learned`, whose docstring explains the default ``"nan"``.

    Attributes:
      the arguments of :class:`posenc_jax.nnx.Learned` but ``rngs``: ``max_length``, ``dim``,
      ``embedding_init`` (``nn.with_partitioning`` works for sharded tables), ``dtype``, ``param_dtype``,
      ``out_of_range``; same defaults.

    >>> module = Learned(8, 4)
    >>> variables = module.init(jax.random.key(0), jnp.zeros((1, 8, 4)))
    >>> variables["params"]["embedding"].shape
    (8, 4)
    """

    scheme_type = schemes.Learned
    max_length: int
    dim: int
    embedding_init: Any = nn.initializers.normal(stddev=0.02)
    dtype: Any = None
    param_dtype: Any = jnp.float32
    out_of_range: str = "nan"

    def setup(self):
        self.embedding = self.param(
            "embedding", self.embedding_init, (self.scheme.max_length, self.scheme.dim), self.param_dtype
        )

    def _parameters(self) -> dict[str, jax.Array]:
        return {"table": jnp.asarray(self.embedding)}


class Rotary(_Scheme):
    """Rotary position embeddings: rotates queries and keys by their positions (:func:`apply_rotary`).

    No parameters. Fields as :class:`posenc_jax.nnx.Rotary` (see :class:`posenc_jax.schemes.Rotary`).

    Attributes:
      the fields of :class:`posenc_jax.schemes.Rotary`: same names, same defaults, same checks.

    ``layout`` is required, as for :class:`posenc_jax.nnx.Rotary`: ``"split"`` for Llama / Hugging Face /
    Gemma / GPT-NeoX / MaxText checkpoints, ``"interleaved"`` for GPT-J / RoFormer / the paper's pairing.

    >>> q = k = jnp.ones((1, 3, 2, 8))
    >>> [a.shape for a in Rotary(8, layout="split").apply({}, q, k)]
    [(1, 3, 2, 8), (1, 3, 2, 8)]
    """

    scheme_type = schemes.Rotary
    head_dim: int
    layout: str | None = None
    base: float = 10_000.0
    rotary_dim: int | None = None
    frequencies: Frequencies | None = None
    scaling: Any = None
    proportion: float = 1.0


class ALiBi(_Scheme):
    """ALiBi: a per-head linear distance penalty on attention logits (:func:`alibi_bias`).

    No parameters. Fields as :class:`posenc_jax.nnx.ALiBi`; :class:`posenc_jax.schemes.ALiBi` explains the
    default ``is_causal=False``.

    Attributes:
      the fields of :class:`posenc_jax.schemes.ALiBi`: same names, same defaults, same checks.

    >>> ALiBi(4).apply({}, jnp.arange(3), jnp.arange(3)).shape
    (1, 4, 3, 3)
    """

    scheme_type = schemes.ALiBi
    num_heads: int
    is_causal: bool = False


class T5Bias(ParameterDelegating, _Scheme):
    """T5's relative attention bias: a learned scalar per head and bucket of ``k_pos - q_pos``.

    The table is the parameter ``embedding`` ``[num_buckets, num_heads]``. Fields as
    :class:`posenc_jax.nnx.T5Bias` (see :class:`posenc_jax.schemes.T5Bias`).

    Attributes:
      the arguments of :class:`posenc_jax.nnx.T5Bias` but ``rngs``: ``num_heads``, ``is_causal`` (no
      default), ``num_buckets``, ``max_distance``, ``embedding_init``, ``dtype``, ``param_dtype``; same
      defaults.

    >>> module = T5Bias(4, is_causal=True)
    >>> variables = module.init(jax.random.key(0), jnp.arange(3), jnp.arange(3))
    >>> module.apply(variables, jnp.arange(3), jnp.arange(3)).shape
    (1, 4, 3, 3)
    """

    scheme_type = schemes.T5Bias
    num_heads: int
    is_causal: bool
    num_buckets: int = 32
    max_distance: int = 128
    embedding_init: Any = schemes.T5_EMBEDDING_INIT
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def setup(self):
        self.embedding = self.param("embedding", self.embedding_init, self.scheme.table_shape, self.param_dtype)

    def _parameters(self) -> dict[str, jax.Array]:
        return {"table": jnp.asarray(self.embedding)}


class TransformerXLRelative(ParameterDelegating, _Scheme):
    """Transformer-XL's relative attention (Dai et al. 2019): a content-dependent term of the logits.

    Parameters ``kernel`` (``W_R``), ``content_bias`` (``u``) and ``position_bias`` (``v``); fields as
    :class:`posenc_jax.nnx.TransformerXLRelative` (see :class:`posenc_jax.schemes.TransformerXLRelative`).

    Attributes:
      the arguments of :class:`posenc_jax.nnx.TransformerXLRelative` but ``rngs``: ``num_heads``,
      ``head_dim``, ``rel_dim``, ``base``, ``scale``, ``kernel_init``, ``bias_init``, ``dtype``,
      ``param_dtype``; same defaults.

    >>> q = k = jnp.ones((1, 3, 2, 4))
    >>> module = TransformerXLRelative(2, 4)
    >>> variables = module.init(jax.random.key(0), q, k)
    >>> module.apply(variables, q, k, jnp.arange(3), jnp.arange(3)).shape
    (1, 2, 3, 3)
    """

    scheme_type = schemes.TransformerXLRelative
    num_heads: int
    head_dim: int
    rel_dim: int | None = None
    base: float = 10_000.0
    scale: float | None = None
    kernel_init: Any = schemes.TRANSFORMER_XL_KERNEL_INIT
    bias_init: Any = nn.initializers.zeros
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def setup(self):
        shape = self.scheme.bias_shape
        self.kernel = self.param("kernel", self.kernel_init, self.scheme.kernel_shape, self.param_dtype)
        self.content_bias = self.param("content_bias", self.bias_init, shape, self.param_dtype)
        self.position_bias = self.param("position_bias", self.bias_init, shape, self.param_dtype)

    def _parameters(self) -> dict[str, jax.Array]:
        return {
            "kernel": jnp.asarray(self.kernel),
            "content_bias": jnp.asarray(self.content_bias),
            "position_bias": jnp.asarray(self.position_bias),
        }


# ------------------------------------------------------------- the length-generalization literature


class Kerple(ParameterDelegating, _Scheme):
    """KERPLE (Chi et al. 2022): ``-r1·log(1 + r2·|i - j|)`` or ``-r1·|i - j|^r2`` per head, learned.

    Parameters ``r1_raw`` and ``r2_raw`` as :class:`posenc_jax.nnx.Kerple` (positive by construction).

    Attributes:
      the arguments of :class:`posenc_jax.nnx.Kerple` but ``rngs``: ``num_heads``, ``kernel`` (no default),
      ``param_dtype``.

    >>> module = Kerple(4, kernel="power")
    >>> variables = module.init(jax.random.key(0), jnp.arange(3), jnp.arange(3))
    >>> module.apply(variables, jnp.arange(3), jnp.arange(3)).shape
    (1, 4, 3, 3)
    """

    scheme_type = kerple.Kerple
    num_heads: int
    kernel: str
    param_dtype: Any = jnp.float32

    def setup(self):
        self.r1_raw = self.param("r1_raw", self.scheme.init_r1_raw)
        self.r2_raw = self.param("r2_raw", self.scheme.init_r2_raw)

    def _parameters(self) -> dict[str, jax.Array]:
        return self.scheme.constrained(jnp.asarray(self.r1_raw), jnp.asarray(self.r2_raw))


class FIRE(ParameterDelegating, _Scheme):
    """FIRE (Li et al. 2024): ``f_θ(ψ(i - j) / ψ(max(L, i)))``, ``ψ(x) = log(c·x + 1)``, learned.

    Parameters as :class:`posenc_jax.nnx.FIRE`.

    Attributes:
      the arguments of :class:`posenc_jax.nnx.FIRE` but ``rngs``: ``num_heads``, ``width``, ``initial_c``,
      ``initial_threshold``, ``eps``, ``param_dtype``; same defaults.

    >>> module = FIRE(4)
    >>> variables = module.init(jax.random.key(0), jnp.arange(3), jnp.arange(3))
    >>> module.apply(variables, jnp.arange(3), jnp.arange(3)).shape
    (1, 4, 3, 3)
    """

    scheme_type = fire.FIRE
    num_heads: int
    width: int = 32
    initial_c: float = 0.1
    initial_threshold: float = 512.0
    eps: float = 1e-6
    param_dtype: Any = jnp.float32

    def setup(self):
        self.parameters = tuple(
            self.param(name, getattr(self.scheme, f"init_{name}")) for name in fire.FIRE_PARAMETERS
        )

    def _parameters(self) -> dict[str, jax.Array]:
        return self.scheme.from_module(*(jnp.asarray(p) for p in self.parameters))


class CoPE(ParameterDelegating, _Scheme):
    """CoPE (Golovneva et al. 2024): the term ``q_i·e[p_ij]`` at contextual positions ``p_ij``, learned ``e``.

    Parameter ``embedding`` ``[npos, head_dim]`` as :class:`posenc_jax.nnx.CoPE`.

    Attributes:
      the arguments of :class:`posenc_jax.nnx.CoPE` but ``rngs``: ``npos``, ``head_dim``, ``scale``,
      ``embedding_init``, ``param_dtype``; same defaults.

    >>> q = k = jnp.ones((1, 3, 2, 4))
    >>> module = CoPE(8, 4)
    >>> variables = module.init(jax.random.key(0), q, k)
    >>> module.apply(variables, q, k).shape
    (1, 2, 3, 3)
    """

    scheme_type = cope.CoPE
    npos: int
    head_dim: int
    scale: float | None = None
    embedding_init: Any = nn.initializers.zeros
    param_dtype: Any = jnp.float32

    def setup(self):
        shape = self.scheme.embedding_shape
        self.embedding = self.param("embedding", self.embedding_init, shape, self.param_dtype)

    def _parameters(self) -> dict[str, jax.Array]:
        return {"embedding": jnp.asarray(self.embedding)}


class XPos(_Scheme):
    """xPos (Sun et al. 2022): rotary embeddings whose pairs decay with distance (no parameters).

    Attributes:
      the fields of :class:`posenc_jax.schemes.XPos`: same names, same defaults, same checks.

    >>> q = k = jnp.ones((1, 3, 2, 8))
    >>> [a.shape for a in XPos(8, layout="split").apply({}, q, k)]
    [(1, 3, 2, 8), (1, 3, 2, 8)]
    """

    scheme_type = xpos.XPos
    head_dim: int
    layout: str
    base: float = 10_000.0
    scale_base: float = 512.0
    gamma: float = 0.4
    center: int | None = None
