"""What the recipes share: a stack of attention layers, each with its own scheme and window, run on a whole
sequence or token by token against key/value caches (the two must agree)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

import posenc_jax as pe

Layer = tuple[pe.PositionalScheme, int | None]  # a scheme and a causal sliding window (None: global)


def local_window(window: int | None) -> tuple[int, int] | None:
    """A causal window of ``window`` tokens (the query and the ``window - 1`` before it), as
    :func:`posenc_jax.attention`'s ``local_window_size``."""
    return None if window is None else (window - 1, 0)


def full_pass(layers: Sequence[Layer], q, k, v, positions) -> list[jax.Array]:
    """Causal attention of every layer over the whole sequence (the same q, k, v in every layer)."""
    return [
        pe.attention(
            q,
            k,
            v,
            scheme=scheme,
            q_positions=positions,
            k_positions=positions,
            is_causal=True,
            local_window_size=local_window(window),
        )
        for scheme, window in layers
    ]


def decode(layers: Sequence[Layer], q, k, v, positions) -> list[jax.Array]:
    """The same, one token at a time against a :class:`posenc_jax.KVCache` per layer."""
    batch, length, kv_heads, head_dim = k.shape
    outputs = []
    for scheme, window in layers:
        cache = pe.KVCache.init(batch=batch, capacity=length, num_kv_heads=kv_heads, head_dim=head_dim)
        steps = []
        for t in range(length):
            cache = cache.append(k[:, t : t + 1], v[:, t : t + 1], positions[:, t : t + 1])
            steps.append(cache.attend(q[:, t : t + 1], scheme=scheme, local_window_size=local_window(window)))
        outputs.append(jnp.concatenate(steps, axis=1))
    return outputs
