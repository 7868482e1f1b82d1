"""Benchmark section: the length-generalization papers' relative terms against their materialized formulas.

For each term, ``posenc_jax`` (the library's function) and ``materialized`` (the formula written out
directly, at the same shapes, jitted) compute the same ``[batch, heads, length, length]`` float32 logits term
for ``q``, ``k`` ``[batch, length, heads, head_dim]`` at traced positions ``0 … length-1``:

* ``kerple``: :func:`posenc_jax.kerple_bias` (log kernel) against ``-r1 log(1 + r2 |i - j|)`` broadcast from
  float32 distances.
* ``fire``: :func:`posenc_jax.fire_bias` against the reference code's route: the normalized distance
  ``[length, length, 1]`` through the MLP to ``[length, length, heads]``, then transposed.
* ``cope``: :func:`posenc_jax.cope_logits` (``q·e`` at the ``npos`` integer positions, then the scalars
  interpolated) against interpolating the embedding *vectors* ``e[p_ij]`` (``[batch, heads, length, length,
  head_dim]``) and contracting them with ``q``.
* ``xpos``: the logits ``q'·k'`` after :func:`posenc_jax.xpos_rotate` (the decay factored into per-query and
  per-key scales) against the relative formula ``Σ_i ζ_i^((n - m)/B) (q_n·k_m)_i`` with the decay
  ``[length, length, head_dim/2]`` materialized (both rotate with :func:`posenc_jax.apply_rotary`).

Ratios are ``posenc_jax / materialized`` of median wall-clock times taken round-robin in one process (lower is
better; none above 1 is the requirement); ``cpu_ratios`` the same of process CPU time per call;
``max_abs_difference`` compares the two.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench.rotary import _cpu_seconds
from experiments.bench.timing import compare
from posenc_jax import apply_rotary, cope_logits, fire_bias, kerple_bias, xpos_rotate

TERMS = ("kerple", "fire", "cope", "xpos")


def _kerple_materialized(q, k, positions, r1, r2):
    del q, k
    distance = jnp.abs(positions[:, None] - positions[None, :]).astype(jnp.float32)
    return (-r1[:, None, None] * jnp.log1p(r2[:, None, None] * distance))[None]


def _kerple_ours(q, k, positions, r1, r2):
    del q, k
    return kerple_bias(positions, positions, r1=r1, r2=r2, kernel="log")


def _fire_materialized(q, k, positions, mlp, c, threshold):
    del q, k
    w1, b1, w2, b2 = mlp
    p = positions.astype(jnp.float32)
    distance = jnp.log(jnp.abs(c * (p[:, None] - p[None, :])) + 1.0)
    normalizer = jnp.log(jnp.abs(c * jnp.maximum(p, jnp.abs(threshold))) + 1.0) + 1e-6
    u = (distance / normalizer[:, None])[..., None]  # [L, L, 1]
    out = jax.nn.relu(u @ w1[None] + b1) @ w2 + b2  # [L, L, heads]
    return jnp.transpose(out, (2, 0, 1))[None]


def _fire_ours(q, k, positions, mlp, c, threshold):
    del q, k
    return fire_bias(positions, positions, mlp=mlp, c=c, threshold=threshold)


def _cope_materialized(q, k, positions, embeddings):
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k)
    causal = positions[None, None, :, None] >= positions[None, None, None, :]
    gates = jnp.where(causal, jax.nn.sigmoid(scale * logits), 0.0)
    p = jnp.minimum(jnp.flip(jnp.cumsum(jnp.flip(gates, -1), -1), -1), embeddings.shape[0] - 1)
    floor = jnp.floor(p)
    w = (p - floor)[..., None]
    lower = embeddings[floor.astype(jnp.int32)]  # [batch, heads, L, L, head_dim]
    upper = embeddings[jnp.ceil(p).astype(jnp.int32)]
    return jnp.einsum("bqhd,bhqkd->bhqk", q, (1.0 - w) * lower + w * upper)


def _cope_ours(q, k, positions, embeddings):
    return cope_logits(q, k, positions, positions, embeddings=embeddings)


def _xpos_materialized(q, k, positions, log_rates):
    q = apply_rotary(q, positions, layout="split")
    k = apply_rotary(k, positions, layout="split")
    distance = (positions[:, None] - positions[None, :]).astype(jnp.float32)
    decay = jnp.exp(distance[..., None] * log_rates)  # [L, L, pairs]
    decay = jnp.concatenate([decay, decay], -1)  # split pairing: pair i holds features i and i + d/2
    return jnp.einsum("bqhd,bkhd,qkd->bhqk", q, k, decay)


def _xpos_ours(q, k, positions, log_rates):
    del log_rates  # the defaults below are the same rates
    q, k = xpos_rotate(q, k, positions, positions, layout="split")
    return jnp.einsum("bqhd,bkhd->bhqk", q, k)


def _inputs(term: str, batch: int, length: int, heads: int, head_dim: int) -> tuple:
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.standard_normal((batch, length, heads, head_dim)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((batch, length, heads, head_dim)), jnp.float32)
    positions = jnp.arange(length, dtype=jnp.int32)
    if term == "kerple":
        r1, r2 = (jnp.asarray(rng.uniform(0.1, 2.0, heads), jnp.float32) for _ in range(2))
        return q, k, positions, r1, r2
    if term == "fire":
        width = 32
        mlp = (
            jnp.asarray(rng.uniform(-1, 1, width), jnp.float32),
            jnp.asarray(rng.uniform(-1, 1, width), jnp.float32),
            jnp.asarray(rng.uniform(-1, 1, (width, heads)) / math.sqrt(width), jnp.float32),
            jnp.zeros(heads, jnp.float32),
        )
        return q, k, positions, mlp, jnp.float32(0.1), jnp.float32(64.0)
    if term == "cope":
        return q, k, positions, jnp.asarray(rng.standard_normal((length, head_dim)), jnp.float32)
    pairs = head_dim // 2
    zeta = (np.arange(pairs) / pairs + 0.4) / 1.4
    return q, k, positions, jnp.asarray(np.log(zeta) / 512.0, jnp.float32)


def _term(term: str, batch: int, length: int, heads: int, head_dim: int, repeats: int) -> dict[str, Any]:
    args = _inputs(term, batch, length, heads, head_dim)
    ours, materialized = {
        "kerple": (_kerple_ours, _kerple_materialized),
        "fire": (_fire_ours, _fire_materialized),
        "cope": (_cope_ours, _cope_materialized),
        "xpos": (_xpos_ours, _xpos_materialized),
    }[term]
    candidates = {"posenc_jax": (jax.jit(ours), args), "materialized": (jax.jit(materialized), args)}
    timings = compare(candidates, repeats=repeats)
    cpu = _cpu_seconds(candidates, repeats)
    reference = np.asarray(candidates["posenc_jax"][0](*args))
    other = np.asarray(candidates["materialized"][0](*args))
    return {
        "shape": {"batch": batch, "length": length, "heads": heads, "head_dim": head_dim},
        "timings": timings,
        "ratio": timings["posenc_jax"]["median_s"] / timings["materialized"]["median_s"],
        "cpu_seconds": cpu,
        "cpu_ratio": cpu["posenc_jax"] / cpu["materialized"],
        "max_abs_difference": float(np.abs(reference - other).max()),
        "max_abs_value": float(np.abs(reference).max()),
    }


def run(quick: bool, terms: tuple[str, ...] = TERMS) -> dict[str, Any]:
    """Times each term against its materialized formula; ratios ``posenc_jax / materialized`` (lower is better).

    Args:
      quick: small shapes and few repeats (a smoke run, not for reporting).
      terms: a subset of ``TERMS``.
    """
    if quick:
        return {term: _term(term, 1, 64, 2, 16, repeats=3) for term in terms}
    return {term: _term(term, 2, 256, 8, 32, repeats=10) for term in terms}
