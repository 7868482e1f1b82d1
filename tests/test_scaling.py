"""RoPE scalings: frequencies and attention factors against float64 references written from the published
definitions, rotations at long positions, traced lengths, bad input."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posenc_jax import apply_rotary, rope_attention_factor, rope_frequencies
from posenc_jax.rope import NTK, DynamicNTK, Linear, Llama3, LongRoPE, YaRN

# ---- independent float64 references (from the papers' definitions) ---------------------------------------


def ref_inverse_frequencies(d, base):
    return np.array([1.0 / base ** (2 * i / d) for i in range(d // 2)])


def ref_linear(d, base, factor):
    return ref_inverse_frequencies(d, base) / factor


def ref_ntk(d, base, factor):
    return ref_inverse_frequencies(d, base * factor ** (d / (d - 2)))


def ref_dynamic(d, base, factor, window, length):
    seq = max(length, window)
    return ref_inverse_frequencies(d, base * ((factor * seq / window) - (factor - 1)) ** (d / (d - 2)))


def ref_yarn(d, base, factor, window, beta_fast=32.0, beta_slow=1.0, truncate=True):
    def pair_index_of(rotations):  # the pair whose wavelength fits `rotations` times into the window
        return d * math.log(window / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = pair_index_of(beta_fast), pair_index_of(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, d - 1)
    if low == high:
        high += 0.001
    out = []
    for i, w in enumerate(ref_inverse_frequencies(d, base)):
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)  # 0: extrapolate (keep), 1: interpolate
        out.append(w * (1 - ramp) + (w / factor) * ramp)
    return np.array(out)


def ref_yarn_attention(factor, mscale=1.0, mscale_all_dim=0.0):
    def m(s, c):
        return 1.0 if s <= 1 else 0.1 * c * math.log(s) + 1.0

    if mscale and mscale_all_dim:
        return m(factor, mscale) / m(factor, mscale_all_dim)
    return m(factor, 1.0)


def ref_llama3(d, base, factor, low_ff, high_ff, window):
    out = []
    for w in ref_inverse_frequencies(d, base):
        wavelength = 2 * math.pi / w
        if wavelength < window / high_ff:
            out.append(w)
        elif wavelength > window / low_ff:
            out.append(w / factor)
        else:
            smooth = (window / wavelength - low_ff) / (high_ff - low_ff)
            out.append((1 - smooth) * w / factor + smooth * w)
    return np.array(out)


def ref_longrope(d, base, short, long, window, length):
    factors = np.asarray(long if length > window else short, np.float64)
    return ref_inverse_frequencies(d, base) / factors


def ref_longrope_attention(factor, window):
    return 1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(window))


def ref_rotate(x, positions, w, factor=1.0):
    """Interleaved pairs rotated by positions * w in float64, then scaled by ``factor``."""
    x = np.asarray(x, np.float64)
    theta = np.asarray(positions, np.float64)[..., None] * w  # [..., length, n]
    theta = theta[..., None, :]  # heads
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = (a * np.cos(theta) - b * np.sin(theta)) * factor
    out[..., 1::2] = (b * np.cos(theta) + a * np.sin(theta)) * factor
    return out


# ---- frequency vectors and attention factors -------------------------------------------------------------

DIMS_BASES = [(8, 10_000.0), (64, 10_000.0), (128, 500_000.0), (96, 1_000_000.0)]


def _close(got, want):
    assert got.dtype == np.float64 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("d,base", DIMS_BASES)
@pytest.mark.parametrize("factor", [1.0, 2.0, 8.0, 32.0])
def test_static_scalings_match_their_definitions(d, base, factor):
    _close(rope_frequencies(d, base=base, scaling=Linear(factor)), ref_linear(d, base, factor))
    _close(rope_frequencies(d, base=base, scaling=NTK(factor)), ref_ntk(d, base, factor))
    for window in (2048, 4096):
        _close(
            rope_frequencies(d, base=base, scaling=YaRN(factor, original_max_position=window)),
            ref_yarn(d, base, factor, window),
        )
        _close(
            rope_frequencies(
                d, base=base, scaling=YaRN(factor, window, beta_fast=16, beta_slow=2, truncate=False)
            ),
            ref_yarn(d, base, factor, window, 16.0, 2.0, truncate=False),
        )
    for low_ff, high_ff, window in ((1.0, 4.0, 8192), (2.0, 3.0, 1024)):
        scaling = Llama3(factor, low_ff, high_ff, original_max_position=window)
        _close(
            rope_frequencies(d, base=base, scaling=scaling),
            ref_llama3(d, base, factor, low_ff, high_ff, window),
        )
    assert rope_attention_factor(Linear(factor)) == rope_attention_factor(NTK(factor)) == 1.0
    assert rope_attention_factor(Llama3(factor)) == 1.0
    assert rope_attention_factor(YaRN(factor, 4096)) == pytest.approx(ref_yarn_attention(factor), rel=1e-12)
    yarn = YaRN(factor, 4096, mscale=0.707, mscale_all_dim=0.707)  # the DeepSeek-V2 form: ratio 1
    assert rope_attention_factor(yarn) == pytest.approx(ref_yarn_attention(factor, 0.707, 0.707), rel=1e-12)
    yarn = YaRN(factor, 4096, mscale=1.0, mscale_all_dim=0.5)
    assert rope_attention_factor(yarn) == pytest.approx(ref_yarn_attention(factor, 1.0, 0.5), rel=1e-12)
    assert rope_attention_factor(YaRN(factor, 4096, attention_factor=1.25)) == 1.25


@pytest.mark.parametrize("d,base", DIMS_BASES)
@pytest.mark.parametrize("factor", [1.0, 2.0, 8.0])
def test_length_dependent_scalings_match_their_definitions(d, base, factor):
    window = 4096
    for length in (1, window - 1, window, window + 1, 3 * window + 5, 2**20, 2**31 - 1):
        _close(
            rope_frequencies(d, base=base, scaling=DynamicNTK(factor, window), length=length),
            ref_dynamic(d, base, factor, window, length),
        )
        rng = np.random.default_rng(length)
        short, long = rng.uniform(1.0, 2.0, d // 2), rng.uniform(1.0, 64.0, d // 2)
        scaling = LongRoPE(short, long, original_max_position=window, factor=factor)
        _close(
            rope_frequencies(d, base=base, scaling=scaling, length=length),
            ref_longrope(d, base, short, long, window, length),
        )
        assert rope_attention_factor(scaling) == pytest.approx(
            ref_longrope_attention(factor, window), rel=1e-12
        )
    assert rope_attention_factor(DynamicNTK(factor, window)) == 1.0
    assert rope_attention_factor(LongRoPE((1.0,), (2.0,), 16)) == 1.0  # no factor: none
    assert rope_attention_factor(LongRoPE((1.0,), (2.0,), 16, attention_factor=1.5)) == 1.5


def test_rotary_dim_defines_the_spectrum_and_plain_rope():
    _close(rope_frequencies(64, rotary_dim=16, scaling=NTK(4.0)), ref_ntk(16, 10_000.0, 4.0))
    _close(rope_frequencies(64), ref_inverse_frequencies(64, 10_000.0))
    assert rope_attention_factor(None) == 1.0


def test_scaling_semantics():
    # Linear(f) at position f * p is plain RoPE at p; NTK keeps the fastest pair and interpolates the slowest.
    _close(rope_frequencies(16, scaling=Linear(4.0)) * 4.0, rope_frequencies(16))
    w, w0 = rope_frequencies(16, scaling=NTK(4.0)), rope_frequencies(16)
    assert w[0] == w0[0] and w[-1] == pytest.approx(w0[-1] / 4, rel=1e-12)
    # YaRN / Llama3: fast pairs kept, slow pairs interpolated by the factor.
    for scaling in (YaRN(8.0, 4096), Llama3(8.0, original_max_position=4096)):
        w = rope_frequencies(128, scaling=scaling)
        w0 = rope_frequencies(128)
        assert w[0] == w0[0] and w[-1] == pytest.approx(w0[-1] / 8, rel=1e-12)
    # DynamicNTK is plain RoPE within the window.
    assert (rope_frequencies(16, scaling=DynamicNTK(4.0, 100), length=100) == rope_frequencies(16)).all()


def test_scalings_are_hashable_values():
    assert YaRN(4, 4096) == YaRN(4.0, 4096) and hash(YaRN(4, 4096)) == hash(YaRN(4.0, 4096))
    s = LongRoPE([1, 2], np.array([3.0, 4.0]), 16)
    assert s.short_factors == (1.0, 2.0) and s.long_factors == (3.0, 4.0) and hash(s) == hash(s)
    with pytest.raises(dataclasses_frozen_error()):
        s.original_max_position = 3


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


# ---- rotations on the exact kernel ------------------------------------------------------------------------

_X = np.random.default_rng(1).uniform(-1, 1, (2, 6, 2, 16)).astype(np.float32)
_LONG = np.array(
    [[0, 1, 4095, 4097, 2**17 + 3, 2**20], [2**20 - 1, 777_777, 2**19 + 1, 12_345, 2**18, 999_999]], np.int32
)
_SCALINGS = [
    Linear(4.0),
    NTK(8.0),
    YaRN(16.0, 4096),
    YaRN(4.0, 2048, attention_factor=1.3),
    Llama3(8.0, original_max_position=1024),
    DynamicNTK(4.0, 4096),
    LongRoPE(np.linspace(1, 2, 8), np.linspace(2, 40, 8), 4096, factor=16.0),
]


@functools.lru_cache
def _rotary_fn(scaling):
    return jax.jit(functools.partial(apply_rotary, layout="interleaved", scaling=scaling, length=2**20 + 1))


@pytest.mark.parametrize("scaling", _SCALINGS, ids=lambda s: type(s).__name__)
def test_apply_rotary_with_scaling_matches_float64_up_to_2_pow_20(scaling):
    got = np.asarray(_rotary_fn(scaling)(jnp.asarray(_X), jnp.asarray(_LONG)))
    w = rope_frequencies(16, scaling=scaling, length=2**20 + 1)
    want = ref_rotate(_X, _LONG, w, rope_attention_factor(scaling))
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    # the naive float32 product pos * w is far off at these positions (the library's reason to exist)
    naive_angle = _LONG.astype(np.float32)[..., None] * w.astype(np.float32)
    assert np.abs(np.sin(naive_angle.astype(np.float64)) - np.sin(_LONG[..., None] * w)).max() > 1e-4


_TRACES = []


@jax.jit
def _decode_step(x, positions, length, window_scaling_id):
    del window_scaling_id
    _TRACES.append(1)
    return apply_rotary(x, positions, scaling=DynamicNTK(4.0, 4096), length=length, layout="interleaved")


def test_dynamic_ntk_traced_length_one_compilation_and_accuracy():
    """A traced length: one compilation for every length; within 1e-6 of float64 up to 2**20 (and 2**24)."""
    _TRACES.clear()
    x = jnp.asarray(_X[:, :1])
    positions = np.array([[2**20], [2**24 - 1]], np.int32)
    for length in (1, 4096, 4097, 10_000, 2**20 + 1, 2**24):
        got = np.asarray(_decode_step(x, jnp.asarray(positions), jnp.int32(length), 0))
        want = ref_rotate(_X[:, :1], positions, ref_dynamic(16, 10_000.0, 4.0, 4096, length))
        np.testing.assert_allclose(got[0], want[0], atol=1e-6, rtol=0)  # position 2**20
        np.testing.assert_allclose(got[1], want[1], atol=2e-6, rtol=0)  # position 2**24 - 1
    assert len(_TRACES) == 1


def test_length_defaults_to_max_position_plus_one_in_the_graph():
    x = jnp.asarray(_X[:1])
    positions = jnp.asarray(np.array([0, 5, 9000, 4, 3, 2], np.int32))
    scalings = (DynamicNTK(2.0, 1000), LongRoPE(np.ones(8), np.linspace(2, 9, 8), 1000, factor=4.0))
    for scaling in scalings:
        got = np.asarray(
            jax.jit(functools.partial(apply_rotary, layout="interleaved", scaling=scaling))(x, positions)
        )
        want = ref_rotate(_X[:1], positions, rope_frequencies(16, scaling=scaling, length=9001))
        np.testing.assert_allclose(got, want * rope_attention_factor(scaling), atol=1e-6, rtol=0)
    # within the window LongRoPE uses the short factors
    scaling = scalings[1]
    short = jnp.asarray(np.arange(6, dtype=np.int32))
    got = np.asarray(apply_rotary(x, short, scaling=scaling, length=jnp.int32(6), layout="interleaved"))
    want = ref_rotate(_X[:1], np.arange(6), rope_frequencies(16, scaling=scaling, length=6))
    np.testing.assert_allclose(got, want * rope_attention_factor(scaling), atol=1e-6, rtol=0)


def test_attention_factor_leaves_pass_through_features_alone():
    scaling = YaRN(16.0, 4096)
    got = np.asarray(
        apply_rotary(jnp.asarray(_X), jnp.asarray(_LONG), scaling=scaling, rotary_dim=8, layout="interleaved")
    )
    np.testing.assert_array_equal(got[..., 8:], _X[..., 8:])
    w = rope_frequencies(16, scaling=scaling, rotary_dim=8)
    want = ref_rotate(_X[..., :8], _LONG, w, rope_attention_factor(scaling))
    np.testing.assert_allclose(got[..., :8], want, atol=1e-6, rtol=0)


# ---- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: Linear(0.0), ValueError, r"Linear\(factor=0.0\): factor must be a finite real number > 0"),
        (lambda: Linear("2"), TypeError, r"Linear\(factor='2'\)"),
        (lambda: NTK(0.5), ValueError, r"NTK\(factor=0.5\): factor must be a finite real number >= 1"),
        (lambda: NTK(float("nan")), ValueError, r"NTK\(factor=nan\)"),
        (lambda: DynamicNTK(2.0, 0), ValueError, r"DynamicNTK\(original_max_position=0\)"),
        (lambda: DynamicNTK(2.0, 10.5), TypeError, r"DynamicNTK\(original_max_position=10.5\)"),
        (lambda: YaRN(2.0, 4096, beta_fast=1.0), ValueError, r"YaRN\(beta_fast=1.0\): .* > 1"),
        (lambda: YaRN(2.0, 4096, attention_factor=0.0), ValueError, r"YaRN\(attention_factor=0.0\)"),
        (lambda: YaRN(2.0, 4096, mscale=-1.0), ValueError, r"YaRN\(mscale=-1.0\)"),
        (lambda: YaRN(2.0, 4096, truncate=1), TypeError, r"YaRN\(truncate=1\): truncate must be a Python bool"),
        (lambda: Llama3(high_freq_factor=1.0), ValueError, r"Llama3\(high_freq_factor=1.0\): .* > 1"),
        (lambda: Llama3(factor=True), TypeError, r"Llama3\(factor=True\)"),
        (
            lambda: LongRoPE((1.0, 2.0), (1.0,), 16),
            ValueError,
            r"LongRoPE\(long_factors=\(1.0,\)\): long_factors must have as many factors as short_factors \(2\)",
        ),
        (
            lambda: LongRoPE((1.0, 0.0), (1.0, 1.0), 16),
            ValueError,
            r"LongRoPE\(short_factors=\(1.0, 0.0\)\): short_factors must be finite and > 0",
        ),
        (
            lambda: LongRoPE((), (), 16),
            ValueError,
            r"LongRoPE\(short_factors=<float64\[0\]>\): short_factors must be a non-empty 1-D sequence",
        ),
        (
            lambda: LongRoPE(("a",), ("b",), 16),
            TypeError,
            r"LongRoPE\(short_factors=<<U1\[1\]>\): short_factors must be real numbers",
        ),
        (lambda: LongRoPE((1.0,), (1.0,), 1), ValueError, r"LongRoPE\(original_max_position=1\)"),
        (lambda: rope_frequencies(7), ValueError, r"rope_frequencies\(head_dim=7\): head_dim must be even"),
        (lambda: rope_frequencies(8, rotary_dim=16), ValueError, r"rope_frequencies\(rotary_dim=16\)"),
        (lambda: rope_frequencies(8, base=1.0), ValueError, r"rope_frequencies\(base=1.0\)"),
        (lambda: rope_frequencies(8, scaling="yarn"), TypeError, r"rope_frequencies\(scaling='yarn'\)"),
        (lambda: rope_frequencies(2, scaling=NTK(2.0)), ValueError, r"rope_frequencies\(rotary_dim=2\)"),
        (
            lambda: rope_frequencies(8, scaling=DynamicNTK(2.0, 16)),
            ValueError,
            r"rope_frequencies\(length=None\): DynamicNTK frequencies depend on the sequence length; pass length=",
        ),
        (
            lambda: rope_frequencies(8, scaling=DynamicNTK(2.0, 16), length=0),
            ValueError,
            r"rope_frequencies\(length=0\)",
        ),
        (
            lambda: rope_frequencies(8, scaling=LongRoPE((1.0,), (2.0,), 16), length=3),
            ValueError,
            r"LongRoPE has 1 factors per set, rotary_dim=8 needs 4",
        ),
        (
            lambda: rope_frequencies(8, scaling=Linear(1e-310)),
            ValueError,
            r"rope_frequencies\(scaling=Linear\(factor=1e-310\)\): the scaled frequencies must be finite and > 0 for base=10000.0",
        ),
        (
            lambda: apply_rotary(jnp.ones((2, 1, 8)), jnp.arange(2), scaling=NTK(1e300), layout="interleaved"),
            ValueError,
            r"apply_rotary\(scaling=NTK\(factor=1e\+300\)\): the scaled frequencies must be finite and > 0 for base=10000.0",
        ),
        (lambda: rope_attention_factor(2.0), TypeError, r"rope_attention_factor\(scaling=2.0\)"),
        (
            lambda: apply_rotary(
                jnp.ones((2, 1, 8)),
                jnp.arange(2),
                scaling=Linear(2.0),
                frequencies=[1.0, 0.1, 0.01, 0.001],
                layout="interleaved",
            ),
            ValueError,
            r"apply_rotary\(scaling=Linear\(factor=2.0\)\): .* cannot be combined",
        ),
        (
            lambda: apply_rotary(
                jnp.ones((2, 1, 8)),
                jnp.arange(2),
                scaling=YaRN(2.0, 8),
                frequencies=[1.0] * 4,
                layout="interleaved",
            ),
            ValueError,
            r"apply_rotary\(scaling=YaRN",
        ),
        (
            lambda: apply_rotary(
                jnp.ones((2, 1, 8)), jnp.arange(2), scaling=DynamicNTK(2.0, 8), length=2.5, layout="interleaved"
            ),
            TypeError,
            r"apply_rotary\(length=2.5\): length must be a Python int, an integer scalar array, or None",
        ),
        (
            lambda: apply_rotary(
                jnp.ones((2, 1, 8)),
                jnp.arange(2),
                scaling=DynamicNTK(2.0, 8),
                length=jnp.ones(2, jnp.int32),
                layout="interleaved",
            ),
            TypeError,
            r"apply_rotary\(length=",
        ),
        (
            lambda: apply_rotary(
                jnp.ones((2, 1, 8)), jnp.arange(2), scaling=DynamicNTK(2.0, 8), length=-3, layout="interleaved"
            ),
            ValueError,
            r"apply_rotary\(length=-3\): length must be a positive Python int",
        ),
    ],
)
def test_bad_input(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_traced_length_with_float_positions_gradients_and_sections():
    """Traced DynamicNTK constants also serve floating positions (with analytic gradients) and N-D rotary."""
    scaling = DynamicNTK(4.0, 16)
    x = jnp.ones((3, 1, 8), jnp.float32)  # unit pairs (1, 1): outputs cos - sin, cos + sin
    p = jnp.asarray([0.5, 100.25, 5000.0], jnp.float32)
    w = rope_frequencies(8, scaling=scaling, length=6000)
    theta = np.asarray(p, np.float64)[:, None] * w

    def total(p, length):
        return apply_rotary(x, p, scaling=scaling, length=length, layout="interleaved").sum()

    got = jax.jit(jax.grad(total))(p, jnp.int32(6000))
    np.testing.assert_allclose(np.asarray(got), (-2 * w * np.sin(theta)).sum(1), rtol=1e-5, atol=1e-5)
    coords = jnp.stack([p, p + 7.0], -1)
    got = jax.jit(
        lambda c: apply_rotary(
            x, c, scaling=scaling, sections=(2, 2), length=jnp.int32(6000), layout="interleaved"
        )
    )(coords)
    theta = np.concatenate([theta[:, :2], (np.asarray(p, np.float64)[:, None] + 7.0) * w[2:]], -1)
    np.testing.assert_allclose(np.asarray(got)[:, 0, 0::2], np.cos(theta) - np.sin(theta), atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.asarray(got)[:, 0, 1::2], np.cos(theta) + np.sin(theta), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "scaling", [DynamicNTK(2.0, 4), LongRoPE(np.ones(8), np.full(8, 2.0), 4)], ids=["dynamic", "longrope"]
)
@pytest.mark.parametrize("length", [0, -5, 2**31 + 1])
def test_concrete_array_lengths_are_checked_like_python_ints_and_traced_ones_give_nan(scaling, length):
    x, positions = jnp.asarray(_X[:1, :3]), jnp.arange(3)
    as_array = jnp.int32(length) if length < 2**31 else jnp.uint32(length)
    if length <= 0:  # a Python int says so at once; so does a concrete array of the same value
        with pytest.raises(ValueError, match=rf"apply_rotary\(length={length}\): length must be a positive"):
            apply_rotary(x, positions, scaling=scaling, length=length, layout="interleaved")
    with pytest.raises(
        ValueError, match=rf"apply_rotary\(length=<u?int32\[\] containing {length}>\): length must"
    ):
        apply_rotary(x, positions, scaling=scaling, length=as_array, layout="interleaved")
    # traced, it cannot raise: NaN everywhere, never the unscaled frequencies (the old reading of 0 and -5)
    got = jax.jit(lambda n: apply_rotary(x, positions, scaling=scaling, length=n, layout="interleaved"))(
        as_array
    )
    assert np.isnan(np.asarray(got)).all()


def test_a_traced_length_below_the_positions_selects_the_frequencies_of_that_length():
    # Documented: the length is not checked against the positions; every position turns with its frequencies.
    scaling = DynamicNTK(2.0, 4)
    positions = np.arange(0, 12, 2, dtype=np.int32)  # up to 10, past the length 6 given
    got = jax.jit(
        lambda n: apply_rotary(jnp.asarray(_X[:1]), positions, scaling=scaling, length=n, layout="interleaved")
    )(jnp.int32(6))
    want = ref_rotate(_X[:1], positions, ref_dynamic(16, 10_000.0, 2.0, 4, 6))
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-6, rtol=0)
