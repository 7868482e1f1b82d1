"""The measured claims about sinusoidal encodings, against float64 numbers written here from the formula.

Tolerances start from the library's guarantee: every encoding value is within E = 1e-6 of the float64 formula
(about 3e-7 measured). Each bound below follows from E; the measured values are 10-1000x smaller.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.properties import claims, ordering, report
from experiments.properties.__main__ import main
from posenc_jax import sinusoidal

E = 1e-6  # the library's accuracy guarantee per value
JIT = pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
_JITTED = jax.jit(sinusoidal, static_argnames=("dim", "dtype"))


def encoder(jit):
    return _JITTED if jit else sinusoidal


def frequencies64(dim):
    return 10_000.0 ** (-2.0 * np.arange(dim // 2) / dim)


@JIT
def test_worked_table_matches_the_formula(jit):
    positions = (0, 1, 2, 1000)
    table = claims.worked_table(8, positions, encode=encoder(jit))
    assert [row["dimension"] for row in table["rows"]] == list(range(8))
    for row in table["rows"]:
        d = row["dimension"]
        i = d // 2
        w = 10_000.0 ** (-2 * i / 8)
        function = np.cos if d % 2 else np.sin
        assert (row["i"], row["function"]) == (i, "cos" if d % 2 else "sin")
        assert row["split_dimension"] == (i + 4 if d % 2 else i)
        assert row["frequency"] == pytest.approx(w, rel=1e-15)
        assert row["wavelength"] == pytest.approx(2 * math.pi / w, rel=1e-15)
        # Each value is one library output: within E of float64.
        np.testing.assert_allclose(row["values"], [function(p * w) for p in positions], atol=E, rtol=0)


def test_worked_table_by_hand():
    # Written out: dimension 3 is cos(pos * 10000^(-2/8)) = cos(pos / 10); dimension 6 is sin(pos / 1000).
    rows = claims.worked_table(8)["rows"]
    np.testing.assert_allclose(rows[3]["values"], [1.0, 0.9950041652780258, 0.9800665778412416], atol=E)
    np.testing.assert_allclose(rows[6]["values"], [0.0, 0.0009999998333333417, 0.0019999986666669333], atol=E)


@JIT
def test_offset_is_one_rotation_per_pair_at_every_position(jit):
    dim, offsets = 16, (1, 37, 5000)
    maps = claims.offset_maps(dim, offsets, num_positions=512, narrow_length=128, encode=encoder(jit))
    for entry, k in zip(maps["offsets"], offsets, strict=True):
        b = k * frequencies64(dim)
        exact = np.stack([np.stack([np.cos(b), np.sin(b)], -1), np.stack([-np.sin(b), np.cos(b)], -1)], -2)
        # The exact rotation leaves a residual of at most E (target) + sqrt(2) E (rotated input) = 2.4e-6 per
        # entry; the least-squares optimum is no worse.
        assert entry["max_residual"] < 2.5e-6
        # Least squares error <= ||noise|| / sigma_min(X) = sqrt(2N) 2.4e-6 / sqrt(N/2) = 4.8e-6, since positions
        # spread over whole turns give X^T X ~ (N/2) I.
        np.testing.assert_allclose(np.asarray(entry["blocks"]), exact, atol=5e-6, rtol=0)
    # Two such estimates (near 0 and 2**30 further) differ by at most twice that.
    assert maps["max_far_minus_near"] < 1e-5
    # A free full fit over the same positions is as well posed (condition number ~1): same bound.
    assert maps["wide_full_fit"]["condition_number"] < 2
    assert maps["wide_full_fit"]["max_off_block"] < 1e-5
    # Over positions 0..127 the slow pairs barely turn: the free fit is ill-conditioned and misidentifies M_k
    # although its residual stays at the float32 level.
    narrow = maps["narrow_full_fit"]
    assert narrow["condition_number"] > 1e6
    assert narrow["max_residual"] < 2.5e-6
    assert narrow["max_error_vs_rotation"] > 0.1


def test_pair_fit_detects_a_map_that_is_not_linear():
    # PE(2p) is not a linear function of PE(p) (sin 2a = 2 sin a cos a): the residual must be large.
    p = jnp.arange(0, 4096, 7)
    _, residual = claims.fit_pair_blocks(np.asarray(sinusoidal(p, 8)), np.asarray(sinusoidal(2 * p, 8)))
    assert residual.max() > 0.1


@JIT
def test_dot_product_depends_on_distance_only(jit):
    dim, length = 16, 40
    sim = claims.similarity(dim, length, far_offset=123_456_789, encode=encoder(jit))
    delta = np.arange(length)[None, :] - np.arange(length)[:, None]
    expected = np.cos(delta[..., None] * frequencies64(dim)).sum(-1)  # Σ_i cos((q - p) w_i)
    # Each of the dim products a*b is off by at most 2E (|a|, |b| <= 1), so a dot product by 2 dim E = 3.2e-5.
    bound = 2 * dim * E
    np.testing.assert_allclose(sim["matrix"], expected, atol=bound, rtol=0)
    assert sim["max_deviation_from_formula"] <= bound
    assert sim["max_spread_at_equal_distance"] <= 2 * bound
    assert sim["max_far_minus_near"] <= 2 * bound
    assert sim["self_similarity"] == pytest.approx(dim / 2, abs=bound)
    # First distance where the formula rises (margin 0.017 for d = 16, far above the bound).
    rises = np.nonzero(np.diff(expected[0]) > 0)[0]
    assert sim["first_rise_distance"] == rises[0] + 1 == 4
    assert sim["min_similarity_distance"] == int(np.argmin(expected[0]))


@JIT
def test_smallest_distance_matches_the_formula(jit):
    u = claims.uniqueness((2, 16), max_log2_length=11, min_log2_length=4, encode=encoder(jit))
    assert u["lengths"] == [2**e for e in range(4, 12)]
    delta = np.arange(1, 2**11)
    for entry in u["per_dim"]:
        dim = entry["dim"]
        # ‖PE(δ) - PE(0)‖ = 2 sqrt(Σ_i sin²(δ w_i / 2)) (no cancellation at small distances).
        distance = 2 * np.sqrt((np.sin(delta[:, None] * frequencies64(dim) / 2) ** 2).sum(-1))
        expected = [distance[: n - 1].min() for n in u["lengths"]]
        # A difference of two encodings is off by 2E per entry, its norm by 2E sqrt(dim).
        np.testing.assert_allclose(entry["min_distance"], expected, atol=2 * E * math.sqrt(dim), rtol=0)
        assert entry["closest_offset"] == [int(np.argmin(distance[: n - 1])) + 1 for n in u["lengths"]]
        assert entry["float32_threshold"] == 2 * 2.0**-24 * math.sqrt(dim / 2)
        assert entry["bfloat16_threshold"] == 2 * 2.0**-8 * math.sqrt(dim / 2)
        assert entry["distinct_float32"] == 2**11
    d2, d16 = u["per_dim"]
    assert d2["closest_offset"][-1] == 710  # 710 / 113 ≈ 2π: the best return of a single wave below 2048
    assert d2["distinct_bfloat16"] < 2**11 and d16["distinct_bfloat16"] == 2**11


def test_shift_shortcut_equals_all_pairs():
    # The minimum over δ of ‖PE(δ) - PE(0)‖ is the minimum over all pairs p ≠ q (brute force, d = 4).
    u = claims.uniqueness((4,), max_log2_length=8, min_log2_length=8)
    table = np.asarray(sinusoidal(jnp.arange(256), 4), np.float64)
    pairwise = np.sqrt(((table[:, None] - table[None]) ** 2).sum(-1))
    np.fill_diagonal(pairwise, np.inf)
    assert u["per_dim"][0]["min_distance"][0] == pytest.approx(pairwise.min(), abs=4 * E)


def test_count_distinct_rows_is_bitwise():
    rows = np.array([[0.0, 1.0], [0.0, 1.0], [-0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    assert claims.count_distinct_rows(rows) == 3  # -0.0 and 0.0 differ bitwise
    assert claims.count_distinct_rows(np.zeros((0, 3))) == 0


def test_distance_profile_of_a_toeplitz_matrix():
    toeplitz = np.array([[0.0, 1.0, 2.0], [-1.0, 0.0, 1.0], [-2.0, -1.0, 0.0]])
    profile = claims.distance_profile(toeplitz)
    np.testing.assert_array_equal(profile["distance"], [-2, -1, 0, 1, 2])
    np.testing.assert_array_equal(profile["mean"], [-2, -1, 0, 1, 2])
    np.testing.assert_array_equal(profile["max"] - profile["min"], 0)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: claims.worked_table(7), ValueError, r"worked_table\(dim=7\)"),
        (lambda: claims.worked_table(8, []), ValueError, r"worked_table\(positions=\[\]\)"),
        (lambda: claims.offset_maps(16, (0,)), ValueError, r"offset_maps\(offsets=0\)"),
        (lambda: claims.offset_maps(16, ()), ValueError, r"offset_maps\(offsets=\[\]\)"),
        (lambda: claims.offset_maps(16, (1,), far_start=2**31 - 10), ValueError, r"offset_maps\(far_start="),
        (lambda: claims.offset_maps(16, num_positions=1), ValueError, r"offset_maps\(num_positions=1\)"),
        (lambda: claims.similarity(16, 1), ValueError, r"similarity\(length=1\)"),
        (lambda: claims.similarity(16, 8, far_offset=-1), ValueError, r"similarity\(far_offset=-1\)"),
        (
            lambda: claims.nearest_neighbour_distances(6, 1),
            ValueError,
            r"nearest_neighbour_distances\(max_length",
        ),
        (lambda: claims.uniqueness((2,), 4, min_log2_length=5), ValueError, r"uniqueness\(min_log2_length=5"),
        (lambda: claims.uniqueness((3,), 4), ValueError, r"uniqueness\(dims=3\)"),
        (lambda: claims.uniqueness((), 4), ValueError, r"uniqueness\(dims=\[\]\)"),
        (
            lambda: claims.fit_pair_blocks(np.zeros((4, 2)), np.zeros((4, 4))),
            ValueError,
            r"fit_pair_blocks\(x shape",
        ),
        (lambda: claims.fit_pair_blocks(np.zeros((4, 3)), np.zeros((4, 3))), ValueError, r"dim even"),
        (
            lambda: claims.distance_profile(np.zeros((2, 3))),
            ValueError,
            r"distance_profile\(matrix shape=\(2, 3\)\)",
        ),
        (
            lambda: claims.count_distinct_rows(np.zeros(3)),
            ValueError,
            r"count_distinct_rows\(array shape=\(3,\)\)",
        ),
        (lambda: report.run("/nonexistent", preset="huge"), ValueError, r"run\(preset='huge'\)"),
    ],
)
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --- extrapolation: reading the ordering experiments' summary ---


def test_pending_when_the_summary_is_missing(tmp_path):
    result = ordering.extrapolation(tmp_path / "summary.json")
    assert result["status"] == "pending" and result["rows"] == []
    assert "python -m experiments.ordering" in result["sentence"]


def _summary_rows(task, mode, scheme, bands, metric="token_accuracy"):
    rows = []
    for band, mean in bands.items():
        low, high = (int(v) for v in band[band.index("(") + 1 : -1].split("-"))
        rows.append(
            {"task": task, "mode": mode, "scheme": scheme, "band": band, "band_low": low, "band_high": high}
            | {"metric": metric, "mean": mean}
        )
    return rows


def test_reads_the_experiment_summary(tmp_path):
    # Train lengths 1..2, test 1..8: "beyond" is the mean over lengths 3-8, so the 1-2x band (2 lengths)
    # and the 2-4x band (4 lengths) are weighted 2:4.
    rows = _summary_rows(
        "sort", "encoder", "sinusoidal", {"in-distribution (1-2)": 0.95, "1-2x (3-4)": 0.7, "2-4x (5-8)": 0.25}
    )
    rows += _summary_rows(
        "sort", "encoder", "rotary", {"in-distribution (1-2)": 1.0, "1-2x (3-4)": 0.8, "2-4x (5-8)": 0.8}
    )
    rows += _summary_rows(
        "sort",
        "encoder",
        "rotary",
        {"in-distribution (1-2)": 0.0, "1-2x (3-4)": 0.0, "2-4x (5-8)": 0.0},
        metric="exact_match",
    )
    (tmp_path / "summary.json").write_text(json.dumps({"rows": rows}))
    (tmp_path / "config.json").write_text(json.dumps({"train_max_length": 2}))
    result = ordering.extrapolation(tmp_path / "summary.json")
    assert result["status"] == "found" and result["train_length"] == 2
    found = {r["scheme"]: r for r in result["rows"]}
    assert found["sinusoidal"]["in_distribution"] == pytest.approx(0.95)
    assert found["sinusoidal"]["beyond"] == pytest.approx((2 * 0.7 + 4 * 0.25) / 6)
    assert found["rotary"]["beyond"] == pytest.approx(0.8)  # the exact-match rows are not mixed in
    assert "falls from 0.95 on lengths 1–2 to 0.40 on 3–8" in result["sentence"]
    assert "best beyond training: rotary (0.80)" in result["sentence"]


def test_holds_when_accuracy_stays(tmp_path):
    rows = _summary_rows(
        "sort",
        "decoder",
        "sinusoidal",
        {"in-distribution (1-10)": 0.9, "1-2x (11-20)": 0.88, "2-4x (21-40)": 0.88},
    )
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"rows": rows}))
    result = ordering.extrapolation(path)
    assert result["status"] == "found"
    assert result["rows"][0]["beyond"] == pytest.approx(0.88)
    assert "holds from 0.90" in result["sentence"]


@pytest.mark.parametrize("content", ["{not json", json.dumps({"groups": [{"scheme": "none", "accuracy": 1}]})])
def test_unrecognised_summary_is_said_so(tmp_path, content):
    path = tmp_path / "summary.json"
    path.write_text(content)
    result = ordering.extrapolation(path)
    assert result["status"] == "unrecognised" and result["rows"] == []


# --- the command ---


def test_command_writes_every_output(tmp_path, capsys):
    workdir = tmp_path / "out"
    assert (
        main(
            ["--workdir", str(workdir), "--preset", "quick", "--ordering-summary", str(tmp_path / "none.json")]
        )
        == 0
    )
    figures = [
        "encoding_heatmap.png",
        "encoding_waves.png",
        "offset_maps.png",
        "similarity.png",
        "uniqueness.png",
    ]
    for name in figures:
        size = (workdir / name).stat().st_size
        assert 10_000 < size < 300_000, (name, size)
    numbers = json.loads((workdir / "numbers.json").read_text())
    text = (workdir / "properties.md").read_text()
    for number, section in enumerate(
        ["image", "index", "linear", "distance", "Uniqueness", "Extrapolation"], 1
    ):
        assert f"## {number}." in text and section in text
    for name in figures:
        assert f"]({name})" in text
    # The text carries the numbers of the run.
    assert f"**{report._fmt(numbers['offset_maps']['max_residual'])}**" in text
    assert f"**{report._fmt(numbers['similarity']['max_spread_at_equal_distance'])}**" in text
    assert numbers["extrapolation"]["status"] == "pending" and "Pending" in text
    assert "max residual" in capsys.readouterr().out
