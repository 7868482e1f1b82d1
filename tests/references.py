"""float64 numpy references written from the formulas, independent of the code under test."""

import numpy as np


def paper_inverse_frequencies(dim: int, base: float = 10_000.0) -> np.ndarray:
    i = np.arange(dim // 2, dtype=np.float64)
    return base ** (-2.0 * i / dim)


def reference_sinusoidal(positions, dim, base=10_000.0, layout="interleaved", frequencies=None):
    """PE(pos, 2i) = sin(pos * w_i), PE(pos, 2i+1) = cos(pos * w_i), in float64."""
    w = paper_inverse_frequencies(dim, base) if frequencies is None else np.asarray(frequencies, np.float64)
    angle = np.asarray(positions, dtype=np.float64)[..., None] * w
    out = np.empty(angle.shape[:-1] + (dim,), dtype=np.float64)
    if layout == "interleaved":
        out[..., 0::2], out[..., 1::2] = np.sin(angle), np.cos(angle)
    else:
        out[..., : dim // 2], out[..., dim // 2 :] = np.sin(angle), np.cos(angle)
    return out
