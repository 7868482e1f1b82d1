"""Benchmark section: what computing position-only values once (`computed_once`) costs or saves, per backend.

On a CPU, XLA fuses the small, cheap-looking encoding into its consumer and recomputes it per batch row or per
output element; ``computed_once`` stops that at the price of a few operations per element of the position-only
arrays. Whether the same holds on another backend is a measurement, not an assumption: this section compiles
each candidate twice, with the mechanism on (the library's behaviour) and off (a private switch, flipped only
around fresh traces), and times both round-robin in the same run. ``ratios_off_vs_on`` below 1 mean the
mechanism costs on this backend; above 1, that it saves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench.timing import compare
from posenc_jax import apply_rotary, sinusoidal, sinusoidal_table
from posenc_jax.internal import computing_once

__all__ = ["run"]


def _candidates(batch: int, length: int, dim: int, rotary_shape: tuple[int, ...]) -> dict[str, tuple]:
    """name -> (function to jit, arguments): the uses of the encodings that ``computed_once`` serves."""
    rng = np.random.default_rng(0)
    candidates: dict[str, tuple[Callable, tuple]] = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        name = jnp.dtype(dtype).name
        x = jnp.asarray(rng.normal(size=(batch, length, dim)), dtype)
        row_positions = jnp.asarray(rng.integers(0, 10_000, size=(batch, 1)) + np.arange(length), jnp.int32)
        candidates[f"x_plus_sinusoidal_arange_{name}"] = (
            lambda x: x + sinusoidal(jnp.arange(x.shape[1]), x.shape[2], dtype=x.dtype),
            (x,),
        )
        candidates[f"x_plus_sinusoidal_row_positions_{name}"] = (
            lambda x, p: x + sinusoidal(p, x.shape[2], dtype=x.dtype),
            (x, row_positions),
        )
        candidates[f"sinusoidal_table_{name}"] = (
            lambda o, dtype=dtype: sinusoidal_table(batch * length, dim, offset=o, dtype=dtype),
            (jnp.int32(0),),
        )
    q = jnp.asarray(rng.standard_normal(rotary_shape), jnp.float32)
    candidates["apply_rotary_float32"] = (
        lambda q, p: apply_rotary(q, p, layout="interleaved"),
        (q, jnp.arange(rotary_shape[1], dtype=jnp.int32)),
    )
    return candidates


def run(quick: bool = False, accelerator: bool = False) -> dict[str, Any]:
    """Times each candidate with ``computed_once`` on and off.

    Args:
      quick: small shapes and few repeats (a smoke run, not for reporting).
      accelerator: accelerator-sized shapes (``x`` ``[8, 8192, 1024]``, ``q`` ``[8, 4096, 32, 128]``) and
        several calls in flight per timed sample (see `compare`). Ignored when ``quick``.

    Returns:
      per candidate the timings of both variants, ``compile_s`` of each, and ``ratios_off_vs_on``.
    """
    if quick:
        batch, length, dim, rotary_shape, repeats, calls = 2, 128, 64, (2, 128, 2, 64), 3, 1
    elif accelerator:
        batch, length, dim, rotary_shape, repeats, calls = 8, 8192, 1024, (8, 4096, 32, 128), 20, 10
    else:
        batch, length, dim, rotary_shape, repeats, calls = 8, 2048, 1024, (8, 2048, 16, 64), 10, 1
    compiled: dict[str, tuple[Callable, tuple]] = {}
    compile_seconds: dict[str, float] = {}
    for enabled, label in ((True, "on"), (False, "off")):
        with computing_once(enabled):
            for name, (fn, args) in _candidates(batch, length, dim, rotary_shape).items():
                start = time.perf_counter()
                compiled[f"{name}/{label}"] = (jax.jit(fn).lower(*args).compile(), args)
                compile_seconds[f"{name}/{label}"] = time.perf_counter() - start
    timings = compare(compiled, repeats=repeats, calls=calls)
    for key, seconds in compile_seconds.items():
        timings[key]["compile_s"] = seconds
    names = sorted({key.split("/")[0] for key in timings})
    return {
        "shapes": {"x": [batch, length, dim], "table": [batch * length, dim], "q": list(rotary_shape)},
        "timings": timings,
        "ratios_off_vs_on": {
            name: timings[f"{name}/off"]["median_s"] / timings[f"{name}/on"]["median_s"] for name in names
        },
    }
