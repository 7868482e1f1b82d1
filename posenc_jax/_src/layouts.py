"""How the (sin, cos) pairs of an encoding are laid out along the feature axis.

Every encoding in posenc_jax is a set of ``n = dim / 2`` pairs. Pair ``i`` belongs to the frequency ``w_i``.
Two layouts place the pairs on the ``dim`` features:

* ``"interleaved"`` (the paper, GPT-J / original LLaMA rotary): pair ``i`` occupies dimensions ``2i`` and
  ``2i + 1``. ``[s0, c0, s1, c1, ...]``.
* ``"split"`` (the Flax examples, tensor2tensor, praxis, MaxText; GPT-NeoX / Hugging Face / Gemma rotary):
  pair ``i`` occupies dimensions ``i`` and ``i + dim/2``. ``[s0, s1, ..., c0, c1, ...]``.

The same words mean the same pairing everywhere in the package, for sinusoidal tables and for rotary
embeddings alike. Converting between them is a fixed permutation of one axis.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._src import checks

__all__ = ["Layout", "interleaved_to_split", "split_to_interleaved"]

Layout = Literal["interleaved", "split"]
_LAYOUTS: tuple[str, ...] = ("interleaved", "split")


def check_layout(call: str, layout: object) -> Layout:
    """``layout`` if it is one of the layouts' names, else ``ValueError`` naming ``call``."""
    return checks.one_of(call, "layout", layout, _LAYOUTS)  # type: ignore[return-value]


#: Which checkpoints pair their rotary features which way; every rotary call and value must say (no default).
ROTARY_LAYOUTS_BY_CHECKPOINT = (
    '"split" for Llama / Hugging Face / Gemma / GPT-NeoX / MaxText checkpoints, "interleaved" for GPT-J / '
    "RoFormer / the paper's pairing"
)


def check_rotary_layout(call: str, layout: object) -> Layout:
    """``layout`` of a rotary call: required (``None``, the missing value, is a ``TypeError``), then checked."""
    if layout is None:
        raise checks.type_error(
            call,
            "layout",
            layout,
            "layout is required for rotary embeddings (it has no default)",
            f"pass layout={ROTARY_LAYOUTS_BY_CHECKPOINT}",
        )
    return check_layout(call, layout)


def _feature_axis(call: str, x: jax.Array, axis: object) -> tuple[int, int]:
    """The checked feature axis of ``x`` (an int of its rank) and its size, which must be even."""
    index = checks.axis(call, axis, x.ndim)
    size = x.shape[index]
    if size % 2:
        raise checks.value_error(
            call, "x", x, f"the size of axis {axis} of x must be even (pairs of features), got {size}"
        )
    return index, size


def split_permutation(dim: int) -> np.ndarray:
    """Indices ``perm`` with ``split = interleaved[..., perm]`` for a feature axis of size ``dim``.

    >>> split_permutation(6)
    array([0, 2, 4, 1, 3, 5])
    """
    return np.concatenate([np.arange(0, dim, 2), np.arange(1, dim, 2)])


def interleaved_permutation(dim: int) -> np.ndarray:
    """Indices ``perm`` with ``interleaved = split[..., perm]``; the inverse of :func:`split_permutation`.

    >>> interleaved_permutation(6)
    array([0, 3, 1, 4, 2, 5])
    """
    return np.argsort(split_permutation(dim))


def interleaved_to_split(x: jax.Array, *, axis: int = -1) -> jax.Array:
    """Reorders ``axis`` from ``[s0, c0, s1, c1, ...]`` to ``[s0, s1, ..., c0, c1, ...]``.

    Args:
      x: array whose ``axis`` holds ``dim`` features in the interleaved layout (``dim`` even).
      axis: the feature axis.

    Returns:
      ``x`` with that axis in the split layout.

    Raises:
      TypeError: if ``axis`` is not an int.
      ValueError: if the axis has odd size or does not exist.

    >>> interleaved_to_split(jnp.array([0, 1, 2, 3]))
    Array([0, 2, 1, 3], dtype=int32)
    """
    x = jnp.asarray(x)
    index, dim = _feature_axis("interleaved_to_split", x, axis)
    return jnp.take(x, split_permutation(dim), axis=index)


def split_to_interleaved(x: jax.Array, *, axis: int = -1) -> jax.Array:
    """Reorders ``axis`` from ``[s0, s1, ..., c0, c1, ...]`` to ``[s0, c0, s1, c1, ...]``.

    Args:
      x: array whose ``axis`` holds ``dim`` features in the split layout (``dim`` even).
      axis: the feature axis.

    Returns:
      ``x`` with that axis in the interleaved layout.

    Raises:
      TypeError: if ``axis`` is not an int.
      ValueError: if the axis has odd size or does not exist.

    >>> split_to_interleaved(jnp.array([0, 2, 1, 3]))
    Array([0, 1, 2, 3], dtype=int32)
    """
    x = jnp.asarray(x)
    index, dim = _feature_axis("split_to_interleaved", x, axis)
    return jnp.take(x, interleaved_permutation(dim), axis=index)


def merge_pairs(first: jax.Array, second: jax.Array, layout: Layout) -> jax.Array:
    """Places two ``[..., n]`` arrays as the members of ``n`` pairs of a ``[..., 2n]`` array.

    ``first`` goes to the even dimensions (interleaved) or the first half (split).
    """
    if layout == "interleaved":
        stacked = jnp.stack([first, second], axis=-1)
        return stacked.reshape(*stacked.shape[:-2], 2 * stacked.shape[-2])
    return jnp.concatenate([first, second], axis=-1)


def unmerge_pairs(x: jax.Array, layout: Layout) -> tuple[jax.Array, jax.Array]:
    """The inverse of :func:`merge_pairs`: ``[..., 2n]`` -> two ``[..., n]`` arrays."""
    if layout == "interleaved":
        pairs = x.reshape(*x.shape[:-1], x.shape[-1] // 2, 2)
        return pairs[..., 0], pairs[..., 1]
    half = x.shape[-1] // 2
    return x[..., :half], x[..., half:]
