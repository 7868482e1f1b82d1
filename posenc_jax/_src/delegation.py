"""How the Flax modules answer the protocol: each forwards every method to the scheme value it holds.

Mixed into the module base classes of :mod:`posenc_jax.nnx` and :mod:`posenc_jax.linen`, so that neither file
repeats a method body: each only declares its fields (and parameters) and builds the value.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import jax

__all__ = ["Delegating", "ParameterDelegating"]


class Delegating:
    """The protocol's methods of a Flax module, forwarded to the scheme value in ``self.scheme``."""

    if TYPE_CHECKING:
        scheme: Any  # set by each module: a value of posenc_jax.schemes

    def _value(self) -> Any:
        """The value to forward to: ``self.scheme`` (with the module's parameters, for those that have any)."""
        return self.scheme

    def embed(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """``x`` plus the scheme's absolute encoding (see :meth:`PositionalScheme.embed`)."""
        return self._value().embed(x, positions)

    def rotate(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None = None,
        k_positions: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Queries and keys transformed by the scheme (see :meth:`PositionalScheme.rotate`)."""
        return self._value().rotate(q, k, q_positions, k_positions)

    def attention_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array | None:
        """The attention-logit bias, or ``None`` (see :meth:`PositionalScheme.attention_bias`)."""
        return self._value().attention_bias(q_positions, k_positions)

    def attention_logits_bias(
        self,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array | None = None,
        k_positions: jax.Array | None = None,
    ) -> jax.Array | None:
        """The content-dependent logits term, or ``None`` (:meth:`PositionalScheme.attention_logits_bias`)."""
        return self._value().attention_logits_bias(q, k, q_positions, k_positions)

    def encode(self, positions: jax.Array) -> jax.Array:
        """The absolute encoding alone, ``positions.shape + (dim,)`` (absolute schemes only)."""
        return self._value().encode(positions)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """As the scheme's ``__call__`` (see :class:`PositionalScheme`): ``embed`` for absolute schemes,
        ``rotate`` for rotary, ``attention_bias`` for ALiBi and T5, ``attention_logits_bias`` for
        Transformer-XL."""
        return self._value()(*args, **kwargs)


class ParameterDelegating(Delegating):
    """A module with parameters: forwards to its value with the parameters from ``_parameters()`` filled in."""

    def _parameters(self) -> dict[str, jax.Array]:  # pragma: no cover - every module defines it
        raise NotImplementedError

    def _value(self) -> Any:
        return dataclasses.replace(self.scheme, **self._parameters())
