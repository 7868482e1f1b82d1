"""How the Flax modules answer the protocol: each forwards every method to the frozen scheme value it
computes with, :meth:`Delegating.value`.

Mixed into the module base classes of :mod:`posenc_jax.nnx` and :mod:`posenc_jax.linen`, so that neither file
repeats a method body: each only declares its fields (and parameters) and builds the value. A module without
parameters holds its value in ``scheme``; a module with parameters holds the value without them and fills
them in from ``_parameters()`` (``Learned``, ``T5Bias``, ``TransformerXLRelative``, and ``Kerple``, ``FIRE``,
``CoPE``, whose modules map their unconstrained parameters to the value's), so NNX, Linen and the value give
the same numbers with the same code.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import jax

__all__ = ["Delegating", "ParameterDelegating", "is_array", "is_concrete"]


def is_array(value: object) -> bool:
    """Whether a dataclass field holds an array (values are pytrees: jax may rebuild them with other leaves)."""
    return isinstance(value, jax.Array) or hasattr(value, "__array__") and hasattr(value, "shape")


def is_concrete(value: object) -> bool:
    """Whether an array's values can be read now (not traced)."""
    return is_array(value) and not isinstance(value, jax.core.Tracer)


class Delegating:
    """The protocol's methods of a Flax module, forwarded to :meth:`value`."""

    if TYPE_CHECKING:
        scheme: Any  # set by each module

    def value(self) -> Any:
        """The frozen scheme value (of :mod:`posenc_jax.schemes`) this module computes with, parameters
        included: usable on its own, e.g. passed through ``jax.jit``."""
        return self.scheme

    @property
    def needs_mask(self) -> bool:
        """Whether :func:`posenc_jax.attention` passes the visible keys to ``attention_logits_bias`` (CoPE)."""
        return bool(getattr(self.scheme, "needs_mask", False))

    def embed(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """``x`` plus the scheme's absolute encoding (see :meth:`PositionalScheme.embed`)."""
        return self.value().embed(x, positions)

    def rotate(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None = None,
        k_positions: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Queries and keys transformed by the scheme (see :meth:`PositionalScheme.rotate`)."""
        return self.value().rotate(q, k, q_positions, k_positions)

    def attention_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array | None:
        """The attention-logit bias, or ``None`` (see :meth:`PositionalScheme.attention_bias`)."""
        return self.value().attention_bias(q_positions, k_positions)

    def attention_logits_bias(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None = None,
        k_positions: jax.Array | None = None,
        **kwargs: Any,
    ) -> jax.Array | None:
        """The content-dependent logits term, or ``None`` (:meth:`PositionalScheme.attention_logits_bias`)."""
        return self.value().attention_logits_bias(q, k, q_positions, k_positions, **kwargs)

    def encode(self, positions: jax.Array) -> jax.Array:
        """The absolute encoding alone, ``positions.shape + (dim,)`` (absolute schemes only)."""
        return self.value().encode(positions)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """As the value's ``__call__`` (see :class:`PositionalScheme`): ``embed`` for absolute schemes,
        ``rotate`` for rotary ones, ``attention_bias`` for bias schemes, ``attention_logits_bias`` for
        content-dependent ones."""
        return self.value()(*args, **kwargs)


class ParameterDelegating(Delegating):
    """A module whose value takes its parameters as fields, filled in from ``_parameters()``."""

    def _parameters(self) -> dict[str, jax.Array]:  # pragma: no cover - every module defines it
        raise NotImplementedError

    def value(self) -> Any:
        """The frozen scheme value with this module's current parameters."""
        return dataclasses.replace(self.scheme, **self._parameters())
