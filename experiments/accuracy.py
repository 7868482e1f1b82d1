"""Max-abs-error table of the sinusoidal encoding against a float64 evaluation of the formula.

Usage: ``python -m experiments.accuracy [--out-dir experiments/results]`` writes ``accuracy.json`` and
``accuracy.md``: for integer positions drawn uniformly from ``[-limit, limit)`` (plus both ends), the max abs
error of ``posenc_jax.sinusoidal`` and of ``posenc_jax.sinusoidal_table`` (float32, ``jax_enable_x64`` off),
and of the textbook float32 ``sin(pos * w)`` for comparison.
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax import paper_frequencies, sinusoidal, sinusoidal_table

LIMITS = {"2**14": 2**14, "2**20": 2**20, "2**24": 2**24, "2**31": 2**31}
DIMS = (64, 1024, 8192)


def reference(positions: np.ndarray, dim: int) -> np.ndarray:
    angle = positions.astype(np.float64)[..., None] * paper_frequencies(dim)
    out = np.empty(angle.shape[:-1] + (dim,))
    out[..., 0::2], out[..., 1::2] = np.sin(angle), np.cos(angle)
    return out


def naive(positions: jax.Array, dim: int) -> jax.Array:
    angle = positions.astype(jnp.float32)[:, None] * jnp.asarray(paper_frequencies(dim), jnp.float32)
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)], -1).reshape(positions.shape[0], dim)


def measure(samples: int = 2048, table_length: int = 1024, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for dim in DIMS:
        for name, limit in LIMITS.items():
            positions = rng.integers(-limit, limit, size=samples, dtype=np.int64)
            positions[:2] = [limit - 1, -limit]
            positions = positions.astype(np.int32)
            exact = reference(positions, dim)
            start = int(limit - table_length)
            table = sinusoidal_table(table_length, dim, offset=start)
            rows.append(
                {
                    "dim": dim,
                    "positions_below": name,
                    "sinusoidal": float(np.abs(np.asarray(sinusoidal(positions, dim)) - exact).max()),
                    "sinusoidal_table": float(
                        np.abs(np.asarray(table) - reference(start + np.arange(table_length), dim)).max()
                    ),
                    "naive_float32": float(
                        np.abs(np.asarray(naive(jnp.asarray(positions), dim)) - exact).max()
                    ),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.accuracy", description=__doc__)
    parser.add_argument("--out-dir", default="experiments/results")
    args = parser.parse_args(argv)
    rows = measure()
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "accuracy.json"), "w") as f:
        json.dump(
            {"command": "python -m experiments.accuracy", "backend": jax.default_backend(), "rows": rows},
            f,
            indent=1,
        )
    table = to_markdown(rows)
    with open(os.path.join(args.out_dir, "accuracy.md"), "w") as f:
        f.write(
            "Max abs error against float64 `sin/cos(pos * w_i)`, float32 output, `jax_enable_x64` off "
            f"({jax.default_backend()}). Produced by `python -m experiments.accuracy`.\n\n" + table
        )
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
