"""Tables, the generated findings ("what it shows") and ``report.md`` of a run.

Every sentence of the findings is generated from the paired comparisons (`summary.compare_schemes`): the
findings first count the comparisons they state (their family); a difference between two schemes is stated
only where Holm's correction over that family keeps it at a family-wise error of 5%, with the unadjusted
95% interval displayed. A difference between two schemes that both sit at the baseline level (chance or the
most-frequent-symbol baseline) is labelled as such, never stated as a finding; a difference that is the same
in every seed is written as such; a group whose training loss became non-finite is reported as diverged and
not compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from experiments.ordering import config as config_lib
from experiments.ordering import explain, literature, stats, tasks
from experiments.ordering import summary as summary_lib
from experiments.ordering.config import PRESET_NOTES, ExperimentConfig
from experiments.ordering.summary import (
    BASELINE_MARGIN,
    REFERENCES,
    atomic_write,
    band_values,
    divergence,
    families,
)

__all__ = [
    "format_table",
    "family_sentence",
    "findings",
    "rank_schemes",
    "ranking_section",
    "literature_section",
    "write_report",
]


def _interval(row: dict[str, Any] | None, digits: int = 2) -> str:
    """``mean [low, high]`` (the 95% interval, clipped to [0, 1]), or the mean alone for one seed."""
    if row is None:
        return "-"
    if row["ci"] is None:
        return f"{row['mean']:.{digits}f}"
    if row["ci"] <= 1e-12:  # the same value in every seed
        return f"{row['mean']:.{digits}f} (every seed)"
    return f"{row['mean']:.{digits}f} [{row['low']:.{digits}f}, {row['high']:.{digits}f}]"


def _signed(d: dict[str, Any]) -> str:
    """A difference: ``+0.32 [+0.25, +0.39]`` (unadjusted 95% interval; up to 4 digits where a narrow
    interval's ends would print alike), or ``+0.49 in every seed``."""
    if d.get("identical"):
        return f"{d['mean']:+.2f} in every seed"
    digits = 2  # more digits where the interval is narrower than the last one shown
    while digits < 4 and f"{d['low']:+.{digits}f}" == f"{d['high']:+.{digits}f}":
        digits += 1
    return f"{d['mean']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]"


def _divergence(record: dict[str, Any]) -> dict[str, Any] | None:
    """A full record's or a summary group's divergence (`summary.divergence`)."""
    return divergence(record) if "curve" in record else record.get("divergence")


def _diverged_text(found: dict[str, Any]) -> str:
    seeds = ", ".join(str(s) for s in found["seeds"])
    first, last = found["first_steps"]
    where = f"step {first}" if first == last else f"steps {first}-{last}"
    return f"seed{'s' if len(found['seeds']) > 1 else ''} {seeds}; loss not finite from {where}"


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
        found = _divergence(record)
        name = scheme if found is None else f"{scheme} (DIVERGED: {_diverged_text(found)})"
        cells = [name] + [_interval(index.get((scheme, band))) for band in band_names]
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


def family_sentence(
    comparisons: list[dict[str, Any]], metric: str = "token_accuracy", subject: str = "The findings below state"
) -> str:
    """The generated sentence that counts the comparisons ``subject`` (the findings, a ranking) states and
    what the correction keeps.

    Raises:
      ValueError: if ``comparisons`` has none of ``metric``.
    """
    family = families(comparisons)["families"].get(metric)
    if family is None:
        raise ValueError(f"family_sentence(metric={metric!r}): no comparisons of that metric")
    parts = [
        f"- {subject} {family['comparisons']} paired differences in per-token accuracy, "
        f"{family['distinct']} distinct (a - b and b - a once); {family['tested']} form the family tested "
        f"with Holm's correction at a family-wise error of 5%: {_are(family['separated'])} separated (with "
        f"unadjusted 95% intervals, {family['separated_unadjusted']} would be)"
    ]
    if family["diverged"]:
        parts.append(f"{family['diverged']} involve a diverged group and are not compared")
    if family["at_baseline"]:
        parts.append(f"{_are(family['at_baseline'])} between two schemes at the baseline level, not findings")
    return "; ".join(parts) + "."


def _are(count: int) -> str:
    return f"{count} {'is' if count == 1 else 'are'}"


def _difference_text(c: dict[str, Any]) -> str:
    """``scheme difference``, with the schemes at the baseline level named."""
    text = f"{c['scheme']} {_signed(c)}"
    level = [
        name
        for name, key in ((c["scheme"], "scheme_at_baseline"), (c["reference"], "reference_at_baseline"))
        if c.get(key)
    ]
    if level:
        text += f" ({' and '.join(level)} at the baseline level)"
    return text


def _band_sentence(band: str, reference: str, diffs: list[dict[str, Any]]) -> str:
    groups: dict[str, list[str]] = {}
    for c in diffs:
        if c["diverged"]:
            key, text = "diverged", c["scheme"]
        elif c["at_baseline"]:
            key, text = "baseline", f"{c['scheme']} {_signed(c)}"
        elif c["identical"] and c["p_value"] == 1.0:
            key, text = "equal", c["scheme"]
        elif c["separated"]:
            key, text = ("above" if c["mean"] > 0 else "below"), _difference_text(c)
        elif c["separated_unadjusted"]:
            key, text = "corrected", f"{c['scheme']} {_signed(c)}"
        else:
            key, text = "same", c["scheme"]
        groups.setdefault(key, []).append(text)
    templates = {
        "above": f"above {reference}: {{}}",
        "below": f"below {reference}: {{}}",
        "corrected": "not separated after the correction (the unadjusted interval excludes 0): {}",
        "same": f"the data do not separate {{}} from {reference}",
        "equal": f"equal to {reference} in every seed: {{}}",
        "baseline": f"both at the baseline level with {reference}, not a finding: {{}}",
        "diverged": "not compared (diverged): {}",
    }
    parts = [template.format(", ".join(groups[key])) for key, template in templates.items() if key in groups]
    return f"  - Per-token accuracy, {band}, paired difference from {reference}: " + "; ".join(parts) + "."


def findings(
    config: ExperimentConfig,
    records: list[dict[str, Any]],
    comparisons: list[dict[str, Any]],
) -> list[str]:
    """The generated "what it shows": how many comparisons are stated and how many the family-wise (Holm)
    correction keeps; then per run, whether positions are needed, which groups diverged, which schemes
    reach the criterion in distribution, and per band each scheme's paired difference in per-token
    accuracy from ``none`` and from ``sinusoidal``: above, below, not separated, equal in every seed, at the
    baseline level (not a finding), or not compared (diverged).

    Args:
      config: the run's config.
      records: the groups' records (full, or the ``groups`` of ``summary.json``).
      comparisons: from `summary.compare_schemes`.
    """
    out = []
    if any(c["metric"] == "token_accuracy" for c in comparisons):
        out.append(family_sentence(comparisons))
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
            diverged = {s: found for s in trained if (found := _divergence(by_scheme[s])) is not None}
            if diverged:
                out.append(
                    "  - DIVERGED (training loss not finite): "
                    + "; ".join(f"{s} ({_diverged_text(found)})" for s, found in diverged.items())
                    + ". Their accuracies are those of a broken model and are not compared."
                )
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
                    if diffs:
                        out.append(_band_sentence(band, reference, diffs))
    return out


def _wider_than_quick(config: ExperimentConfig) -> bool:
    """Whether ``config`` compares schemes beyond the quick preset's (then the report ranks them all and
    checks the literature's orderings)."""
    return not set(config.schemes) <= set(config_lib.PRESETS["quick"].schemes)


def rank_schemes(config: ExperimentConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every scheme ranked per (task, mode, learning rate) and band by its mean per-token accuracy, with
    the range of ranks the paired comparisons allow.

    Every pair of schemes of a band is compared (`summary.compare_pairs`); the whole ranking is one family
    decided with Holm's correction. A scheme's ranks run from 1 + the number of schemes separated above it
    to the number of ranked schemes - the number separated below it; a difference between two schemes both
    at the baseline level separates nothing. Diverged groups are not ranked.

    Returns:
      ``{"comparisons", "tables"}``: every comparison of the family, and per (task, mode, learning rate)
      ``{"task", "mode", "learning_rate", "bands": {band: [{"scheme", "mean", "ranks": (low, high)}]},
      "diverged": [scheme]}``, best first.
    """
    order = {s: i for i, s in enumerate(config.schemes)}
    comparisons = summary_lib.compare_pairs(
        rows, lambda row: [s for s in config.schemes if order[s] > order.get(row["scheme"], len(order))]
    )
    tables = []
    for task, mode in config.runs:
        for lr in config.learning_rates:
            bands: dict[str, list[dict[str, Any]]] = {}
            diverged: set[str] = set()
            for band in stats.bands(config.train_max_length, config.test_max_length):
                ranked = [
                    r
                    for r in rows
                    if (r["task"], r["mode"], r["learning_rate"], r["band"], r["metric"])
                    == (task, mode, lr, band, "token_accuracy")
                    and r["scheme"] in order
                ]
                diverged |= {r["scheme"] for r in ranked if r["diverged_seeds"]}
                ranked = sorted(
                    (r for r in ranked if not r["diverged_seeds"]),
                    key=lambda r: (-r["mean"], order[r["scheme"]]),
                )
                if not ranked:
                    continue
                above = {r["scheme"]: 0 for r in ranked}
                below = dict(above)
                for c in comparisons:
                    if (c["task"], c["mode"], c["learning_rate"], c["band"]) != (task, mode, lr, band):
                        continue
                    if c["separated"] and not c["at_baseline"] and not c["diverged"]:
                        better, worse = (
                            (c["scheme"], c["reference"]) if c["mean"] > 0 else (c["reference"], c["scheme"])
                        )
                        above[worse] += 1
                        below[better] += 1
                bands[band] = [
                    {
                        "scheme": r["scheme"],
                        "mean": r["mean"],
                        "ranks": (1 + above[r["scheme"]], len(ranked) - below[r["scheme"]]),
                    }
                    for r in ranked
                ]
            if bands:
                tables.append(
                    {
                        "task": task,
                        "mode": mode,
                        "learning_rate": lr,
                        "bands": bands,
                        "diverged": [s for s in config.schemes if s in diverged],
                    }
                )
    return {"comparisons": comparisons, "tables": tables}


def ranking_section(config: ExperimentConfig, rows: list[dict[str, Any]]) -> list[str]:
    """The report's ranking of every scheme (`rank_schemes`): the family sentence, then per run a table
    with one row per rank and one column per band (scheme, mean per-token accuracy, ranks allowed)."""
    ranking = rank_schemes(config, rows)
    if not ranking["tables"]:
        return []
    several = len(config.learning_rates) > 1
    lines = [
        "## Every scheme ranked (per-token accuracy)",
        "",
        "Per run and band, the schemes by mean per-token accuracy over seeds. Every pair of schemes of a "
        "band is compared by its paired per-seed difference; the ranks in parentheses are those the "
        "comparisons allow: from 1 + the number of schemes separated above to the number of schemes - the "
        "number separated below, with Holm's correction over every pair the ranking compares (a difference "
        "between two schemes both at the baseline level separates nothing). Ranks 1-1: ahead of every other "
        "scheme.",
        "",
        family_sentence(ranking["comparisons"], subject="The ranking compares"),
        "",
    ]
    for table in ranking["tables"]:
        suffix = f", lr {table['learning_rate']:g}" if several else ""
        greedy = ", greedy decoding" if table["mode"] == "decoder" else ""
        bands = list(table["bands"])
        lines += [f"### {table['task']} ({table['mode']}{greedy}{suffix})", ""]
        lines += ["| rank | " + " | ".join(bands) + " |", "|" + "---|" * (len(bands) + 1)]
        for i in range(max(len(v) for v in table["bands"].values())):
            cells = []
            for band in bands:
                entries = table["bands"][band]
                if i < len(entries):
                    e = entries[i]
                    low, high = e["ranks"]
                    cells.append(f"{e['scheme']} {e['mean']:.2f} ({low}-{high})")
                else:
                    cells.append("")
            lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
        if table["diverged"]:
            lines += ["", f"Not ranked (diverged): {', '.join(table['diverged'])}."]
        lines.append("")
    return lines


def _claim_band_text(band: str, c: dict[str, Any], verdict: str) -> str:
    p = "no test (one seed)" if c["p_holm"] is None else f"Holm-adjusted p {c['p_holm']:.3g}"
    difference = f"{_signed(c)}, {p}"
    return {
        "agrees": f"{band}: agrees, {difference}, separated",
        "disagrees": f"{band}: disagrees, {difference}, separated",
        "cannot separate": f"{band}: cannot separate them, {difference}, not separated",
        "at baseline": f"{band}: both at the baseline level, not counted, {difference}",
        "diverged": f"{band}: not compared (a group diverged)",
    }[verdict]


def _claim_overall(verdicts: list[str]) -> str:
    counted = set(verdicts) - {"at baseline", "diverged"}
    if "agrees" in counted and "disagrees" in counted:
        return "mixed"
    for verdict in ("agrees", "disagrees", "cannot separate"):
        if verdict in counted:
            return verdict
    return "both at the baseline level" if "at baseline" in verdicts else "not compared (diverged)"


def literature_section(
    config: ExperimentConfig,
    rows: list[dict[str, Any]],
    claims: tuple[literature.Claim, ...] = literature.CLAIMS,
) -> list[str]:
    """The report's "What the literature reports, checked at this scale": per claim, its citation and
    setting against this run's, then one sentence per pair and run: the overall verdict, and per band
    beyond training the paired difference ``ahead - behind`` [unadjusted 95% interval], its Holm-adjusted
    p-value and decision. Empty when no claim can be checked."""
    found = literature.check_claims(config, rows, claims)
    if not found["checks"]:
        return []
    family = families(found["comparisons"])["families"]["token_accuracy"]
    verdicts = [v for check in found["checks"] for _, _, v in check["bands"]]
    tally = {
        v: verdicts.count(v) for v in ("agrees", "disagrees", "cannot separate", "at baseline", "diverged")
    }
    lines = [
        "## What the literature reports, checked at this scale",
        "",
        "Each ordering a paper reports is checked where this run has both schemes and a run of the paper's "
        "architecture, in every band beyond the training lengths: the paired difference in per-token "
        "accuracy (ahead minus behind; mean [unadjusted 95% interval]) and its Holm-adjusted p-value over "
        f"the family of the {family['tested']} comparisons this section states (family-wise error 5%). A "
        "separated positive difference agrees with the paper, a separated negative one disagrees; a "
        "difference between two schemes both at the baseline level (chance or the most-frequent-symbol "
        "baseline) is labelled as such and not counted. A pair's verdict over its bands: agrees (disagrees) "
        "where some band agrees (disagrees) and none disagrees (agrees), mixed where bands do both, cannot "
        "separate where no band is separated. This run is far smaller than the papers' (model, lengths, "
        "training), and its tasks are not the papers' tasks except where stated.",
        "",
        f"- Of {len(verdicts)} checks (pair, run and band): {tally['agrees']} agree, {tally['disagrees']} "
        f"disagree, {tally['cannot separate']} cannot separate the schemes, {tally['at baseline']} are "
        f"between two schemes at the baseline level"
        + (f", {tally['diverged']} involve a diverged group" if tally["diverged"] else "")
        + ".",
    ]
    several = len(config.learning_rates) > 1
    for claim in claims:
        checks = [c for c in found["checks"] if c["claim"] is claim]
        if not checks:
            continue
        runs = dict.fromkeys((c["task"], c["mode"], c["paper_task"]) for c in checks)
        relation = "; ".join(
            f"{task} ({mode}): "
            + (
                f"a task of the paper ({tasks.get_task(task).source}), the same architecture"
                if paper_task
                else "the same architecture, a different task"
            )
            for task, mode, paper_task in runs
        )
        lines += [
            f"- **{claim.paper}** ({claim.citation}) report that {claim.statement}; the paper: "
            f"{claim.setting}. Checked here on {relation}.",
        ]
        for check in checks:
            overall = _claim_overall([v for _, _, v in check["bands"]])
            lr = f", learning rate {check['learning_rate']:g}" if several else ""
            lines.append(
                f"  - {check['ahead']} ahead of {check['behind']}, {check['task']} ({check['mode']}{lr}): "
                f"{overall} — " + "; ".join(_claim_band_text(*band) for band in check["bands"]) + "."
            )
    if found["skipped"]:
        lines.append(
            "- Not checked (a scheme or the paper's architecture is not in this run): "
            + "; ".join(f"{claim.paper} ({claim.statement})" for claim in found["skipped"])
            + "."
        )
    return lines + [""]


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
        scheme, diverged = entry["scheme"], False
        cells = [f"{entry['task']} ({entry['mode']})", scheme, f"{entry['best']:.2f}"]
        for lr in lrs:
            record = _records(records, entry["task"], entry["mode"], lr).get(scheme)
            if record is None:
                cells.append("-")
                continue
            diverged = diverged or _divergence(record) is not None
            cells.append(_interval(stats.summarize(band_values(record["test"]["token_accuracy"], *span))))
        if diverged:
            cells[1] = f"{scheme} (DIVERGED)"
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
        f"or {config.position_range} rows for randomized_learned; initialised {phrases['table_init']}, with "
        "the library's default out-of-range policy (the data pipeline checks that every position is inside "
        "the table). "
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
        "per-seed differences (every scheme sees the same data per seed): the paired t test and the 95% t "
        "interval of the mean difference. The findings count the comparisons they state and call a "
        "difference separated only where Holm's step-down correction over that family keeps it at a "
        "family-wise error of 5% (Holm rather than a false-discovery rate because each finding is read as a "
        "claim of its own, and Holm holds under any dependence between comparisons that share a scheme's "
        "seeds); the intervals shown are the unadjusted 95% intervals. A scheme whose mean is at most "
        f"{BASELINE_MARGIN:g} above the better of chance and the most-frequent-symbol baseline (or below it) "
        "is at the baseline level; a difference between two such schemes is not a finding.",
        "",
    ]
    diverged = [(r, found) for r in records if (found := _divergence(r)) is not None]
    if diverged:
        lines += [
            "## DIVERGED: groups whose training loss became non-finite",
            "",
            "Their models are broken: their accuracies are shown but not compared, and the command exited "
            "with a non-zero status.",
            "",
        ]
        lines += [
            f"- {r['task']} ({r['mode']}), {r['scheme']}, learning rate {r['learning_rate']:g}: "
            f"{_diverged_text(found)}."
            for r, found in diverged
        ]
        lines.append("")
    lines += [
        "## What it shows (generated from the paired comparisons)",
        "",
        "A difference is stated only where Holm's correction over the family of stated comparisons keeps "
        "it; differences are in per-token accuracy (mean [unadjusted 95% interval], or the difference "
        "where it is the same in every seed).",
        "",
    ]
    lines += findings(config, records, summary["comparisons"]) + [""]
    if _wider_than_quick(config):
        lines += ranking_section(config, rows)
        lines += literature_section(config, rows)
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
            record = _records(records, c["task"], c["mode"], c["learning_rate"]).get("none")
            broken = " (DIVERGED: not a trained model)" if record and _divergence(record) else ""
            lines.append(
                f"- {c['task']} ({c['mode']}){broken}: largest per-example excess over the ceiling "
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
