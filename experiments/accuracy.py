"""Max-abs-error table of the sinusoidal encoding against a float64 evaluation of the formula.

Usage: ``python -m experiments.accuracy [--out-dir DIR]`` writes ``accuracy.json`` and ``accuracy.md`` to
``runs/accuracy/`` by default (committing them is a deliberate ``--out-dir experiments/results``): for
integer positions drawn uniformly from ``[-limit, limit)`` (plus both ends), the max abs error of
``posenc_jax.sinusoidal`` and of ``posenc_jax.sinusoidal_table`` (float32, ``jax_enable_x64`` off), and of
the textbook float32 ``sin(pos * w)`` for comparison.

A second table covers long-context rotary embeddings: for each RoPE scaling (head_dim 128, base 10000), the
max abs error of the rotated unit pairs ``(cos, sin) · attention factor`` from ``posenc_jax.apply_rotary`` and
from the float32 formula other libraries use (``pos * inv_freq`` in float32), at positions below ``2**17``,
``2**20`` and ``2**24``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments.naive import max_abs_error, naive_angles, naive_sinusoidal
from posenc_jax import (
    NTK,
    DynamicNTK,
    Linear,
    Llama3,
    LongRoPE,
    YaRN,
    apply_rotary,
    rope_attention_factor,
    rope_frequencies,
    sinusoidal,
    sinusoidal_table,
)
from tests.references import reference_rotary, reference_sinusoidal

LIMITS = {"2**14": 2**14, "2**20": 2**20, "2**24": 2**24, "2**31": 2**31}
DIMS = (64, 1024, 8192)


def measure(samples: int = 2048, table_length: int = 1024, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for dim in DIMS:
        for name, limit in LIMITS.items():
            positions = rng.integers(-limit, limit, size=samples, dtype=np.int64)
            positions[:2] = [limit - 1, -limit]
            positions = positions.astype(np.int32)
            exact = reference_sinusoidal(positions, dim)
            start = int(limit - table_length)
            table = sinusoidal_table(table_length, dim, offset=start)
            rows.append(
                {
                    "dim": dim,
                    "positions_below": name,
                    "sinusoidal": max_abs_error(sinusoidal(positions, dim), exact),
                    "sinusoidal_table": max_abs_error(
                        table, reference_sinusoidal(start + np.arange(table_length), dim)
                    ),
                    "naive_float32": max_abs_error(naive_sinusoidal(jnp.asarray(positions), dim), exact),
                }
            )
    return rows


def to_markdown(rows: list[dict]) -> str:
    lines = [
        "| dim | \\|pos\\| < | posenc_jax `sinusoidal` | posenc_jax `sinusoidal_table` | naive float32 |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dim']} | {r['positions_below']} | {r['sinusoidal']:.1e} | {r['sinusoidal_table']:.1e} "
            f"| {r['naive_float32']:.1e} |"
        )
    return "\n".join(lines) + "\n"


ROTARY_LIMITS = {"2**17": 2**17, "2**20": 2**20, "2**24": 2**24}
ROTARY_HEAD_DIM = 128
ROTARY_SCALINGS = {
    "none": None,
    "Linear(8)": Linear(8.0),
    "NTK(8)": NTK(8.0),
    "DynamicNTK(8, 4096)": DynamicNTK(8.0, 4096),
    "YaRN(32, 4096)": YaRN(32.0, 4096),
    "Llama3(8, 1, 4, 8192)": Llama3(),
    "LongRoPE(32, 4096)": LongRoPE(
        np.ones(ROTARY_HEAD_DIM // 2), np.geomspace(1.0, 32.0, ROTARY_HEAD_DIM // 2), 4096, factor=32.0
    ),
}


#: The unit pairs ``(1, 0)`` of one head: rotated, they are ``(cos, sin)`` of every pair's angle.
UNIT_PAIRS = np.tile(np.array([1.0, 0.0]), ROTARY_HEAD_DIM // 2)


def _rotated_unit_pairs(positions: jax.Array, scaling, length) -> jax.Array:
    """``apply_rotary`` of the unit pairs ``(1, 0)``: ``(cos, sin) · attention factor`` per pair."""
    x = jnp.broadcast_to(jnp.asarray(UNIT_PAIRS, jnp.float32), (positions.shape[0], 1, ROTARY_HEAD_DIM))
    return apply_rotary(x, positions, layout="interleaved", scaling=scaling, length=length)[:, 0]


def _naive_rotated_unit_pairs(positions: jax.Array, w: np.ndarray, factor: float) -> jax.Array:
    """The same from the float32 angles other libraries use."""
    angle = naive_angles(positions, w)
    pairs = jnp.stack([jnp.cos(angle), jnp.sin(angle)], -1) * jnp.float32(factor)
    return pairs.reshape(positions.shape[0], ROTARY_HEAD_DIM)


def measure_rotary(samples: int = 2048, seed: int = 0) -> list[dict]:
    """Long-context rotary errors; DynamicNTK and LongRoPE at the length ``limit`` (a static length, and
    DynamicNTK also with the length traced, as in decoding)."""
    rng = np.random.default_rng(seed)
    rows = []
    traced = jax.jit(functools.partial(_rotated_unit_pairs, scaling=ROTARY_SCALINGS["DynamicNTK(8, 4096)"]))
    for name, scaling in ROTARY_SCALINGS.items():
        for limit_name, limit in ROTARY_LIMITS.items():
            positions = rng.integers(0, limit, size=samples, dtype=np.int64).astype(np.int32)
            positions[0] = limit - 1
            w = rope_frequencies(ROTARY_HEAD_DIM, scaling=scaling, length=limit)
            factor = rope_attention_factor(scaling)
            exact = reference_rotary(UNIT_PAIRS[None, None], positions, frequencies=w)[:, 0] * factor
            got = _rotated_unit_pairs(jnp.asarray(positions), scaling, limit)
            row = {
                "scaling": name,
                "positions_below": limit_name,
                "posenc_jax": max_abs_error(got, exact),
                "naive_float32": max_abs_error(
                    _naive_rotated_unit_pairs(jnp.asarray(positions), w, factor), exact
                ),
            }
            if name.startswith("DynamicNTK"):
                got = traced(jnp.asarray(positions), length=jnp.int32(limit))
                row["posenc_jax_traced_length"] = max_abs_error(got, exact)
            rows.append(row)
    return rows


def rotary_to_markdown(rows: list[dict]) -> str:
    lines = [
        "| scaling | pos < | posenc_jax `apply_rotary` | naive float32 `pos * inv_freq` |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        ours = f"{r['posenc_jax']:.1e}"
        if "posenc_jax_traced_length" in r:
            ours += f" (traced length: {r['posenc_jax_traced_length']:.1e})"
        lines.append(f"| {r['scaling']} | {r['positions_below']} | {ours} | {r['naive_float32']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.accuracy", description=__doc__)
    parser.add_argument(
        "--out-dir",
        default="runs/accuracy",
        help="where to write accuracy.json and accuracy.md (the committed tables: experiments/results)",
    )
    args = parser.parse_args(argv)
    rows = measure()
    rotary_rows = measure_rotary()
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "accuracy.json"), "w") as f:
        json.dump(
            {
                "command": "python -m experiments.accuracy",
                "backend": jax.default_backend(),
                "rows": rows,
                "rotary_rows": rotary_rows,
            },
            f,
            indent=1,
        )
    table = to_markdown(rows)
    with open(os.path.join(args.out_dir, "accuracy.md"), "w") as f:
        f.write(
            "Max abs error against float64 `sin/cos(pos * w_i)`, float32 output, `jax_enable_x64` off "
            f"({jax.default_backend()}). Produced by `python -m experiments.accuracy`.\n\n" + table
        )
        f.write(
            "\nLong-context rotary (head_dim 128, base 10000): max abs error of the rotated unit pairs "
            "`(cos, sin) · attention factor` against float64, for positions drawn below the limit; "
            "length-dependent scalings at the length of the limit.\n\n" + rotary_to_markdown(rotary_rows)
        )
    print(table)
    print(rotary_to_markdown(rotary_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
