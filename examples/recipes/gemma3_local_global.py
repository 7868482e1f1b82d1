"""Gemma 3: five local sliding-window layers (RoPE base 10k) for every global layer (RoPE base 1M).

Gemma 3 alternates attention layers 5:1: local layers attend within a sliding window of 1024 tokens and
rotate with RoPE of base ``rope_local_base_freq = 10_000``; every 6th layer (``(i + 1) % 6 == 0``) is
global, attending to the whole context, with RoPE of base ``rope_theta = 1_000_000`` (the larger models also
scale the global layers' positions by 8, ``scaling=pe.rope.Linear(8.0)`` here). Gemma's checkpoints pair
features in split halves.

    python -m examples.recipes.gemma3_local_global
"""

from __future__ import annotations

import numpy as np

from examples.recipes.common import Layer, decode, full_pass
from posenc_jax import schemes


def gemma3_layers(
    num_layers: int,
    head_dim: int,
    *,
    sliding_window: int = 1024,
    pattern: int = 6,
    global_scaling=None,
) -> list[Layer]:
    """One ``(scheme, window)`` per layer: ``pattern - 1`` local layers, then a global one, repeated.

    >>> [(s.base, w) for s, w in gemma3_layers(6, 8, sliding_window=4)][-2:]
    [(10000.0, 4), (1000000.0, None)]
    """
    local = schemes.Rotary(head_dim, layout="split", base=10_000.0)
    global_ = schemes.Rotary(head_dim, layout="split", base=1_000_000.0, scaling=global_scaling)
    return [(global_, None) if (i + 1) % pattern == 0 else (local, sliding_window) for i in range(num_layers)]


def main() -> None:
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 8, 2, 8)).astype(np.float32)
    k = v = rng.standard_normal((1, 8, 2, 8)).astype(np.float32)
    positions = np.arange(8)[None]
    layers = gemma3_layers(6, 8, sliding_window=3)
    full, cached = full_pass(layers, q, k, v, positions), decode(layers, q, k, v, positions)
    print("layers (base, window):", [(s.base, w) for s, w in layers])
    agree = all(np.allclose(a, b, atol=1e-5) for a, b in zip(full, cached, strict=True))
    print("cached decoding equals the full pass:", agree)


if __name__ == "__main__":
    main()
