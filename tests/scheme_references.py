"""float64 numpy references for the positional schemes, written from the formulas (shared by module tests)."""

import numpy as np


def reference_rotary(x, positions, *, base=10_000.0, layout="interleaved", scale=1.0, rotary_dim=None):
    """Pair i = (a, b) -> (a cos t - b sin t, b cos t + a sin t), t = pos / scale * base**(-2i/r).

    ``x`` ``[..., length, heads, head_dim]``; ``positions`` broadcast against ``x.shape[:-2]``.
    """
    x = np.asarray(x, dtype=np.float64)
    r = x.shape[-1] if rotary_dim is None else rotary_dim
    n = r // 2
    w = base ** (-2.0 * np.arange(n, dtype=np.float64) / r)
    theta = (np.asarray(positions, dtype=np.float64)[..., None] / scale * w)[..., None, :]
    if layout == "interleaved":
        first, second = np.arange(0, r, 2), np.arange(1, r, 2)
    else:
        first, second = np.arange(n), np.arange(n, r)
    out = x.copy()
    a, b = x[..., first], x[..., second]
    out[..., first] = a * np.cos(theta) - b * np.sin(theta)
    out[..., second] = b * np.cos(theta) + a * np.sin(theta)
    return out


def reference_alibi(num_heads, q_positions, k_positions, is_causal):
    """``-m_h * (i - j)`` (0 for j > i) when causal, else ``-m_h * |i - j|``; power-of-two ``num_heads``."""
    m = np.array([2.0 ** (-8.0 * (h + 1) / num_heads) for h in range(num_heads)])
    q = np.atleast_2d(np.asarray(q_positions, np.float64))
    k = np.atleast_2d(np.asarray(k_positions, np.float64))
    distance = q[:, :, None] - k[:, None, :]
    distance = np.where(distance < 0, 0.0, distance) if is_causal else np.abs(distance)
    return -m[None, :, None, None] * distance[:, None]


def reference_t5_bucket(distance, *, num_buckets, max_distance, is_causal):
    """T5's bucket of ``distance = k_pos - q_pos`` (Raffel et al. 2020), transcribed in float64 numpy.

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
    """``scale * (q_i·W_R R_{i-j} + u·k_j + v·W_R R_{i-j})`` by the direct O(L^2 d) formula, in float64.

    ``R_{i-j} = [sin((i-j) w), cos((i-j) w)]``, ``w_m = base ** (-2m / rel_dim)``; the ``[q, k, rel_dim]``
    encodings and their projections are materialized. Returns ``[batch, heads, q_len, k_len]``.
    """
    q, k, kernel, u, v = (np.asarray(a, np.float64) for a in (q, k, kernel, u, v))
    rel_dim = kernel.shape[0]
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    w = base ** (-2.0 * np.arange(rel_dim // 2) / rel_dim)
    qp = np.atleast_2d(np.asarray(q_positions, np.float64))
    kp = np.atleast_2d(np.asarray(k_positions, np.float64))
    distance = qp[:, :, None] - kp[:, None, :]  # i - j, [batch or 1, q, k]
    angles = distance[..., None] * w
    encoding = np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)  # [b, q, k, rel_dim]
    projected = np.einsum("bijr,rhd->bijhd", encoding, kernel)
    k = np.broadcast_to(k, (q.shape[0],) + k.shape[1:])
    content = np.einsum("hd,bjhd->bhj", u, k)[:, :, None, :]
    position = np.einsum(
        "bihd,bijhd->bhij", q + v, np.broadcast_to(projected, (q.shape[0],) + projected.shape[1:])
    )
    return scale * (content + position)


#: The scheme values' fields that hold parameters (the modules hold them as Flax parameters instead).
PARAMETERS = ("table", "kernel", "content_bias", "position_bias")
