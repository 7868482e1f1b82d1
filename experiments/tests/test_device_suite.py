"""The device suite's machinery at tiny shapes: ulp distances, the compute-once switch, goals, time limits."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.bench import device
from experiments.bench.same_numbers import ulp_distance
from posenc_jax import sinusoidal
from posenc_jax.internal import compute_once_is_enabled, computing_once


@pytest.mark.parametrize(
    "a, b, want",
    [
        (1.0, np.nextafter(np.float32(1.0), np.float32(2.0)), 1),
        (1.0, np.nextafter(np.float32(1.0), np.float32(0.0)), 1),
        (0.0, -0.0, 0),
        (1e-45, -1e-45, 2),  # the smallest subnormals on both sides of zero
        (-1.0, -1.0, 0),
        (np.nan, np.nan, 0),
        (np.nan, 1.0, 2**62),
        (2.0, 1.0, 2**23),  # one binade of float32
    ],
)
def test_ulp_distance_float32(a, b, want):
    got = ulp_distance(np.array([a], np.float32), np.array([b], np.float32))
    assert got.dtype == np.int64 and int(got[0]) == want


def test_ulp_distance_bfloat16_counts_bfloat16_steps():
    bf16 = jnp.bfloat16
    a = np.array([1.0, -2.0], bf16)
    b = np.array([1.0078125, -2.03125], bf16)  # 1 + 2**-7 and -(2 + 2**-5): the next value, two steps up
    np.testing.assert_array_equal(ulp_distance(a, b), [1, 2])


def test_ulp_distance_rejects_mismatched_dtypes():
    with pytest.raises(ValueError, match=r"ulp_distance\(a=float32\(2,\), b=float64\(2,\)\)"):
        ulp_distance(np.zeros(2, np.float32), np.zeros(2, np.float64))


def test_compute_once_switch_changes_the_traced_program_and_restores_the_default():
    f = jax.jit(lambda x: x + sinusoidal(jnp.arange(8), 16))
    x = jnp.ones((2, 8, 16))
    with computing_once(False):
        off = jax.jit(lambda x: x + sinusoidal(jnp.arange(8), 16)).lower(x).as_text()
        assert not compute_once_is_enabled()
    assert compute_once_is_enabled()
    on = f.lower(x).as_text()
    assert "divide" in on and "divide" not in off  # the unfoldable division is the mechanism
    np.testing.assert_array_equal(f(x), x + sinusoidal(jnp.arange(8), 16))


def _steps(**results):
    return {name: {"status": "ok", "result": result} for name, result in results.items()}


def test_goals_are_ratios_against_their_limits_and_none_when_not_measured():
    steps = _steps(
        bench_sinusoidal={
            "table_vs_copy_float32": {
                "ratios_vs_plain_copy": {"sinusoidal_table": 1.5, "sinusoidal_arange": 2.5}
            },
            "fused_add_float32": {
                "ratios_vs_precomputed_table": {"x_plus_sinusoidal_arange": 1.1},
                "ratio_row_positions_vs_row_gather": 1.2,
            },
        },
        bench_rotary={"bfloat16": {"ratio_vs_table_interleaved": 1.04, "ratio_vs_table_split": 1.06}},
        same_numbers={"max_ulps": 2},
        preset_estimates={"long": {"projected_hours": 11.5}},
    )
    goals = device.evaluate_goals(steps)
    assert goals["sinusoidal_table_float32_vs_plain_copy"]["met"] is True
    assert goals["sinusoidal_arange_float32_vs_plain_copy"]["met"] is False
    assert goals["x_plus_sinusoidal_float32_vs_x_plus_table_gather"]["met"] is True  # at the limit
    assert goals["x_plus_sinusoidal_row_positions_float32_vs_row_gather"]["met"] is False
    assert goals["apply_rotary_interleaved_bfloat16_vs_table_rotation"]["met"] is True
    assert goals["apply_rotary_split_bfloat16_vs_table_rotation"]["met"] is False
    assert goals["max_ulps_device_vs_cpu"] == {**goals["max_ulps_device_vs_cpu"], "value": 2, "met": False}
    assert goals["long_preset_projected_hours"]["met"] is True
    for name in ("sinusoidal_table_bfloat16_vs_plain_copy", "accuracy_excess_over_committed_cpu_table"):
        assert goals[name]["value"] is None and goals[name]["met"] is None


def test_suite_writes_one_results_file_with_the_device_and_the_ulp_comparison(tmp_path):
    out = tmp_path / "results.json"
    argv = ["--small", "--steps", "same_numbers", "--out", str(out), "--workdir", str(tmp_path / "work")]
    assert device.main(argv) == 0
    results = json.loads(out.read_text())
    assert results["device"] == jax.devices()[0].device_kind and results["small_shapes"] is True
    assert list(results["steps"]) == ["environment", "same_numbers"]
    assert all(step["status"] == "ok" for step in results["steps"].values())
    numbers = results["steps"]["same_numbers"]["result"]
    assert numbers["random_positions"] == 10_000 and len(numbers["cases"]) == 7
    assert results["goals"]["max_ulps_device_vs_cpu"]["value"] == numbers["max_ulps"]


def test_suite_stops_a_step_at_its_limit_and_skips_what_does_not_fit(tmp_path, monkeypatch):
    monkeypatch.setattr(device, "_MIN_STEP_SECONDS", 0.5)
    monkeypatch.setitem(device.STEPS, "same_numbers", (0.6, 0.6))  # less than importing jax takes
    monkeypatch.setitem(device.STEPS, "bench_rotary", (0.1, 0.1))  # below the minimum: skipped
    out = tmp_path / "results.json"
    argv = ["--small", "--steps", "same_numbers,bench_rotary", "--out", str(out), "--workdir", str(tmp_path)]
    assert device.main(argv) == 0
    steps = json.loads(out.read_text())["steps"]
    assert steps["same_numbers"]["status"].startswith("timeout") and "result" not in steps["same_numbers"]
    assert steps["bench_rotary"]["status"].startswith("skipped")
