"""Summaries, tables, figures and the written report of a run, built from its group records."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from experiments.ordering import stats, tasks
from experiments.ordering.config import SCHEMES, ExperimentConfig, position_range

__all__ = [
    "atomic_write",
    "summarize_groups",
    "write_metrics",
    "write_summary",
    "write_figures",
    "write_report",
    "format_table",
    "ceiling_check",
]

METRICS = ("token_accuracy", "exact_match", "teacher_forced_token_accuracy", "teacher_forced_exact_match")


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


def _band_values(per_length: np.ndarray, low: int, high: int) -> np.ndarray:
    """Per-seed mean over the lengths ``low … high`` of `[seeds, lengths]` values (lengths from 1)."""
    return per_length[:, low - 1 : high].mean(axis=1)


def summarize_groups(config: ExperimentConfig, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary row per (task, mode, scheme, band, metric): mean ± t-CI over seeds, max over seeds.

    Each seed's band value is the mean over the band's lengths (every length weighted equally) of its
    per-length metric. ``ceiling`` (encoder) is the analytic ceiling of a model without positions on the same
    examples; ``chance`` the per-token accuracy of a uniform guess.
    """
    rows = []
    for record in records:
        test = record["test"]
        seeds_capped = sum(record["stopped_by_cap"])
        for band, (low, high) in stats.bands(config.train_max_length, config.test_max_length).items():
            for metric in METRICS:
                if metric not in test:
                    continue
                values = _band_values(np.asarray(test[metric]), low, high)
                summary = stats.summarize(values)
                row = {
                    "task": record["task"],
                    "mode": record["mode"],
                    "scheme": record["scheme"],
                    "band": band,
                    "metric": metric,
                    **summary,
                    "per_seed": values.tolist(),
                    "seeds_stopped_by_cap": seeds_capped,
                    "chance": record["chance"],
                }
                if "ceiling" in test and metric == "token_accuracy":
                    row["ceiling"] = float(np.mean(test["ceiling"][low - 1 : high]))
                rows.append(row)
    return rows


def write_metrics(workdir: Path, records: list[dict[str, Any]]) -> None:
    """``metrics.jsonl`` (one line per group, seed and test length) and ``training.jsonl`` (one line per
    group, seed and check of the criterion)."""
    metric_lines, training_lines = [], []
    for r in records:
        key = {"task": r["task"], "mode": r["mode"], "scheme": r["scheme"]}
        test = r["test"]
        for i, seed in enumerate(r["seeds"]):
            for j, length in enumerate(test["lengths"]):
                line = {**key, "seed": seed, "length": length}
                for metric in METRICS:
                    if metric in test:
                        line[metric] = test[metric][i][j]
                if "ceiling" in test:
                    line["ceiling"] = test["ceiling"][j]
                metric_lines.append(json.dumps(line))
            for j, step in enumerate(r["curve"]["step"]):
                line = {**key, "seed": seed, "step": step}
                for name in ("loss", "accuracy", "validation_exact_match"):
                    line[name] = r["curve"][name][j][i]
                training_lines.append(json.dumps(line))
    atomic_write(workdir / "metrics.jsonl", "\n".join(metric_lines) + "\n")
    atomic_write(workdir / "training.jsonl", "\n".join(training_lines) + "\n")


def write_summary(workdir: Path, config: ExperimentConfig, records: list[dict[str, Any]], extra: dict) -> list:
    """``summary.json`` (rows, per-group training outcome, run facts) and ``summary.csv`` (the rows)."""
    rows = summarize_groups(config, records)
    groups = [
        {
            key: r[key]
            for key in (
                "task",
                "mode",
                "scheme",
                "seeds",
                "steps_to_criterion",
                "steps_trained",
                "stopped_by_cap",
                "compile_seconds",
                "train_seconds",
                "test_seconds",
                "device_count",
            )
        }
        for r in records
    ]
    checks = ceiling_check(records)
    atomic_write(
        workdir / "summary.json",
        json.dumps({"run": extra, "groups": groups, "ceiling_check": checks, "rows": rows}, indent=1),
    )
    fields = ["task", "mode", "scheme", "band", "metric", "mean", "ci", "max", "min", "n"]
    fields += ["seeds_stopped_by_cap", "chance", "ceiling"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    atomic_write(workdir / "summary.csv", buffer.getvalue())
    return rows


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
                "max_excess_over_ceiling": float((accuracy - ceiling).max()),
                "mean_gap_below_ceiling": float((ceiling - accuracy).mean()),
                "fraction_of_examples_at_ceiling": float(np.mean(np.abs(accuracy - ceiling) < 1e-9)),
            }
        )
    return out


def _fmt(row: dict[str, Any] | None, digits: int = 2) -> str:
    if row is None:
        return "-"
    ci = "" if row["ci"] is None else f" ± {row['ci']:.{digits}f}"
    return f"{row['mean']:.{digits}f}{ci} ({row['max']:.{digits}f})"


def _index(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    return {(r["task"], r["mode"], r["scheme"], r["band"], r["metric"]): r for r in rows}


def _steps_cell(record: dict[str, Any]) -> str:
    cells = [
        str(s) if s is not None else f"cap {t}†"
        for s, t in zip(record["steps_to_criterion"], record["steps_trained"], strict=True)
    ]
    return ", ".join(cells)


def format_table(
    config: ExperimentConfig,
    rows: list[dict[str, Any]],
    records: list[dict[str, Any]],
    *,
    task: str,
    mode: str,
    metric: str = "token_accuracy",
    markdown: bool = True,
) -> str:
    """A table of one (task, mode): one line per scheme, one column per band (mean ± CI (max) of
    ``metric``), plus the steps to criterion per seed († = stopped by the step cap)."""
    index = _index(rows)
    band_names = list(stats.bands(config.train_max_length, config.test_max_length))
    by_scheme = {r["scheme"]: r for r in records if r["task"] == task and r["mode"] == mode}
    header = ["scheme"] + band_names + ["steps to criterion"]
    lines = []
    for scheme in config.schemes:
        if scheme not in by_scheme:
            continue
        cells = [scheme + (" †" if any(by_scheme[scheme]["stopped_by_cap"]) else "")]
        cells += [_fmt(index.get((task, mode, scheme, band, metric))) for band in band_names]
        cells.append(_steps_cell(by_scheme[scheme]))
        lines.append(cells)
    if mode == "encoder" and metric == "token_accuracy" and by_scheme:
        any_scheme = next(iter(by_scheme))
        ceiling = [index[(task, mode, any_scheme, band, metric)].get("ceiling") for band in band_names]
        lines.append(["analytic ceiling without positions"] + [f"{c:.2f}" for c in ceiling] + [""])
    if metric.endswith("token_accuracy"):
        lines.append([f"chance ({tasks.get_task(task).chance:.2f})"] + [""] * (len(header) - 1))
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        return "\n".join(out)
    widths = [max(len(str(c[i])) for c in [header] + lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in [header] + lines
    )


def write_figures(workdir: Path, config: ExperimentConfig, records: list[dict[str, Any]]) -> list[str]:
    """Accuracy against test length (mean over seeds with the 95% t-CI band; the analytic ceiling and
    chance), and training curves, one pair of PNG files per (task, mode). Returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    colors = {name: plt.get_cmap("tab10")(i) for i, name in enumerate(SCHEMES)}
    for task, mode in config.runs:
        group = [r for r in records if r["task"] == task and r["mode"] == mode]
        if not group:
            continue
        metrics = [("token_accuracy", "per-token accuracy"), ("exact_match", "exact-sequence match")]
        if mode == "decoder":
            metrics[0] = ("token_accuracy", "per-token accuracy (greedy decoding)")
        fig, axes = plt.subplots(1, 2, figsize=(15, 4.8), sharex=True)
        for ax, (metric, label) in zip(axes, metrics, strict=True):
            for r in group:
                values = np.asarray(r["test"][metric])
                lengths = np.asarray(r["test"]["lengths"])
                mean = values.mean(0)
                ax.plot(
                    lengths,
                    mean,
                    label=r["scheme"],
                    color=colors[r["scheme"]],
                    linestyle="--" if r["scheme"].startswith("randomized") else "-",
                )
                if values.shape[0] > 1:
                    half = stats.t_quantile(0.95, values.shape[0] - 1) * values.std(0, ddof=1)
                    half = half / np.sqrt(values.shape[0])
                    low, high = np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1)
                    ax.fill_between(lengths, low, high, color=colors[r["scheme"]], alpha=0.12)
            if metric == "token_accuracy" and "ceiling" in group[0]["test"]:
                ax.plot(
                    lengths,
                    group[0]["test"]["ceiling"],
                    color="black",
                    linestyle=":",
                    linewidth=2,
                    label="analytic ceiling (no positions)",
                )
            if metric == "token_accuracy":
                ax.axhline(tasks.get_task(task).chance, color="gray", linewidth=1, label="chance")
            ax.axvline(config.train_max_length + 0.5, color="gray", linestyle="-.", linewidth=1)
            ax.set_xlabel(f"input length (training: 1-{config.train_max_length})")
            ax.set_ylabel(label)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=8, loc="center right")
        fig.suptitle(f"{task} ({mode}): mean over {len(config.seeds)} seeds, shaded 95% t-CI")
        fig.tight_layout(rect=(0, 0, 0.85, 1))
        name = f"accuracy_{task}_{mode}.png"
        fig.savefig(workdir / name, dpi=110)
        plt.close(fig)
        figures.append(name)

        fig, ax = plt.subplots(figsize=(6.5, 4))
        for r in group:
            losses = np.asarray(r["curve"]["loss"])
            ax.plot(
                r["curve"]["step"],
                losses.mean(1),
                label=r["scheme"],
                color=colors[r["scheme"]],
                linestyle="--" if r["scheme"].startswith("randomized") else "-",
            )
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (mean over output tokens)")
        ax.set_title(f"{task} ({mode}): training curves, mean over seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"training_{task}_{mode}.png"
        fig.savefig(workdir / name, dpi=110)
        plt.close(fig)
        figures.append(name)
    return figures


def _findings(config: ExperimentConfig, rows: list[dict[str, Any]]) -> list[str]:
    """Per run: each scheme's accuracy by band, and which schemes do worse beyond the training lengths than
    the model without any positional encoding (upper end of their 95% interval below its mean)."""
    index = _index(rows)
    bands = list(stats.bands(config.train_max_length, config.test_max_length))
    out = []
    for task, mode in config.runs:
        parts, below = [], []
        reference = index.get((task, mode, "none", bands[-1], "token_accuracy"))
        for scheme in config.schemes:
            cells = [index.get((task, mode, scheme, band, "token_accuracy")) for band in bands]
            if any(c is None for c in cells):
                continue
            parts.append(f"{scheme} " + " → ".join(f"{c['mean']:.2f}" for c in cells))
            last = cells[-1]
            if len(bands) > 1 and reference is not None and scheme != "none":
                if last["mean"] + (last["ci"] or 0.0) < reference["mean"]:
                    below.append(f"{scheme} ({last['mean']:.2f} ± {last['ci'] or 0.0:.2f})")
        if parts:
            out.append(
                f"- **{task} ({mode})**, per-token accuracy by band ({' → '.join(bands)}): "
                + "; ".join(parts)
                + "."
            )
        if below:
            out.append(
                f"  - Worse in the last band ({bands[-1]}) than no positional encoding at all (none: "
                f"{reference['mean']:.2f}), the whole 95% interval below it: " + ", ".join(below) + "."
            )
    return out


def write_report(
    workdir: Path,
    config: ExperimentConfig,
    records: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    figures: list[str],
    extra: dict[str, Any],
) -> str:
    """``report.md``: setup, tables (mean ± 95% t-CI (max over seeds)), the ceiling check, figures."""
    m = config.model
    band_text = ", ".join(stats.bands(config.train_max_length, config.test_max_length))
    learned_rows = {
        task: position_range(tasks.get_task(task), config.test_max_length) for task, _ in config.runs
    }
    trained_rows = {
        task: int(tasks.get_task(task).sequence_length(config.train_max_length)) for task, _ in config.runs
    }
    lines = [
        "# Sequence-ordering experiment: positional encodings compared",
        "",
        f"Command: `{extra.get('command', 'python -m experiments.ordering')}` "
        f"(preset `{config.preset}`); wall time {extra.get('wall_seconds', float('nan')):.0f} s on "
        f"{extra.get('device', '?')} ({extra.get('device_count', '?')} device(s)).",
        "",
        "## Setup",
        "",
        "- Tasks (Delétang et al. 2023 definitions): "
        + "; ".join(f"`{t}`: {tasks.get_task(t).description}" for t in dict.fromkeys(t for t, _ in config.runs))
        + ". Runs: "
        + ", ".join(f"{t} ({mo})" for t, mo in config.runs)
        + ".",
        "- Encoder format: the input, then one identical EMPTY token per output position; all outputs are "
        "predicted in one pass. Decoder format: input, SEP, outputs, causal attention, trained "
        "teacher-forced; the headline decoder metric is **greedy autoregressive decoding**, teacher-forced "
        "accuracy is reported beside it (labelled).",
        f"- Model: pre-LayerNorm Transformer, {m.num_layers} layers, width {m.width}, {m.num_heads} heads, "
        f"MLP {m.mlp_ratio}x with ReLU, no dropout (so nothing to switch off at evaluation). Token embeddings "
        "N(0, 1).",
        "- Schemes, all through the same module protocol (the model never branches on the scheme): "
        + ", ".join(config.schemes)
        + ". Learned tables have one row per token of the longest whole test "
        "sequence (input plus output): "
        + ", ".join(
            f"{t}: {learned_rows[t]} rows, of which rows {trained_rows[t]}…{learned_rows[t] - 1} "
            f"({learned_rows[t] - trained_rows[t]} rows) are never seen in training without "
            "randomization"
            for t in dict.fromkeys(learned_rows)
        )
        + "; initialised N(0, 1) like the token embeddings. Positions are inside the table by "
        "construction and the data pipeline checks every batch for it; the lookup uses the `clip` policy "
        "(which never acts on in-range positions) rather than `error`, whose run-time host callback would "
        "keep the compiled programs out of the compilation cache. Randomized schemes (Ruoss et al. 2023) "
        "draw, per example, at training and at evaluation, a sorted random subset of [0, longest whole test "
        "sequence) as positions; ALiBi is bidirectional in the encoder, causal in the decoder.",
        f"- Training: input lengths uniform on 1…{config.train_max_length}, batch {config.batch_size} "
        f"examples per seed (packed two per row, lengths n and {config.train_max_length + 1}-n, so no "
        f"padding), Adam, learning rate {config.learning_rate} (linear warm-up {config.warmup_steps} "
        f"steps), gradient clip {config.grad_clip}; loss = cross-entropy averaged over the output tokens of "
        f"the batch. A seed stops when its exact-match accuracy on a fixed in-distribution validation set "
        f"({config.validation_per_length} examples per length) reaches {config.criterion} (checked every "
        f"{config.check_every} steps), or at the cap of {config.max_steps} steps (marked †).",
        f"- Evaluation: every input length 1…{config.test_max_length}, {config.test_per_length} fixed "
        "examples per length, the same examples for every scheme and seed (paired). Bands: "
        f"{band_text}; a seed's band value is the mean over the band's lengths. Tables: mean ± 95% "
        f"t-interval over {len(config.seeds)} seeds (max over seeds in brackets).",
        "",
        "## Results: per-token accuracy",
        "",
    ]
    for task, mode in config.runs:
        lines += [f"### {task} ({mode}{', greedy decoding' if mode == 'decoder' else ''})", ""]
        lines += [format_table(config, rows, records, task=task, mode=mode), ""]
    lines += ["## Results: exact-sequence match", ""]
    for task, mode in config.runs:
        lines += [f"### {task} ({mode})", ""]
        lines += [format_table(config, rows, records, task=task, mode=mode, metric="exact_match"), ""]
    decoder_runs = [(t, mo) for t, mo in config.runs if mo == "decoder"]
    if decoder_runs:
        lines += ["## Decoder: teacher-forced per-token accuracy (for reference, not the headline)", ""]
        for task, mode in decoder_runs:
            lines += [f"### {task} ({mode}, teacher-forced)", ""]
            lines += [
                format_table(
                    config, rows, records, task=task, mode=mode, metric="teacher_forced_token_accuracy"
                ),
                "",
            ]
    checks = ceiling_check(records)
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
    lines += ["## Findings (numbers from the tables above)", ""] + _findings(config, rows) + [""]
    lines += ["## Figures", ""]
    for name in figures:
        lines += [f"![{name}]({name})", ""]
    text = "\n".join(lines)
    atomic_write(workdir / "report.md", text)
    return text
