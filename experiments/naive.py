"""What other libraries compute: the sinusoidal encoding and the rotary rotation with float32 angles.

The baselines of the accuracy tables and the benchmarks. They form ``pos * w`` in float32, as most code does,
and are off by about ``|pos · w| · 6e-8``; the exact float64 formulas they are measured against live in
``tests/references.py`` (numpy only), shared with the library's tests.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tests.references import paper_inverse_frequencies as paper_frequencies


def naive_angles(positions: jax.Array, frequencies: np.ndarray) -> jax.Array:
    """The angles as other libraries form them: ``pos * inv_freq`` in float32, ``[*positions.shape, pairs]``."""
    return jnp.asarray(positions).astype(jnp.float32)[..., None] * jnp.asarray(frequencies, jnp.float32)


def naive_sinusoidal(
    positions: jax.Array, dim: int, *, frequencies: np.ndarray | None = None, layout: str = "interleaved"
) -> jax.Array:
    """What people write by hand: float32 angles, then sin and cos; float32 ``[*positions.shape, dim]``.

    Args:
      positions: positions, any shape (converted to float32 first).
      dim: the encoding width (even).
      frequencies: ``[dim / 2]`` frequencies; the paper's when None.
      layout: ``"interleaved"`` or ``"split"``.

    Returns:
      The float32 encoding.
    """
    angle = naive_angles(positions, paper_frequencies(dim) if frequencies is None else frequencies)
    if layout not in ("interleaved", "split"):
        raise ValueError(f"naive_sinusoidal(layout={layout!r}): layout must be 'interleaved' or 'split'")
    if layout == "split":
        return jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1).reshape(angle.shape[:-1] + (dim,))


def naive_rotate_half(x: jax.Array, positions: jax.Array, frequencies: np.ndarray | None = None) -> jax.Array:
    """The rotation often written by hand (the Hugging Face / GPT-NeoX formulation), split layout.

    float32 angles ``pos * w``, ``cos``/``sin`` of the duplicated ``[..., head_dim]`` angles, and
    ``x * cos + rotate_half(x) * sin``.

    Args:
      x: ``[batch, length, heads, head_dim]``.
      positions: ``[length]`` or ``[batch, length]``.
      frequencies: ``[head_dim / 2]`` frequencies; the paper's when None.

    Returns:
      The rotated ``x``, in ``x``'s dtype.
    """
    head_dim = x.shape[-1]
    angles = naive_angles(positions, paper_frequencies(head_dim) if frequencies is None else frequencies)
    angles = jnp.concatenate([angles, angles], axis=-1)[..., None, :]
    cos, sin = jnp.cos(angles).astype(x.dtype), jnp.sin(angles).astype(x.dtype)
    half = head_dim // 2
    rotated_half = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated_half * sin


def max_abs_error(got: Any, want: Any) -> float:
    """``max |got - want|``, both taken to float64 first.

    >>> max_abs_error(np.float32([1.0, 2.0]), [1.0, 2.5])
    0.5
    """
    return float(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)).max())
