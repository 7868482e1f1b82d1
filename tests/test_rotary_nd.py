"""N-D rotary embeddings: per-axis sections of pairs, composition, translation invariance, grid coordinates."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posenc_jax import apply_rotary, grid_positions, paper_frequencies, rope_frequencies
from posenc_jax.rope import YaRN

RNG = np.random.default_rng(3)


def ref_rotate_nd(x, coords, w, sections, layout="interleaved"):
    """Pair i (owned by axis a) turns by coords[..., a] * w_i; float64, from the definition."""
    x = np.asarray(x, np.float64)
    owner = np.repeat(np.arange(len(sections)), sections)  # [n]
    coords = np.asarray(coords, np.float64)
    theta = np.take(coords, owner, axis=-1) * w  # [..., length, n]
    theta = theta[..., None, :]
    r = 2 * len(w)
    first, second = (
        (np.arange(0, r, 2), np.arange(1, r, 2))
        if layout == "interleaved"
        else (
            np.arange(r // 2),
            np.arange(r // 2, r),
        )
    )
    out = x.copy()
    a, b = x[..., first], x[..., second]
    out[..., first] = a * np.cos(theta) - b * np.sin(theta)
    out[..., second] = b * np.cos(theta) + a * np.sin(theta)
    return out


@functools.lru_cache
def _fn(sections, layout="interleaved", rotary_dim=None):
    return jax.jit(functools.partial(apply_rotary, sections=sections, layout=layout, rotary_dim=rotary_dim))


@pytest.mark.parametrize("layout", ["interleaved", "split"])
@pytest.mark.parametrize("sections", [2, (1, 3, 4), 3])
def test_matches_float64_reference(layout, sections):
    n_axes = sections if isinstance(sections, int) else len(sections)
    head_dim = 12 if sections == 3 else 16
    x = RNG.uniform(-1, 1, (2, 5, 2, head_dim)).astype(np.float32)
    coords = RNG.integers(-(2**24), 2**24, (2, 5, n_axes)).astype(np.int32)
    got = np.asarray(_fn(sections, layout)(jnp.asarray(x), jnp.asarray(coords)))
    counts = (head_dim // 2 // n_axes,) * n_axes if isinstance(sections, int) else sections
    want = ref_rotate_nd(x, coords, paper_frequencies(head_dim), counts, layout)
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


def test_2d_rotation_is_the_composition_of_per_axis_rotations():
    x = jnp.asarray(RNG.standard_normal((6, 2, 16)).astype(np.float32))  # [length, heads, head_dim]
    coords = RNG.integers(0, 1000, (6, 2)).astype(np.int32)
    rows_only = coords * np.array([1, 0], np.int32)
    cols_only = coords * np.array([0, 1], np.int32)
    both = _fn(2)(x, jnp.asarray(coords))
    composed = _fn(2)(_fn(2)(x, jnp.asarray(rows_only)), jnp.asarray(cols_only))
    np.testing.assert_allclose(np.asarray(both), np.asarray(composed), atol=2e-6, rtol=0)
    # and each single-axis rotation touches only its own pairs
    rotated_rows = np.asarray(_fn(2)(x, jnp.asarray(rows_only)))
    np.testing.assert_array_equal(rotated_rows[..., 8:], np.asarray(x)[..., 8:])


@pytest.mark.parametrize("shift", [(0, 7), (13, 0), (-5, 1000), (2**20, -(2**20))])
def test_scores_depend_only_on_the_coordinate_difference(shift):
    q = jnp.asarray(RNG.standard_normal((4, 1, 16)).astype(np.float32))
    k = jnp.asarray(RNG.standard_normal((4, 1, 16)).astype(np.float32))
    q_at = RNG.integers(0, 50, (4, 2)).astype(np.int32)
    k_at = RNG.integers(0, 50, (4, 2)).astype(np.int32)

    def scores(offset):
        offset = np.asarray(offset, np.int32)
        qr = _fn(2)(q, jnp.asarray(q_at + offset))
        kr = _fn(2)(k, jnp.asarray(k_at + offset))
        return np.einsum("qhd,khd->qk", np.asarray(qr, np.float64), np.asarray(kr, np.float64))

    np.testing.assert_allclose(scores(shift), scores((0, 0)), atol=2e-5, rtol=0)
    # and they do depend on each axis's difference
    moved = np.asarray(_fn(2)(k, jnp.asarray(k_at + np.array([1, 0], np.int32))))
    moved_scores = np.einsum("qhd,khd->qk", np.asarray(_fn(2)(q, jnp.asarray(q_at))), moved)
    assert np.abs(moved_scores - scores((0, 0))).max() > 1e-3


@pytest.mark.parametrize("layout", ["interleaved", "split"])
@pytest.mark.parametrize("rotary_dim", [None, 8])
def test_one_axis_reproduces_1d_bit_for_bit(layout, rotary_dim):
    x = jnp.asarray(RNG.standard_normal((2, 5, 3, 12)).astype(np.float32))
    positions = jnp.asarray(np.array([[0, 1, 2**20, -7, 2**31 - 1], [5, 6, 7, 8, 9]], np.int32))
    one_d = apply_rotary(x, positions, layout=layout, rotary_dim=rotary_dim)
    n_d = _fn(1, layout, rotary_dim)(x, positions[..., None])
    np.testing.assert_array_equal(np.asarray(n_d), np.asarray(one_d))
    floating = jnp.asarray(np.array([0.5, 3.25, -1.75, 100.5, 7.0], np.float32))
    np.testing.assert_array_equal(
        np.asarray(apply_rotary(x, floating[:, None], sections=(6,), layout="interleaved")),
        np.asarray(apply_rotary(x, floating, layout="interleaved")),
    )


def test_equal_coordinates_are_1d_positions_and_scalings_apply():
    """A token with all coordinates p rotates as 1-D position p (text in a multimodal sequence)."""
    x = jnp.asarray(RNG.standard_normal((5, 2, 16)).astype(np.float32))
    p = np.array([0, 3, 99, 4096, 70_000], np.int32)
    scaling = YaRN(4.0, 1024)
    got = apply_rotary(x, np.stack([p, p, p], -1), sections=(2, 3, 3), scaling=scaling, layout="interleaved")
    want = apply_rotary(x, p, scaling=scaling, layout="interleaved")
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6, rtol=0)
    want64 = ref_rotate_nd(x, np.stack([p, p, p], -1), rope_frequencies(16, scaling=scaling), (2, 3, 3))
    np.testing.assert_allclose(np.asarray(got), want64 * 1.1386294361119891, atol=1e-6, rtol=0)


def test_axial_frequencies_give_each_axis_a_full_spectrum():
    x = jnp.asarray(RNG.standard_normal((3, 1, 16)).astype(np.float32))
    coords = np.array([[0, 0], [2, 5], [9, 1]], np.int32)
    w = np.concatenate([paper_frequencies(8, 100.0)] * 2)
    got = apply_rotary(x, coords, sections=2, frequencies=w, layout="interleaved")
    np.testing.assert_allclose(np.asarray(got), ref_rotate_nd(x, coords, w, (4, 4)), atol=1e-6, rtol=0)


def test_grid_positions():
    grid = grid_positions(2, 3)
    assert grid.dtype == np.int32 and grid.shape == (6, 2)
    assert grid.tolist() == [[h, w] for h in range(2) for w in range(3)]
    video = grid_positions(2, 2, 3, class_tokens=2)
    want = [[0, 0, 0], [1, 1, 1]] + [
        [2 + t, 2 + h, 2 + w] for t in range(2) for h in range(2) for w in range(3)
    ]
    assert video.shape == (14, 3) and video.tolist() == want


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (
            dict(sections=3),
            ValueError,
            r"apply_rotary\(sections=3\): 8 rotated pairs do not split .*=\(3, 3, 2\)",
        ),
        (dict(sections=(4, 3)), ValueError, r"apply_rotary\(sections=\(4, 3\)\): .* summing to the 8"),
        (dict(sections=(4, 0, 4)), ValueError, r"apply_rotary\(sections=\(4, 0, 4\)\)"),
        (dict(sections=0), ValueError, r"apply_rotary\(sections=0\)"),
        (dict(sections=2.0), TypeError, r"apply_rotary\(sections=2.0\): sections must be"),
        (dict(sections=(4.0, 4.0)), TypeError, r"apply_rotary\(sections=\(4.0, 4.0\)\)"),
        (
            dict(sections=(2, 2, 4)),
            ValueError,
            r"apply_rotary\(positions=<int32\[3,2\]>\): N-D positions must end in an axis of 3 .*sections=\(2, 2, 4\)",
        ),
    ],
)
def test_bad_sections(kwargs, error, match):
    with pytest.raises(error, match=match):
        apply_rotary(jnp.ones((3, 1, 16)), np.zeros((3, 2), np.int32), layout="interleaved", **kwargs)


def test_bad_nd_positions_shape():
    with pytest.raises(
        ValueError, match=r"apply_rotary\(positions=<int32\[3\]>\): N-D positions must end in an axis of 2"
    ):
        apply_rotary(jnp.ones((3, 1, 16)), np.zeros(3, np.int32), sections=2, layout="interleaved")
    with pytest.raises(
        ValueError,
        match=r"apply_rotary\(positions=<int32\[4,2\]>\): positions must broadcast to x's leading axes \(3,\)",
    ):
        apply_rotary(jnp.ones((3, 1, 16)), np.zeros((4, 2), np.int32), sections=2, layout="interleaved")


@pytest.mark.parametrize(
    "args,kwargs,error,match",
    [
        ((), {}, ValueError, r"grid_positions\(grid=\(\)\): pass one size per axis"),
        ((2, 0), {}, ValueError, r"grid_positions\(grid=\(2, 0\)\)"),
        ((2, 2.0), {}, TypeError, r"grid_positions\(grid\[1\]=2.0\)"),
        ((2,), dict(class_tokens=-1), ValueError, r"grid_positions\(class_tokens=-1\)"),
        ((2,), dict(class_tokens=True), TypeError, r"grid_positions\(class_tokens=True\)"),
        (
            (2,),
            dict(class_tokens=2**31 - 1),
            ValueError,
            r"grid_positions\(grid=\(2,\)\): coordinates \(with class_tokens=2147483647\) must fit in int32",
        ),
    ],
)
def test_bad_grid(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        grid_positions(*args, **kwargs)
