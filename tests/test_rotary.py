"""Rotary embeddings: float64 references from the formula, proven properties, layouts, weight conversion."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from references import reference_rotary

from posenc_jax import (
    apply_rotary,
    interleaved_to_split,
    rope,
    rope_frequencies,
    rotary_interleaved_to_split,
    rotary_split_to_interleaved,
)

RNG = np.random.default_rng(0)


def _maybe_jit(fn, jit):
    return jax.jit(fn) if jit else fn


_APPLY = {
    (jit, layout, rotary_dim, scale): _maybe_jit(
        functools.partial(
            apply_rotary,
            layout=layout,
            rotary_dim=rotary_dim,
            scaling=None if scale == 1.0 else rope.Linear(scale),
        ),
        jit,
    )
    for jit in (False, True)
    for layout in ("interleaved", "split")
    for rotary_dim, scale in ((None, 1.0), (4, 1.0), (None, 4.0))
}


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("layout", ["interleaved", "split"])
@pytest.mark.parametrize("rotary_dim,scale", [(None, 1.0), (4, 1.0), (None, 4.0)])
def test_matches_float64_reference(jit, layout, rotary_dim, scale):
    x = RNG.standard_normal((2, 5, 3, 8)).astype(np.float32)
    # Per-row positions, including ones where a float32 product pos * w would be far off.
    positions = np.array([[0, 1, 2, 3, 4], [2**20, 2**24 + 1, 123_456_789, 2**31 - 1, -(2**31)]], np.int32)
    got = _APPLY[(jit, layout, rotary_dim, scale)](jnp.asarray(x), jnp.asarray(positions))
    want = reference_rotary(x, positions, layout=layout, rotary_dim=rotary_dim, scale=scale)
    assert got.dtype == jnp.float32 and got.shape == x.shape
    np.testing.assert_allclose(np.asarray(got), want, atol=4e-6, rtol=0)
    if rotary_dim is not None:  # the pass-through features are untouched, bit for bit
        np.testing.assert_array_equal(np.asarray(got)[..., rotary_dim:], x[..., rotary_dim:])


@pytest.mark.parametrize("jit", [False, True])
def test_float_positions_and_explicit_frequencies(jit):
    x = RNG.standard_normal((4, 2, 6)).astype(np.float32)  # [length, heads, head_dim], no batch
    positions = np.array([0.5, 1.25, -3.75, 1000.5], np.float32)
    w = np.array([1.0, 0.3, 0.01])
    fn = _maybe_jit(functools.partial(apply_rotary, layout="interleaved", frequencies=w), jit)
    got = np.asarray(fn(jnp.asarray(x), jnp.asarray(positions)))
    theta = positions.astype(np.float64)[:, None, None] * w  # [length, 1, n]
    a, b = x[..., 0::2].astype(np.float64), x[..., 1::2].astype(np.float64)
    np.testing.assert_allclose(got[..., 0::2], a * np.cos(theta) - b * np.sin(theta), atol=2e-6)
    np.testing.assert_allclose(got[..., 1::2], b * np.cos(theta) + a * np.sin(theta), atol=2e-6)


def test_position_interpolation_divides_positions():
    x = jnp.asarray(RNG.standard_normal((1, 3, 1, 8)), jnp.float32)
    scaled = apply_rotary(x, jnp.array([0, 3, 8]), scaling=rope.Linear(4.0), layout="interleaved")
    divided = apply_rotary(x, jnp.array([0.0, 0.75, 2.0]), layout="interleaved")
    np.testing.assert_allclose(np.asarray(scaled), np.asarray(divided), atol=1e-6)
    np.testing.assert_allclose(
        rope_frequencies(8, scaling=rope.Linear(4.0)), 10_000.0 ** (-np.arange(4) / 4) / 4.0
    )


# ------------------------------------------------------------------------------------- proven properties

_PAIR = jax.jit(
    lambda q, k, m, n, shift: (
        jnp.sum(
            apply_rotary(q, m[None], layout="interleaved") * apply_rotary(k, n[None], layout="interleaved")
        ),
        jnp.sum(
            apply_rotary(q, (m + shift)[None], layout="interleaved")
            * apply_rotary(k, (n + shift)[None], layout="interleaved")
        ),
    )
)


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(0, 2**30 - 1),
    n=st.integers(0, 2**30 - 1),
    shift=st.integers(-(2**30), 2**30 - 1),  # m + shift and n + shift stay inside int32
    seed=st.integers(0, 2**32 - 1),
)
def test_score_depends_only_on_relative_position(m, n, shift, seed):
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal((2, 1, 1, 16)).astype(np.float32)
    score, shifted = _PAIR(q[None][0], k[None][0], jnp.int32(m), jnp.int32(n), jnp.int32(shift))
    # float64 from the formula: sum_i (qa ka + qb kb) cos((m-n) w_i) + (qa kb - qb ka) sin((m-n) w_i).
    w = 10_000.0 ** (-2.0 * np.arange(8) / 16)
    qa, qb = q[0, 0, 0::2].astype(np.float64), q[0, 0, 1::2].astype(np.float64)
    ka, kb = k[0, 0, 0::2].astype(np.float64), k[0, 0, 1::2].astype(np.float64)
    delta = (m - n) * w
    want = np.sum((qa * ka + qb * kb) * np.cos(delta) + (qa * kb - qb * ka) * np.sin(delta))
    assert abs(float(score) - want) < 2e-5
    assert abs(float(shifted) - want) < 2e-5


@pytest.mark.parametrize("jit", [False, True])
def test_norm_preserved_and_position_zero_is_identity(jit):
    fn = _APPLY[(jit, "split", None, 1.0)]
    x = RNG.standard_normal((3, 4, 2, 8)).astype(np.float32)
    positions = RNG.integers(-(2**31), 2**31 - 1, size=(3, 4), dtype=np.int64).astype(np.int32)
    got = np.asarray(fn(jnp.asarray(x), jnp.asarray(positions)), np.float64)
    np.testing.assert_allclose(
        np.linalg.norm(got, axis=-1), np.linalg.norm(x.astype(np.float64), axis=-1), rtol=1e-6
    )
    at_zero = fn(jnp.asarray(x), jnp.zeros(4, jnp.int32))
    np.testing.assert_array_equal(np.asarray(at_zero), x)


@pytest.mark.parametrize("rotary_dim", [None, 4])
def test_layouts_agree_after_permutation(rotary_dim):
    x = jnp.asarray(RNG.standard_normal((2, 5, 3, 8)), jnp.float32)
    positions = jnp.arange(5) * 1000

    def to_split(a):  # permute the rotated features, keep the pass-through ones
        r = a.shape[-1] if rotary_dim is None else rotary_dim
        return jnp.concatenate([interleaved_to_split(a[..., :r]), a[..., r:]], axis=-1)

    via_interleaved = to_split(apply_rotary(x, positions, rotary_dim=rotary_dim, layout="interleaved"))
    via_split = apply_rotary(to_split(x), positions, layout="split", rotary_dim=rotary_dim)
    np.testing.assert_allclose(np.asarray(via_interleaved), np.asarray(via_split), atol=1e-6)
    # The layouts are different rotations: without the permutation they disagree.
    assert not np.allclose(np.asarray(apply_rotary(x, positions, layout="split")), np.asarray(via_split))


@pytest.mark.parametrize("jit", [False, True])
def test_bfloat16_inputs_keep_float32_angles(jit):
    fn = _APPLY[(jit, "interleaved", None, 1.0)]
    x = RNG.standard_normal((1, 4, 2, 8)).astype(np.float32)
    x16 = jnp.asarray(x, jnp.bfloat16)
    positions = np.array([0, 300, 70_001, 2**27 + 3], np.int32)  # not representable in bfloat16
    got = fn(x16, jnp.asarray(positions))
    assert got.dtype == jnp.bfloat16
    want = reference_rotary(np.asarray(x16, np.float32), positions)
    # bfloat16 rounding of sin/cos and of the products only: a few bfloat16 ulps of |x|, never a wrong angle.
    np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=0.04)


def test_vmap_matches_batched():
    x = jnp.asarray(RNG.standard_normal((3, 5, 2, 8)), jnp.float32)
    positions = jnp.asarray(RNG.integers(0, 10_000, size=(3, 5)), jnp.int32)
    batched = apply_rotary(x, positions, layout="interleaved")
    mapped = jax.vmap(functools.partial(apply_rotary, layout="interleaved"))(x, positions)
    np.testing.assert_allclose(np.asarray(mapped), np.asarray(batched), atol=1e-7)


# ------------------------------------------------------------------------------ weight layout converters


@pytest.mark.parametrize("rotary_dim", [None, 4])
@pytest.mark.parametrize("jit", [False, True])
def test_converted_weights_give_the_same_attention_scores(rotary_dim, jit):
    d_model, heads, head_dim, length = 12, 3, 8, 6
    x = RNG.standard_normal((2, length, d_model)).astype(np.float32)
    wq = RNG.standard_normal((d_model, heads * head_dim)).astype(np.float32)
    wk = RNG.standard_normal((d_model, heads * head_dim)).astype(np.float32)
    bq = RNG.standard_normal((heads * head_dim,)).astype(np.float32)
    positions = jnp.arange(length) * 37

    def scores(wq, wk, bq, layout):
        q = (x @ wq + bq).reshape(2, length, heads, head_dim)
        k = (x @ wk).reshape(2, length, heads, head_dim)
        q = apply_rotary(q, positions, layout=layout, rotary_dim=rotary_dim)
        k = apply_rotary(k, positions, layout=layout, rotary_dim=rotary_dim)
        return jnp.einsum("bqhd,bkhd->bhqk", q, k)

    scores = _maybe_jit(scores, jit) if not jit else jax.jit(scores, static_argnames="layout")
    original = scores(wq, wk, bq, "interleaved")
    convert = functools.partial(rotary_interleaved_to_split, head_dim=head_dim, rotary_dim=rotary_dim)
    converted = scores(convert(wq), convert(wk), convert(bq), "split")
    np.testing.assert_allclose(np.asarray(converted), np.asarray(original), rtol=1e-5, atol=1e-4)
    unconverted = scores(wq, wk, bq, "split")
    assert not np.allclose(np.asarray(unconverted), np.asarray(original), rtol=1e-3, atol=1e-2)
    back = functools.partial(rotary_split_to_interleaved, head_dim=head_dim, rotary_dim=rotary_dim)
    np.testing.assert_array_equal(back(convert(wq)), wq)


def test_converter_per_head_axis_and_types():
    kernel = np.arange(2 * 3 * 4).reshape(2, 3, 4)  # [d_model, heads, head_dim]
    out = rotary_interleaved_to_split(kernel, head_dim=4)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, kernel[..., [0, 2, 1, 3]])
    out = rotary_interleaved_to_split(jnp.asarray(kernel).reshape(2, 12).T, head_dim=4, axis=0)
    assert isinstance(out, jax.Array)
    np.testing.assert_array_equal(np.asarray(out), kernel.reshape(2, 3, 4)[..., [0, 2, 1, 3]].reshape(2, 12).T)
    np.testing.assert_array_equal(rotary_split_to_interleaved(np.arange(6), head_dim=6), [0, 3, 1, 4, 2, 5])


# -------------------------------------------------------------------------------------------- bad input

X = jnp.zeros((2, 5, 3, 8))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (
            dict(x=jnp.zeros((2, 5, 3, 7))),
            ValueError,
            r"apply_rotary\(x=<float32\[2,5,3,7\]>\): x's last axis \(head_dim\) must be positive and even, got 7",
        ),
        (
            dict(rotary_dim=3),
            ValueError,
            r"apply_rotary\(rotary_dim=3\): rotary_dim must be even, got 3",
        ),
        (dict(rotary_dim=10), ValueError, r"apply_rotary\(rotary_dim=10\): rotary_dim must be <= head_dim=8"),
        (dict(rotary_dim=0), ValueError, r"apply_rotary\(rotary_dim=0\): rotary_dim must be a positive"),
        (dict(layout="neox"), ValueError, r"apply_rotary\(layout='neox'\): layout must be one of"),
        (
            dict(positions=jnp.arange(4)),
            ValueError,
            r"apply_rotary\(positions=<int32\[4\]>\).*length axis \(5\)",
        ),
        (
            dict(positions=jnp.zeros((3, 5), jnp.int32)),
            ValueError,
            r"apply_rotary\(positions=<int32\[3,5\]>\): positions must broadcast",
        ),
        (
            dict(positions=jnp.zeros(())),
            ValueError,
            r"apply_rotary\(positions=<float32\[\]>\): positions must broadcast",
        ),
        (
            dict(positions=jnp.arange(5).astype(jnp.bfloat16)),
            TypeError,
            r"apply_rotary\(positions=<bfloat16\[5\]>\): 16-bit floating positions are rejected",
        ),
        (
            dict(positions=jnp.ones(5, bool)),
            TypeError,
            r"apply_rotary\(positions=<bool\[5\]>\): positions must be an integer",
        ),
        (dict(x=jnp.zeros((5, 8))), ValueError, r"apply_rotary\(x=<float32\[5,8\]>\): x must have shape"),
        (
            dict(x=jnp.zeros((2, 5, 3, 8), jnp.int32)),
            TypeError,
            r"apply_rotary\(x=<int32\[2,5,3,8\]>\): x must be a floating array",
        ),
        (
            dict(layout=None),
            TypeError,
            r"apply_rotary\(layout=None\): layout is required for rotary embeddings \(it has no default\); pass "
            r"layout=\"split\" for Llama / Hugging Face / Gemma / GPT-NeoX / MaxText checkpoints, \"interleaved\" "
            r"for GPT-J / RoFormer / the paper's pairing",
        ),
        (
            dict(scaling=rope.Linear(2.0), frequencies=[1.0, 0.1, 0.01, 0.001]),
            ValueError,
            r"apply_rotary\(scaling=Linear\(factor=2.0\)\): scaling applies to the geometric frequencies",
        ),
        (dict(base=1.0), ValueError, r"apply_rotary\(base=1.0\): base must be a finite real number > 1"),
        (
            dict(frequencies=[1.0, 0.1]),
            ValueError,
            r"apply_rotary\(frequencies=<float64\[2\]>\): frequencies must have shape \(4,\) for dim=8",
        ),
    ],
)
def test_bad_input(kwargs, error, match):
    args = dict(x=X, positions=jnp.arange(5), layout="interleaved")
    args.update(kwargs)
    with pytest.raises(error, match=match):
        apply_rotary(args.pop("x"), args.pop("positions"), **args)


def test_bad_input_host_positions_out_of_int32():
    with pytest.raises(
        ValueError,
        match=r"apply_rotary\(positions=<int64\[5\] containing 2147483648>\): integer positions must lie in",
    ):
        apply_rotary(X, np.array([0, 1, 2, 3, 2**31], np.int64), layout="interleaved")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            dict(head_dim=5),
            r"rotary_interleaved_to_split\(head_dim=5\): head_dim must be even, got 5",
        ),
        (
            dict(head_dim=8, rotary_dim=6, w=np.zeros(12)),
            r"the size of axis 0 \(12\) must be a multiple of head_dim",
        ),
        (dict(head_dim=4, axis=2), r"rotary_interleaved_to_split\(axis=2\): axis must be an int in \[-1, 1\)"),
        (dict(head_dim=4, rotary_dim=6), r"rotary_interleaved_to_split\(rotary_dim=6\): rotary_dim must be <="),
    ],
)
def test_converter_bad_input(kwargs, match):
    w = kwargs.pop("w", np.zeros(8))
    with pytest.raises(ValueError, match=match):
        rotary_interleaved_to_split(w, **kwargs)
