"""Baselines that read no positions or no input: the analytic ceiling of an encoder without positions and
the most-frequent-symbol baseline, per example of an evaluation set."""

from __future__ import annotations

import numpy as np

from experiments.ordering.tasks import NUM_CLASSES, Examples

__all__ = ["analytic_ceiling", "most_frequent_baseline"]


def analytic_ceiling(examples: Examples) -> np.ndarray:
    """Best per-token accuracy of an encoder that sees no position information, per example.

    Without positions every ``EMPTY`` token of an example gets the same representation, so all of its
    outputs are the same symbol; the best choice is the most frequent target symbol.

    Returns:
      `[examples]` float64: ``max_c count(target == c) / output_length``.

    >>> t = np.array([[0, 0, 1, 2]])
    >>> analytic_ceiling(Examples(t, np.array([4]), t, np.array([4]))).tolist()
    [0.5]
    """
    out_max = examples.targets.shape[-1]
    valid = np.arange(out_max)[None, :] < examples.output_lengths[:, None]
    counts = ((examples.targets[..., None] == np.arange(NUM_CLASSES)) & valid[..., None]).sum(1)
    return counts.max(-1) / examples.output_lengths


def most_frequent_baseline(examples: Examples) -> np.ndarray:
    """Per example, the per-token accuracy of always answering the single symbol most frequent among all
    target tokens of the examples of the same input length (a baseline that reads no input).

    Returns:
      `[examples]` float64.

    >>> t = np.array([[0, 1, 1], [1, 1, 0], [2, 0, 0]])
    >>> most_frequent_baseline(Examples(t, np.array([3, 3, 1]), t, np.array([3, 3, 1]))).tolist()
    [0.6666666666666666, 0.6666666666666666, 1.0]
    """
    out_max = examples.targets.shape[-1]
    valid = np.arange(out_max)[None, :] < examples.output_lengths[:, None]
    hits = (examples.targets[..., None] == np.arange(NUM_CLASSES)) & valid[..., None]  # [E, out, C]
    out = np.zeros(examples.lengths.shape[0])
    for n in np.unique(examples.lengths):
        same = examples.lengths == n
        best = np.argmax(hits[same].sum((0, 1)))
        out[same] = hits[same][..., best].sum(1) / examples.output_lengths[same]
    return out
