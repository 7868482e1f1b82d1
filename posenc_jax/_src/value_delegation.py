"""The learned literature schemes (Kerple, FIRE, CoPE): parameter fields of the values, and their modules'
delegation.

A value holds its configuration and, optionally, its parameters (fields made with :func:`parameter`, left
out of ``==`` and ``hash``). Each module holds the value without parameters in ``scheme`` and returns its
parameters from ``_parameters()`` (mapped to the value's fields, e.g. ``softplus`` of an unconstrained
array); :meth:`ValueDelegating.value` fills them in, so NNX, Linen and the value compute the same numbers with
the same code.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._src import checks
from posenc_jax._src.schemes import SchemeDefaults

__all__: list[str] = []


def parameter(doc: str) -> Any:
    """A field holding a parameter array: optional, left out of ``==``, ``hash`` and ``repr``."""
    return dataclasses.field(default=None, compare=False, repr=False, metadata={"parameter": doc})


def configuration_fields(scheme_type: type) -> tuple[str, ...]:
    """The names of a scheme value's configuration fields (its parameters, held by the modules, left out)."""
    return tuple(f.name for f in dataclasses.fields(scheme_type) if "parameter" not in f.metadata)


def is_concrete(value: object) -> bool:
    """Whether an array's values can be read now (not traced)."""
    return value is not None and not isinstance(value, jax.core.Tracer)


def check_parameter(value: Any, name: str, shape: tuple[int, ...], caller: str) -> None:
    """A parameter, when given, must be a floating array of the configured shape."""
    if value is None:
        return
    dtype = getattr(value, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise checks.type_error(caller, name, value, f"{name} must be a floating array {list(shape)}")
    if tuple(np.shape(value)) != shape:
        raise checks.value_error(caller, name, value, f"{name} must have shape {list(shape)} for this scheme")


def require(value: Any, name: str, caller: str, module: str) -> Any:
    """``value``, or an error naming the parameter this value lacks and where it is held."""
    if value is None:
        raise checks.value_error(
            caller,
            name,
            None,
            f"this value holds no {name}",
            f"pass {name}= to the value, or use posenc_jax.nnx.{module} / posenc_jax.linen.{module}, which "
            "hold it as a parameter",
        )
    return value


class ValueDelegating(SchemeDefaults):
    """The protocol's methods forwarded to :meth:`value`: ``self.scheme`` with the module's parameters
    (``self._parameters()``, mapped to the value's fields) filled in.

    Placed before the module base class, so these methods take precedence over the plain delegation's.
    """

    if TYPE_CHECKING:
        scheme: Any

    def _parameters(self) -> dict[str, Any]:  # pragma: no cover - every module defines it
        raise NotImplementedError

    @property
    def needs_mask(self) -> bool:
        """Whether :func:`posenc_jax.attention` passes the visible keys to ``attention_logits_bias`` (CoPE)."""
        return bool(getattr(self.scheme, "needs_mask", False))

    def value(self) -> Any:
        """The scheme value holding this module's current parameters (of :mod:`posenc_jax.schemes`)."""
        return dataclasses.replace(self.scheme, **self._parameters())

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
