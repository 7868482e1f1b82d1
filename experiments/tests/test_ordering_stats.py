"""Statistics of the ordering experiment: t quantiles, confidence intervals, paired t tests, Holm's
correction over a family of comparisons, baseline-level and identical differences, length bands."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.ordering import stats


def _t_cdf(q: float, df: int) -> float:
    """Student-t CDF by numerical integration of its density (float64 numpy, trapezoid on a fine grid)."""
    x = np.linspace(0.0, q, 200_001)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    density = np.exp(log_c - (df + 1) / 2 * np.log1p(x * x / df))
    return 0.5 + float(np.sum((density[1:] + density[:-1]) / 2 * np.diff(x)))


@pytest.mark.parametrize("df", [1, 2, 4, 10, 30])
@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_t_quantile_inverts_the_t_distribution(df, confidence):
    q = stats.t_quantile(confidence, df)
    assert _t_cdf(q, df) == pytest.approx(0.5 + confidence / 2, abs=1e-6)


def test_summarize_is_the_t_interval_of_the_mean():
    values = np.array([0.61, 0.74, 0.58, 0.9, 0.66])
    s = stats.summarize(values)
    sd = math.sqrt(sum((v - values.mean()) ** 2 for v in values) / 4)
    assert s["mean"] == pytest.approx(values.mean())
    assert s["ci"] == pytest.approx(stats.t_quantile(0.95, 4) * sd / math.sqrt(5))
    assert (s["max"], s["min"], s["n"]) == (0.9, 0.58, 5)
    # Coverage: about 95% of intervals from normal samples contain the true mean.
    rng = np.random.default_rng(0)
    hits = [abs((r := stats.summarize(rng.normal(1.0, 2.0, 3)))["mean"] - 1.0) <= r["ci"] for _ in range(4000)]
    assert np.mean(hits) == pytest.approx(0.95, abs=0.015)


def test_summarize_single_value_has_no_interval():
    assert stats.summarize([0.3]) == {
        "mean": 0.3,
        "ci": None,
        "low": 0.3,
        "high": 0.3,
        "max": 0.3,
        "min": 0.3,
        "n": 1,
    }


def test_displayed_interval_is_clipped_to_the_unit_range():
    s = stats.summarize([1.0, 1.0, 0.9])
    assert s["high"] == 1.0 and s["mean"] + s["ci"] > 1.0
    s = stats.summarize([0.0, 0.1, 0.0])
    assert s["low"] == 0.0 and s["mean"] - s["ci"] < 0.0
    assert stats.summarize([0.0, 2.0], bounds=None)["low"] < 0.0


def test_paired_difference_against_a_hand_computed_case():
    # Differences a - b per seed: 0.10, 0.20, 0.00, 0.30, 0.15 -> mean 0.15, sample sd sqrt(0.0125),
    # t(0.975, 4) = 2.776445105 (tables), half-width 2.776445105 * sqrt(0.0125) / sqrt(5) = 0.138822.
    a = [0.60, 0.75, 0.50, 0.90, 0.70]
    b = [0.50, 0.55, 0.50, 0.60, 0.55]
    d = stats.paired_difference(a, b)
    assert d["mean"] == pytest.approx(0.15)
    assert d["ci"] == pytest.approx(2.776445105 * math.sqrt(0.0125) / math.sqrt(5), rel=1e-8)
    assert d["ci"] == pytest.approx(0.1388222553, rel=1e-8)
    assert (d["low"], d["high"]) == (pytest.approx(0.0111777447), pytest.approx(0.2888222553))
    assert d["separated"] and d["n"] == 5
    # Unpaired, the same values' intervals overlap; paired, the shared seed effect cancels.
    sa, sb = stats.summarize(a), stats.summarize(b)
    assert sa["mean"] - sa["ci"] < sb["mean"] + sb["ci"]
    # Reversed: the same interval, negated; an interval containing 0 is not separated.
    r = stats.paired_difference(b, a)
    assert (r["low"], r["high"]) == (pytest.approx(-d["high"]), pytest.approx(-d["low"]))
    assert r["separated"]
    assert not stats.paired_difference([0.5, 0.7, 0.6], [0.6, 0.5, 0.6])["separated"]
    assert not stats.paired_difference([0.5], [0.1])["separated"]  # one seed: no interval


def test_paired_p_value_against_the_t_distribution():
    # Differences 0.10, 0.20, 0.00, 0.30, 0.15: mean 0.15, standard error sqrt(0.0125 / 5) = 0.05, t = 3.0 on
    # 4 degrees of freedom; two-sided p = 2 (1 - F(3)), F from the density integrated numerically.
    d = stats.paired_difference([0.60, 0.75, 0.50, 0.90, 0.70], [0.50, 0.55, 0.50, 0.60, 0.55])
    assert d["p_value"] == pytest.approx(2 * (1 - _t_cdf(3.0, 4)), abs=1e-6)
    assert d["p_value"] == pytest.approx(0.0399, abs=1e-4)  # tables: t(0.98, 4) = 2.999
    assert not d["identical"]
    # Three seeds: with 2 degrees of freedom F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so p = 1 - t / sqrt(2 + t^2).
    d = stats.paired_difference([0.7, 0.9, 0.95], [0.6, 0.7, 0.8])  # differences 0.1, 0.2, 0.15: t = 3 sqrt(3)
    t = 0.15 / (0.05 / math.sqrt(3))
    assert d["p_value"] == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)
    # The same difference in every seed: no spread, written as such; p is 0 (or 1 for no difference).
    same = stats.paired_difference([0.99, 0.98, 1.0], [0.5, 0.49, 0.51])
    assert same["identical"] and same["ci"] == pytest.approx(0.0, abs=1e-12) and same["p_value"] == 0.0
    equal = stats.paired_difference([0.7, 0.8], [0.7, 0.8])
    assert equal["identical"] and equal["p_value"] == 1.0 and not equal["separated"]
    assert stats.paired_difference([0.5], [0.1])["p_value"] is None


def test_holm_on_a_known_p_vector():
    # Sorted: 0.005, 0.01, 0.03, 0.04 -> 4 x 0.005 = 0.02, 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(1 x 0.04, 0.06).
    adjusted, rejected = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rejected == [True, False, False, True]
    # Both below 0.05 unadjusted, neither kept: 2 x 0.026 = 0.052, then max(0.03, 0.052).
    adjusted, rejected = stats.holm([0.03, 0.026])
    assert adjusted == pytest.approx([0.052, 0.052]) and rejected == [False, False]
    # Untested comparisons are not in the family; adjusted p-values are capped at 1.
    # Sorted 0.02, 0.6, 0.7 -> 3 x 0.02 = 0.06, min(1, 2 x 0.6) = 1, max(1 x 0.7, 1).
    adjusted, rejected = stats.holm([None, 0.02, 0.7, 0.6, None])
    assert adjusted == [None, pytest.approx(0.06), 1.0, 1.0, None]
    assert rejected == [False] * 5
    assert stats.holm([0.02, 0.03], alpha=0.1)[1] == [True, True]
    assert stats.holm([]) == ([], [])


def _row(scheme, per_seed, band="1-2x (3-4)", diverged=(), baseline=0.55):
    per_seed = np.asarray(per_seed, dtype=float)
    return {
        "task": "reverse",
        "mode": "encoder",
        "learning_rate": 1e-3,
        "band": band,
        "band_low": 3,
        "band_high": 4,
        "metric": "token_accuracy",
        "scheme": scheme,
        "per_seed": per_seed.tolist(),
        "mean": float(per_seed.mean()),
        "chance": 0.5,
        "most_frequent": baseline,
        "baseline": max(0.5, baseline),
        "diverged_seeds": list(diverged),
    }


def test_comparisons_are_decided_by_holm_over_their_family():
    from experiments.ordering import report, summary

    none = np.array([0.6, 0.7, 0.8])
    rows = [
        _row("none", none),
        _row("sinusoidal", none + [0.3, 0.31, 0.32]),  # t = 0.31 / (0.01 / sqrt 3)
        _row("rotary", none + [0.1, 0.2, 0.15]),  # t = 0.15 / (0.05 / sqrt 3)
    ]
    comparisons = summary.compare_schemes(rows, metrics=("token_accuracy",))
    by = {(c["scheme"], c["reference"]): c for c in comparisons}
    assert len(comparisons) == 4  # sinusoidal - none and none - sinusoidal are one comparison

    def p(differences):  # two-sided paired t test on 2 degrees of freedom, written from the t CDF
        d = np.asarray(differences)
        t = abs(d.mean()) / (d.std(ddof=1) / math.sqrt(3))
        return 1 - t / math.sqrt(2 + t * t)

    p_sin, p_rot, p_rot_sin = p([0.3, 0.31, 0.32]), p([0.1, 0.2, 0.15]), p([-0.2, -0.11, -0.17])
    assert p_sin < p_rot_sin < p_rot < 0.05  # every one separated without the correction
    assert by[("rotary", "none")]["p_value"] == pytest.approx(p_rot, rel=1e-9)
    # Holm over the 3 distinct comparisons: 3 p_sin, then max(3 p_sin, 2 p_rot_sin), then max(that, p_rot).
    assert by[("sinusoidal", "none")]["p_holm"] == pytest.approx(3 * p_sin, rel=1e-9)
    assert by[("none", "sinusoidal")]["p_holm"] == by[("sinusoidal", "none")]["p_holm"]
    assert by[("rotary", "sinusoidal")]["p_holm"] == pytest.approx(2 * p_rot_sin, rel=1e-9)
    assert by[("rotary", "none")]["p_holm"] == pytest.approx(max(2 * p_rot_sin, p_rot), rel=1e-9)
    assert 2 * p_rot_sin > 0.05
    assert [
        by[k]["separated"] for k in (("sinusoidal", "none"), ("rotary", "none"), ("rotary", "sinusoidal"))
    ] == [
        True,
        False,
        False,
    ]
    assert all(c["separated_unadjusted"] and c["family_size"] == 3 for c in comparisons)
    families = summary.families(comparisons)
    assert families["correction"].startswith("Holm") and families["alpha"] == 0.05
    assert families["families"]["token_accuracy"] == {
        "comparisons": 4,
        "distinct": 3,
        "tested": 3,
        "separated": 1,
        "separated_unadjusted": 3,
        "at_baseline": 0,
        "diverged": 0,
    }
    sentence = report.family_sentence(comparisons)
    assert "state 4 paired differences in per-token accuracy, 3 distinct" in sentence
    assert (
        "3 form the family tested with Holm's correction at a family-wise error of 5%: 1 is separated"
        in sentence
    )
    text = report._band_sentence("1-2x (3-4)", "none", [c for c in comparisons if c["reference"] == "none"])
    assert "above none: sinusoidal +0.31 [+0.29, +0.33]" in text
    assert (
        "not separated after the correction (the unadjusted interval excludes 0): rotary +0.15 [+0.03, +0.27]"
        in text
    )


def test_baseline_level_identical_and_diverged_differences_are_labelled():
    from experiments.ordering import report, summary

    rows = [
        _row("none", [0.52, 0.54, 0.53]),  # at the most-frequent-symbol baseline 0.55 (within 0.05)
        _row("sinusoidal", [0.56, 0.58, 0.58]),  # also within 0.05 of it: +0.04, separated unadjusted
        _row("learned", [0.20, 0.22, 0.25]),  # far below it: at the baseline level too
        _row("rotary", [1.0, 1.0, 1.0]),
        _row("alibi", [0.9, 0.95, 0.9], diverged=[1]),
    ]
    comparisons = summary.compare_schemes(rows, metrics=("token_accuracy",))
    by = {(c["scheme"], c["reference"]): c for c in comparisons}
    assert by[("sinusoidal", "none")]["at_baseline"] and by[("sinusoidal", "none")]["separated_unadjusted"]
    assert by[("learned", "none")]["at_baseline"] and not by[("rotary", "none")]["at_baseline"]
    assert by[("rotary", "none")]["reference_at_baseline"] and not by[("rotary", "none")]["scheme_at_baseline"]
    assert by[("alibi", "none")]["diverged"] and by[("alibi", "none")]["p_holm"] is None
    # Without alibi: 3 from none and 2 more from sinusoidal (sinusoidal - none is none - sinusoidal).
    assert by[("alibi", "none")]["family_size"] == 5
    text = report._band_sentence("b", "none", [c for c in comparisons if c["reference"] == "none"])
    assert "both at the baseline level with none, not a finding: sinusoidal +0.04 [" in text
    assert "learned -0.31 [" in text.split("not a finding: ")[1]
    assert "above none: rotary +0.47 [+0.45, +0.49] (none at the baseline level)" in text
    assert "not compared (diverged): alibi" in text
    same = summary.compare_schemes(
        [_row("none", [0.5, 0.51, 0.52], baseline=0.2), _row("rotary", [0.99, 1.0, 1.01], baseline=0.2)],
        metrics=("token_accuracy",),
    )
    assert "above none: rotary +0.49 in every seed" in report._band_sentence("b", "none", same)
    # A narrow interval is not printed as [+0.49, +0.49]: digits are added until its ends differ.
    narrow = {"mean": 0.4871, "low": 0.4868, "high": 0.4874, "identical": False}
    assert report._signed(narrow) == "+0.4871 [+0.4868, +0.4874]"


def test_mean_interval_matches_summarize_per_column():
    values = np.array([[0.1, 0.9], [0.3, 0.8], [0.2, 1.0], [0.6, 0.7]])
    mean, half = stats.mean_interval(values)
    for j in range(2):
        s = stats.summarize(values[:, j])
        assert (mean[j], half[j]) == (pytest.approx(s["mean"]), pytest.approx(s["ci"]))


def test_bands_start_right_after_the_training_lengths():
    assert stats.bands(10, 40) == {
        "in-distribution (1-10)": (1, 10),
        "1-2x (11-20)": (11, 20),
        "2-4x (21-40)": (21, 40),
    }
    assert stats.bands(4, 6) == {"in-distribution (1-4)": (1, 4), "1-2x (5-6)": (5, 6)}
    assert stats.bands(3, 3) == {"in-distribution (1-3)": (1, 3)}
    assert list(stats.bands(40, 500).values()) == [(1, 40), (41, 80), (81, 160), (161, 500)]
    assert stats.beyond_training(40, 500) == (41, 500) and stats.beyond_training(5, 5) is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: stats.t_quantile(1.0, 3), r"t_quantile\(confidence=1.0\): must be in \(0, 1\)"),
        (lambda: stats.t_quantile(0.95, 0), r"t_quantile\(df=0\): df must be a positive integer"),
        (lambda: stats.summarize([]), r"summarize\(values shape=\(0,\)\): values must be a non-empty 1-D"),
        (lambda: stats.summarize([[1.0, 2.0]]), r"summarize\(values shape=\(1, 2\)\)"),
        (
            lambda: stats.summarize([1.0, float("nan")]),
            r"summarize\(values=\[1.0, nan\]\): values must be finite",
        ),
        (lambda: stats.bands(5, 4), r"bands\(train_max_length=5, test_max_length=4\)"),
        (
            lambda: stats.paired_difference([1.0, 2.0], [1.0]),
            r"paired_difference\(a shape=\(2,\), b shape=\(1,\)\): one value per seed each",
        ),
        (lambda: stats.paired_difference([], []), r"paired_difference\(values shape=\(0,\)\)"),
        (
            lambda: stats.holm([0.2, 1.5]),
            r"holm\(p_values=\[..., 1.5, ...\]\): each p-value must be in \[0, 1\]",
        ),
        (lambda: stats.holm([0.2], alpha=0.0), r"holm\(alpha=0.0\): must be in \(0, 1\)"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _record(scheme, accuracy, lr=1e-3):
    """A group record with per-seed, per-length token accuracies `[seeds, 4]` (train lengths 1-2)."""
    accuracy = np.asarray(accuracy, dtype=float)
    return {
        "task": "reverse",
        "mode": "decoder",
        "scheme": scheme,
        "learning_rate": lr,
        "seeds": list(range(accuracy.shape[0])),
        "steps": 20,
        "steps_to_criterion": [10] * accuracy.shape[0],
        "final_validation_exact_match": [1.0] * accuracy.shape[0],
        "needs_position": True,
        "chance": 0.5,
        "curve": {"step": [10, 20], "loss": [[0.5] * accuracy.shape[0], [0.4] * accuracy.shape[0]]},
        "test": {
            "lengths": [1, 2, 3, 4],
            "token_accuracy": accuracy.tolist(),
            "exact_match": (accuracy == 1.0).astype(float).tolist(),
            "most_frequent": [0.6, 0.55, 0.5, 0.5],
        },
    }


def test_findings_state_only_differences_whose_paired_interval_excludes_zero():
    from experiments.ordering import config as config_lib
    from experiments.ordering import report, summary
    from experiments.ordering.model import ModelConfig

    config = config_lib.preset(
        "quick",
        runs=(("reverse", "decoder"),),
        schemes=("none", "sinusoidal", "learned"),
        seeds=(0, 1, 2, 3, 4),
        model=ModelConfig(1, 16, 2, 2),
        train_max_length=2,
        test_max_length=4,
        steps=20,
        run_steps=(),
        warmup_steps=5,
        check_every=10,
    )
    base = np.array([[1, 1, 0.5, 0.4], [1, 1, 0.6, 0.5], [1, 1, 0.4, 0.5], [1, 1, 0.5, 0.6], [1, 1, 0.7, 0.3]])
    records = [
        _record("none", base),
        # sinusoidal: +0.1 and -0.1 on alternate seeds beyond training: the interval contains 0.
        _record(
            "sinusoidal", base + np.array([0, 0, 1, 1])[None] * np.array([0.1, -0.1, 0.1, -0.1, 0.0])[:, None]
        ),
        # learned: +0.3 to +0.4 on every seed beyond training: separated.
        _record(
            "learned", base + np.array([0, 0, 1, 1])[None] * np.array([0.3, 0.35, 0.4, 0.3, 0.25])[:, None]
        ),
    ]
    rows = summary.summarize_groups(config, records)
    comparisons = summary.compare_schemes(rows)
    beyond = {
        (c["scheme"], c["reference"]): c
        for c in comparisons
        if c["band"] == "1-2x (3-4)" and c["metric"] == "token_accuracy"
    }
    learned = beyond[("learned", "none")]
    # Hand computation: per-seed differences 0.30, 0.35, 0.40, 0.30, 0.25 -> mean 0.32, sd 0.0570088,
    # half-width 2.776445 * 0.0570088 / sqrt(5) = 0.0707855.
    assert learned["mean"] == pytest.approx(0.32)
    assert learned["ci"] == pytest.approx(2.776445105 * math.sqrt(0.013 / 4) / math.sqrt(5), rel=1e-6)
    assert learned["separated"] and not beyond[("sinusoidal", "none")]["separated"]
    text = "\n".join(report.findings(config, records, comparisons))
    # Beyond training none and sinusoidal sit at the baseline (chance and most frequent symbol 0.5).
    assert "above none: learned +0.32 [+0.25, +0.39] (none at the baseline level)" in text
    assert "both at the baseline level with none, not a finding: sinusoidal +0.00 [-0.12, +0.12]" in text
    assert "above sinusoidal: learned" in text
    # In distribution every scheme is at 1.0 on every seed: equal, written as such.
    assert (
        "in-distribution (1-2), paired difference from none: equal to none in every seed: sinusoidal, learned"
        in text
    )
    assert "below none" not in text and "below sinusoidal" not in text
    # The family: 4 comparisons from none, 4 from sinusoidal, none - sinusoidal twice (once per band).
    assert text.startswith("- The findings below state 8 paired differences in per-token accuracy, 6 distinct")
    # Rows carry the band limits as integers and the baselines.
    row = next(
        r for r in rows if r["scheme"] == "none" and r["band_low"] == 3 and r["metric"] == "token_accuracy"
    )
    assert (row["band_high"], row["most_frequent"], row["chance"]) == (4, 0.5, 0.5)
    # The reference aggregation: max over seeds (and learning rates) of the mean over lengths 3-4.
    aggregation = {a["scheme"]: a for a in summary.reference_aggregation(config, records)}
    assert aggregation["learned"]["best"] == pytest.approx(
        max(base[:, 2:].mean(1) + [0.3, 0.35, 0.4, 0.3, 0.25])
    )
    assert aggregation["none"]["lengths"] == [3, 4]
