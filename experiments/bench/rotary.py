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
from posenc_jax.frequencies import paper_frequencies
from posenc_jax.layouts import _merge_pairs, _unmerge_pairs
from posenc_jax.rotary import apply_rotary


def _rotate_with_table(x, positions, sin_table, cos_table, layout):
    sin = sin_table[positions][..., None, :].astype(x.dtype)
    cos = cos_table[positions][..., None, :].astype(x.dtype)
    first, second = _unmerge_pairs(x, layout)
    return _merge_pairs(first * cos - second * sin, second * cos + first * sin, layout)


def _naive_rotate_half(x, positions, head_dim):
    w = jnp.asarray(paper_frequencies(head_dim), jnp.float32)
    angles = positions.astype(jnp.float32)[..., None] * w  # float32 product: inexact at large positions
    angles = jnp.concatenate([angles, angles], axis=-1)[..., None, :]
    cos, sin = jnp.cos(angles).astype(x.dtype), jnp.sin(angles).astype(x.dtype)
    half = head_dim // 2
    rotated_half = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated_half * sin


def _tables(max_length: int, head_dim: int) -> tuple[jax.Array, jax.Array]:
    angles = np.arange(max_length, dtype=np.float64)[:, None] * paper_frequencies(head_dim)
    return jnp.asarray(np.sin(angles), jnp.float32), jnp.asarray(np.cos(angles), jnp.float32)


def _max_error(rotated: jax.Array, x: np.ndarray, positions: np.ndarray, layout: str) -> float:
    """Max abs error against float64 (computed from the formula) on the given slice."""
    head_dim = x.shape[-1]
    theta = positions.astype(np.float64)[..., None, None] * paper_frequencies(head_dim)
    x = x.astype(np.float64)
    if layout == "interleaved":
        first, second = np.arange(0, head_dim, 2), np.arange(1, head_dim, 2)
    else:
        first, second = np.arange(head_dim // 2), np.arange(head_dim // 2, head_dim)
    want = np.empty_like(x)
    want[..., first] = x[..., first] * np.cos(theta) - x[..., second] * np.sin(theta)
    want[..., second] = x[..., second] * np.cos(theta) + x[..., first] * np.sin(theta)
    return float(np.abs(np.asarray(rotated, np.float64) - want).max())


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

    naive = jax.jit(lambda q, k, p: (_naive_rotate_half(q, p, head_dim), _naive_rotate_half(k, p, head_dim)))
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
    row = np.asarray(q[:1, :, :1], np.float32)
    errors = {
        "posenc_jax_split": _max_error(apply_rotary(q[:1, :, :1], late, layout="split"), row, late, "split"),
        "naive_rotate_half": _max_error(
            _naive_rotate_half(q[:1, :, :1], jnp.asarray(late), head_dim), row, late, "split"
        ),
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
