"""Tables, the generated findings ("what it shows") and ``report.md`` of a run.

Every sentence of the findings is generated from the paired comparisons (`summary.compare_schemes`): a
difference between two schemes is stated only where the 95% interval of the mean per-seed difference
excludes 0; elsewhere the findings say that the data do not separate them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from experiments.ordering import config as config_lib
from experiments.ordering import explain, stats, tasks
from experiments.ordering.config import PRESET_NOTES, ExperimentConfig
from experiments.ordering.summary import REFERENCES, atomic_write, band_values

__all__ = ["format_table", "findings", "write_report"]


def _interval(row: dict[str, Any] | None, digits: int = 2) -> str:
    """``mean [low, high]`` (the 95% interval, clipped to [0, 1]), or the mean alone for one seed."""
    if row is None:
        return "-"
    if row["ci"] is None:
        return f"{row['mean']:.{digits}f}"
    return f"{row['mean']:.{digits}f} [{row['low']:.{digits}f}, {row['high']:.{digits}f}]"


def _signed(d: dict[str, Any]) -> str:
    return f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"


def _steps_cell(record: dict[str, Any]) -> str:
    return ", ".join(str(s) if s is not None else "not reached" for s in record["steps_to_criterion"])


def _median_reached(config: ExperimentConfig, record: dict[str, Any]) -> bool:
    """Whether the median seed's final validation exact match is at the criterion."""
    return float(np.median(record["final_validation_exact_match"])) >= config.criterion


def _records(records, task, mode, lr):
    return {r["scheme"]: r for r in records if (r["task"], r["mode"], r["learning_rate"]) == (task, mode, lr)}


def format_table(
    config: ExperimentConfig,
    rows: list[dict[str, Any]],
    records: list[dict[str, Any]],
    *,
    task: str,
    mode: str,
    learning_rate: float,
    metric: str = "token_accuracy",
    markdown: bool = True,
) -> str:
    """One (task, mode, learning rate): a line per scheme with ``metric`` per band (mean [95% interval]
    over seeds), the final in-distribution exact match (validation set) with the seeds at the criterion,
    and the steps to the criterion per seed; then the baselines (encoder: the analytic ceiling without
    positions; the most-frequent-symbol baseline and chance)."""
    index = {
        (r["scheme"], r["band"]): r
        for r in rows
        if (r["task"], r["mode"], r["learning_rate"], r["metric"]) == (task, mode, learning_rate, metric)
    }
    band_names = list(stats.bands(config.train_max_length, config.test_max_length))
    by_scheme = _records(records, task, mode, learning_rate)
    header = ["scheme"] + band_names + ["in-dist. exact match (final; seeds ≥ criterion)", "steps to criterion"]
    lines = []
    for scheme in config.schemes:
        if scheme not in by_scheme:
            continue
        record = by_scheme[scheme]
        final = record["final_validation_exact_match"]
        exact = stats.summarize(final)
        reached = sum(v >= config.criterion for v in final)
        cells = [scheme] + [_interval(index.get((scheme, band))) for band in band_names]
        cells += [f"{_interval(exact)}; {reached}/{len(final)}", _steps_cell(record)]
        lines.append(cells)
    if metric.endswith("token_accuracy") and by_scheme:
        first = index.get((next(iter(by_scheme)), band_names[0]), {})
        baselines = [
            ("ceiling", "analytic ceiling without positions"),
            ("most_frequent", "most frequent symbol"),
        ]
        for key, label in baselines:
            if key in first:
                values = [index[(next(iter(by_scheme)), band)][key] for band in band_names]
                lines.append([label] + [f"{v:.2f}" for v in values] + ["", ""])
        lines.append(["chance"] + [f"{tasks.get_task(task).chance:.2f}"] * len(band_names) + ["", ""])
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        return "\n".join(out)
    widths = [max(len(str(c[i])) for c in [header] + lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in [header] + lines
    )


def findings(
    config: ExperimentConfig,
    records: list[dict[str, Any]],
    comparisons: list[dict[str, Any]],
) -> list[str]:
    """The generated "what it shows": per run, whether positions are needed, which schemes reach the
    criterion in distribution, and per band each scheme's paired difference in per-token accuracy from
    ``none`` and from ``sinusoidal``: above, below, or not separated (interval containing 0)."""
    out = []
    bands = stats.bands(config.train_max_length, config.test_max_length)
    several = len(config.learning_rates) > 1
    for task, mode in config.runs:
        t = tasks.get_task(task)
        for lr in config.learning_rates:
            by_scheme = _records(records, task, mode, lr)
            if not by_scheme:
                continue
            needs = "needs positions" if t.needs_position[mode] else "does not need positions"
            lr_text = f", learning rate {lr:g}" if several else ""
            out.append(
                f"- **{task} ({mode}{lr_text})** {needs} ({t.why[mode]}). Every scheme and seed trained "
                f"{config.steps_for(task, mode)} steps."
            )
            trained = [s for s in config.schemes if s in by_scheme]
            missed = [s for s in trained if not _median_reached(config, by_scheme[s])]
            criterion = f"the criterion (in-distribution exact match ≥ {config.criterion}, final model)"
            if not missed:
                out.append(f"  - The median seed of every scheme reached {criterion}.")
            elif len(missed) == len(trained):
                out.append(f"  - No scheme's median seed reached {criterion}.")
            else:
                reached = [s for s in trained if s not in missed]
                out.append(
                    f"  - The median seed reached {criterion} with {', '.join(reached)}; not with "
                    f"{', '.join(missed)}."
                )
            for reference in REFERENCES:
                if reference not in by_scheme:
                    continue
                for band in bands:
                    diffs = [
                        c
                        for c in comparisons
                        if (c["task"], c["mode"], c["learning_rate"], c["band"], c["metric"], c["reference"])
                        == (task, mode, lr, band, "token_accuracy", reference)
                    ]
                    if not diffs:
                        continue
                    above = [f"{c['scheme']} {_signed(c)}" for c in diffs if c["separated"] and c["mean"] > 0]
                    below = [f"{c['scheme']} {_signed(c)}" for c in diffs if c["separated"] and c["mean"] < 0]
                    same = [c["scheme"] for c in diffs if not c["separated"]]
                    parts = []
                    if above:
                        parts.append(f"above {reference}: " + ", ".join(above))
                    if below:
                        parts.append(f"below {reference}: " + ", ".join(below))
                    if same:
                        parts.append(f"the data do not separate {', '.join(same)} from {reference}")
                    out.append(
                        f"  - Per-token accuracy, {band}, paired difference from {reference}: "
                        + "; ".join(parts)
                        + "."
                    )
    return out


def _aggregation_table(
    config: ExperimentConfig, records: list[dict[str, Any]], aggregation: list[dict]
) -> list[str]:
    span = stats.beyond_training(config.train_max_length, config.test_max_length)
    if span is None or not aggregation:
        return []
    lrs = config.learning_rates
    header = ["task (mode)", "scheme", "max over seeds and learning rates"]
    header += [f"mean [95% interval], lr {lr:g}" for lr in lrs]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in aggregation:
        cells = [f"{entry['task']} ({entry['mode']})", entry["scheme"], f"{entry['best']:.2f}"]
        for lr in lrs:
            record = _records(records, entry["task"], entry["mode"], lr).get(entry["scheme"])
            cells.append(
                "-"
                if record is None
                else _interval(stats.summarize(band_values(record["test"]["token_accuracy"], *span)))
            )
        lines.append("| " + " | ".join(cells) + " |")
    return (
        [
            f"## The reference aggregation (per-token accuracy averaged over test lengths {span[0]}-{span[1]})",
            "",
            "The published protocol reports the best run: the maximum over seeds and learning rates of a run's "
            "per-token accuracy averaged over the test lengths beyond training. Beside it, the mean over seeds "
            "with its 95% interval (clipped to [0, 1]).",
            "",
        ]
        + lines
        + [""]
    )


def write_report(
    workdir: Path,
    config: ExperimentConfig,
    records: list[dict[str, Any]],
    summary: dict[str, Any],
    figures: list[str],
) -> str:
    """``report.md``: setup, the generated findings, tables, the reference aggregation, the ceiling check
    and the figures."""
    extra, rows = summary["run"], summary["rows"]
    band_text = ", ".join(stats.bands(config.train_max_length, config.test_max_length))
    several = len(config.learning_rates) > 1
    budgets = "; ".join(f"{t} ({mo}): {config.steps_for(t, mo)}" for t, mo in config.runs)
    phrases = config_lib.protocol_phrases(config)
    lines = [
        "# Sequence-ordering experiment: positional encodings compared",
        "",
        f"Command: `{extra.get('command', 'python -m experiments.ordering')}` "
        f"(preset `{config.preset}`); wall time {extra.get('wall_seconds', float('nan')):.0f} s on "
        f"{extra.get('device', '?')} ({extra.get('device_count', '?')} device(s)).",
        "",
        f"Preset `{config.preset}`: {PRESET_NOTES.get(config.preset, 'a custom configuration')}",
        "",
        "## Setup",
        "",
        "- Tasks, their source and whether a model needs positions to solve them: "
        + "; ".join(
            f"`{t}` ({mo}): {tasks.get_task(t).description} ({tasks.get_task(t).source}); "
            f"{'needs positions' if tasks.get_task(t).needs_position[mo] else 'does not need positions'} "
            f"({tasks.get_task(t).why[mo]})"
            for t, mo in config.runs
        )
        + ".",
        "- Encoder format: the input, then one identical EMPTY token per output position; all outputs are "
        "predicted in one pass. Decoder format: input, SEP, outputs, causal attention, trained "
        "teacher-forced; the headline decoder metric is **greedy autoregressive decoding**, teacher-forced "
        "accuracy is reported separately (labelled).",
        f"- Model: {phrases['model']}",
        "- Schemes, all through the same module protocol (the model never branches on the scheme): "
        + ", ".join(config.schemes)
        + ". Learned tables have one row per token of the longest whole test sequence (input plus output), "
        f"or {config.position_range} rows for randomized_learned; initialised N(0, 1), with the library's "
        "default out-of-range policy (the data pipeline checks that every position is inside the table). "
        "Randomized schemes "
        f"(Ruoss et al. 2023) use a sorted random subset of [0, {config.position_range}) as positions, "
        f"{phrases['draw']}, at training and at evaluation. ALiBi is bidirectional in the encoder, causal in "
        "the decoder.",
        f"- Training (equal budgets): every scheme and seed of a run trains the same number of steps "
        f"({budgets}); input lengths uniform on 1…{config.train_max_length}, {phrases['batch']}, "
        f"{phrases['loss']}, Adam, {phrases['schedule']}, global-norm gradient clip {config.grad_clip}. "
        "The reported model is the final one: "
        "nothing is selected on validation or test data. The in-distribution exact match on a fixed "
        f"validation set ({config.validation_per_length} examples per length) is recorded every "
        f"{config.check_every} steps; 'steps to criterion' is the first check at ≥ {config.criterion} (or "
        "'not reached').",
        f"- Evaluation: every input length 1…{config.test_max_length}, {config.test_per_length} fixed "
        "examples per length, the same examples for every scheme and seed. Bands: "
        f"{band_text}; a seed's band value is the mean over the band's lengths. Tables: mean over "
        f"{len(config.seeds)} seeds [95% t interval, clipped to [0, 1]]. Schemes are compared by paired "
        "per-seed differences (every scheme sees the same data per seed) with a 95% t interval.",
        "",
        "## What it shows (generated from the paired intervals)",
        "",
        "A difference is stated only where the 95% interval of the mean per-seed difference excludes 0; "
        "differences are in per-token accuracy (mean [95% interval]).",
        "",
    ]
    lines += findings(config, records, summary["comparisons"]) + [""]
    lines += explain.explanations(config, records)
    if config.preset == "paper":
        lines += ["## Departures from the reference code", "", config_lib.departures_markdown(), ""]
    for title, metric in (
        ("Per-token accuracy", "token_accuracy"),
        ("Exact-sequence match", "exact_match"),
        (
            "Decoder, teacher-forced per-token accuracy (for reference, not the headline)",
            "teacher_forced_token_accuracy",
        ),
    ):
        teacher = metric.startswith("teacher")
        runs = [(t, mo) for t, mo in config.runs if mo == "decoder" or not teacher]
        if not runs:
            continue
        lines += [f"## {title}", ""]
        for task, mode in runs:
            for lr in config.learning_rates:
                suffix = f", lr {lr:g}" if several else ""
                greedy = ", greedy decoding" if mode == "decoder" and not metric.startswith("teacher") else ""
                lines += [f"### {task} ({mode}{greedy}{suffix})", ""]
                lines += [
                    format_table(config, rows, records, task=task, mode=mode, learning_rate=lr, metric=metric),
                    "",
                ]
    lines += _aggregation_table(config, records, summary["reference_aggregation"])
    checks = summary["ceiling_check"]
    if checks:
        lines += [
            "## Check: the model without positions against its analytic ceiling",
            "",
            "Without any position information an encoder predicts the same symbol at every output "
            "position of an example, so its per-token accuracy can never exceed the frequency of the "
            "most frequent target symbol (computed per example on the test set).",
            "",
        ]
        for c in checks:
            lines.append(
                f"- {c['task']} ({c['mode']}): largest per-example excess over the ceiling "
                f"{c['max_excess_over_ceiling']:+.3f} (must be ≤ 0), mean gap below it "
                f"{c['mean_gap_below_ceiling']:.3f}, {100 * c['fraction_of_examples_at_ceiling']:.0f}% "
                "of examples exactly at the ceiling."
            )
        lines.append("")
    lines += ["## Figures", ""]
    for name in figures:
        lines += [f"![{name}]({name})", ""]
    text = "\n".join(lines)
    atomic_write(workdir / "report.md", text)
    return text
