"""Benchmark section: the sinusoidal table and the encoding fused into a model's input add."""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench.timing import compare
from posenc_jax import paper_frequencies, sinusoidal, sinusoidal_table


def naive_table(length: int, dim: int) -> jax.Array:
    """What people write by hand: float32 product, then sin and cos, in the paper's interleaved layout."""
    w = jnp.asarray(paper_frequencies(dim), jnp.float32)
    angle = jnp.arange(length, dtype=jnp.float32)[:, None] * w
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1).reshape(length, dim)


def numpy_table(length: int, dim: int) -> np.ndarray:
    """float64 numpy, then cast to float32: exact, slow."""
    angle = np.arange(length, dtype=np.float64)[:, None] * paper_frequencies(dim)
    out = np.empty((length, dim), dtype=np.float64)
    out[:, 0::2], out[:, 1::2] = np.sin(angle), np.cos(angle)
    return out.astype(np.float32)


def _max_error(table: jax.Array, offset: int) -> float:
    length, dim = table.shape
    angle = (offset + np.arange(length, dtype=np.float64))[:, None] * paper_frequencies(dim)
    exact = np.empty((length, dim))
    exact[:, 0::2], exact[:, 1::2] = np.sin(angle), np.cos(angle)
    return float(np.abs(np.asarray(table, np.float64) - exact).max())


def table_section(length: int, dim: int, repeats: int) -> dict[str, Any]:
    ours = jax.jit(lambda: sinusoidal_table(length, dim))
    naive = jax.jit(lambda: naive_table(length, dim))
    timings = compare({"posenc_jax": (ours, ()), "naive_float32": (naive, ())}, repeats=repeats)
    samples = []
    for _ in range(max(3, repeats // 3)):
        start = time.perf_counter()
        numpy_table(length, dim)
        samples.append(time.perf_counter() - start)
    timings["numpy_float64"] = {"median_s": float(np.median(samples)), "min_s": min(samples)}
    late = 2**20
    naive_late = jax.jit(
        lambda: (lambda a: jnp.stack([jnp.sin(a), jnp.cos(a)], -1).reshape(length, dim))(
            (late + jnp.arange(length, dtype=jnp.float32))[:, None]
            * jnp.asarray(paper_frequencies(dim), jnp.float32)
        )
    )
    return {
        "shape": [length, dim],
        "timings": timings,
        "ratio_vs_naive_float32": timings["posenc_jax"]["median_s"] / timings["naive_float32"]["median_s"],
        "speedup_vs_numpy_float64": timings["numpy_float64"]["median_s"] / timings["posenc_jax"]["median_s"],
        "max_abs_error": {
            "posenc_jax_offset_0": _max_error(ours(), 0),
            "posenc_jax_offset_2**31-length": _max_error(
                sinusoidal_table(length, dim, offset=2**31 - length), 2**31 - length
            ),
            "naive_float32_offset_0": _max_error(naive(), 0),
            "naive_float32_offset_2**20": _max_error(naive_late(), late),
        },
    }


def fused_section(batch: int, length: int, dim: int, dtype: Any, repeats: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, length, dim)), dtype)
    table = sinusoidal_table(length, dim, dtype=dtype)
    positions = jnp.arange(length, dtype=jnp.int32)
    offsets = jnp.asarray(rng.integers(0, 10_000, size=batch), jnp.int32)
    row_positions = offsets[:, None] + jnp.arange(length, dtype=jnp.int32)
    candidates = {
        "baseline_x_plus_table_gather": (jax.jit(lambda x, t, p: x + t[p]), (x, table, positions)),
        "x_plus_sinusoidal_arange": (
            jax.jit(lambda x: x + sinusoidal(jnp.arange(length), dim, dtype=x.dtype)),
            (x,),
        ),
        "x_plus_table_with_row_offsets": (
            jax.jit(lambda x, o: x + sinusoidal_table(length, dim, offset=o, dtype=x.dtype)),
            (x, offsets),
        ),
        "x_plus_sinusoidal_row_positions": (
            jax.jit(lambda x, p: x + sinusoidal(p, dim, dtype=x.dtype)),
            (x, row_positions),
        ),
        "naive_fused_x_plus_sin": (
            jax.jit(lambda x: x + naive_table(length, dim).astype(x.dtype)),
            (x,),
        ),
    }
    timings = compare(candidates, repeats=repeats)
    base = timings["baseline_x_plus_table_gather"]["median_s"]
    return {
        "x_shape": [batch, length, dim],
        "dtype": jnp.dtype(dtype).name,
        "timings": timings,
        "ratios_vs_precomputed_table": {
            name: value["median_s"] / base
            for name, value in timings.items()
            if name != "baseline_x_plus_table_gather"
        },
    }


def run(quick: bool = False) -> dict[str, Any]:
    if quick:
        length, dim, batch, fused_length, repeats = 512, 128, 2, 256, 3
    else:
        length, dim, batch, fused_length, repeats = 8192, 1024, 8, 2048, 15
    result = {"table": table_section(length, dim, repeats)}
    for dtype in (jnp.float32, jnp.bfloat16):
        result[f"fused_add_{jnp.dtype(dtype).name}"] = fused_section(batch, fused_length, dim, dtype, repeats)
    return result
