"""Summaries of a run, built from its group records: rows per band, paired comparisons (Holm-corrected over
their family), diverged groups, the reference aggregation, and the ``metrics.jsonl`` / ``training.jsonl`` /
``summary.json`` / ``summary.csv`` files.

Every file is written from the records in configuration order (`ExperimentConfig.groups`), whatever order
they were trained or loaded in, so a run's outputs do not depend on its history (kills, retrained groups,
shards, merges).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from experiments.ordering import stats
from experiments.ordering.config import ExperimentConfig

__all__ = [
    "METRICS",
    "REFERENCES",
    "BASELINE_MARGIN",
    "atomic_write",
    "in_config_order",
    "divergence",
    "diverged_groups",
    "summarize_groups",
    "compare_pairs",
    "compare_schemes",
    "families",
    "reference_aggregation",
    "ceiling_check",
    "write_metrics",
    "write_summary",
]

METRICS = ("token_accuracy", "exact_match", "teacher_forced_token_accuracy", "teacher_forced_exact_match")
#: Schemes every other scheme is compared with (paired per-seed differences).
REFERENCES = ("none", "sinusoidal")
#: A scheme whose mean per-token accuracy in a band is at most this above the better of chance and the
#: most-frequent-symbol baseline is "at the baseline level" there; a difference between two such schemes
#: is not a finding.
BASELINE_MARGIN = 0.05


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


def in_config_order(config: ExperimentConfig, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` in the order of ``config.groups()`` (one record per group; others are left out).

    Raises:
      ValueError: if two records belong to the same group.
    """
    position = {(g.task, g.mode, g.scheme, g.learning_rate): i for i, g in enumerate(config.groups())}
    keyed: dict[int, dict[str, Any]] = {}
    for r in records:
        i = position.get((r["task"], r["mode"], r["scheme"], r["learning_rate"]))
        if i is None:
            continue
        if i in keyed:
            raise ValueError(
                f"in_config_order(records): two records of group {r['task']}-{r['mode']}-{r['scheme']} "
                f"(learning rate {r['learning_rate']:g})"
            )
        keyed[i] = r
    return [keyed[i] for i in sorted(keyed)]


def divergence(record: dict[str, Any]) -> dict[str, Any] | None:
    """Where a group's training loss stopped being finite, or ``None`` if it stayed finite.

    A record of `train.train_group` names each seed's first step with a non-finite loss
    (``first_non_finite_step``). Without it (a record of an older run) the curve is read instead: it holds the
    mean loss of every chunk of ``check_every`` steps, so the first non-finite step lies in the first chunk
    whose mean is not finite (``null`` in JSON).

    Returns:
      ``{"seeds", "first_check", "first_steps"}``: the seeds whose loss became non-finite (in the
      record's order), the first check at which one did, and the first step with a non-finite loss as
      ``[step, step]``, or from the curve alone the steps of that check's chunk ``[first, last]``.

    >>> divergence({"seeds": [0, 1], "curve": {"step": [10, 20], "loss": [[0.5, 0.4], [None, 0.3]]}})
    {'seeds': [0], 'first_check': 20, 'first_steps': [11, 20]}
    >>> divergence({"seeds": [0, 1], "curve": {"step": [10, 20], "loss": [[0.5, 0.4], [None, 0.3]]},
    ...             "first_non_finite_step": [13, None]})
    {'seeds': [0], 'first_check': 20, 'first_steps': [13, 13]}
    """
    curve = record["curve"]
    seeds, first = [], None
    for i, seed in enumerate(record["seeds"]):
        for j, losses in enumerate(curve["loss"]):
            if losses[i] is None or not math.isfinite(losses[i]):
                seeds.append(seed)
                first = j if first is None else min(first, j)
                break
    if first is None:
        return None
    exact = [s for s in record.get("first_non_finite_step") or [] if s is not None]
    if exact:
        steps = [min(exact), min(exact)]
    else:
        previous = curve["step"][first - 1] if first > 0 else 0
        steps = [previous + 1, curve["step"][first]]
    return {"seeds": seeds, "first_check": curve["step"][first], "first_steps": steps}


def band_values(per_length, low: int, high: int) -> np.ndarray:
    """Per-seed mean over the input lengths ``low … high`` of `[seeds, lengths]` values (lengths from 1)."""
    return np.asarray(per_length, dtype=np.float64)[:, low - 1 : high].mean(axis=1)


def summarize_groups(config: ExperimentConfig, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, mode, scheme, learning rate, band, metric): mean, 95% t interval (clipped to
    [0, 1] in ``low``/``high``), max and min over seeds, the per-seed values, and the band's limits as
    integers (``band_low``, ``band_high``).

    Each seed's band value is the mean over the band's lengths (every length weighted equally) of its
    per-length metric. Per-token accuracy rows also carry ``chance`` (uniform guess), ``most_frequent``
    (always the most frequent target symbol of each length), ``baseline`` (the better of the two) and, for
    the encoder, ``ceiling`` (the analytic ceiling of a model without positions on the same examples).
    Every row carries ``diverged_seeds``: the seeds whose training loss became non-finite (`divergence`).
    """
    rows = []
    for record in records:
        test = record["test"]
        diverged = divergence(record)
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
                    "diverged_seeds": [] if diverged is None else diverged["seeds"],
                }
                if metric.endswith("token_accuracy"):
                    row["most_frequent"] = float(np.mean(test["most_frequent"][low - 1 : high]))
                    row["baseline"] = max(row["chance"], row["most_frequent"])
                    if "ceiling" in test:
                        row["ceiling"] = float(np.mean(test["ceiling"][low - 1 : high]))
                rows.append(row)
    return rows


def _at_baseline(row: dict[str, Any]) -> bool:
    if "most_frequent" not in row:
        return False
    return row["mean"] <= max(row["chance"], row["most_frequent"]) + BASELINE_MARGIN


def _pair(c: dict[str, Any]) -> tuple:
    """A comparison's identity regardless of its direction (``a - b`` and ``b - a`` are one comparison)."""
    schemes = tuple(sorted((c["scheme"], c["reference"])))
    return (c["task"], c["mode"], c["learning_rate"], c["band"], c["metric"], schemes)


def _comparison(row: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """The paired difference ``row - other`` of two schemes' rows of one band and metric, undecided."""
    diff = stats.paired_difference(row["per_seed"], other["per_seed"])
    return {
        **{k: row[k] for k in ("task", "mode", "learning_rate", "band", "band_low", "band_high")},
        "metric": row["metric"],
        "scheme": row["scheme"],
        "reference": other["scheme"],
        **{k: v for k, v in diff.items() if k != "separated"},
        "separated_unadjusted": diff["separated"],
        "diverged": bool(row.get("diverged_seeds") or other.get("diverged_seeds")),
        "scheme_at_baseline": _at_baseline(row),
        "reference_at_baseline": _at_baseline(other),
        "at_baseline": _at_baseline(row) and _at_baseline(other),
    }


def compare_pairs(
    rows: list[dict[str, Any]],
    references: Callable[[dict[str, Any]], Iterable[str]],
    metrics=("token_accuracy",),
    alpha: float = stats.FAMILY_ALPHA,
) -> list[dict]:
    """Paired per-seed differences ``scheme - reference`` for every row of ``metrics`` and every scheme
    ``references(row)`` names, in the row's (task, mode, learning rate, band, metric); each metric's
    comparisons are one family, decided with Holm's correction.

    Each metric's family is its distinct comparisons (``a - b`` and ``b - a`` counted once) between groups
    that did not diverge. ``separated`` is whether the Holm-adjusted p-value is at most ``alpha``
    (family-wise error); the interval ``low … high`` is the unadjusted 95% t interval, and
    ``separated_unadjusted`` whether it excludes 0.

    Args:
      rows: from `summarize_groups`.
      references: the schemes a row's scheme is compared with (a scheme without a row there is skipped).
      metrics: the metrics compared.
      alpha: the family-wise error rate.

    Returns:
      One dict per comparison, in the order of ``rows`` and then of ``references(row)``: the keys of the
      band, ``metric``, ``scheme``, ``reference``, the fields of `stats.paired_difference` (``mean``,
      ``ci``, ``low``, ``high``, ``n``, ``p_value``, ``identical``), ``separated_unadjusted``, ``p_holm`` and
      ``family_size`` (``None`` outside the family), ``separated``, ``diverged`` (either group's loss
      became non-finite: not compared), ``scheme_at_baseline`` and ``reference_at_baseline`` (the scheme's
      mean is within `BASELINE_MARGIN` of the better of chance and the most-frequent-symbol baseline, or
      below it) and ``at_baseline`` (both are: the difference is not a finding).
    """
    index = {(r["task"], r["mode"], r["learning_rate"], r["band"], r["metric"], r["scheme"]): r for r in rows}
    out = []
    for key, row in index.items():
        if row["metric"] not in metrics:
            continue
        for reference in references(row):
            other = index.get(key[:-1] + (reference,))
            if other is not None and reference != row["scheme"]:
                out.append(_comparison(row, other))
    for metric in metrics:
        family: dict[tuple, float] = {}
        for c in out:
            if c["metric"] == metric and not c["diverged"] and c["p_value"] is not None:
                family.setdefault(_pair(c), c["p_value"])
        adjusted, rejected = stats.holm(list(family.values()), alpha)
        decided = dict(zip(family, zip(adjusted, rejected, strict=True), strict=True))
        for c in out:
            if c["metric"] == metric:
                p_holm, separated = decided.get(_pair(c), (None, False))
                c.update(p_holm=p_holm, family_size=len(family), separated=bool(separated))
    return out


def compare_schemes(
    rows: list[dict[str, Any]], metrics=("token_accuracy", "exact_match"), alpha: float = stats.FAMILY_ALPHA
) -> list[dict]:
    """Paired per-seed differences ``scheme - reference`` for every reference in `REFERENCES`, per (task,
    mode, learning rate, band, metric), decided over their family with Holm's correction (`compare_pairs`,
    whose fields each comparison has)."""
    return compare_pairs(rows, lambda row: REFERENCES, metrics, alpha)


def families(comparisons: list[dict[str, Any]], alpha: float = stats.FAMILY_ALPHA) -> dict[str, Any]:
    """What the comparisons of each metric amount to: ``{"correction", "alpha", "families": {metric:
    {"comparisons", "distinct", "tested", "separated", "separated_unadjusted", "at_baseline",
    "diverged"}}}``, counting distinct comparisons (``a - b`` and ``b - a`` once) except ``comparisons``
    (every one listed)."""
    out: dict[str, Any] = {}
    for c in comparisons:
        entry = out.setdefault(c["metric"], {"comparisons": 0, "pairs": {}})
        entry["comparisons"] += 1
        entry["pairs"].setdefault(_pair(c), c)
    for entry in out.values():
        pairs = list(entry.pop("pairs").values())
        tested = [c for c in pairs if c["p_holm"] is not None]
        entry.update(
            distinct=len(pairs),
            tested=len(tested),
            separated=sum(c["separated"] for c in tested),
            separated_unadjusted=sum(c["separated_unadjusted"] for c in tested),
            at_baseline=sum(c["at_baseline"] for c in pairs),
            diverged=sum(c["diverged"] for c in pairs),
        )
    return {"correction": "Holm (family-wise error rate)", "alpha": alpha, "families": out}


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


def diverged_groups(config: ExperimentConfig, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``{"group", "seeds", "first_check", "first_steps"}`` (`divergence`) for every record whose training
    loss became non-finite, in configuration order."""
    names = {(g.task, g.mode, g.scheme, g.learning_rate): g.name for g in config.groups()}
    out = []
    for r in in_config_order(config, records):
        found = divergence(r)
        if found is not None:
            out.append({"group": names[(r["task"], r["mode"], r["scheme"], r["learning_rate"])], **found})
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
    "divergence",
    "compile_seconds",
    "train_seconds",
    "test_seconds",
    "device_count",
)


def write_summary(workdir: Path, config: ExperimentConfig, records: list[dict[str, Any]], extra: dict) -> dict:
    """``summary.json`` (rows, paired comparisons, reference aggregation, per-group training outcome, run
    facts) and ``summary.csv`` (the rows). Returns the summary."""
    records = in_config_order(config, records)
    rows = summarize_groups(config, records)
    comparisons = compare_schemes(rows)
    summary = {
        "run": extra,
        "groups": [
            {key: r[key] for key in _GROUP_KEYS if key != "divergence"} | {"divergence": divergence(r)}
            for r in records
        ],
        "diverged": diverged_groups(config, records),
        "ceiling_check": ceiling_check(records),
        "rows": rows,
        "statistics": families(comparisons),
        "comparisons": comparisons,
        "reference_aggregation": reference_aggregation(config, records),
    }
    atomic_write(workdir / "summary.json", json.dumps(summary, indent=1))
    fields = ["task", "mode", "scheme", "learning_rate", "band", "band_low", "band_high", "metric"]
    fields += ["mean", "ci", "low", "high", "max", "min", "n", "steps", "seeds_reaching_criterion"]
    fields += ["needs_position", "chance", "most_frequent", "ceiling", "diverged_seeds"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    atomic_write(workdir / "summary.csv", buffer.getvalue())
    return summary
