"""p-RoPE (rotate the fastest pairs only) and Qwen3-VL's interleaved multi-axis sections, against float64
transcriptions of the published code."""

import jax
import numpy as np
import pytest

import posenc_jax as pe
from posenc_jax import linen as pl
from posenc_jax import nnx as pn
from posenc_jax import schemes

RNG = np.random.default_rng(2)
X = RNG.standard_normal((2, 5, 3, 16)).astype(np.float32)  # [batch, length, heads, head_dim]
POSITIONS = np.array([[0, 1, 2, 3, 4], [7, 30, 31, 900, 4096]], np.int32)


def gemma_apply_rope(inputs, positions, *, base_frequency, rope_proportion):
    """Gemma's ``apply_rope`` (split halves; timescale padded with inf past the rotated pairs), in float64."""
    inputs = np.asarray(inputs, np.float64)
    head_dim = inputs.shape[-1]
    rope_angles = int(rope_proportion * head_dim // 2)
    nope_angles = head_dim // 2 - rope_angles
    freq_exponents = (2.0 / head_dim) * np.arange(0, rope_angles, dtype=np.float64)
    timescale = np.pad(base_frequency**freq_exponents, (0, nope_angles), constant_values=np.inf)
    sinusoid_inp = np.asarray(positions, np.float64)[..., None] / timescale[None, None, :]
    sinusoid_inp = sinusoid_inp[..., None, :]
    sin, cos = np.sin(sinusoid_inp), np.cos(sinusoid_inp)
    first_half, second_half = np.split(inputs, 2, axis=-1)
    first_part = first_half * cos - second_half * sin
    second_part = second_half * cos + first_half * sin
    return np.concatenate([first_part, second_part], axis=-1)


@pytest.mark.parametrize("proportion", [0.25, 0.5, 1.0])
def test_proportion_is_gemmas_rope_proportion(proportion):
    want = gemma_apply_rope(X, POSITIONS, base_frequency=10_000, rope_proportion=proportion)
    got = pe.apply_rotary(X, POSITIONS, layout="split", proportion=proportion)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=3e-6)
    scheme = schemes.Rotary(16, layout="split", proportion=proportion)
    np.testing.assert_array_equal(np.asarray(scheme(X, X, POSITIONS, POSITIONS)[0]), np.asarray(got))
    np.testing.assert_array_equal(
        np.asarray(pn.Rotary(16, layout="split", proportion=proportion)(X, X, POSITIONS, POSITIONS)[0]),
        np.asarray(got),
    )
    np.testing.assert_array_equal(
        np.asarray(
            pl.Rotary(16, layout="split", proportion=proportion).apply({}, X, X, POSITIONS, POSITIONS)[0]
        ),
        np.asarray(got),
    )


def test_proportion_is_not_rotary_dim():
    by_frequency = np.asarray(pe.apply_rotary(X, POSITIONS, layout="split", proportion=0.5))
    by_features = np.asarray(pe.apply_rotary(X, POSITIONS, layout="split", rotary_dim=8))
    assert not np.allclose(by_frequency, by_features)
    # p-RoPE leaves the slow half of the pairs (split: features 4-7 and 12-15) as they were.
    np.testing.assert_array_equal(by_frequency[..., 4:8], X[..., 4:8])
    np.testing.assert_array_equal(by_frequency[..., 12:], X[..., 12:])
    np.testing.assert_array_equal(np.asarray(pe.apply_rotary(X, POSITIONS, layout="split", proportion=0.0)), X)


def qwen3_vl_rotate(x, coordinates, mrope_section, base=10_000.0):
    """Qwen3-VL's rotary: ``apply_interleaved_mrope`` on the per-axis angles, then split-halves rotation."""
    x = np.asarray(x, np.float64)
    head_dim = x.shape[-1]
    inv_freq = 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    freqs = np.moveaxis(np.asarray(coordinates, np.float64), -1, 0)[..., None] * inv_freq  # [3, b, l, d/2]
    freqs_t = freqs[0].copy()  # just overwrite the first dimension T
    for dim, offset in enumerate((1, 2), start=1):  # H, W
        length = mrope_section[dim] * 3
        idx = slice(offset, length, 3)
        freqs_t[..., idx] = freqs[dim, ..., idx]
    emb = np.concatenate([freqs_t, freqs_t], axis=-1)[..., None, :]
    cos, sin = np.cos(emb), np.sin(emb)
    rotate_half = np.concatenate([-x[..., head_dim // 2 :], x[..., : head_dim // 2]], axis=-1)
    return x * cos + rotate_half * sin


def test_interleaved_sections_are_qwen3_vls_mrope():
    coordinates = RNG.integers(0, 50, (2, 5, 3)).astype(np.int32)
    sections = (3, 3, 2)
    want = qwen3_vl_rotate(X, coordinates, sections)
    got = pe.apply_rotary(X, coordinates, layout="split", sections=sections, section_layout="interleaved")
    np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=3e-6)
    contiguous = pe.apply_rotary(X, coordinates, layout="split", sections=sections)
    assert not np.allclose(np.asarray(contiguous), np.asarray(got))
    # equal coordinates on every axis rotate as 1-D positions, in either assignment
    same = np.repeat(POSITIONS[..., None], 3, axis=-1)
    one_d = np.asarray(pe.apply_rotary(X, POSITIONS, layout="split"))
    for layout in ("contiguous", "interleaved"):
        got = pe.apply_rotary(X, same, layout="split", sections=sections, section_layout=layout)
        np.testing.assert_array_equal(np.asarray(got), one_d)


def test_interleaved_sections_with_a_traced_length_scaling():
    scaling = pe.rope.DynamicNTK(2.0, original_max_position=8)
    coordinates = np.repeat(POSITIONS[..., None], 3, axis=-1)
    got = jax.jit(
        lambda x, c: pe.apply_rotary(
            x, c, layout="split", sections=(3, 3, 2), section_layout="interleaved", scaling=scaling
        )
    )(X, coordinates)
    want = pe.apply_rotary(X, POSITIONS, layout="split", scaling=scaling)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            dict(proportion=1.5),
            ValueError,
            r"apply_rotary\(proportion=1.5\): proportion must be a real number in \[0, 1\]",
        ),
        (dict(proportion="half"), TypeError, r"apply_rotary\(proportion='half'\)"),
        (
            dict(sections=(1, 1, 6), section_layout="interleaved"),
            ValueError,
            r"apply_rotary\(sections=\(1, 1, 6\)\): interleaved sections give axis 2",
        ),
        (
            dict(sections=(4, 2, 2), section_layout="zigzag"),
            ValueError,
            r"apply_rotary\(section_layout='zigzag'\)",
        ),
    ],
)
def test_bad_input(kwargs, error, match):
    positions = np.zeros((5, 3), np.int32) if "sections" in kwargs else POSITIONS
    with pytest.raises(error, match=match):
        pe.apply_rotary(X, positions, layout="split", **kwargs)


def test_rotary_value_checks_its_proportion():
    with pytest.raises(ValueError, match=r"Rotary\(proportion=-0.1\)"):
        schemes.Rotary(8, layout="split", proportion=-0.1)
    with pytest.raises(ValueError, match=r"Rotary\(proportion=2\)"):
        pn.Rotary(8, layout="split", proportion=2)
    with pytest.raises(ValueError, match=r"Rotary\(proportion=3.0\)"):
        pl.Rotary(8, layout="split", proportion=3.0)
