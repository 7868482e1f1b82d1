"""The literature's orderings checked on hand-made summary rows, the ranking of every scheme, and the
figures' scheme styles (no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.ordering import config as config_lib
from experiments.ordering import figures, literature, report, stats
from experiments.ordering.model import ModelConfig

BEYOND = "1-2x (3-4)"


def _config(schemes):
    return config_lib.preset(
        "wide",
        runs=(("reverse", "decoder"),),
        schemes=schemes,
        seeds=(0, 1, 2),
        model=ModelConfig(1, 16, 2, 2),
        train_max_length=2,
        test_max_length=4,
        steps=20,
        run_steps=(),
        warmup_steps=5,
        check_every=10,
    )


def _row(scheme, per_seed, band=BEYOND, diverged=()):
    """A summary row of per-token accuracy (chance and most-frequent symbol 0.5)."""
    per_seed = np.asarray(per_seed, dtype=float)
    low, high = (3, 4) if band == BEYOND else (1, 2)
    return {
        "task": "reverse",
        "mode": "decoder",
        "learning_rate": 1e-3,
        "band": band,
        "band_low": low,
        "band_high": high,
        "metric": "token_accuracy",
        "scheme": scheme,
        "per_seed": per_seed.tolist(),
        "mean": float(per_seed.mean()),
        "chance": 0.5,
        "most_frequent": 0.5,
        "baseline": 0.5,
        "diverged_seeds": list(diverged),
    }


def _p(differences):
    """Two-sided paired t test on 2 degrees of freedom, written from the t CDF."""
    d = np.asarray(differences, dtype=float)
    t = abs(d.mean()) / (d.std(ddof=1) / math.sqrt(d.size))
    return 1 - t / math.sqrt(2 + t * t)


SCORES = {
    "none": [0.90, 0.92, 0.91],
    "t5": [0.52, 0.53, 0.51],  # at the baseline level (0.5 + 0.05)
    "alibi": [0.50, 0.52, 0.53],  # at the baseline level
    "rotary": [0.85, 0.97, 0.90],
}


def test_literature_claims_agree_disagree_cannot_separate_or_sit_at_baseline():
    config = _config(tuple(SCORES))
    rows = [_row(s, v) for s, v in SCORES.items()]
    # In distribution every scheme is perfect: not a band the claims are checked in.
    rows += [_row(s, [1.0, 1.0, 1.0], band="in-distribution (1-2)") for s in SCORES]
    found = literature.check_claims(config, rows)
    # Kazemnejad et al.: none and t5 against alibi and rotary (sinusoidal and learned are not in the run).
    pairs = {(c["ahead"], c["behind"]): c for c in found["checks"]}
    assert set(pairs) == {("none", "alibi"), ("none", "rotary"), ("t5", "alibi"), ("t5", "rotary")}
    assert all(c["claim"].paper == "Kazemnejad et al. 2023" for c in found["checks"])
    assert all([band for band, _, _ in c["bands"]] == [BEYOND] for c in found["checks"])
    # The other claims need schemes (or, for Ruoss et al., an encoder run) that this run lacks: skipped.
    assert [c.paper for c in found["skipped"]] == [
        "Ruoss et al. 2023",
        "Li et al. 2024",
        "Chi et al. 2022",
        "Sun et al. 2022",
    ]
    # Holm over the 4 comparisons the section states, from p-values written from the t distribution.
    diffs = {k: np.subtract(SCORES[k[0]], SCORES[k[1]]) for k in pairs}
    keys = list(diffs)
    adjusted, rejected = stats.holm([_p(diffs[k]) for k in keys])
    for key, p_holm, separated in zip(keys, adjusted, rejected, strict=True):
        c = pairs[key]["bands"][0][1]
        assert c["p_holm"] == pytest.approx(p_holm, rel=1e-9) and c["separated"] == separated
        assert c["mean"] == pytest.approx(diffs[key].mean())
    verdicts = {k: c["bands"][0][2] for k, c in pairs.items()}
    assert verdicts == {
        ("none", "alibi"): "agrees",
        ("t5", "rotary"): "disagrees",
        ("none", "rotary"): "cannot separate",
        ("t5", "alibi"): "at baseline",
    }

    lines = report.literature_section(config, rows)
    text = "\n".join(lines)
    assert lines[0] == "## What the literature reports, checked at this scale"
    assert "the family of the 4 comparisons this section states" in text
    assert (
        "Of 4 checks (pair, run and band): 1 agree, 1 disagree, 1 cannot separate the schemes, 1 are between "
        "two schemes at the baseline level." in text
    )
    p = dict(zip(keys, adjusted, strict=True))
    assert (
        f"  - none ahead of alibi, reverse (decoder): agrees — {BEYOND}: agrees, +0.39 [+0.36, +0.42], "
        f"Holm-adjusted p {p[('none', 'alibi')]:.3g}, separated." in lines
    )
    assert f"t5 ahead of rotary, reverse (decoder): disagrees — {BEYOND}: disagrees, -0.39 [" in text
    assert f"none ahead of rotary, reverse (decoder): cannot separate — {BEYOND}: cannot separate them" in text
    assert (
        f"t5 ahead of alibi, reverse (decoder): both at the baseline level — {BEYOND}: both at the baseline "
        "level, not counted" in text
    )
    # The setting: the paper's decoders on its own tasks; here the same architecture, a different task.
    assert "Checked here on reverse (decoder): the same architecture, a different task." in text
    assert "Not checked (a scheme or the paper's architecture is not in this run): Ruoss et al. 2023" in text


def test_claims_with_a_missing_scheme_are_skipped_and_a_paper_task_is_named():
    config = config_lib.preset(
        "wide", runs=(("sort", "encoder"),), schemes=("rotary", "randomized_rotary", "none")
    )
    rows = [
        {**_row(s, v), "task": "sort", "mode": "encoder"}
        for s, v in (("rotary", [0.6, 0.62, 0.61]), ("randomized_rotary", [0.8, 0.82, 0.83]))
    ]
    rows = [{**r, "band": "1-2x (11-20)"} for r in rows]
    found = literature.check_claims(config, rows)
    assert [(c["ahead"], c["behind"], c["paper_task"]) for c in found["checks"]] == [
        ("randomized_rotary", "rotary", True)
    ]
    assert "Kazemnejad et al. 2023" in [c.paper for c in found["skipped"]]  # no decoder run
    text = "\n".join(report.literature_section(config, rows))
    assert "Checked here on sort (encoder): a task of the paper (Delétang et al. (2023), `bucket_sort`)" in text
    assert "randomized_rotary ahead of rotary, sort (encoder): agrees" in text
    # No scheme pair of any claim: no section at all.
    assert report.literature_section(config, [r for r in rows if r["scheme"] == "rotary"]) == []


def test_every_scheme_is_ranked_with_the_ranks_its_holm_decided_comparisons_allow():
    rows = [_row(s, v) for s, v in SCORES.items()]
    rows.append(_row("learned", [0.2, 0.9, 0.4], diverged=[1]))
    config = _config((*SCORES, "learned"))
    ranking = report.rank_schemes(config, rows)
    assert len(ranking["comparisons"]) == 10  # every pair of the 5 schemes once
    (table,) = ranking["tables"]
    entries = table["bands"][BEYOND]
    assert [(e["scheme"], e["ranks"]) for e in entries] == [
        ("none", (1, 2)),  # not separated from rotary
        ("rotary", (1, 2)),
        ("t5", (3, 4)),  # t5 and alibi both at the baseline level: not separated from each other
        ("alibi", (3, 4)),
    ]
    assert table["diverged"] == ["learned"]
    text = "\n".join(report.ranking_section(config, rows))
    assert "| 1 | none 0.91 (1-2) |" in text and "| 4 | alibi 0.52 (3-4) |" in text
    assert (
        "- The ranking compares 10 paired differences in per-token accuracy, 10 distinct (a - b and b - a once); 6 form the family tested with Holm's correction at a family-wise error of 5%: 4 are separated"
        in text
    )
    assert "Not ranked (diverged): learned." in text


def test_only_presets_wider_than_quick_rank_and_check_the_literature():
    assert not report._wider_than_quick(config_lib.PRESETS["quick"])
    assert report._wider_than_quick(config_lib.PRESETS["wide"])


def test_every_scheme_has_its_own_colour_and_style_and_the_first_ten_keep_tab10():
    from matplotlib import colormaps

    styles = figures.scheme_styles()
    assert list(styles) == list(config_lib.SCHEMES)
    assert len({colour for colour, _ in styles.values()}) == len(styles)
    assert len(set(styles.values())) == len(styles)
    for i, name in enumerate(list(styles)[:10]):
        assert styles[name][0] == colormaps["tab10"](i)
    assert styles["randomized_rotary"][1] == "--" and styles["rotary"][1] == "-"
