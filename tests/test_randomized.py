"""Randomized positions: sorted, unique, in range, deterministic per key, independent per example."""

import chex
import jax
import numpy as np

from posenc_jax import randomized_positions


class EagerAndJittedTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_sorted_unique_in_range(self):
        draw = self.variant(randomized_positions, static_argnums=(1, 2), static_argnames="batch_shape")
        got = np.asarray(draw(jax.random.key(0), 16, 64, batch_shape=(3, 5)))
        assert got.shape == (3, 5, 16) and got.dtype == np.int32
        assert np.all(np.diff(got, axis=-1) > 0)  # strictly increasing: sorted and unique
        assert got.min() >= 0 and got.max() < 64

    @chex.variants(with_jit=True, without_jit=True)
    def test_deterministic_per_key_and_independent_per_example(self):
        draw = self.variant(randomized_positions, static_argnums=(1, 2), static_argnames="batch_shape")
        key = jax.random.key(7)
        a = np.asarray(draw(key, 8, 1000, batch_shape=(4,)))
        np.testing.assert_array_equal(a, np.asarray(draw(key, 8, 1000, batch_shape=(4,))))
        other = np.asarray(draw(jax.random.key(8), 8, 1000, batch_shape=(4,)))
        assert not np.array_equal(a, other)
        assert len({tuple(row) for row in a}) == 4  # each example has its own draw


def test_legacy_uint32_keys_and_full_range():
    got = randomized_positions(jax.random.PRNGKey(0), 5, 5)
    np.testing.assert_array_equal(np.asarray(got), np.arange(5))  # the only subset of size 5


def test_every_position_is_reachable_and_roughly_uniform():
    # 400 draws of 2 from [0, 10): each position appears with probability 0.2, i.e. 80 times on average.
    draws = np.asarray(randomized_positions(jax.random.key(1), 2, 10, batch_shape=(400,)))
    counts = np.bincount(draws.ravel(), minlength=10)
    assert counts.min() > 40 and counts.max() < 120, counts


def test_traced_key_under_vmap():
    keys = jax.random.split(jax.random.key(3), 6)
    got = np.asarray(jax.vmap(lambda k: randomized_positions(k, 4, 32))(keys))
    assert got.shape == (6, 4) and np.all(np.diff(got, axis=-1) > 0)
