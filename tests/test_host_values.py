"""Host values are used in their own precision: no silent rounding, wrapping or merging before a check."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from references import paper_inverse_frequencies, reference_sinusoidal

from posenc_jax import (
    alibi_bias,
    alibi_slopes,
    apply_rotary,
    learned_lookup,
    positions_from_segment_ids,
    randomized_positions,
    rope,
    rope_frequencies,
    sinusoidal,
    split_to_interleaved,
)
from posenc_jax._src import checks as _checks

TOL = 1e-6


def test_host_float64_positions_are_not_rounded_to_float32():
    # float32(123456789.0) is 123456792: the encoding of the wrong position differs by up to 2.
    np.testing.assert_allclose(sinusoidal(123456789.0, 2), sinusoidal(123456789, 2), rtol=0, atol=TOL)
    np.testing.assert_allclose(sinusoidal(123456789.0, 2), reference_sinusoidal(123456789, 2), rtol=0, atol=TOL)
    beyond_float32 = np.arange(2**24, 2**24 + 4, dtype=float)  # 2**24 + 1 is not a float32
    out = np.asarray(sinusoidal(beyond_float32, 64))
    assert len({row.tobytes() for row in out}) == 4
    np.testing.assert_allclose(out, reference_sinusoidal(beyond_float32, 64), rtol=0, atol=TOL)


def test_host_float64_fractions_at_large_positions_match_the_float64_formula():
    rng = np.random.default_rng(0)
    positions = rng.uniform(-(2.0**31) + 1, 2.0**31 - 1, size=64)
    positions[:3] = [123456789.25, -1e9 - 0.5, 0.1]
    expected = reference_sinusoidal(positions, 16)
    np.testing.assert_allclose(sinusoidal(positions, 16), expected, rtol=0, atol=TOL)
    # Closed over inside jit they are still host values (an argument of jit is converted by jax itself).
    np.testing.assert_allclose(jax.jit(lambda: sinusoidal(positions, 16))(), expected, rtol=0, atol=TOL)


def test_host_float64_positions_for_rotary_and_alibi():
    positions = np.array([123456789.0, 123456789.25, 2.0**30 + 0.5])
    x = np.random.default_rng(1).normal(size=(3, 1, 4)).astype(np.float32)
    w = paper_inverse_frequencies(4)
    angle = positions[:, None] * w  # [length, 2]
    a, b = x[:, 0, 0::2], x[:, 0, 1::2]
    expected = np.empty((3, 4))
    expected[:, 0::2] = a * np.cos(angle) - b * np.sin(angle)
    expected[:, 1::2] = b * np.cos(angle) + a * np.sin(angle)
    np.testing.assert_allclose(
        apply_rotary(x, positions, layout="interleaved")[:, 0], expected, rtol=0, atol=1e-5
    )
    # A quarter step between neighbours survives: float32 would make both positions 123456792.
    bias = np.asarray(alibi_bias(positions[1:2], positions[:1], num_heads=1, is_causal=False))
    np.testing.assert_allclose(bias[0, 0], [[-0.25 * alibi_slopes(1)[0]]], rtol=1e-6)


def test_segment_ids_are_compared_in_their_own_precision():
    # 7 and 2**32 + 7 are different ids; as int32 both would read 7.
    np.testing.assert_array_equal(positions_from_segment_ids(np.array([7, 2**32 + 7])), [0, 0])
    ids = np.array([[7, 2**32 + 7, 2**32 + 7, 7], [1, 1, 2**40, 2**40]], dtype=np.int64)
    np.testing.assert_array_equal(positions_from_segment_ids(ids), [[0, 0, 1, 0], [0, 1, 0, 1]])
    np.testing.assert_array_equal(positions_from_segment_ids(np.array([2**63, 2**63 + 1], np.uint64)), [0, 0])


def test_randomized_positions_do_not_materialize_the_range():
    key = jax.random.key(0)
    for max_length in (2**24, 2**31 - 1):
        hlo = jax.jit(lambda k, m=max_length: randomized_positions(k, 4, m)).lower(key).as_text()
        assert f"tensor<{max_length}x" not in hlo and f"{max_length}]" not in hlo
        got = np.asarray(randomized_positions(key, 4, max_length, batch_shape=(3,)))
        assert np.all(np.diff(got, axis=-1) > 0) and got.min() >= 0 and got.max() < max_length
    with pytest.raises(
        ValueError, match=r"randomized_positions\(max_length=2147483648\): max_length must be <="
    ):
        randomized_positions(key, 4, 2**31)


def test_randomized_positions_every_subset_equally_likely_when_sparse():
    # 2 of 10 (drawn from a stream of uniform draws): 45 subsets, 100 expected each in 4500 draws.
    draws = np.asarray(randomized_positions(jax.random.key(1), 2, 10, batch_shape=(4500,)))
    _, counts = np.unique(draws, axis=0, return_counts=True)
    assert len(counts) == 45
    chi2 = ((counts - 100.0) ** 2 / 100.0).sum()
    assert chi2 < 80, chi2  # 44 degrees of freedom: P(chi2 > 80) < 1e-3


def test_smaller_host_value_errors_are_clear():
    with pytest.raises(
        TypeError, match=r"sinusoidal\(dtype=None\): dtype must be a floating dtype.*no input dtype"
    ):
        sinusoidal(np.arange(3), 8, dtype=None)
    overflow = r"\(scaling=Linear\(factor=1e-310\)\): the scaled frequencies must be finite and > 0"
    with pytest.raises(ValueError, match=r"rope_frequencies" + overflow):
        rope_frequencies(8, scaling=rope.Linear(1e-310))
    with pytest.raises(ValueError, match=r"apply_rotary" + overflow):
        apply_rotary(jnp.ones((2, 1, 8)), jnp.arange(2), scaling=rope.Linear(1e-310), layout="interleaved")
    with pytest.raises(TypeError, match=r"split_to_interleaved\(axis=1.0\): axis must be an int in \[-2, 2\)"):
        split_to_interleaved(jnp.ones((2, 4)), axis=1.0)


def test_failed_run_time_check_is_reported_once(caplog):
    fn = jax.jit(lambda p: _checks.error_if(jnp.any(p < 0), lambda low: f"f(p={low}): p must be >= 0", p.min()))
    fn(jnp.arange(3))  # passes: no callback runs
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(jax.errors.JaxRuntimeError, match=r"f\(p=-2\): p must be >= 0"):
            fn(jnp.arange(-2, 1))
        with pytest.raises(
            jax.errors.JaxRuntimeError, match=r"positions must lie in \[0, 3\) for max_length=3"
        ):
            jax.jit(lambda t, p: learned_lookup(p, table=t, out_of_range="error"))(
                jnp.eye(3), jnp.array([0, 5])
            )
    assert not [r for r in caplog.records if "callback failed" in r.getMessage()], caplog.text
