"""Statistics over seeds: mean, 95% t confidence interval, max; length bands."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as scipy_stats

__all__ = ["t_quantile", "summarize", "bands"]


def t_quantile(confidence: float, df: int) -> float:
    """Two-sided Student-t critical value: ``P(|T_df| ≤ q) = confidence``.

    Args:
      confidence: in ``(0, 1)``, e.g. 0.95.
      df: degrees of freedom (positive integer).

    Returns:
      ``q``.

    Raises:
      ValueError: for ``confidence`` outside ``(0, 1)`` or ``df < 1``.

    >>> round(t_quantile(0.95, 2), 4)
    4.3027
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"t_quantile(confidence={confidence!r}): must be in (0, 1)")
    if not isinstance(df, int | np.integer) or isinstance(df, bool) or df < 1:
        raise ValueError(f"t_quantile(df={df!r}): df must be a positive integer")
    return float(scipy_stats.t.ppf(0.5 + confidence / 2.0, df))


def summarize(values, confidence: float = 0.95) -> dict[str, float | int | None]:
    """Mean, half-width of the t confidence interval of the mean, max, min and count of per-seed values.

    Args:
      values: 1-D per-seed values (finite).
      confidence: confidence level of the interval.

    Returns:
      ``{"mean", "ci", "max", "min", "n"}``; ``ci`` is ``None`` with a single value (no interval).

    Raises:
      ValueError: for an empty, non-1-D or non-finite ``values``.

    >>> s = summarize([0.5, 0.7, 0.6])
    >>> round(s["mean"], 3), round(s["ci"], 4), s["max"]
    (0.6, 0.2484, 0.7)
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"summarize(values shape={array.shape}): values must be a non-empty 1-D sequence")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"summarize(values={array.tolist()}): values must be finite")
    n = int(array.size)
    mean = float(array.mean())
    ci = None
    if n > 1:
        ci = t_quantile(confidence, n - 1) * float(array.std(ddof=1)) / math.sqrt(n)
    return {"mean": mean, "ci": ci, "max": float(array.max()), "min": float(array.min()), "n": n}


def bands(train_max_length: int, test_max_length: int) -> dict[str, tuple[int, int]]:
    """Length bands (inclusive input lengths): in distribution ``1 … N``, ``N+1 … 2N`` and ``2N+1 … 4N``
    (cut at ``test_max_length``); empty bands are left out.

    Raises:
      ValueError: for non-positive lengths or ``test_max_length < train_max_length``.

    >>> bands(10, 40)
    {'in-distribution (1-10)': (1, 10), '1-2x (11-20)': (11, 20), '2-4x (21-40)': (21, 40)}
    """
    n, m = train_max_length, test_max_length
    if n < 1 or m < n:
        raise ValueError(
            f"bands(train_max_length={n}, test_max_length={m}): need 1 ≤ train_max_length ≤ test_max_length"
        )
    out = {f"in-distribution (1-{n})": (1, n)}
    for name, low, high in (("1-2x", n + 1, min(2 * n, m)), ("2-4x", 2 * n + 1, min(4 * n, m))):
        if low <= high:
            out[f"{name} ({low}-{high})"] = (low, high)
    return out
