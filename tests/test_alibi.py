"""ALiBi slopes and biases against float64 references written from the paper's formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from references import reference_alibi

from posenc_jax import alibi_bias, alibi_slopes


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32])
def test_power_of_two_slopes_are_the_papers_geometric_sequence(n):
    # Press et al.: for n heads, the geometric sequence starting at 2**(-8/n) with that same ratio.
    want = np.array([2.0 ** (-8.0 * (h + 1) / n) for h in range(n)])
    np.testing.assert_allclose(alibi_slopes(n), want, rtol=1e-15)


def test_slopes_for_eight_heads_are_one_half_to_one_over_256():
    np.testing.assert_array_equal(
        alibi_slopes(8), [1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256]
    )


@pytest.mark.parametrize(
    "n,want",
    [
        # The closest power of two c below n gets its own sequence, then every other slope of 2c heads.
        (3, [2.0**-4, 2.0**-8, 2.0**-2]),
        (6, [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]),
        (12, [2.0 ** (-h - 1) for h in range(8)] + [2.0 ** (-(2 * h + 1) / 2) for h in range(4)]),
    ],
)
def test_non_power_of_two_slopes_follow_the_reference_order(n, want):
    np.testing.assert_allclose(alibi_slopes(n), want, rtol=1e-15)


_BIAS = {
    (jit, causal): (jax.jit(lambda q, k, c=causal: alibi_bias(q, k, num_heads=4, is_causal=c)) if jit else None)
    for jit in (False, True)
    for causal in (False, True)
}


def _bias(jit, causal, q, k):
    return _BIAS[(jit, causal)](q, k) if jit else alibi_bias(q, k, num_heads=4, is_causal=causal)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_bias_matches_reference(jit, causal):
    q = jnp.arange(5)
    got = _bias(jit, causal, q, q)
    assert got.shape == (1, 4, 5, 5) and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), reference_alibi(4, q, q, causal), rtol=1e-7)
    # Zero on the diagonal (+0.0, not -0.0) and, when causal, above it.
    diagonal = np.asarray(got)[0][:, np.arange(5), np.arange(5)]
    assert np.all(diagonal == 0) and not np.any(np.signbit(diagonal))
    if causal:
        assert np.all(np.triu(np.asarray(got)[0, :], k=1) == 0)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_bias_with_offsets_per_row_and_different_lengths(jit, causal):
    # Decoding with a cache: 2 new queries at positions 7, 8 (row 0) and 3, 4 (row 1) against 9 keys.
    q = jnp.array([[7, 8], [3, 4]])
    k = jnp.arange(9)
    got = _bias(jit, causal, q, k)
    assert got.shape == (2, 4, 2, 9)
    np.testing.assert_allclose(np.asarray(got), reference_alibi(4, q, k, causal), rtol=1e-7)


def test_bias_is_linear_in_distance():
    bias = np.asarray(alibi_bias(jnp.arange(16), jnp.arange(16), num_heads=4, is_causal=False), np.float64)[0]
    slopes = alibi_slopes(4)
    for h in range(4):
        for d in range(16):  # every entry at distance d equals -m_h * d
            assert np.all(np.diagonal(bias[h], offset=d) == -slopes[h] * d)


def test_float_positions_and_large_integer_positions():
    q = jnp.array([0.5, 2.25])
    k = jnp.array([0.0, 1.0, 3.0])
    np.testing.assert_allclose(
        np.asarray(alibi_bias(q, k, num_heads=4, is_causal=False)), reference_alibi(4, q, k, False), rtol=1e-6
    )
    # Integer distances are formed exactly, even far from zero.
    big = jnp.array([2**31 - 2, 2**31 - 1], jnp.int32)
    got = alibi_bias(big, big, num_heads=4, is_causal=True)
    np.testing.assert_array_equal(np.asarray(got)[0, :, 1, 0], -alibi_slopes(4).astype(np.float32))


def test_vmap_over_batch_of_positions():
    q = jnp.arange(12).reshape(3, 4)
    mapped = jax.vmap(lambda p: alibi_bias(p, p, num_heads=4, is_causal=True)[0])(q)
    np.testing.assert_allclose(np.asarray(mapped), reference_alibi(4, q, q, True), rtol=1e-7)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (
            lambda: alibi_slopes(0),
            ValueError,
            r"alibi_slopes\(num_heads=0\): num_heads must be a positive Python int",
        ),
        (lambda: alibi_slopes(-3), ValueError, r"alibi_slopes\(num_heads=-3\)"),
        (lambda: alibi_slopes(2.0), TypeError, r"alibi_slopes\(num_heads=2.0\): num_heads must be a positive"),
        (lambda: alibi_slopes(True), TypeError, r"alibi_slopes\(num_heads=True\)"),
        (
            lambda: alibi_bias(jnp.arange(3), jnp.arange(3), num_heads=0, is_causal=True),
            ValueError,
            r"alibi_bias\(num_heads=0\)",
        ),
        (
            lambda: alibi_bias(jnp.zeros((1, 2, 3)), jnp.arange(3), num_heads=2, is_causal=True),
            ValueError,
            r"alibi_bias\(q_positions=<float32\[1,2,3\]>\): q_positions must have shape \[length\]",
        ),
        (
            lambda: alibi_bias(jnp.arange(3), jnp.arange(3).astype(jnp.bfloat16), num_heads=2, is_causal=True),
            TypeError,
            r"alibi_bias\(k_positions=<bfloat16\[3\]>\): 16-bit floating k_positions are rejected",
        ),
        (
            lambda: alibi_bias(jnp.zeros((2, 3)), jnp.zeros((3, 3)), num_heads=2, is_causal=True),
            ValueError,
            r"alibi_bias\(k_positions=<float32\[3,3\]>\): the batch sizes of q_positions \(shape \(2, 3\)\)",
        ),
        (
            lambda: alibi_bias(jnp.arange(3), jnp.arange(3), num_heads=2, is_causal=1),
            TypeError,
            r"alibi_bias\(is_causal=1\)",
        ),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_int32_extreme_distances_are_exact_not_wrapped():
    # j - i = 2**32 - 1 overflows int32 (it read as -1 before); formed exactly, it is rounded once to float32.
    q, k = np.array([-(2**31)], np.int32), np.array([2**31 - 1], np.int32)
    for fn in (alibi_bias, jax.jit(alibi_bias, static_argnames=("num_heads", "is_causal"))):
        got = np.asarray(fn(q, k, num_heads=1, is_causal=False))
        np.testing.assert_array_equal(got, np.float32(-alibi_slopes(1)[0] * (2.0**32 - 1)))
        causal = np.asarray(fn(k, q, num_heads=1, is_causal=True))  # the query after the key: -m (2**32 - 1)
        np.testing.assert_array_equal(causal, got)
    # the largest int32 distances next to small ones, every direction, against float64
    positions = np.array([-(2**31), -(2**31) + 1, -1, 0, 1, 2**31 - 2, 2**31 - 1], np.int32)
    got = np.asarray(jax.jit(lambda p: alibi_bias(p, p, num_heads=2, is_causal=False))(positions))
    want = reference_alibi(2, positions.astype(np.int64), positions.astype(np.int64), is_causal=False)
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-7)
