"""Benchmark section: ``apply_rotary`` on queries and keys against hand-written rotations, in one run.

Candidates, each jitted and rotating both ``q`` and ``k`` ``[batch, length, heads, head_dim]`` with traced
positions:

* ``posenc_jax_<layout>``: :func:`posenc_jax.apply_rotary` (exact angle kernel, sin/cos once per position).
* ``table_<layout>``: the common fast path: sin/cos tables ``[max_length, head_dim/2]`` precomputed outside
  the timed function (float64 numpy, so exact), gathered by position inside it. The speed target is
  ``posenc_jax / table <= 1.2`` for the same layout.
* ``naive_rotate_half``: what is often written by hand (the Hugging Face / GPT-NeoX formulation):
  float32 angles ``pos * w``, ``cos``/``sin`` of the duplicated ``[length, head_dim]`` angles, and
  ``x * cos + rotate_half(x) * sin``. Fast, but its angles are off by ``|pos * w| * 6e-8``.

Every ratio is between timings taken round-robin in the same process. Besides wall-clock medians
(``compare``), the section records process CPU time per call, also round-robin: on a shared machine the
CPU-time ratios are much less disturbed by other processes than wall-clock ones.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench.timing import compare
from experiments.naive import max_abs_error, naive_rotate_half
from posenc_jax import apply_rotary, paper_frequencies
from posenc_jax.internal import merge_pairs, unmerge_pairs
from tests.references import reference_angles, reference_rotary


def _rotate_with_table(x, positions, sin_table, cos_table, layout):
    sin = sin_table[positions][..., None, :].astype(x.dtype)
    cos = cos_table[positions][..., None, :].astype(x.dtype)
    first, second = unmerge_pairs(x, layout)
    return merge_pairs(first * cos - second * sin, second * cos + first * sin, layout)


def _tables(max_length: int, head_dim: int) -> tuple[jax.Array, jax.Array]:
    angles = reference_angles(np.arange(max_length), paper_frequencies(head_dim))
    return jnp.asarray(np.sin(angles), jnp.float32), jnp.asarray(np.cos(angles), jnp.float32)


def _cpu_seconds(candidates: dict[str, tuple[Any, tuple]], repeats: int) -> dict[str, float]:
    """Median process CPU seconds per call, measured round-robin (all threads of this process)."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, (fn, args) in candidates.items():
            start = time.process_time()
            jax.block_until_ready(fn(*args))
            samples[name].append(time.process_time() - start)
    return {name: float(np.median(values)) for name, values in samples.items()}


def _section(shape: tuple[int, int, int, int], dtype: Any, repeats: int, calls: int = 1) -> dict[str, Any]:
    batch, length, heads, head_dim = shape
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.standard_normal(shape), dtype)
    k = jnp.asarray(rng.standard_normal(shape), dtype)
    positions = jnp.arange(length, dtype=jnp.int32)
    sin_table, cos_table = _tables(length, head_dim)

    def ours(layout):
        return jax.jit(lambda q, k, p: (apply_rotary(q, p, layout=layout), apply_rotary(k, p, layout=layout)))

    def table(layout):
        return jax.jit(
            lambda q, k, p, s, c: (
                _rotate_with_table(q, p, s, c, layout),
                _rotate_with_table(k, p, s, c, layout),
            )
        )

    naive = jax.jit(lambda q, k, p: (naive_rotate_half(q, p), naive_rotate_half(k, p)))
    candidates = {
        "posenc_jax_interleaved": (ours("interleaved"), (q, k, positions)),
        "table_interleaved": (table("interleaved"), (q, k, positions, sin_table, cos_table)),
        "posenc_jax_split": (ours("split"), (q, k, positions)),
        "table_split": (table("split"), (q, k, positions, sin_table, cos_table)),
        "naive_rotate_half": (naive, (q, k, positions)),
    }
    timings = compare(candidates, repeats=repeats, calls=calls)
    med = {name: t["median_s"] for name, t in timings.items()}
    cpu = _cpu_seconds(candidates, repeats)

    # Accuracy at late positions, on one batch row and head (float64 reference from the formula).
    late = (2**20 + np.arange(length)).astype(np.int32)
    want = reference_rotary(np.asarray(q[:1, :, :1], np.float32), late, layout="split")
    errors = {
        "posenc_jax_split": max_abs_error(apply_rotary(q[:1, :, :1], late, layout="split"), want),
        "naive_rotate_half": max_abs_error(naive_rotate_half(q[:1, :, :1], jnp.asarray(late)), want),
    }
    return {
        "shape": list(shape),
        "dtype": jnp.dtype(dtype).name,
        "timings": timings,
        "ratio_vs_table_interleaved": med["posenc_jax_interleaved"] / med["table_interleaved"],
        "ratio_vs_table_split": med["posenc_jax_split"] / med["table_split"],
        "ratio_vs_naive_rotate_half": med["posenc_jax_split"] / med["naive_rotate_half"],
        "cpu_seconds": cpu,
        "cpu_ratio_vs_table_interleaved": cpu["posenc_jax_interleaved"] / cpu["table_interleaved"],
        "cpu_ratio_vs_table_split": cpu["posenc_jax_split"] / cpu["table_split"],
        "cpu_ratio_vs_naive_rotate_half": cpu["posenc_jax_split"] / cpu["naive_rotate_half"],
        "max_abs_error_at_positions_2**20+": errors,
    }


def run(quick: bool, accelerator: bool = False) -> dict[str, Any]:
    """Times rotary embeddings; returns ratios (``posenc_jax / baseline``, lower is better).

    Args:
      quick: small shapes and few repeats (a smoke run, not for reporting).
      accelerator: accelerator-sized ``q`` and ``k`` ``[8, 4096, 32, 128]`` and several calls in flight per
        timed sample (see `compare`). Ignored when ``quick``.

    Returns:
      ``{"float32": {...}, "bfloat16": {...}}`` with timings, ratios and late-position errors.
    """
    if quick:
        shape, repeats, calls = (2, 256, 4, 64), 3, 1
    elif accelerator:
        shape, repeats, calls = (8, 4096, 32, 128), 20, 10
    else:
        shape, repeats, calls = (8, 2048, 16, 64), 10, 1
    return {
        jnp.dtype(dtype).name: _section(shape, dtype, repeats, calls) for dtype in (jnp.float32, jnp.bfloat16)
    }
