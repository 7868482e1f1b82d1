"""Named hooks for the benchmarks and experiments: a switch and building blocks of the implementation.

Not part of the stable API (they may change in any release), but named and documented, so that nothing
outside the package reads or sets a private attribute:

* :func:`computing_once` / :func:`compute_once_is_enabled`: the switch that measures what the library's
  compute-once barrier (sines and cosines computed once at the positions' shape, not per consumer element)
  costs or saves on a backend.
* :func:`unmerge_pairs` / :func:`merge_pairs`: the two members of every feature pair in a layout, as the
  rotary kernel reads and writes them (for hand-written baselines that rotate the same way).
* :func:`rotary_sections`: the pair counts per axis of N-D rotary (``apply_rotary(sections=)``).
* :func:`check_even_dim`: the library's check of an encoding width, with its error message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax

from posenc_jax._src import angles, checks
from posenc_jax._src.frequencies import SINUSOID_PAIRS
from posenc_jax._src.grids import check_sections
from posenc_jax._src.layouts import merge_pairs as merge_pairs
from posenc_jax._src.layouts import unmerge_pairs as unmerge_pairs

__all__ = [
    "check_even_dim",
    "compute_once_is_enabled",
    "computing_once",
    "merge_pairs",
    "rotary_sections",
    "unmerge_pairs",
]


def compute_once_is_enabled() -> bool:
    """Whether functions traced now compute their sines and cosines once (the default, ``True``)."""
    return angles.COMPUTE_ONCE


@contextlib.contextmanager
def computing_once(enabled: bool) -> Iterator[None]:
    """Traces made inside compute sines and cosines once (``True``, the default) or let XLA fuse them
    into, and recompute them in, their consumers (``False``).

    The switch is read at trace time, so every JAX cache is cleared on entry and on exit: functions traced
    inside keep the choice in their compiled programs, and nothing traced inside leaks out.

    Args:
      enabled: the setting inside the block.

    Raises:
      TypeError: a non-bool ``enabled``.
    """
    enabled = checks.boolean("computing_once", "enabled", enabled)
    previous = angles.COMPUTE_ONCE
    jax.clear_caches()
    angles.COMPUTE_ONCE = enabled
    try:
        yield
    finally:
        angles.COMPUTE_ONCE = previous
        jax.clear_caches()


def rotary_sections(sections: object, pairs: int, call: str) -> tuple[int, ...]:
    """Pair counts per axis for ``pairs`` rotated pairs, as ``apply_rotary(sections=)`` splits them.

    Args:
      sections: a number of axes (pairs split equally) or a sequence of pair counts summing to ``pairs``.
      pairs: the number of rotated pairs (``rotary_dim // 2``).
      call: the name used in error messages.

    Returns:
      A tuple of positive ints summing to ``pairs``.

    >>> rotary_sections(2, 8, "bench")
    (4, 4)
    """
    return check_sections(sections, pairs, call)


def check_even_dim(call: str, argument: str, value: object) -> int:
    """``value`` as a positive even int (an encoding width), else the library's ``TypeError`` /
    ``ValueError`` naming ``call`` and ``argument``.

    >>> check_even_dim("table", "dim", 8)
    8
    """
    return checks.even(call, argument, value, SINUSOID_PAIRS)
