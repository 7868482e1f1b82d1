"""Positions of packed sequences, against a plain Python loop."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax import positions_from_segment_ids

_JITTED = jax.jit(positions_from_segment_ids)


def reference_positions(segment_ids):
    segment_ids = np.asarray(segment_ids)
    out = np.zeros(segment_ids.shape, np.int64)
    for row_index in np.ndindex(segment_ids.shape[:-1]):
        row = segment_ids[row_index]
        for t in range(1, row.shape[0]):
            out[row_index + (t,)] = out[row_index + (t - 1,)] + 1 if row[t] == row[t - 1] else 0
    return out


class EagerAndJittedTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_loop(self):
        segment_ids = np.array(
            [[1, 1, 1, 2, 2, 3, 0, 0], [5, 5, 5, 5, 5, 5, 5, 5], [1, 2, 1, 2, 2, 0, 0, 0]], np.int32
        )
        got = self.variant(positions_from_segment_ids)(jnp.asarray(segment_ids))
        assert got.dtype == jnp.int32 and got.shape == segment_ids.shape
        np.testing.assert_array_equal(np.asarray(got), reference_positions(segment_ids))
        np.testing.assert_array_equal(np.asarray(got[0]), [0, 1, 2, 0, 1, 0, 0, 1])


def test_random_rows_one_dimensional_and_empty():
    rng = np.random.default_rng(0)
    segment_ids = np.cumsum(rng.random((4, 50)) < 0.2, axis=-1)
    np.testing.assert_array_equal(np.asarray(_JITTED(segment_ids)), reference_positions(segment_ids))
    np.testing.assert_array_equal(np.asarray(positions_from_segment_ids([3, 3, 4])), [0, 1, 0])
    assert positions_from_segment_ids(jnp.zeros((2, 0), jnp.int32)).shape == (2, 0)
