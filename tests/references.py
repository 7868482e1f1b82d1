"""float64 numpy references, written from the published formulas and never from the code under test.

The one set of references for the library's tests and the experiments' measurements (accuracy tables,
benchmarks, properties). It imports numpy only: no JAX and nothing of posenc_jax, so a bug in the library
cannot leak into the numbers it is checked against. Shapes follow the library's: positions ``[length]`` or
``[batch, length]``, queries and keys ``[batch, length, heads, head_dim]``, biases
``[batch or 1, heads, q_len, k_len]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def paper_inverse_frequencies(dim: int, base: float = 10_000.0) -> np.ndarray:
    """``w_i = base ** (-2i / dim)`` for the pairs ``i = 0 … dim/2 - 1`` ("Attention is all you need")."""
    i = np.arange(dim // 2, dtype=np.float64)
    return base ** (-2.0 * i / dim)


def reference_angles(positions: Any, frequencies: Any) -> np.ndarray:
    """The angles ``pos · w_i`` in float64, ``[*positions.shape, len(frequencies)]``.

    >>> reference_angles([2], np.array([0.5, 1.0])).tolist()
    [[1.0, 2.0]]
    """
    return np.asarray(positions, np.float64)[..., None] * np.asarray(frequencies, np.float64)


def _pairs(dim: int, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """The first and second feature of every pair: ``(2i, 2i+1)`` interleaved, ``(i, i + dim/2)`` split."""
    if layout == "interleaved":
        return np.arange(0, dim, 2), np.arange(1, dim, 2)
    if layout == "split":
        return np.arange(dim // 2), np.arange(dim // 2, dim)
    raise ValueError(f"references(layout={layout!r}): layout must be 'interleaved' or 'split'")


def reference_sinusoidal(positions, dim, base=10_000.0, layout="interleaved", frequencies=None):
    """``PE(pos, 2i) = sin(pos · w_i)``, ``PE(pos, 2i+1) = cos(pos · w_i)`` (interleaved; split puts every
    sine before every cosine), ``[*positions.shape, dim]``.

    >>> reference_sinusoidal([0], 4).tolist()
    [[0.0, 1.0, 0.0, 1.0]]
    """
    w = paper_inverse_frequencies(dim, base) if frequencies is None else frequencies
    angle = reference_angles(positions, w)
    out = np.empty(angle.shape[:-1] + (dim,), dtype=np.float64)
    first, second = _pairs(dim, layout)
    out[..., first], out[..., second] = np.sin(angle), np.cos(angle)
    return out


def reference_rotary(
    x, positions, *, base=10_000.0, layout="interleaved", scale=1.0, rotary_dim=None, frequencies=None
):
    """Pair ``i = (a, b) -> (a cos t - b sin t, b cos t + a sin t)``, ``t = pos / scale · w_i`` (Su et al.).

    ``w_i = base ** (-2i / r)`` over the first ``r = rotary_dim`` features (the rest pass through), or the
    given ``frequencies``. ``x`` ``[..., length, heads, head_dim]``; ``positions`` broadcast against
    ``x.shape[:-2]`` (the heads axis is added here). Returns float64, the broadcast shape.

    >>> np.round(reference_rotary(np.array([[[1.0, 0.0]]]), [1], frequencies=[np.pi / 2]), 12).tolist()
    [[[0.0, 1.0]]]
    """
    x = np.asarray(x, dtype=np.float64)
    r = x.shape[-1] if rotary_dim is None else rotary_dim
    w = paper_inverse_frequencies(r, base) if frequencies is None else np.asarray(frequencies, np.float64)
    theta = (np.asarray(positions, dtype=np.float64)[..., None] / scale * w)[..., None, :]
    out = np.array(np.broadcast_to(x, np.broadcast_shapes(x.shape, theta.shape[:-1] + x.shape[-1:])))
    first, second = _pairs(r, layout)
    a, b = out[..., first], out[..., second]
    out[..., first] = a * np.cos(theta) - b * np.sin(theta)
    out[..., second] = b * np.cos(theta) + a * np.sin(theta)
    return out


def _positions_2d(positions) -> np.ndarray:
    return np.atleast_2d(np.asarray(positions, np.float64))


def reference_alibi(num_heads, q_positions, k_positions, is_causal):
    """Press et al. 2022: ``-m_h · (i - j)`` (0 for ``j > i``) when causal, else ``-m_h · |i - j|``,
    ``m_h = 2 ** (-8 (h + 1) / num_heads)`` (power-of-two ``num_heads``)."""
    m = np.array([2.0 ** (-8.0 * (h + 1) / num_heads) for h in range(num_heads)])
    distance = _positions_2d(q_positions)[:, :, None] - _positions_2d(k_positions)[:, None, :]
    distance = np.where(distance < 0, 0.0, distance) if is_causal else np.abs(distance)
    return -m[None, :, None, None] * distance[:, None]


def reference_t5_bucket(distance, *, num_buckets, max_distance, is_causal):
    """T5's bucket of ``distance = k_pos - q_pos`` (Raffel et al. 2020).

    Bidirectional: half the buckets for ``distance > 0``, ``n = |distance|``; causal: ``n = max(-distance, 0)``.
    ``n`` below half of the (remaining) buckets is its own bucket, larger ``n`` log-spaced up to ``max_distance``.
    """
    distance = np.asarray(distance, dtype=np.int64)
    offset = np.zeros_like(distance)
    if not is_causal:
        num_buckets //= 2
        offset = np.where(distance > 0, num_buckets, 0)
        n = np.abs(distance)
    else:
        n = np.maximum(-distance, 0)
    max_exact = num_buckets // 2
    with np.errstate(divide="ignore"):
        ratio = np.log(np.maximum(n, 1) / max_exact) / np.log(max_distance / max_exact)
    large = max_exact + np.floor(ratio * (num_buckets - max_exact)).astype(np.int64)
    return offset + np.where(n < max_exact, n, np.minimum(large, num_buckets - 1))


def reference_transformer_xl(q, k, q_positions, k_positions, kernel, u, v, *, base=10_000.0, scale=None):
    """Dai et al. 2019: ``scale · (q_i·W_R R_{i-j} + u·k_j + v·W_R R_{i-j})`` by the direct O(L² d) formula.

    ``R_{i-j} = [sin((i-j) w), cos((i-j) w)]``, ``w_m = base ** (-2m / rel_dim)``; the ``[q, k, rel_dim]``
    encodings and their projections are materialized. Returns ``[batch, heads, q_len, k_len]``.
    """
    q, k, kernel, u, v = (np.asarray(a, np.float64) for a in (q, k, kernel, u, v))
    rel_dim = kernel.shape[0]
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    w = base ** (-2.0 * np.arange(rel_dim // 2) / rel_dim)
    distance = _positions_2d(q_positions)[:, :, None] - _positions_2d(k_positions)[:, None, :]  # i - j
    angles = distance[..., None] * w
    encoding = np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)  # [b, q, k, rel_dim]
    projected = np.einsum("bijr,rhd->bijhd", encoding, kernel)
    k = np.broadcast_to(k, (q.shape[0],) + k.shape[1:])
    content = np.einsum("hd,bjhd->bhj", u, k)[:, :, None, :]
    position = np.einsum(
        "bihd,bijhd->bhij", q + v, np.broadcast_to(projected, (q.shape[0],) + projected.shape[1:])
    )
    return scale * (content + position)


def reference_kerple(q_positions, k_positions, r1, r2, kernel):
    """Chi et al. 2022: ``-r1 log(1 + r2 |i - j|)`` (log) or ``-r1 |i - j|**r2`` (power), ``[b, h, q, k]``."""
    distance = np.abs(_positions_2d(q_positions)[:, :, None] - _positions_2d(k_positions)[:, None, :])[:, None]
    r1 = np.asarray(r1, np.float64)[None, :, None, None]
    r2 = np.asarray(r2, np.float64)[None, :, None, None]
    if kernel == "log":
        return -r1 * np.log(1.0 + r2 * distance)
    return -r1 * distance**r2


def reference_fire(q_positions, k_positions, mlp, c, threshold, eps=1e-6):
    """Li et al. 2024: ``f(ψ(|i - j|) / (ψ(max(L, i)) + eps))``, ``ψ(x) = log(c x + 1)``, f a ReLU MLP."""
    w1, b1, w2, b2 = (np.asarray(p, np.float64) for p in mlp)
    c, threshold = abs(float(c)), abs(float(threshold))
    q, k = _positions_2d(q_positions), _positions_2d(k_positions)
    batch = max(q.shape[0], k.shape[0])
    q, k = np.broadcast_to(q, (batch, q.shape[1])), np.broadcast_to(k, (batch, k.shape[1]))
    out = np.zeros((batch, w2.shape[1], q.shape[1], k.shape[1]))
    for b in range(batch):
        for i, qi in enumerate(q[b]):
            for j, kj in enumerate(k[b]):
                u = np.log(c * abs(qi - kj) + 1.0) / (np.log(c * max(qi, threshold) + 1.0) + eps)
                out[b, :, i, j] = np.maximum(u * w1 + b1, 0.0) @ w2 + b2
    return out


def reference_cope(q, k, q_positions, k_positions, embeddings, mask=None, scale=None):
    """Golovneva et al. 2024, entry by entry: ``p_ij = Σ_{t=j}^{i} σ(scale q_i·k_t)`` over the keys the query
    sees, ``e[p]`` interpolated between its integer neighbours as a vector, the term ``q_i·e[p_ij]``."""
    q, k, e = (np.asarray(a, np.float64) for a in (q, k, embeddings))
    batch, q_len, heads, head_dim = q.shape
    k = np.repeat(k, heads // k.shape[2], axis=2)
    scale = 1.0 / np.sqrt(head_dim) if scale is None else scale
    qp = np.broadcast_to(np.atleast_2d(q_positions), (batch, q_len))
    kp = np.broadcast_to(np.atleast_2d(k_positions), (batch, k.shape[1]))
    npos = e.shape[0]
    out = np.zeros((batch, heads, q_len, k.shape[1]))
    for b in range(batch):
        for h in range(heads):
            for i in range(q_len):
                sees = [
                    kp[b, t] <= qp[b, i]
                    and (mask is None or np.broadcast_to(mask, (batch, heads) + out.shape[2:])[b, h, i, t])
                    for t in range(k.shape[1])
                ]
                gates = [
                    1.0 / (1.0 + np.exp(-scale * q[b, i, h] @ k[b, t, h])) if sees[t] else 0.0
                    for t in range(k.shape[1])
                ]
                for j in range(k.shape[1]):
                    p = min(sum(gates[j:]), npos - 1)
                    low, high = int(np.floor(p)), int(np.ceil(p))
                    vector = (1.0 - (p - low)) * e[low] + (p - low) * e[high]
                    out[b, h, i, j] = q[b, i, h] @ vector
    return out


def reference_xpos_logits(
    q, k, q_positions, k_positions, *, layout, base=10_000.0, scale_base=512.0, gamma=0.4
):
    """Sun et al. 2022: ``q·k`` after RoPE and the factors ``ζ_i**(n/B)`` (queries), ``ζ_i**(-m/B)`` (keys).

    ``[batch, heads, q_len, k_len]``, unscaled, with kv heads repeated for grouped queries; float64 with the
    absolute factors, so positions must stay moderate (``|p|·|log ζ_0| / B`` well inside float64's range).
    """
    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    head_dim = q.shape[-1]
    pairs = head_dim // 2
    zeta = (np.arange(pairs) / pairs + gamma) / (1.0 + gamma)

    def scaled(x, positions, sign):
        p = np.asarray(positions, np.float64)
        p = np.broadcast_to(p if p.ndim == 2 else p[None], x.shape[:2])
        factor = zeta ** (sign * p[..., None] / scale_base)  # [batch, length, pairs]
        factor = np.repeat(factor, 2, -1) if layout == "interleaved" else np.concatenate([factor, factor], -1)
        return reference_rotary(x, p, base=base, layout=layout) * factor[:, :, None, :]

    qs, ks = scaled(q, q_positions, 1.0), scaled(k, k_positions, -1.0)
    ks = np.repeat(ks, q.shape[2] // k.shape[2], axis=2)
    return np.einsum("bqhd,bkhd->bhqk", qs, ks)
