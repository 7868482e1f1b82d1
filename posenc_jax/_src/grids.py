"""Coordinates for N-D rotary embeddings: how rotated pairs are shared among axes, and patch-grid positions.

An N-D rotary embedding (2-D images, 3-D video, text + image as in multimodal rotary) gives every token a
coordinate per axis, ``positions[..., length, n_axes]``, and divides the rotated pairs among the axes:
``sections`` pair counts, in order, so the first ``sections[0]`` pairs turn with axis 0, the next
``sections[1]`` with axis 1, and so on. Pair ``i`` keeps its frequency ``w_i`` (the 1-D spectrum over
``rotary_dim``), so a token whose coordinates are all equal to ``p`` is rotated exactly as 1-D position
``p``: text tokens of a multimodal sequence behave as in a text-only model. To give every axis its own full
geometric spectrum instead (axial 2-D RoPE of vision transformers), pass ``frequencies`` that repeat
``paper_frequencies(2 * sections[a], base)`` per axis.
"""

from __future__ import annotations

import numbers

import numpy as np

from posenc_jax._src import checks

__all__ = ["grid_positions"]


def check_sections(sections: object, pairs: int, caller: str) -> tuple[int, ...]:
    """Pair counts per axis for ``pairs`` rotated pairs.

    Args:
      sections: a number of axes (the pairs split equally, which must be possible), or a sequence of
        positive pair counts summing to ``pairs``.
      pairs: the number of rotated pairs (``rotary_dim // 2``).
      caller: name used in error messages.

    Returns:
      A tuple of positive ints summing to ``pairs``.

    Raises:
      TypeError: ``sections`` neither an int nor a sequence of ints.
      ValueError: a non-positive count, an unequal split, or counts that do not sum to ``pairs``.

    >>> check_sections(2, 8, "f"), check_sections([2, 3, 3], 8, "f")
    ((4, 4), (2, 3, 3))
    """
    if isinstance(sections, numbers.Integral) and not isinstance(sections, bool):
        axes = checks.integer(caller, "sections", sections)
        if pairs % axes:
            example = ", ".join(str(pairs // axes + (a < pairs % axes)) for a in range(axes))
            raise checks.value_error(
                caller,
                "sections",
                axes,
                f"{pairs} rotated pairs do not split equally among {axes} axes",
                f"pass the pair count of each axis, e.g. sections=({example})",
            )
        return (pairs // axes,) * axes
    counts: tuple | None
    try:
        counts = tuple(sections)  # type: ignore[arg-type]
    except TypeError:
        counts = None
    if (
        counts is None
        or not counts
        or any(isinstance(c, bool) or not isinstance(c, numbers.Integral) for c in counts)
    ):
        raise checks.type_error(
            caller,
            "sections",
            sections,
            "sections must be a number of axes (int) or a non-empty sequence of pair counts (ints)",
        )
    counts = tuple(int(c) for c in counts)
    if min(counts) <= 0 or sum(counts) != pairs:
        raise checks.value_error(
            caller,
            "sections",
            counts,
            f"sections must be positive pair counts summing to the {pairs} rotated pairs (rotary_dim // 2)",
        )
    return counts


def grid_positions(*grid: int, class_tokens: int = 0) -> np.ndarray:
    """Integer coordinates of the patches of an ``H × W`` image or ``T × H × W`` video, row-major.

    Class-token convention: ``class_tokens`` leading tokens get the coordinates ``(c, c, …)`` for
    ``c = 0 … class_tokens - 1`` (equal on every axis, so they rotate as 1-D positions), and the patch at
    grid index ``(g_0, g_1, …)`` gets ``(class_tokens + g_0, class_tokens + g_1, …)``: the grid starts
    right after the class tokens, as an image after the text before it in multimodal rotary embeddings.

    Args:
      *grid: the grid's sizes, one positive int per axis, e.g. ``(height, width)`` or
        ``(frames, height, width)``.
      class_tokens: number of leading tokens (``>= 0``).

    Returns:
      int32 numpy array ``[class_tokens + prod(grid), len(grid)]``, to pass as ``positions`` to
      :func:`posenc_jax.apply_rotary` with ``sections=len(grid)`` (or explicit pair counts).

    Raises:
      TypeError: non-int sizes or ``class_tokens``.
      ValueError: no size, a non-positive size, a negative ``class_tokens``, or coordinates beyond int32.

    >>> grid_positions(2, 3, class_tokens=1).tolist()
    [[0, 0], [1, 1], [1, 2], [1, 3], [2, 1], [2, 2], [2, 3]]
    """
    caller = "grid_positions"
    if not grid:
        raise checks.value_error(
            caller, "grid", grid, "pass one size per axis", "e.g. grid_positions(height, width)"
        )
    for name, value in [(f"grid[{a}]", size) for a, size in enumerate(grid)] + [("class_tokens", class_tokens)]:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise checks.type_error(caller, name, value, f"{name} must be a Python int")
    if min(grid) <= 0:
        raise checks.value_error(caller, "grid", grid, "every size must be a positive integer")
    class_tokens = checks.integer(caller, "class_tokens", class_tokens, minimum=0)
    if class_tokens + max(grid) > 2**31:
        raise checks.value_error(
            caller, "grid", grid, f"coordinates (with class_tokens={class_tokens}) must fit in int32"
        )
    axes = [np.arange(int(size), dtype=np.int64) + int(class_tokens) for size in grid]
    patches = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(grid))
    leading = np.repeat(np.arange(int(class_tokens), dtype=np.int64)[:, None], len(grid), axis=1)
    return np.concatenate([leading, patches]).astype(np.int32)
