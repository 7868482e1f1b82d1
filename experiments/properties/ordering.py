"""Reads the length-generalization result of the ordering experiments for the extrapolation claim.

The ordering experiments (``python -m experiments.ordering``) write ``summary.json``. Two layouts are read:

* records with per-length test curves, as the training loop returns them: ``{"task", "mode", "scheme",
  "test": {"lengths": [...], "token_accuracy": [[per length] per seed]}}``, with the training length ``N``
  taken from the record, the summary (``"config"`` / ``"train_max_length"``) or ``config.json`` beside it.
  "In distribution" is then the mean over lengths ``1 … N`` and "beyond" over ``N + 1 … 4N``, per seed, then
  averaged over seeds;
* rows that already hold the bands: ``{"task", "mode", "scheme", "bands": {"in_distribution": x,
  "beyond": y}}`` (or ``"1-2x"`` / ``"2-4x"`` whose mean is "beyond"), each value a number or a dict with a
  ``"mean"``; band names are compared without case or punctuation, and bands given per metric
  (``{"token_accuracy": {...}}``) are read from the token accuracy.

The greedy (autoregressive) accuracy is preferred to the teacher-forced one wherever both exist.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PENDING_COMMAND", "extrapolation"]

PENDING_COMMAND = "python -m experiments.ordering"


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict with a ``"scheme"`` key, anywhere in ``node``."""
    if isinstance(node, dict):
        if isinstance(node.get("scheme"), str):
            yield node
            return
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _number(value: Any) -> float | None:
    if isinstance(value, dict):
        value = value.get("mean")
    if isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value):
        return float(value)
    return None


def _train_length(record: dict[str, Any], summary: Any, folder: Path) -> int | None:
    sources: list[Any] = [record, record.get("config")]
    if isinstance(summary, dict):
        sources += [summary, summary.get("config")]
    config_path = folder / "config.json"
    if config_path.exists():
        try:
            sources.append(json.loads(config_path.read_text()))
        except (OSError, json.JSONDecodeError):
            pass
    for source in sources:
        if isinstance(source, dict) and isinstance(source.get("train_max_length"), int):
            return source["train_max_length"]
    return None


def _from_curves(record: dict[str, Any], train_length: int | None) -> tuple[float, float] | None:
    test = record.get("test", record)
    if not isinstance(test, dict) or train_length is None:
        return None
    lengths = np.asarray(test.get("lengths", []))
    accuracy = test.get("token_accuracy")
    if isinstance(accuracy, dict):  # aggregated over seeds: {"mean": [per length], ...}
        accuracy = accuracy.get("mean")
    if accuracy is None or lengths.ndim != 1 or lengths.size == 0:
        return None
    try:
        accuracy = np.atleast_2d(np.asarray(accuracy, dtype=float))  # [seeds, lengths]
    except (TypeError, ValueError):
        return None
    if accuracy.ndim != 2 or accuracy.shape[-1] != lengths.size:
        return None
    inside = lengths <= train_length
    beyond = (lengths > train_length) & (lengths <= 4 * train_length)
    if not inside.any() or not beyond.any():
        return None
    return float(accuracy[:, inside].mean(axis=1).mean()), float(accuracy[:, beyond].mean(axis=1).mean())


def _key(name: str) -> str:
    """A name without case, spacing or punctuation: ``"In-distribution"`` -> ``"indistribution"``."""
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("×", "x"))


def _from_bands(record: dict[str, Any]) -> tuple[float, float] | None:
    bands = record.get("bands")
    if not isinstance(bands, dict):
        return None
    bands = {_key(k): v for k, v in bands.items()}
    for metric in ("tokenaccuracy", "accuracy"):  # bands per metric: the greedy token accuracy
        if isinstance(bands.get(metric), dict):
            bands = {_key(k): v for k, v in bands[metric].items()}
            break
    inside = next((_number(bands[k]) for k in ("indistribution", "indist") if k in bands), None)
    beyond = next(
        (_number(bands[k]) for k in ("beyond", "beyondtraining", "outofdistribution") if k in bands), None
    )
    if beyond is None:
        parts = [_number(bands.get(name)) for name in ("12x", "24x")]
        beyond = None if None in parts else float(np.mean(parts))
    if inside is None or beyond is None:
        return None
    return inside, beyond


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
    except (OSError, json.JSONDecodeError) as error:
        result["status"] = "unrecognised"
        result["sentence"] = (
            f"The ordering experiments' summary could not be read as JSON ({error}); "
            "see their report beside it."
        )
        return result
    for record in _walk(summary):
        train_length = _train_length(record, summary, path.parent)
        bands = _from_curves(record, train_length) or _from_bands(record)
        if bands is None:
            continue
        result["train_length"] = result["train_length"] or train_length
        result["rows"].append(
            {
                "task": str(record.get("task", "?")),
                "mode": str(record.get("mode", "?")),
                "scheme": record["scheme"],
                "in_distribution": bands[0],
                "beyond": bands[1],
            }
        )
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
