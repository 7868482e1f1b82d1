"""Benchmark section: N-D rotary (``apply_rotary`` with ``sections``) against per-axis tables, in one run.

Candidates, each jitted and rotating ``q`` and ``k`` ``[batch, tokens, heads, head_dim]`` of an image
(``H × W`` patches plus a class token, 2 axes) or a video (``T × H × W``, 3 axes) with traced coordinates:

* ``posenc_jax``: :func:`posenc_jax.apply_rotary` with ``sections`` (exact angle kernel, sin/cos once per
  token and pair).
* ``axis_tables``: the straightforward implementation: for every axis a sin/cos table
  ``[grid size, pairs of the axis]`` precomputed outside the timed function (float64 numpy, so exact),
  gathered by each token's coordinate inside it, concatenated, then the same rotation.

Ratios are ``posenc_jax / axis_tables`` (lower is better), wall-clock medians and process CPU seconds,
timed round-robin in the same process.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench.rotary import _cpu_seconds
from experiments.bench.timing import compare
from posenc_jax import apply_rotary, grid_positions, paper_frequencies
from posenc_jax.internal import merge_pairs, rotary_sections, unmerge_pairs
from tests.references import reference_angles


def _axis_tables(sizes: tuple[int, ...], sections: tuple[int, ...], head_dim: int) -> list[tuple]:
    """Exact per-axis (sin, cos) tables over coordinates ``0 … size`` (the class token uses 0)."""
    w = paper_frequencies(head_dim)
    tables, start = [], 0
    for size, count in zip(sizes, sections, strict=True):
        angles = reference_angles(np.arange(size + 1), w[start : start + count])
        tables.append((jnp.asarray(np.sin(angles), jnp.float32), jnp.asarray(np.cos(angles), jnp.float32)))
        start += count
    return tables


def _rotate_with_axis_tables(x, coords, tables, layout="interleaved"):
    sin = jnp.concatenate([s[coords[..., a]] for a, (s, _) in enumerate(tables)], axis=-1)
    cos = jnp.concatenate([c[coords[..., a]] for a, (_, c) in enumerate(tables)], axis=-1)
    sin, cos = sin[..., None, :].astype(x.dtype), cos[..., None, :].astype(x.dtype)
    first, second = unmerge_pairs(x, layout)
    return merge_pairs(first * cos - second * sin, second * cos + first * sin, layout)


def _case(batch: int, grid: tuple[int, ...], heads: int, head_dim: int, repeats: int) -> dict[str, Any]:
    coords_np = grid_positions(*grid, class_tokens=1)
    tokens = coords_np.shape[0]
    sections = rotary_sections(len(grid), head_dim // 2, "bench")
    rng = np.random.default_rng(0)
    shape = (batch, tokens, heads, head_dim)
    q = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    k = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    coords = jnp.asarray(coords_np)
    tables = _axis_tables(grid, sections, head_dim)

    ours = jax.jit(
        lambda q, k, c: (
            apply_rotary(q, c, layout="interleaved", sections=sections),
            apply_rotary(k, c, layout="interleaved", sections=sections),
        )
    )
    baseline = jax.jit(
        lambda q, k, c, t: (_rotate_with_axis_tables(q, c, t), _rotate_with_axis_tables(k, c, t))
    )
    candidates = {"posenc_jax": (ours, (q, k, coords)), "axis_tables": (baseline, (q, k, coords, tables))}
    timings = compare(candidates, repeats=repeats)
    cpu = _cpu_seconds(candidates, repeats)
    same = float(
        np.abs(np.asarray(ours(q, k, coords)[0]) - np.asarray(baseline(q, k, coords, tables)[0])).max()
    )
    return {
        "shape": list(shape),
        "grid": list(grid),
        "sections": list(sections),
        "timings": timings,
        "ratio_vs_axis_tables": timings["posenc_jax"]["median_s"] / timings["axis_tables"]["median_s"],
        "cpu_seconds": cpu,
        "cpu_ratio_vs_axis_tables": cpu["posenc_jax"] / cpu["axis_tables"],
        "max_abs_difference": same,
    }


def run(quick: bool) -> dict[str, Any]:
    """Times N-D rotary embeddings; returns ratios (``posenc_jax / axis_tables``, lower is better).

    Args:
      quick: small shapes and few repeats (a smoke run, not for reporting).

    Returns:
      ``{"image": {...}, "video": {...}}`` with timings, ratios and the max difference of the outputs.
    """
    repeats = 3 if quick else 30
    if quick:
        return {"image": _case(1, (8, 8), 2, 32, repeats), "video": _case(1, (2, 4, 4), 2, 48, repeats)}
    return {"image": _case(8, (32, 32), 8, 64, repeats), "video": _case(2, (8, 16, 16), 8, 96, repeats)}
