"""Statistics over seeds: mean and 95% t interval, paired differences between schemes, the family-wise
(Holm) correction of many comparisons, length bands.

Every scheme of a run sees the same training data per seed and the same test examples, so two schemes are
compared by their per-seed differences (`paired_difference`): the paired t test's p-value and the 95% t
interval of the mean difference. A report states many such comparisons at once; it calls a difference
separated only where the Holm-adjusted p-value (`holm`) over the whole family of comparisons it states is
at most 5%, so that the chance of stating any difference that is not there stays at most 5%. The
unadjusted 95% interval is still what is displayed.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as scipy_stats

__all__ = [
    "FAMILY_ALPHA",
    "t_quantile",
    "mean_interval",
    "summarize",
    "paired_difference",
    "holm",
    "bands",
    "beyond_training",
]

#: The family-wise error rate at which `holm` decides which differences are separated.
FAMILY_ALPHA = 0.05

#: Per-seed differences whose spread (max - min) is at most this are identical in every seed.
_IDENTICAL = 1e-12


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


def mean_interval(values, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean over the first axis and the half-width of its t interval (``None`` for a single value).

    Args:
      values: `[seeds, ...]` finite values.
      confidence: confidence level.

    Returns:
      ``(mean [...], half_width [...] or None)``.

    >>> m, h = mean_interval(np.array([[0.5, 1.0], [0.7, 1.0], [0.6, 1.0]]))
    >>> np.round(m, 3).tolist(), np.round(h, 4).tolist()
    ([0.6, 1.0], [0.2484, 0.0])
    """
    array = np.asarray(values, dtype=np.float64)
    n = array.shape[0]
    mean = array.mean(axis=0)
    if n < 2:
        return mean, None
    return mean, t_quantile(confidence, n - 1) * array.std(axis=0, ddof=1) / math.sqrt(n)


def _check(name: str, array: np.ndarray) -> None:
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name}(values shape={array.shape}): values must be a non-empty 1-D sequence")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}(values={array.tolist()}): values must be finite")


def summarize(values, confidence: float = 0.95, *, bounds: tuple[float, float] | None = (0.0, 1.0)) -> dict:
    """Mean, t interval of the mean, max, min and count of per-seed values.

    Args:
      values: 1-D per-seed values (finite).
      confidence: confidence level of the interval.
      bounds: the range the values live in (accuracies: ``[0, 1]``); the displayed interval ``low … high``
        is clipped to it. ``None``: no clipping.

    Returns:
      ``{"mean", "ci", "low", "high", "max", "min", "n"}``; ``ci`` is the half-width (``None`` with a single
      value, and then ``low = high = mean``).

    Raises:
      ValueError: for an empty, non-1-D or non-finite ``values``.

    >>> s = summarize([0.5, 0.7, 0.6])
    >>> round(s["mean"], 3), round(s["ci"], 4), s["max"], round(s["high"], 4)
    (0.6, 0.2484, 0.7, 0.8484)
    >>> summarize([0.9, 1.0, 1.0])["high"]
    1.0
    """
    array = np.asarray(values, dtype=np.float64)
    _check("summarize", array)
    mean, half = mean_interval(array, confidence)
    mean = float(mean)
    ci = None if half is None else float(half)
    low, high = (mean, mean) if ci is None else (mean - ci, mean + ci)
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {
        "mean": mean,
        "ci": ci,
        "low": low,
        "high": high,
        "max": float(array.max()),
        "min": float(array.min()),
        "n": int(array.size),
    }


def paired_difference(a, b, confidence: float = 0.95) -> dict:
    """The mean per-seed difference ``a - b``, its t interval and the paired t test's p-value.

    Args:
      a, b: 1-D per-seed values of two schemes, the same seeds in the same order.
      confidence: confidence level.

    Returns:
      ``{"mean", "ci", "low", "high", "n", "p_value", "identical", "separated"}``: ``low … high`` is the
      interval of the mean difference (not clipped: differences of accuracies live in ``[-1, 1]``);
      ``p_value`` is the two-sided paired t test's of "mean difference 0" (``None`` with a single seed; 0
      for a non-zero difference that is the same in every seed, 1 for no difference in any seed);
      ``identical`` is whether every seed has the same difference (a zero-width interval); ``separated``
      is whether the unadjusted interval excludes 0 (never with a single seed) — a family of comparisons
      is decided with `holm` instead.

    Raises:
      ValueError: for empty, non-1-D, non-finite or unequal-length inputs.

    >>> d = paired_difference([0.9, 0.8, 0.7], [0.5, 0.5, 0.5])
    >>> round(d["mean"], 3), round(d["low"], 3), round(d["high"], 3), round(d["p_value"], 4), d["separated"]
    (0.3, 0.052, 0.548, 0.0351, True)
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    _check("paired_difference", a)
    _check("paired_difference", b)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference(a shape={a.shape}, b shape={b.shape}): one value per seed each")
    differences = a - b
    s = summarize(differences, confidence, bounds=None)
    identical = bool(np.ptp(differences) <= _IDENTICAL)
    if s["ci"] is None:
        p_value = None
    elif identical:
        p_value = 1.0 if abs(s["mean"]) <= _IDENTICAL else 0.0
    else:
        error = float(differences.std(ddof=1)) / math.sqrt(differences.size)
        p_value = float(2.0 * scipy_stats.t.sf(abs(s["mean"]) / error, differences.size - 1))
    separated = s["ci"] is not None and (s["low"] > 0.0 or s["high"] < 0.0)
    return {k: s[k] for k in ("mean", "ci", "low", "high", "n")} | {
        "p_value": p_value,
        "identical": identical,
        "separated": bool(separated),
    }


def holm(p_values, alpha: float = FAMILY_ALPHA) -> tuple[list[float | None], list[bool]]:
    """Holm's step-down adjustment of a family of p-values (family-wise error at most ``alpha`` under any
    dependence between the tests).

    The ``m`` p-values sorted ascending, ``p(1) ≤ … ≤ p(m)``, are adjusted to
    ``max over j ≤ i of min(1, (m - j + 1) p(j))``; a hypothesis is rejected where its adjusted p-value is
    at most ``alpha``.

    Args:
      p_values: the family's p-values; ``None`` entries (comparisons without a test, e.g. a single seed)
        are not counted in the family and stay ``None``.
      alpha: the family-wise error rate, in ``(0, 1)``.

    Returns:
      ``(adjusted p-values, rejected)``, in the order of ``p_values``.

    Raises:
      ValueError: for a p-value outside ``[0, 1]`` or ``alpha`` outside ``(0, 1)``.

    >>> holm([0.01, 0.04, 0.03, 0.005])
    ([0.03, 0.06, 0.06, 0.02], [True, False, False, True])
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"holm(alpha={alpha!r}): must be in (0, 1)")
    tested = [(p, i) for i, p in enumerate(p_values) if p is not None]
    for p, _ in tested:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"holm(p_values=[..., {p!r}, ...]): each p-value must be in [0, 1] or None")
    adjusted: list[float | None] = [None] * len(p_values)
    m, running = len(tested), 0.0
    for rank, (p, i) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted, [p is not None and p <= alpha for p in adjusted]


def bands(train_max_length: int, test_max_length: int) -> dict[str, tuple[int, int]]:
    """Length bands (inclusive input lengths): in distribution ``1 … N``, ``N+1 … 2N``, ``2N+1 … 4N`` and
    ``4N+1 … test_max_length`` (cut at ``test_max_length``); empty bands are left out.

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
    for name, low, high in (
        ("1-2x", n + 1, min(2 * n, m)),
        ("2-4x", 2 * n + 1, min(4 * n, m)),
        (">4x", 4 * n + 1, m),
    ):
        if low <= high:
            out[f"{name} ({low}-{high})"] = (low, high)
    return out


def beyond_training(train_max_length: int, test_max_length: int) -> tuple[int, int] | None:
    """The test lengths beyond training, ``N+1 … test_max_length`` (the reference protocol's 41–500), or
    ``None`` if there are none.

    >>> beyond_training(40, 500)
    (41, 500)
    """
    n, m = train_max_length, test_max_length
    return (n + 1, m) if m > n else None
