"""Numerical tests of sinusoidal / sinusoidal_table against float64 references of the formula."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from hypothesis import given, settings
from hypothesis import strategies as st
from references import paper_inverse_frequencies, reference_sinusoidal

import posenc_jax
from posenc_jax import sinusoidal, sinusoidal_table

# The guarantee: float32 within 1e-6 of float64 for any |pos| < 2**31 (about 3e-7 is typical).
TOL = 1e-6


def random_positions(limit, size=256, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.integers(-limit, limit, size=size, dtype=np.int64)
    p[:3] = [limit - 1, -limit, 0]
    return p.astype(np.int32)


class EagerAndJittedTest(chex.TestCase):
    """Each test runs twice by chex.variants: as written, and under ``jax.jit`` (``self.variant``)."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.product(dim=[64, 1024, 8192], limit=[2**14, 2**20, 2**24, 2**31])
    def test_integer_positions_accurate_everywhere(self, dim, limit):
        positions = random_positions(limit)
        out = self.variant(functools.partial(sinusoidal, dim=dim))(jnp.asarray(positions))
        assert out.shape == (256, dim) and out.dtype == jnp.float32
        np.testing.assert_allclose(out, reference_sinusoidal(positions, dim), rtol=0, atol=TOL)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters("interleaved", "split")
    def test_layouts_match_the_formula(self, layout):
        positions = np.arange(-5, 40, dtype=np.int32)
        out = self.variant(functools.partial(sinusoidal, dim=16, layout=layout))(positions)
        np.testing.assert_allclose(out, reference_sinusoidal(positions, 16, layout=layout), atol=TOL, rtol=0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_any_rank_and_per_row_positions(self):
        positions = np.array([[0, 1, 2], [100, 101, 7]], dtype=np.int32)[None]  # [1, 2, 3]
        out = self.variant(functools.partial(sinusoidal, dim=8))(positions)
        assert out.shape == (1, 2, 3, 8)
        np.testing.assert_allclose(out, reference_sinusoidal(positions, 8), atol=TOL, rtol=0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_fractional_and_negative_positions(self):
        positions = np.array(
            [-3.75, -0.5, 0.0, 0.25, 1.5, 12345.625, 2.0**30 + 0.5, -(2.0**24) - 1], np.float32
        )
        out = self.variant(functools.partial(sinusoidal, dim=64))(positions)
        # Exact for the float32 value given: the reference uses that same value.
        np.testing.assert_allclose(out, reference_sinusoidal(positions, 64), atol=TOL, rtol=0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_non_finite_or_huge_traced_positions_give_nan_rows(self):
        positions = jnp.array([1.0, jnp.nan, jnp.inf, -jnp.inf, 2.0**31, 3.0], jnp.float32)
        out = np.asarray(self.variant(lambda p: sinusoidal(p, 4))(positions))
        assert np.isnan(out[1:5]).all()
        np.testing.assert_allclose(out[[0, 5]], reference_sinusoidal([1.0, 3.0], 4), atol=TOL)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.product(
        layout=["interleaved", "split"],
        length_offset=[
            (1, 0),
            (37, 5),
            (300, -(2**31)),
            (129, 2**31 - 129),
            (64, np.array([0, 7, 2**20, -300], np.int32)),
        ],
    )
    def test_table_matches_reference(self, layout, length_offset):
        length, offset = length_offset
        out = self.variant(functools.partial(sinusoidal_table, length=length, dim=32, layout=layout))(
            offset=offset
        )
        positions = np.asarray(offset, np.int64)[..., None] + np.arange(length)
        expected = reference_sinusoidal(positions, 32, layout=layout)
        assert out.shape == expected.shape
        np.testing.assert_allclose(out, expected, atol=TOL, rtol=0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_gradient_is_analytic(self):
        positions = jnp.array([0.5, 3.0, 1000.25, 2.0**20 + 0.5], jnp.float32)
        weights = jnp.asarray(np.random.default_rng(1).normal(size=(4, 16)), jnp.float32)

        def loss(p):
            return jnp.sum(sinusoidal(p, 16) * weights)

        grad = np.asarray(self.variant(jax.grad(loss))(positions))
        w = paper_inverse_frequencies(16)
        angle = np.asarray(positions, np.float64)[:, None] * w
        d_encoding = np.empty((4, 16))
        d_encoding[:, 0::2], d_encoding[:, 1::2] = w * np.cos(angle), -w * np.sin(angle)
        expected = (d_encoding * np.asarray(weights, np.float64)).sum(-1)
        np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-5)
        # Finite differences of the function itself agree as well (truncation ~h**2, rounding ~3e-7 / h).
        # (Only below 2**20, where float32 can represent p +- h.)
        h = 1e-2
        steps = h * np.eye(4, dtype=np.float32)[:3]
        # Divide by the step float32 really took (p + h rounds to the grid of p).
        fd = [
            (loss(positions + e) - loss(positions - e)) / np.sum((positions + e) - (positions - e))
            for e in steps
        ]
        np.testing.assert_allclose(grad[:3], np.asarray(fd), atol=2e-3)


def test_naive_float32_would_fail_the_same_bar():
    # Shows the bar is meaningful: the textbook float32 product loses it at 2**20.
    positions = np.arange(2**20, 2**20 + 64, dtype=np.int32)
    w = jnp.asarray(paper_inverse_frequencies(64), jnp.float32)
    naive = jnp.sin(jnp.asarray(positions, jnp.float32)[:, None] * w)
    error = np.abs(np.asarray(naive) - reference_sinusoidal(positions, 64)[:, 0::2]).max()
    assert error > 1e-3


def test_interleaved_pairs_by_hand():
    # dim 4: w_0 = 1, w_1 = 10000**(-2/4) = 0.01; dims are [sin(p), cos(p), sin(0.01p), cos(0.01p)].
    out = np.asarray(sinusoidal(jnp.array([2]), 4))[0]
    np.testing.assert_allclose(out, [np.sin(2), np.cos(2), np.sin(0.02), np.cos(0.02)], atol=TOL)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_output_is_the_float32_value_rounded_once(dtype):
    positions = jnp.asarray(random_positions(2**20, size=64))
    low = sinusoidal(positions, 32, dtype=dtype)
    high = sinusoidal(positions, 32)
    assert low.dtype == dtype
    np.testing.assert_array_equal(np.asarray(low), np.asarray(high.astype(dtype)))


def test_table_and_on_the_fly_agree():
    offsets = jnp.array([3, 2**24], jnp.int32)
    table = sinusoidal_table(100, 64, offset=offsets)
    direct = sinusoidal(offsets[:, None] + jnp.arange(100), 64)
    np.testing.assert_allclose(table, direct, atol=2 * TOL, rtol=0)


def test_table_large_matches_reference_at_benchmark_shape():
    out = sinusoidal_table(8192, 1024, offset=2**31 - 8192)
    positions = (2**31 - 8192) + np.arange(8192)
    np.testing.assert_allclose(out, reference_sinusoidal(positions, 1024), atol=TOL, rtol=0)


def test_table_of_length_zero():
    assert sinusoidal_table(0, 8).shape == (0, 8)


def test_t2t_frequencies_and_table():
    dim = 10
    # tensor2tensor's get_timing_signal_1d, written out in float64: timescales inclusive of both ends.
    n = dim // 2
    increment = math.log(1.0e4 / 1.0) / max(n - 1, 1)  # tensor2tensor uses math.log
    inv = 1.0 * np.exp(np.arange(n) * -increment)
    np.testing.assert_allclose(posenc_jax.tensor2tensor_frequencies(dim), inv, rtol=1e-15)
    positions = np.arange(50)
    scaled = positions[:, None] * inv
    t2t_table = np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1)
    ours = sinusoidal(
        jnp.arange(50), dim, frequencies=posenc_jax.tensor2tensor_frequencies(dim), layout="split"
    )
    np.testing.assert_allclose(ours, t2t_table, atol=TOL, rtol=0)
    assert inv[-1] == pytest.approx(1e-4)  # the slowest pair reaches exactly 1 / max_timescale


def test_converters_map_flax_examples_table_onto_the_paper_layout():
    # The Flax examples' sinusoidal_init: paper frequencies, sines in the first half, cosines in the second.
    max_len, d_feature = 20, 12
    pe = np.zeros((max_len, d_feature))
    position = np.arange(0, max_len)[:, None]
    div_term = np.exp(np.arange(0, d_feature, 2) * -(np.log(10000.0) / d_feature))
    pe[:, : d_feature // 2] = np.sin(position * div_term)
    pe[:, d_feature // 2 :] = np.cos(position * div_term)
    interleaved = sinusoidal(jnp.arange(max_len), d_feature)
    np.testing.assert_allclose(posenc_jax.interleaved_to_split(interleaved), pe, atol=TOL)
    np.testing.assert_allclose(posenc_jax.split_to_interleaved(jnp.asarray(pe)), interleaved, atol=TOL)


@settings(deadline=None, max_examples=30)
@given(
    positions=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=16, max_size=16),
    dim=st.sampled_from([2, 6, 128]),
    layout=st.sampled_from(["interleaved", "split"]),
)
def test_property_random_positions(positions, dim, layout):
    positions = np.array(positions, dtype=np.int32)
    out = sinusoidal(positions, dim, layout=layout)
    np.testing.assert_allclose(out, reference_sinusoidal(positions, dim, layout=layout), atol=TOL, rtol=0)


@settings(deadline=None, max_examples=30)
@given(
    positions=st.lists(st.floats(-(2.0**30), 2.0**30, allow_nan=False, width=32), min_size=16, max_size=16),
    base=st.sampled_from([10.0, 10_000.0, 500_000.0]),
)
def test_property_random_float_positions_and_bases(positions, base):
    positions = np.array(positions, dtype=np.float32)
    out = sinusoidal(positions, 8, base=base)
    np.testing.assert_allclose(out, reference_sinusoidal(positions, 8, base=base), atol=TOL, rtol=0)


@settings(deadline=None, max_examples=20)
@given(dim=st.sampled_from([2, 4, 10, 64]))
def test_property_converters_are_inverse_permutations(dim):
    x = jnp.arange(3 * dim).reshape(3, dim)
    np.testing.assert_array_equal(posenc_jax.split_to_interleaved(posenc_jax.interleaved_to_split(x)), x)
    table = sinusoidal(jnp.arange(5), dim)
    np.testing.assert_allclose(
        posenc_jax.interleaved_to_split(table), sinusoidal(jnp.arange(5), dim, layout="split"), atol=0
    )


def test_traced_unsigned_positions_beyond_int32_give_nan_rows():
    positions = jnp.array([5, 2**31, 2**32 - 1], dtype=jnp.uint32)
    out = np.asarray(jax.jit(lambda p: sinusoidal(p, 4))(positions))
    assert np.isnan(out[1:]).all()
    np.testing.assert_allclose(out[0], reference_sinusoidal([5], 4)[0], atol=TOL)


def test_compiles_once_per_shape_not_per_value():
    encode = jax.jit(lambda p: sinusoidal(p, 16))
    for start in (0, 10, 2**30):
        encode(jnp.arange(start, start + 7))
    assert encode._cache_size() == 1
