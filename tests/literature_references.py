"""float64 numpy transcriptions of the length-generalization papers' formulas (Kerple, FIRE, CoPE, xPos).

Written from the papers' definitions, loop by loop where that is clearest, never from the code under test.
"""

import numpy as np


def reference_kerple(q_positions, k_positions, r1, r2, kernel):
    """Chi et al. 2022: ``-r1 log(1 + r2 |i - j|)`` (log) or ``-r1 |i - j|**r2`` (power), ``[b, h, q, k]``."""
    q = np.atleast_2d(np.asarray(q_positions, np.float64))
    k = np.atleast_2d(np.asarray(k_positions, np.float64))
    distance = np.abs(q[:, :, None] - k[:, None, :])[:, None]
    r1 = np.asarray(r1, np.float64)[None, :, None, None]
    r2 = np.asarray(r2, np.float64)[None, :, None, None]
    if kernel == "log":
        return -r1 * np.log(1.0 + r2 * distance)
    return -r1 * distance**r2


def reference_fire(q_positions, k_positions, mlp, c, threshold, eps=1e-6):
    """Li et al. 2024: ``f(ψ(|i - j|) / (ψ(max(L, i)) + eps))``, ``ψ(x) = log(c x + 1)``, f a ReLU MLP."""
    w1, b1, w2, b2 = (np.asarray(p, np.float64) for p in mlp)
    c, threshold = abs(float(c)), abs(float(threshold))
    q = np.atleast_2d(np.asarray(q_positions, np.float64))
    k = np.atleast_2d(np.asarray(k_positions, np.float64))
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
    from scheme_references import reference_rotary

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
