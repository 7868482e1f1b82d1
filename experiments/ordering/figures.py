"""Figures of a run: accuracy against test length, and training curves."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from experiments.ordering import stats, tasks
from experiments.ordering.config import SCHEMES, ExperimentConfig
from experiments.ordering.summary import atomic_write, divergence

__all__ = ["scheme_styles", "write_figures"]

_LINE_STYLES = ("-", "--", "-.", ":")


def scheme_styles() -> dict[str, tuple[tuple[float, ...], str]]:
    """A (colour, line style) per scheme of `SCHEMES`, distinct for up to 20 schemes.

    Colours are matplotlib's ``tab20``, its ten dark colours first (the first ten schemes get ``tab10``'s
    colours) and then their ten light variants. The line style tells a randomized scheme (dashed) from the
    others (solid), and among the schemes with a light colour, dash-dotted (others) and dotted (randomized),
    so that no two schemes share colour and line style.

    Raises:
      ValueError: if `SCHEMES` has more than 20 schemes (colours would repeat).
    """
    from matplotlib import colormaps

    if len(SCHEMES) > 20:
        raise ValueError(f"scheme_styles(): {len(SCHEMES)} schemes; tab20 tells at most 20 apart")
    palette = colormaps["tab20"]
    out = {}
    for i, (name, spec) in enumerate(SCHEMES.items()):
        colour = palette(2 * i if i < 10 else 2 * (i - 10) + 1)
        out[name] = (colour, _LINE_STYLES[2 * (i >= 10) + spec.randomized])
    return out


def _save(fig: Any, path: Path) -> None:
    """Writes ``fig`` as a PNG through a temporary file (`summary.atomic_write`): a kill never leaves half a
    figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write(path, buffer.getvalue())


def _label(record: dict[str, Any], several: bool) -> str:
    label = record["scheme"] + (f" (lr {record['learning_rate']:g})" if several else "")
    return label + (" (DIVERGED)" if divergence(record) is not None else "")


def write_figures(workdir: Path, config: ExperimentConfig, records: list[dict[str, Any]]) -> list[str]:
    """Accuracy against test length (mean over seeds with the 95% t interval, clipped to [0, 1]; the
    analytic ceiling, the most-frequent-symbol baseline and chance), and training curves, one pair of PNG
    files per (task, mode). Returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    several = len(config.learning_rates) > 1
    styles = scheme_styles()
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
                mean, half = stats.mean_interval(values)
                ax.plot(
                    lengths,
                    mean,
                    label=_label(r, several),
                    color=styles[r["scheme"]][0],
                    linestyle=styles[r["scheme"]][1],
                )
                if half is not None:
                    low, high = np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1)
                    ax.fill_between(lengths, low, high, color=styles[r["scheme"]][0], alpha=0.12)
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
                ax.plot(
                    lengths,
                    group[0]["test"]["most_frequent"],
                    color="gray",
                    linestyle="--",
                    linewidth=1,
                    label="most frequent symbol",
                )
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
        _save(fig, workdir / name)
        plt.close(fig)
        figures.append(name)

        beside = len(group) > 10  # a long legend goes beside the axes, not over the curves
        fig, ax = plt.subplots(figsize=(9, 4) if beside else (6.5, 4))
        for r in group:
            losses = np.asarray(r["curve"]["loss"], dtype=float)  # null (not a number) -> NaN
            ax.plot(
                r["curve"]["step"],
                losses.mean(1),
                label=_label(r, several),
                color=styles[r["scheme"]][0],
                linestyle=styles[r["scheme"]][1],
            )
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (mean over output tokens)")
        ax.set_title(f"{task} ({mode}): training curves, mean over seeds")
        ax.grid(alpha=0.3)
        if beside:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        else:
            ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"training_{task}_{mode}.png"
        _save(fig, workdir / name)
        plt.close(fig)
        figures.append(name)
    return figures
