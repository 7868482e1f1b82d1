"""Llama 4: rotary layers, with no positional encoding at all in every 4th layer (NoPE layers).

Llama 4 interleaves rotary-embedding layers with NoPE layers: layer ``i`` (from 0) has no positional
encoding when ``(i + 1) % nope_layer_interval == 0`` (MaxText's ``nope_layer_interval = 4``, Hugging Face's
``no_rope_layers``); the others rotate queries and keys with RoPE of base ``rope_theta = 500_000`` in the
split-halves pairing of its checkpoints. (Its rotary layers also attend within chunks of 8192 tokens; that
is a mask, not a positional encoding, and is left out here.)

    python -m examples.recipes.llama4_nope
"""

from __future__ import annotations

import numpy as np

from examples.recipes.common import Layer, decode, full_pass
from posenc_jax import schemes


def llama4_layers(num_layers: int, head_dim: int, *, nope_layer_interval: int = 4) -> list[Layer]:
    """One ``(scheme, window)`` per layer: NoPE every ``nope_layer_interval``-th layer, rotary elsewhere.

    >>> [type(s).__name__ for s, _ in llama4_layers(4, 8)]
    ['Rotary', 'Rotary', 'Rotary', 'NoPosition']
    """
    rotary = schemes.Rotary(head_dim, layout="split", base=500_000.0)
    nope = schemes.NoPosition()
    return [(nope if (i + 1) % nope_layer_interval == 0 else rotary, None) for i in range(num_layers)]


def main() -> None:
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 6, 2, 8)).astype(np.float32)
    k = v = rng.standard_normal((1, 6, 2, 8)).astype(np.float32)
    positions = np.arange(6)[None]
    layers = llama4_layers(8, 8)
    full, cached = full_pass(layers, q, k, v, positions), decode(layers, q, k, v, positions)
    print("layers:", [type(s).__name__ for s, _ in layers])
    agree = all(np.allclose(a, b, atol=1e-5) for a, b in zip(full, cached, strict=True))
    print("cached decoding equals the full pass:", agree)


if __name__ == "__main__":
    main()
