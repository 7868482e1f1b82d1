"""The modules of the learned literature schemes (Kerple, FIRE, CoPE): the protocol through a value built
from the module's parameters.

Each such module holds a frozen configuration in ``scheme`` (its checked fields and how its parameters are
drawn and mapped) and returns its parameters from ``_params()``; ``scheme.value(*params)`` is the frozen
scheme value (of :mod:`posenc_jax.schemes`) that computes everything, so NNX, Linen and the value give the
same numbers with the same code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax

from posenc_jax._src.schemes import SchemeDefaults

__all__: list[str] = []


def is_array(value: object) -> bool:
    """Whether a dataclass field holds an array (values are pytrees: jax may rebuild them with other leaves)."""
    return isinstance(value, jax.Array) or hasattr(value, "__array__") and hasattr(value, "shape")


def is_concrete(value: object) -> bool:
    """Whether an array's values can be read now (not traced)."""
    return is_array(value) and not isinstance(value, jax.core.Tracer)


class ValueDelegating(SchemeDefaults):
    """The protocol's methods forwarded to ``self.scheme.value(*self._params())``.

    Placed before the module base class, so these methods take precedence over the plain delegation's.
    """

    if TYPE_CHECKING:
        scheme: Any

    def _params(self) -> tuple[Any, ...]:  # pragma: no cover - every module defines it
        raise NotImplementedError

    @property
    def needs_mask(self) -> bool:
        """Whether :func:`posenc_jax.attention` passes the visible keys to ``attention_logits_bias`` (CoPE)."""
        return bool(getattr(self.scheme, "needs_mask", False))

    def value(self) -> Any:
        """The frozen scheme value with this module's current parameters (a pytree: it passes ``jit``)."""
        return self.scheme.value(*self._params())

    def rotate(self, q, k, q_positions=None, k_positions=None):
        """Queries and keys transformed by the scheme (see :meth:`PositionalScheme.rotate`)."""
        return self.value().rotate(q, k, q_positions, k_positions)

    def attention_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array | None:
        """The attention-logit bias, or ``None`` (see :meth:`PositionalScheme.attention_bias`)."""
        return self.value().attention_bias(q_positions, k_positions)

    def attention_logits_bias(self, q, k, q_positions, k_positions, **kwargs: Any) -> jax.Array | None:
        """The content-dependent logits term, or ``None`` (:meth:`PositionalScheme.attention_logits_bias`)."""
        return self.value().attention_logits_bias(q, k, q_positions, k_positions, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """As the value's ``__call__``."""
        return self.value()(*args, **kwargs)
