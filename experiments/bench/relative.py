"""Benchmark section: Transformer-XL relative logits against straightforward implementations, in one run.

Every candidate computes ``scale * ((q_i + v)·W_R R_{i-j} + u·k_j)`` for ``q``, ``k``
``[batch, length, heads, head_dim]``, ``W_R`` ``[rel_dim, heads, head_dim]`` and traced positions
``0 … length-1``, jitted:

* ``posenc_jax``: :func:`posenc_jax.transformer_xl_logits` given the positions (its route for any
  positions): no ``[length, length, ·]`` tensor; the position term is one matrix product of contraction
  ``rel_dim`` between per-query and per-key factors.
* ``posenc_jax_consecutive``: the same function with positions ``None`` (``0 … length-1``): its relative
  shift route, a reshape instead of a gather.
* ``materialized``: the formula as written: the encodings ``R_{i-j}`` ``[length, length, rel_dim]`` (from
  :func:`posenc_jax.sinusoidal` of the distances, so equally exact), projected to
  ``[length, length, heads, head_dim]``, then contracted with ``q + v``.
* ``materialized_r``: the same ``[length, length, rel_dim]`` encodings, but ``q + v`` projected by ``W_R``
  first (the cheaper order), so no projected ``[length, length, heads, head_dim]`` tensor.
* ``relative_shift``: the Transformer-XL reference code's route for consecutive positions: encodings of the
  ``2 length - 1`` distinct distances, projected, scored against every query, then each query's row shifted
  (here a gather, as commonly written) into place. Only valid for consecutive positions.

Ratios are ``posenc_jax… / baseline`` of median wall-clock times taken round-robin in one process (lower is
better); ``cpu_ratios`` the same of process CPU time per call (less disturbed by other processes on a shared
machine); ``max_abs_difference`` compares every candidate with ``posenc_jax``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench.rotary import _cpu_seconds
from experiments.bench.timing import compare
from posenc_jax import sinusoidal, transformer_xl_logits


def _content(k, u):
    return jnp.einsum("hd,bkhd->bhk", u, k)[:, :, None, :]


def _materialized(q, k, positions, kernel, u, v):
    distance = positions[:, None] - positions[None, :]  # i - j
    encoding = sinusoidal(distance, kernel.shape[0], layout="split")  # [L, L, rel_dim]
    projected = jnp.einsum("ijr,rhd->ijhd", encoding, kernel)  # [L, L, heads, head_dim]
    position = jnp.einsum("bihd,ijhd->bhij", q + v, projected)
    return (position + _content(k, u)) / math.sqrt(q.shape[-1])


def _materialized_r(q, k, positions, kernel, u, v):
    distance = positions[:, None] - positions[None, :]
    encoding = sinusoidal(distance, kernel.shape[0], layout="split")
    query = jnp.einsum("bihd,rhd->bihr", q + v, kernel)
    position = jnp.einsum("bihr,ijr->bhij", query, encoding)
    return (position + _content(k, u)) / math.sqrt(q.shape[-1])


def _relative_shift(q, k, positions, kernel, u, v):
    length = q.shape[1]
    # Distances length-1, …, -(length-1): index m holds distance length-1-m.
    distances = jnp.arange(length - 1, -length, -1, dtype=jnp.int32)
    encoding = sinusoidal(distances, kernel.shape[0], layout="split")  # [2L-1, rel_dim]
    projected = jnp.einsum("mr,rhd->mhd", encoding, kernel)
    scores = jnp.einsum("bihd,mhd->bhim", q + v, projected)  # [batch, heads, L, 2L-1]
    i, j = np.arange(length)[:, None], np.arange(length)[None, :]
    index = jnp.asarray(length - 1 - i + j, jnp.int32)  # distance i - j sits at m = length-1-(i-j)
    shifted = jnp.take_along_axis(scores, jnp.broadcast_to(index, scores.shape[:2] + index.shape), axis=-1)
    del positions  # consecutive positions 0 … length-1 by construction
    return (shifted + _content(k, u)) / math.sqrt(q.shape[-1])


def _ours(q, k, positions, kernel, u, v):
    return transformer_xl_logits(q, k, positions, positions, kernel=kernel, content_bias=u, position_bias=v)


def _ours_consecutive(q, k, positions, kernel, u, v):
    del positions  # None below means 0 … length-1
    return transformer_xl_logits(q, k, None, None, kernel=kernel, content_bias=u, position_bias=v)


def _section(
    batch: int, length: int, heads: int, head_dim: int, rel_dim: int, repeats: int, calls: int = 1
) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.standard_normal((batch, length, heads, head_dim)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((batch, length, heads, head_dim)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((rel_dim, heads, head_dim)) / math.sqrt(rel_dim), jnp.float32)
    u = jnp.asarray(rng.standard_normal((heads, head_dim)), jnp.float32)
    v = jnp.asarray(rng.standard_normal((heads, head_dim)), jnp.float32)
    positions = jnp.arange(length, dtype=jnp.int32)
    args = (q, k, positions, kernel, u, v)
    functions = {
        "posenc_jax": _ours,
        "posenc_jax_consecutive": _ours_consecutive,
        "materialized": _materialized,
        "materialized_r": _materialized_r,
        "relative_shift": _relative_shift,
    }
    candidates = {name: (jax.jit(fn), args) for name, fn in functions.items()}
    timings = compare(candidates, repeats=repeats, calls=calls)
    reference = np.asarray(candidates["posenc_jax"][0](*args))
    differences = {
        name: float(np.abs(np.asarray(fn(*a)) - reference).max()) for name, (fn, a) in candidates.items()
    }
    median = {name: t["median_s"] for name, t in timings.items()}
    cpu = _cpu_seconds(candidates, repeats)
    pairs = [
        (ours, baseline)
        for ours in ("posenc_jax", "posenc_jax_consecutive")
        for baseline in ("materialized", "materialized_r", "relative_shift")
    ]
    ratios = {f"{ours}_vs_{baseline}": median[ours] / median[baseline] for ours, baseline in pairs}
    cpu_ratios = {f"{ours}_vs_{baseline}": cpu[ours] / cpu[baseline] for ours, baseline in pairs}
    return {
        "shape": {"batch": batch, "length": length, "heads": heads, "head_dim": head_dim, "rel_dim": rel_dim},
        "timings": timings,
        "ratios": ratios,
        "cpu_seconds": cpu,
        "cpu_ratios": cpu_ratios,
        "max_abs_difference": differences,
        "max_abs_logit": float(np.abs(reference).max()),
    }


def run(quick: bool, accelerator: bool = False) -> dict[str, Any]:
    """Times the Transformer-XL relative logits; returns ratios ``posenc_jax… / baseline`` (lower is better).

    Args:
      quick: small shapes and few repeats (a smoke run, not for reporting).
      accelerator: q, k ``[4, 1024, 16, 64]`` with ``rel_dim`` 1024 (the materialized baseline holds two
        4 GB tensors) and several calls in flight per timed sample. Ignored when ``quick``.
    """
    if quick:
        return {"small": _section(1, 64, 2, 16, 32, repeats=3)}
    if accelerator:
        return {"accelerator": _section(4, 1024, 16, 64, 1024, repeats=20, calls=5)}
    return {"moderate": _section(2, 256, 8, 32, 256, repeats=10)}
