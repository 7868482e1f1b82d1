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


def reference_alibi(num_heads, q_positions, k_positions, causal):
    """``-m_h * (i - j)`` (0 for j > i) when causal, else ``-m_h * |i - j|``; power-of-two ``num_heads``."""
    m = np.array([2.0 ** (-8.0 * (h + 1) / num_heads) for h in range(num_heads)])
    q = np.atleast_2d(np.asarray(q_positions, np.float64))
    k = np.atleast_2d(np.asarray(k_positions, np.float64))
    distance = q[:, :, None] - k[:, None, :]
    distance = np.where(distance < 0, 0.0, distance) if causal else np.abs(distance)
    return -m[None, :, None, None] * distance[:, None]
