"""Gemma's partial rotary embeddings (``rope_proportion``, p-RoPE of Barbero et al. 2025).

Gemma's ``apply_rope(inputs, positions, base_frequency=..., rope_proportion=p)`` rotates only the fastest
``int(p * head_dim // 2)`` feature pairs, with the frequencies ``base ** (-2i / head_dim)`` of the full head,
and leaves the slower pairs unrotated (its timescale is padded with infinity); features pair in split halves.
Barbero et al. ("Round and Round We Go! What makes Rotary Positional Encodings useful?", ICLR 2025) found
that removing the lowest frequencies this way (p-RoPE, e.g. ``p = 0.75``) helps. This is
``Rotary(head_dim, layout="split", base=base_frequency, proportion=p)``, not ``rotary_dim`` (GPT-NeoX's partial
rotary, which rotates the first ``rotary_dim`` features with the frequencies of a narrower head).

    python -m examples.recipes.gemma_p_rope
"""

from __future__ import annotations

import numpy as np

from posenc_jax import schemes


def gemma_rope(
    head_dim: int, *, base_frequency: float = 10_000.0, rope_proportion: float = 1.0
) -> schemes.Rotary:
    """The rotary scheme of Gemma's ``apply_rope`` with these arguments.

    >>> gemma_rope(256, rope_proportion=0.25).proportion
    0.25
    """
    return schemes.Rotary(head_dim, layout="split", base=base_frequency, proportion=rope_proportion)


def main() -> None:
    x = np.ones((1, 4, 1, 8), np.float32)
    rotated, _ = gemma_rope(8, rope_proportion=0.5).rotate(x, x, np.arange(4), np.arange(4))
    rotated = np.asarray(rotated)
    print("features 2, 3, 6, 7 (the slow pairs) stay 1:", np.allclose(rotated[..., [2, 3, 6, 7]], 1.0))


if __name__ == "__main__":
    main()
