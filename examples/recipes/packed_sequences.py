"""Packed sequences: several examples in one row, each attending only to itself, from its own position 0.

Packing concatenates short examples along the length axis and marks them with segment ids, e.g.
``[0, 0, 0, 1, 1, 2, 2, 2, 2]``. Two things make a packed row compute what its examples would alone:

* positions restart in every segment: :func:`posenc_jax.positions_from_segment_ids` gives
  ``[0, 1, 2, 0, 1, 0, 1, 2, 3]`` (ids compared in their own precision, so any integer labels work);
* a query attends only to keys of its own segment (and, in a decoder, not to later ones): the mask
  ``segment_ids[q] == segment_ids[k]`` and ``position[k] <= position[q]``.

Every scheme then sees what it would see for the example alone: rotary and ALiBi depend on the positions
given; T5 and the other relative biases on their differences. Padding is one more segment id that nothing
reads (mask its loss), or give it an id of its own.

    python -m examples.recipes.packed_sequences
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import posenc_jax as pe
from posenc_jax import schemes


def packed_mask(segment_ids: jnp.ndarray, positions: jnp.ndarray, *, is_causal: bool = True) -> jnp.ndarray:
    """Boolean ``[batch, 1, length, length]``: same segment (and, causal, key position <= query position).

    ``segment_ids`` and ``positions``: ``[batch, length]``; a mask for :func:`posenc_jax.attention`'s ``mask``.
    """
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    if is_causal:
        same = same & (positions[:, None, :] <= positions[:, :, None])
    return same[:, None]


def packed_attention(q, k, v, segment_ids, *, scheme: pe.PositionalScheme) -> jnp.ndarray:
    """Causal attention of a packed batch ``[batch, length, heads, head_dim]``, segment by segment."""
    positions = pe.positions_from_segment_ids(segment_ids)
    mask = packed_mask(jnp.asarray(segment_ids), positions)
    return pe.attention(q, k, v, scheme=scheme, q_positions=positions, k_positions=positions, mask=mask)


def check(seed: int = 0) -> dict[str, float]:
    """The largest difference between each packed segment's output and the segment run alone."""
    rng = np.random.default_rng(seed)
    segment_ids = np.array([[7, 7, 7, 3, 3, 9, 9, 9, 9]], np.int32)  # any labels; runs of equal ids
    q = rng.standard_normal((1, 9, 4, 8)).astype(np.float32)
    k = rng.standard_normal((1, 9, 2, 8)).astype(np.float32)
    v = rng.standard_normal((1, 9, 2, 8)).astype(np.float32)
    results = {}
    for name, scheme in {
        "rotary": schemes.Rotary(8, layout="split"),
        "alibi": schemes.ALiBi(4),
    }.items():
        packed = np.asarray(packed_attention(q, k, v, segment_ids, scheme=scheme))
        worst = 0.0
        for start, stop in ((0, 3), (3, 5), (5, 9)):
            positions = jnp.arange(stop - start)
            alone = pe.attention(
                q[:, start:stop],
                k[:, start:stop],
                v[:, start:stop],
                scheme=scheme,
                q_positions=positions,
                k_positions=positions,
                is_causal=True,
            )
            worst = max(worst, float(np.max(np.abs(packed[:, start:stop] - np.asarray(alone)))))
        results[f"{name}: packed vs each segment alone"] = worst
    return results


def main() -> dict[str, float]:
    """Prints the differences :func:`check` measures, and returns them."""
    print(
        "positions:", np.asarray(pe.positions_from_segment_ids(np.array([7, 7, 7, 3, 3, 9, 9, 9, 9]))).tolist()
    )
    results = check()
    for name, value in results.items():
        print(f"{name}: {value:.1e}")
    return results


if __name__ == "__main__":
    main()
