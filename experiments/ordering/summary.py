"""Summaries of a run, built from its group records: rows per band, paired comparisons, the reference
aggregation, and the ``metrics.jsonl`` / ``training.jsonl`` / ``summary.json`` / ``summary.csv`` files."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from experiments.ordering import stats
from experiments.ordering.config import ExperimentConfig

__all__ = [
    "METRICS",
    "REFERENCES",
    "atomic_write",
    "summarize_groups",
    "compare_schemes",
    "reference_aggregation",
    "ceiling_check",
    "write_metrics",
    "write_summary",
]

METRICS = ("token_accuracy", "exact_match", "teacher_forced_token_accuracy", "teacher_forced_exact_match")
#: Schemes every other scheme is compared with (paired per-seed differences).
REFERENCES = ("none", "sinusoidal")


def atomic_write(path: Path, text: str | bytes) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename, so that a reader (or a rerun after
    a kill) sees either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def band_values(per_length, low: int, high: int) -> np.ndarray:
    """Per-seed mean over the input lengths ``low … high`` of `[seeds, lengths]` values (lengths from 1)."""
    return np.asarray(per_length, dtype=np.float64)[:, low - 1 : high].mean(axis=1)


def summarize_groups(config: ExperimentConfig, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, mode, scheme, learning rate, band, metric): mean, 95% t interval (clipped to
    [0, 1] in ``low``/``high``), max and min over seeds, the per-seed values, and the band's limits as
    integers (``band_low``, ``band_high``).

    Each seed's band value is the mean over the band's lengths (every length weighted equally) of its
    per-length metric. Per-token accuracy rows also carry ``chance`` (uniform guess), ``most_frequent``
    (always the most frequent target symbol of each length) and, for the encoder, ``ceiling`` (the analytic
    ceiling of a model without positions on the same examples).
    """
    rows = []
    for record in records:
        test = record["test"]
        reached = [s is not None for s in record["steps_to_criterion"]]
        for band, (low, high) in stats.bands(config.train_max_length, config.test_max_length).items():
            for metric in METRICS:
                if metric not in test:
                    continue
                values = band_values(test[metric], low, high)
                row = {
                    "task": record["task"],
                    "mode": record["mode"],
                    "scheme": record["scheme"],
                    "learning_rate": record["learning_rate"],
                    "band": band,
                    "band_low": low,
                    "band_high": high,
                    "metric": metric,
                    **stats.summarize(values),
                    "per_seed": values.tolist(),
                    "steps": record["steps"],
                    "seeds_reaching_criterion": sum(reached),
                    "needs_position": record["needs_position"],
                    "chance": record["chance"],
                }
                if metric.endswith("token_accuracy"):
                    row["most_frequent"] = float(np.mean(test["most_frequent"][low - 1 : high]))
                    if "ceiling" in test:
                        row["ceiling"] = float(np.mean(test["ceiling"][low - 1 : high]))
                rows.append(row)
    return rows


def compare_schemes(rows: list[dict[str, Any]], metrics=("token_accuracy", "exact_match")) -> list[dict]:
    """Paired per-seed differences ``scheme - reference`` for every reference in `REFERENCES`, per (task,
    mode, learning rate, band, metric): mean, 95% t interval and whether it excludes 0 (``separated``)."""
    index = {(r["task"], r["mode"], r["learning_rate"], r["band"], r["metric"], r["scheme"]): r for r in rows}
    out = []
    for key, row in index.items():
        if row["metric"] not in metrics:
            continue
        for reference in REFERENCES:
            other = index.get(key[:-1] + (reference,))
            if other is None or row["scheme"] == reference:
                continue
            diff = stats.paired_difference(row["per_seed"], other["per_seed"])
            out.append(
                {
                    **{k: row[k] for k in ("task", "mode", "learning_rate", "band", "band_low", "band_high")},
                    "metric": row["metric"],
                    "scheme": row["scheme"],
                    "reference": reference,
                    **diff,
                }
            )
    return out


def reference_aggregation(config: ExperimentConfig, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The published protocol's number per (task, mode, scheme): the maximum over seeds and learning rates
    of the per-token accuracy averaged over the test lengths beyond training (``N+1 … test_max_length``),
    beside the mean over seeds of the same average (per learning rate, the best mean)."""
    span = stats.beyond_training(config.train_max_length, config.test_max_length)
    if span is None:
        return []
    out: dict[tuple, dict[str, Any]] = {}
    for record in records:
        values = band_values(record["test"]["token_accuracy"], *span)
        key = (record["task"], record["mode"], record["scheme"])
        entry = out.setdefault(
            key,
            {
                "task": key[0],
                "mode": key[1],
                "scheme": key[2],
                "lengths": list(span),
                "best": -1.0,
                "mean": -1.0,
            },
        )
        entry["best"] = max(entry["best"], float(values.max()))
        if float(values.mean()) > entry["mean"]:
            entry.update(mean=float(values.mean()), mean_learning_rate=record["learning_rate"])
    return list(out.values())


def ceiling_check(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For every encoder group of the scheme ``none``: how its per-example accuracy compares with the
    analytic ceiling (it can never exceed it; a trained model should reach it)."""
    out = []
    for r in records:
        if r["scheme"] != "none" or "ceiling_per_example" not in r["test"]:
            continue
        ceiling = np.asarray(r["test"]["ceiling_per_example"])
        accuracy = np.asarray(r["test"]["token_accuracy_per_example"])
        out.append(
            {
                "task": r["task"],
                "mode": r["mode"],
                "learning_rate": r["learning_rate"],
                "max_excess_over_ceiling": float((accuracy - ceiling).max()),
                "mean_gap_below_ceiling": float((ceiling - accuracy).mean()),
                "fraction_of_examples_at_ceiling": float(np.mean(np.abs(accuracy - ceiling) < 1e-9)),
            }
        )
    return out


def write_metrics(workdir: Path, records: list[dict[str, Any]]) -> None:
    """``metrics.jsonl`` (one line per group, seed and test length) and ``training.jsonl`` (one line per
    group, seed and check of the validation exact match)."""
    metric_lines, training_lines = [], []
    for r in records:
        key = {"task": r["task"], "mode": r["mode"], "scheme": r["scheme"], "learning_rate": r["learning_rate"]}
        test = r["test"]
        for i, seed in enumerate(r["seeds"]):
            for j, length in enumerate(test["lengths"]):
                line = {**key, "seed": seed, "length": length}
                for metric in METRICS:
                    if metric in test:
                        line[metric] = test[metric][i][j]
                for baseline in ("most_frequent", "ceiling"):
                    if baseline in test:
                        line[baseline] = test[baseline][j]
                metric_lines.append(json.dumps(line))
            for j, step in enumerate(r["curve"]["step"]):
                line = {**key, "seed": seed, "step": step}
                for name in ("loss", "accuracy", "validation_exact_match"):
                    line[name] = r["curve"][name][j][i]
                training_lines.append(json.dumps(line))
    atomic_write(workdir / "metrics.jsonl", "\n".join(metric_lines) + "\n")
    atomic_write(workdir / "training.jsonl", "\n".join(training_lines) + "\n")


_GROUP_KEYS = (
    "task",
    "mode",
    "scheme",
    "learning_rate",
    "seeds",
    "steps",
    "steps_to_criterion",
    "final_validation_exact_match",
    "needs_position",
    "compile_seconds",
    "train_seconds",
    "test_seconds",
    "device_count",
)


def write_summary(workdir: Path, config: ExperimentConfig, records: list[dict[str, Any]], extra: dict) -> dict:
    """``summary.json`` (rows, paired comparisons, reference aggregation, per-group training outcome, run
    facts) and ``summary.csv`` (the rows). Returns the summary."""
    rows = summarize_groups(config, records)
    summary = {
        "run": extra,
        "groups": [{key: r[key] for key in _GROUP_KEYS} for r in records],
        "ceiling_check": ceiling_check(records),
        "rows": rows,
        "comparisons": compare_schemes(rows),
        "reference_aggregation": reference_aggregation(config, records),
    }
    atomic_write(workdir / "summary.json", json.dumps(summary, indent=1))
    fields = ["task", "mode", "scheme", "learning_rate", "band", "band_low", "band_high", "metric"]
    fields += ["mean", "ci", "low", "high", "max", "min", "n", "steps", "seeds_reaching_criterion"]
    fields += ["needs_position", "chance", "most_frequent", "ceiling"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    atomic_write(workdir / "summary.csv", buffer.getvalue())
    return summary
