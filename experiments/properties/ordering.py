"""Reads the length-generalization result of the ordering experiments for the extrapolation claim.

``python -m experiments.ordering`` writes ``summary.json`` with one row per (task, mode, scheme, learning
rate, band, metric): ``{"task", "mode", "scheme", "band", "band_low", "band_high", "metric":
"token_accuracy" | ..., "mean", ...}`` (``band_low … band_high``: the band's input lengths, integers), and
``config.json`` beside it with ``train_max_length``.
The claim uses the per-token accuracy (greedy decoding in decoder mode, the headline metric): "in
distribution" is the in-distribution band, "beyond" the mean over all test lengths past the training length
(the bands weighted by the number of lengths each covers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["PENDING_COMMAND", "extrapolation"]

PENDING_COMMAND = "python -m experiments.ordering"


def _rows(summary: Any) -> list[dict[str, Any]]:
    """Per (task, mode, scheme): token accuracy in distribution and beyond the training length."""
    if not isinstance(summary, dict) or not isinstance(summary.get("rows"), list):
        return []
    inside: dict[tuple, float] = {}
    beyond: dict[tuple, list[tuple[float, int]]] = {}
    for row in summary["rows"]:
        if not isinstance(row, dict) or row.get("metric") != "token_accuracy":
            continue
        key = (row.get("task"), row.get("mode"), row.get("scheme"))
        low, high, mean = row.get("band_low"), row.get("band_high"), row.get("mean")
        if (
            not isinstance(mean, int | float)
            or not isinstance(low, int)
            or not isinstance(high, int)
            or None in key
        ):
            continue
        if low == 1:
            inside[key] = float(mean)
        else:
            beyond.setdefault(key, []).append((float(mean), high - low + 1))
    result = []
    for key in inside:
        if key in beyond:
            total = sum(count for _, count in beyond[key])
            value = sum(mean * count for mean, count in beyond[key]) / total
            task, mode, scheme = key
            result.append(
                {"task": task, "mode": mode, "scheme": scheme, "in_distribution": inside[key], "beyond": value}
            )
    return result


def extrapolation(path: str | Path) -> dict[str, Any]:
    """Per (task, mode, scheme): token accuracy in distribution and beyond the training length.

    Args:
      path: the ordering experiments' ``summary.json``.

    Returns:
      ``{"status": "pending" | "unrecognised" | "found", "path", "rows": [{"task", "mode", "scheme",
      "in_distribution", "beyond"}], "train_length", "sentence"}``; ``sentence`` states the result (or that
      it is pending) in plain words.

    >>> extrapolation("/nonexistent/summary.json")["status"]
    'pending'
    """
    path = Path(path)
    result: dict[str, Any] = {"status": "pending", "path": str(path), "rows": [], "train_length": None}
    if not path.exists():
        result["sentence"] = (
            "Pending: the length-generalization result of the ordering experiments does not exist yet; run "
            f"`{PENDING_COMMAND}` and then this command again."
        )
        return result
    try:
        summary = json.loads(path.read_text())
        config_path = path.parent / "config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
    except (OSError, json.JSONDecodeError) as error:
        result["status"] = "unrecognised"
        result["sentence"] = (
            f"The ordering experiments' summary could not be read as JSON ({error}); "
            "see their report beside it."
        )
        return result
    result["rows"] = _rows(summary)
    train_length = config.get("train_max_length") if isinstance(config, dict) else None
    result["train_length"] = train_length if isinstance(train_length, int) else None
    if not result["rows"]:
        result["status"] = "unrecognised"
        result["sentence"] = (
            "The ordering experiments' summary exists but holds no per-scheme in-distribution / "
            "beyond-training accuracy in a layout this report reads; see their report beside it."
        )
        return result
    result["status"] = "found"
    result["sentence"] = _sentence(result["rows"], result["train_length"])
    return result


def _sentence(rows: list[dict[str, Any]], train_length: int | None) -> str:
    trained = f"lengths 1–{train_length}" if train_length else "the training lengths"
    beyond = f"{train_length + 1}–{4 * train_length}" if train_length else "beyond them"
    parts, changes = [], []
    for task, mode in sorted({(row["task"], row["mode"]) for row in rows}):
        group = [row for row in rows if (row["task"], row["mode"]) == (task, mode)]
        sinusoidal = next((row for row in group if row["scheme"] == "sinusoidal"), None)
        best = max(group, key=lambda row: row["beyond"])
        text = f"{task} ({mode})"
        if sinusoidal is not None:
            # A drop of more than 0.05 in token accuracy is called a fall; seed noise is smaller.
            change = "falls" if sinusoidal["beyond"] < sinusoidal["in_distribution"] - 0.05 else "holds"
            changes.append(change)
            text += (
                f": sinusoidal token accuracy {change} from {sinusoidal['in_distribution']:.2f} on {trained} "
                f"to {sinusoidal['beyond']:.2f} on {beyond}"
            )
        text += f"; best beyond training: {best['scheme']} ({best['beyond']:.2f})"
        parts.append(text)
    if changes and all(change == "falls" for change in changes):
        lead = (
            "Defined at every position is not the same as generalizing: in the ordering experiments the "
            "sinusoidal model loses accuracy beyond the lengths it was trained on. "
        )
    elif changes and all(change == "holds" for change in changes):
        lead = (
            "In the ordering experiments the sinusoidal model keeps its accuracy beyond the training lengths. "
        )
    elif changes:
        lead = (
            "In the ordering experiments the sinusoidal model's accuracy beyond the training lengths depends "
            "on the task. "
        )
    else:
        lead = "The ordering experiments hold no sinusoidal run. "
    return lead + "Measured: " + "; ".join(parts) + "."
