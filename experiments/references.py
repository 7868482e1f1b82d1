"""The formulas the experiments measure against: float64 numpy evaluations and the naive float32 JAX versions.

``PE(pos, 2i) = sin(pos · w_i)`` and ``PE(pos, 2i+1) = cos(pos · w_i)`` (the paper's interleaved layout; the
split layout puts every sine before every cosine), and the rotary rotation of each pair ``(a, b)`` by the
angle ``pos · w_i``: ``(a cos - b sin, b cos + a sin)``. The float64 versions are exact to float32 accuracy
at any position below ``2**31``; the naive ones form ``pos * w`` in float32, as other libraries do, and are
off by about ``|pos · w| · 6e-8``. The frequencies default to the paper's ``10000 ** (-2i / dim)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax import paper_frequencies


def _pairs(dim: int, layout: str, caller: str) -> tuple[Any, Any]:
    """Indices of the first and second member of every pair of ``dim`` features in ``layout``."""
    if layout == "interleaved":
        return slice(0, dim, 2), slice(1, dim, 2)
    if layout == "split":
        return slice(0, dim // 2), slice(dim // 2, dim)
    raise ValueError(f"{caller}(layout={layout!r}): layout must be 'interleaved' or 'split', got {layout!r}")


def angles64(positions: Any, frequencies: np.ndarray) -> np.ndarray:
    """The angles ``pos · w_i`` in float64: ``[*positions.shape, len(frequencies)]``.

    >>> angles64([2], np.array([0.5, 1.0])).tolist()
    [[1.0, 2.0]]
    """
    return np.asarray(positions, np.float64)[..., None] * np.asarray(frequencies, np.float64)


def sinusoidal64(
    positions: Any, dim: int, *, frequencies: np.ndarray | None = None, layout: str = "interleaved"
) -> np.ndarray:
    """The sinusoidal encoding evaluated in float64 numpy: ``[*positions.shape, dim]``.

    Args:
      positions: integer or real positions, any shape.
      dim: the encoding width (even).
      frequencies: ``[dim / 2]`` frequencies ``w_i``; the paper's when None.
      layout: ``"interleaved"`` (sin, cos per pair) or ``"split"`` (all sines, then all cosines).

    Returns:
      The float64 encoding.

    >>> sinusoidal64([0], 4).tolist()
    [[0.0, 1.0, 0.0, 1.0]]
    """
    angle = angles64(positions, paper_frequencies(dim) if frequencies is None else frequencies)
    out = np.empty(angle.shape[:-1] + (dim,), dtype=np.float64)
    first, second = _pairs(dim, layout, "sinusoidal64")
    out[..., first], out[..., second] = np.sin(angle), np.cos(angle)
    return out


def rotate64(
    x: Any, positions: Any, *, frequencies: np.ndarray | None = None, layout: str = "interleaved"
) -> np.ndarray:
    """The rotary rotation of ``x`` in float64: every pair turned by ``pos · w_i``.

    Args:
      x: ``[..., head_dim]`` features.
      positions: positions broadcasting against ``x.shape[:-1]`` (e.g. ``[length, 1]`` for
        ``x`` ``[batch, length, heads, head_dim]``).
      frequencies: ``[head_dim / 2]`` frequencies; the paper's when None.
      layout: which features form a pair, ``"interleaved"`` or ``"split"``.

    Returns:
      The rotated ``x``, float64, ``x``'s shape.

    >>> np.round(rotate64(np.array([1.0, 0.0]), 1, frequencies=np.array([np.pi / 2])), 12).tolist()
    [0.0, 1.0]
    """
    x = np.asarray(x, np.float64)
    head_dim = x.shape[-1]
    theta = angles64(positions, paper_frequencies(head_dim) if frequencies is None else frequencies)
    first, second = _pairs(head_dim, layout, "rotate64")
    out = np.empty(np.broadcast_shapes(x.shape, theta.shape[:-1] + (head_dim,)), dtype=np.float64)
    out[..., first] = x[..., first] * np.cos(theta) - x[..., second] * np.sin(theta)
    out[..., second] = x[..., second] * np.cos(theta) + x[..., first] * np.sin(theta)
    return out


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
    _pairs(dim, layout, "naive_sinusoidal")  # rejects an unknown layout
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
