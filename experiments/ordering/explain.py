"""Explanations generated from a run's records: what a drop beyond the training length is made of.

Four checks, each a generated sentence per run (nothing is written by hand):

* **Unseen output positions** (`readout_sentences`): an absolute scheme (sinusoidal, learned) reads each
  output at position ``n + j``, never seen in training once ``n`` exceeds ``N``. The test set is evaluated
  again with only the output tokens moved to ``min(n, N) + j`` (`evaluate.answer_position_ablation`); the
  share of the drop this recovers is the share that the unseen output positions account for.
* **Untrained table rows** (`table_sentences`): a learned table's rows beyond the training sequences get no
  gradient; their largest change from the initial values is reported (0 means untrained).
* **The causal decoder without positions** (`decoder_sentences`): its in-distribution accuracy (the mask
  carries order, Kazemnejad et al. 2023) and what explicit positions add or cost, per band.
* **Not reached within the budget** (`budget_sentences`): a scheme whose median seed missed the criterion, and
  the scheme whose validation curve it tracks, if any.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from experiments.ordering import stats
from experiments.ordering.config import ExperimentConfig, scheme_spec

__all__ = ["explanations", "readout_sentences", "table_sentences", "decoder_sentences", "budget_sentences"]

#: Largest mean absolute difference between two mean validation curves still called "tracks".
TRACKING_TOLERANCE = 0.05
#: Smallest drop (per-token accuracy, in distribution minus beyond) worth explaining.
SMALLEST_DROP = 0.02


def _band_means(per_length, low: int, high: int) -> np.ndarray:
    """Per-seed means of `[seeds, lengths]` values over the input lengths ``low … high``."""
    return np.asarray(per_length, dtype=np.float64)[:, low - 1 : high].mean(axis=1)


def _interval(d: dict[str, Any]) -> str:
    if d["ci"] is None:
        return f"{d['mean']:+.2f}"
    if d["low"] == d["high"]:
        return f"{d['mean']:+.2f} in every seed"
    return f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"


def _runs(config: ExperimentConfig, records: list[dict[str, Any]]):
    """``(task, mode, learning rate, label, {scheme: record})`` per trained run, in configuration order."""
    several = len(config.learning_rates) > 1
    for task, mode in config.runs:
        for lr in config.learning_rates:
            by_scheme = {
                r["scheme"]: r
                for r in records
                if (r["task"], r["mode"], r["learning_rate"]) == (task, mode, lr)
            }
            if by_scheme:
                label = f"{task} ({mode}" + (f", learning rate {lr:g}" if several else "") + ")"
                yield task, mode, lr, label, {s: by_scheme[s] for s in config.schemes if s in by_scheme}


def readout_sentences(config: ExperimentConfig, records: list[dict[str, Any]]) -> list[str]:
    """Per absolute scheme and band beyond training: the accuracy at the original and at the moved output
    positions, and the share of the drop from the in-distribution band that moving them recovers."""
    bands = stats.bands(config.train_max_length, config.test_max_length)
    (in_name, in_band), *beyond = bands.items()
    out = []
    for _, _, _, label, by_scheme in _runs(config, records):
        for scheme, record in by_scheme.items():
            ablation = record["test"].get("answer_position_ablation")
            if ablation is None:
                continue
            original = record["test"]["token_accuracy"]
            inside = _band_means(original, *in_band).mean()
            parts = []
            for name, band in beyond:
                before = _band_means(original, *band)
                after = _band_means(ablation["token_accuracy"], *band)
                drop = inside - before.mean()
                gain = stats.paired_difference(after, before) if len(before) > 1 else None
                moved = f"{before.mean():.2f} → {after.mean():.2f}"
                if gain is not None:
                    moved += f" (paired difference {_interval(gain)})"
                if drop < SMALLEST_DROP:
                    parts.append(f"{name}: {moved}; no drop from the in-distribution {inside:.2f} to explain")
                    continue
                share = (after.mean() - before.mean()) / drop
                parts.append(
                    f"{name}: {moved}, so the unseen output positions account for {100 * share:.0f}% of its "
                    f"drop of {drop:.2f} from {inside:.2f} in distribution"
                )
            out.append(
                f"- **{scheme}** on {label}: per-token accuracy with only the output tokens moved from "
                f"positions n + j to min(n, {config.train_max_length}) + j (inputs, model and examples "
                f"unchanged) — " + "; ".join(parts) + "."
            )
    return out


def table_sentences(config: ExperimentConfig, records: list[dict[str, Any]]) -> list[str]:
    """Per learned table: the largest change of its rows beyond the training sequences (untrained if 0)."""
    out = []
    for _, _, _, label, by_scheme in _runs(config, records):
        for scheme, record in by_scheme.items():
            rows = record["test"].get("table_rows")
            if rows is None or rows["trained_rows"] >= rows["rows"]:
                continue
            unseen = max(rows["max_abs_change_unseen"])
            seen = max(rows["max_abs_change_seen"])
            span = f"rows {rows['trained_rows']}-{rows['rows'] - 1}"
            if unseen == 0.0:
                verdict = (
                    "exactly at their initial values in every seed: untrained rows, so beyond the training "
                    "length this scheme adds random vectors, not a learned encoding that fails to generalize"
                )
            else:
                verdict = f"changed by at most {unseen:.3g}"
            out.append(
                f"- **{scheme}** on {label}: the table's {span} (positions that no training sequence reaches: "
                f"they have at most {rows['trained_rows']} tokens) are {verdict}; rows 0-"
                f"{rows['trained_rows'] - 1} moved by up to {seen:.2f}."
            )
    return out


def decoder_sentences(config: ExperimentConfig, records: list[dict[str, Any]]) -> list[str]:
    """Per decoder run with the scheme ``none``: its in-distribution accuracy and, per band, the paired
    difference of every other scheme's greedy per-token accuracy from it."""
    bands = stats.bands(config.train_max_length, config.test_max_length)
    out = []
    for _, mode, _, label, by_scheme in _runs(config, records):
        if mode != "decoder" or "none" not in by_scheme:
            continue
        none = by_scheme["none"]
        final = np.asarray(none["final_validation_exact_match"], dtype=np.float64)
        reached = int((final >= config.criterion).sum())
        (in_name, in_band), *_ = bands.items()
        greedy = _band_means(none["test"]["token_accuracy"], *in_band).mean()
        forced = _band_means(none["test"]["teacher_forced_token_accuracy"], *in_band).mean()
        frequent = float(np.mean(none["test"]["most_frequent"][in_band[0] - 1 : in_band[1]]))
        if greedy > frequent + 0.1:
            verdict = (
                f"far above always answering the most frequent symbol ({frequent:.2f}): the causal mask alone "
                "carries order (Kazemnejad et al. 2023)"
            )
        else:
            verdict = f"not far above always answering the most frequent symbol ({frequent:.2f})"
        out.append(
            f"- **{label}** without any positions: in-distribution exact match {final.mean():.2f} (final "
            f"validation, mean of {len(final)} seeds; {reached}/{len(final)} at the criterion "
            f"{config.criterion}), per-token accuracy {greedy:.2f} greedy and {forced:.2f} teacher-forced on "
            f"lengths {in_band[0]}-{in_band[1]}, {verdict}."
        )
        for name, band in bands.items():
            base = _band_means(none["test"]["token_accuracy"], *band)
            diffs = []
            for scheme, record in by_scheme.items():
                if scheme == "none" or len(base) < 2:
                    continue
                other = _band_means(record["test"]["token_accuracy"], *band)
                diffs.append(f"{scheme} {_interval(stats.paired_difference(other, base))}")
            if diffs:
                out.append(
                    f"  - What explicit positions add (+) or cost (−) there, {name}: greedy per-token accuracy "
                    "minus none's, paired over seeds [95% interval, unadjusted]: " + ", ".join(diffs) + "."
                )
    return out


def _mean_curve(record: dict[str, Any]) -> np.ndarray:
    return np.asarray(record["curve"]["validation_exact_match"], dtype=np.float64).mean(axis=1)


def budget_sentences(config: ExperimentConfig, records: list[dict[str, Any]]) -> list[str]:
    """Per scheme whose median seed missed the criterion: its final value, whether it was still rising, and
    the scheme whose mean validation curve is closest (named as tracked if within `TRACKING_TOLERANCE`)."""
    out = []
    for _, _, _, label, by_scheme in _runs(config, records):
        for scheme, record in by_scheme.items():
            final = np.asarray(record["final_validation_exact_match"], dtype=np.float64)
            if float(np.median(final)) >= config.criterion:
                continue
            curve = _mean_curve(record)
            steps = record["curve"]["step"]
            quarter = max(1, len(curve) // 4)
            rise = curve[-1] - curve[-1 - quarter] if len(curve) > quarter else 0.0
            closest = None
            for other, other_record in by_scheme.items():
                if other == scheme or other_record["curve"]["step"] != steps:
                    continue
                gap = float(np.abs(_mean_curve(other_record) - curve).mean())
                if closest is None or gap < closest[1]:
                    closest = (other, gap, _mean_curve(other_record)[-1])
            text = (
                f"- **{scheme}** on {label} did not reach the criterion ({config.criterion}) within the budget "
                f"of {record['steps']} steps: final in-distribution exact match {curve[-1]:.2f} (mean of "
                f"{len(final)} seeds; {int((final >= config.criterion).sum())}/{len(final)} at the criterion), "
                f"{rise:+.2f} over the last {quarter} checks" + (" (still rising)" if rise > 0.01 else "")
            )
            if closest is not None and closest[1] <= TRACKING_TOLERANCE:
                text += (
                    f"; it tracks **{closest[0]}** check for check (mean |difference| of the mean validation "
                    f"curves {closest[1]:.2f} over {len(steps)} checks; {curve[-1]:.2f} vs {closest[2]:.2f} "
                    f"at step {steps[-1]})"
                )
                if scheme_spec(scheme).randomized and closest[0] == "none":
                    text += ": in this run its randomized positions give it nothing over no positions at all"
            elif closest is not None:
                text += f"; the closest curve is {closest[0]}'s (mean |difference| {closest[1]:.2f})"
            out.append(text + ".")
    return out


def explanations(config: ExperimentConfig, records: list[dict[str, Any]]) -> list[str]:
    """The report's section: every generated explanation, or nothing if no check applies."""
    sections = [
        (
            "Unseen output positions (absolute schemes)",
            "Evaluated again with only the output tokens' positions moved into the training range; the share "
            "of the drop beyond training that this recovers is the share the unseen output positions account "
            "for (the rest is the scheme's length generalization).",
            readout_sentences(config, records),
        ),
        ("Untrained rows of learned tables", "", table_sentences(config, records)),
        ("The causal decoder without positions", "", decoder_sentences(config, records)),
        ("Schemes that did not reach the criterion within the budget", "", budget_sentences(config, records)),
    ]
    lines = []
    for title, intro, sentences in sections:
        if sentences:
            lines += [f"### {title}", ""] + ([intro, ""] if intro else []) + sentences + [""]
    if not lines:
        return []
    return ["## Explanations (generated from the run)", ""] + lines
