"""Benchmark section: the sinusoidal table and the encoding fused into a model's input add."""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench.timing import compare
from experiments.naive import max_abs_error, naive_sinusoidal
from posenc_jax import sinusoidal, sinusoidal_table
from tests.references import reference_sinusoidal


def naive_table(length: int, dim: int) -> jax.Array:
    """What people write by hand: float32 product, then sin and cos, in the paper's interleaved layout."""
    return naive_sinusoidal(jnp.arange(length, dtype=jnp.float32), dim)


def numpy_table(length: int, dim: int) -> np.ndarray:
    """float64 numpy, then cast to float32: exact, slow."""
    return reference_sinusoidal(np.arange(length, dtype=np.float64), dim).astype(np.float32)


def _max_error(table: jax.Array, offset: int, max_rows: int = 8192) -> float:
    """Max abs error against float64, on at most ``max_rows`` rows evenly spaced over the table."""
    length, dim = table.shape
    rows = np.arange(0, length, max(1, length // max_rows))
    return max_abs_error(table[rows], reference_sinusoidal(offset + rows.astype(np.float64), dim))


def table_section(length: int, dim: int, repeats: int, calls: int = 1) -> dict[str, Any]:
    ours = jax.jit(lambda: sinusoidal_table(length, dim))
    naive = jax.jit(lambda: naive_table(length, dim))
    timings = compare({"posenc_jax": (ours, ()), "naive_float32": (naive, ())}, repeats=repeats, calls=calls)
    samples = []
    for _ in range(3 if length > 8192 else max(3, repeats // 3)):  # numpy is slow at accelerator sizes
        start = time.perf_counter()
        numpy_table(length, dim)
        samples.append(time.perf_counter() - start)
    timings["numpy_float64"] = {"median_s": float(np.median(samples)), "min_s": min(samples)}
    late = 2**20
    naive_late = jax.jit(lambda: naive_sinusoidal(late + jnp.arange(length, dtype=jnp.float32), dim))
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


def copy_section(length: int, dim: int, dtype: Any, repeats: int, calls: int = 1) -> dict[str, Any]:
    """The encoding's output written once, against a plain device copy of as many output bytes.

    A copy reads and writes every byte, the encoding only writes, so a ratio of 2 means the encoding reaches
    half the copy's bandwidth. ``sinusoidal_table`` is timed with a static offset (the usual call) and with a
    traced one (one compiled program for every offset); ``sinusoidal`` with traced positions ``0 … length-1``.
    """
    source = jnp.full((length, dim), 0.5, dtype)
    positions = jnp.arange(length, dtype=jnp.int32)
    candidates = {
        "baseline_plain_copy": (jax.jit(jnp.copy), (source,)),
        "sinusoidal_table": (jax.jit(lambda: sinusoidal_table(length, dim, dtype=dtype)), ()),
        "sinusoidal_table_traced_offset": (
            jax.jit(lambda o: sinusoidal_table(length, dim, offset=o, dtype=dtype)),
            (jnp.int32(0),),
        ),
        "sinusoidal_arange": (jax.jit(lambda p: sinusoidal(p, dim, dtype=dtype)), (positions,)),
    }
    timings = compare(candidates, repeats=repeats, calls=calls)
    base = timings["baseline_plain_copy"]["median_s"]
    output_bytes = length * dim * jnp.dtype(dtype).itemsize
    return {
        "shape": [length, dim],
        "dtype": jnp.dtype(dtype).name,
        "output_bytes": output_bytes,
        "timings": timings,
        "copy_bandwidth_GBps": 2 * output_bytes / base / 1e9,
        "ratios_vs_plain_copy": {
            name: value["median_s"] / base for name, value in timings.items() if name != "baseline_plain_copy"
        },
    }


def fused_section(
    batch: int, length: int, dim: int, dtype: Any, repeats: int, calls: int = 1
) -> dict[str, Any]:
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
        "x_plus_table_gather_row_positions": (
            jax.jit(lambda x, t, p: x + t[p]),
            (x, sinusoidal_table(10_000 + length, dim, dtype=dtype), row_positions),
        ),
    }
    timings = compare(candidates, repeats=repeats, calls=calls)
    base = timings["baseline_x_plus_table_gather"]["median_s"]
    row_base = timings["x_plus_table_gather_row_positions"]["median_s"]
    return {
        "x_shape": [batch, length, dim],
        "dtype": jnp.dtype(dtype).name,
        "timings": timings,
        "ratios_vs_precomputed_table": {
            name: value["median_s"] / base
            for name, value in timings.items()
            if name != "baseline_x_plus_table_gather"
        },
        "ratio_row_positions_vs_row_gather": timings["x_plus_sinusoidal_row_positions"]["median_s"] / row_base,
    }


def run(quick: bool = False, accelerator: bool = False) -> dict[str, Any]:
    """The sinusoidal section of the benchmark results.

    Args:
      quick: small shapes and few repeats (a smoke run, not for reporting).
      accelerator: accelerator-sized shapes (a ``65536 x 1024`` table, ``x`` ``[8, 8192, 1024]``) and several
        calls in flight per timed sample (see `compare`). Ignored when ``quick``.

    Returns:
      ``table`` (against naive float32 and numpy float64), ``table_vs_copy_<dtype>`` and
      ``fused_add_<dtype>`` for float32 and bfloat16: timings and ratios (lower is better).
    """
    if quick:
        length, dim, batch, fused_length, repeats, calls = 512, 128, 2, 256, 3, 1
    elif accelerator:
        length, dim, batch, fused_length, repeats, calls = 65_536, 1024, 8, 8192, 20, 10
    else:
        length, dim, batch, fused_length, repeats, calls = 8192, 1024, 8, 2048, 15, 1
    result = {"table": table_section(length, dim, repeats, calls)}
    for dtype in (jnp.float32, jnp.bfloat16):
        name = jnp.dtype(dtype).name
        result[f"table_vs_copy_{name}"] = copy_section(length, dim, dtype, repeats, calls)
        result[f"fused_add_{name}"] = fused_section(batch, fused_length, dim, dtype, repeats, calls)
    return result
