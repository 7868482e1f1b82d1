"""No public entry point wraps an int64 value beyond the int32 range with ``jax_enable_x64`` on.

Every entry gets positions (or a length, an offset, segment ids) holding ``BIG = 2**32 + 5``, which int32
arithmetic would read as ``5``. Concrete arrays raise; traced ones (under ``jit``) give NaN rows, saturate, or
are used exactly, as each docstring states, and never give what ``5`` would.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import posenc_jax as pe
from posenc_jax import linen as pl
from posenc_jax import nnx as pn
from posenc_jax import schemes

BIG = 2**32 + 5
F32 = np.float32


@pytest.fixture(autouse=True)
def x64():
    previous = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def i64(*values):
    return np.array(values, np.int64)


def nan_row(index, axis=0):
    """Check: the slice ``index`` along ``axis`` is all NaN, every other one finite."""

    def check(out):
        out = np.moveaxis(np.asarray(out, np.float64), axis, 0)
        assert np.isnan(out[index]).all(), out[index]
        others = np.delete(out, index, axis=0)
        assert np.isfinite(others).all(), others

    return check


def all_nan(out):
    assert np.isnan(np.asarray(out, np.float64)).all()


def equals(expected):
    def check(out):
        np.testing.assert_allclose(np.asarray(out, np.float64), expected, rtol=1e-6)

    return check


X = np.ones((2, 1, 8), F32)  # [length, heads, head_dim] for the rotary functions
Q = np.ones((1, 2, 2, 8), F32)  # [batch, length, heads, head_dim]
V = np.concatenate([Q[:, :1], 2 * Q[:, 1:]], axis=1)
TABLE = np.arange(7 * 4, dtype=F32).reshape(7, 4)
T5_TABLE = np.arange(32 * 2, dtype=F32).reshape(32, 2)  # bucket b, head h -> 2b + h
XL = dict(
    kernel=np.ones((16, 2, 8), F32) / 16,
    content_bias=np.zeros((2, 8), F32),
    position_bias=np.zeros((2, 8), F32),
)
DYNAMIC = pe.rope.DynamicNTK(2.0, original_max_position=4)
LONG = pe.rope.LongRoPE((1.0, 2.0), (4.0, 8.0), original_max_position=4)


def learned_nnx(policy):
    module = pn.Learned(7, 4, out_of_range=policy, rngs=nnx.Rngs(0))
    module.embedding[...] = jnp.asarray(TABLE)
    return module


def t5_nnx():
    module = pn.T5Bias(2, is_causal=False, rngs=nnx.Rngs(0))
    module.embedding[...] = jnp.asarray(T5_TABLE)
    return module


def linen_apply(module, variables, *args, method=None):
    return module.apply(variables, *args, method=method)


T5_VARIABLES = {"params": {"embedding": jnp.asarray(T5_TABLE)}}
T5_DISTANT = 2 * np.array([17, 31, 15], np.float64)  # buckets of distances 1, BIG, -BIG (head 0)


R = dict(r1=np.array([0.5, 1.0], F32), r2=np.array([0.25, 2.0], F32))
FIRE_MLP = (np.ones(4, F32), np.zeros(4, F32), np.ones((4, 2), F32) / 4, np.zeros(2, F32))
COPE_EMBEDDINGS = np.arange(3 * 8, dtype=F32).reshape(3, 8) / 24


def as_float64(fn, far):
    """The same call with traced float64 positions (exact up to 2**53 under x64): what the int64 call must
    give, since both round the exact distance once to float32."""
    want = lambda: np.asarray(jax.jit(fn)(jnp.asarray(far, jnp.float64)), np.float64)  # noqa: E731
    return lambda out: np.testing.assert_allclose(np.asarray(out, np.float64), want(), rtol=1e-6)


def kv_cache_attend(positions):
    cache = pe.KVCache.init(batch=2, capacity=4, num_kv_heads=2, head_dim=8)
    cache = cache.append(Q[:, :1].repeat(2, 0), Q[:, :1].repeat(2, 0), positions=positions[:, None])
    return cache.attend(Q[:, :1].repeat(2, 0), scheme=schemes.Rotary(8, layout="interleaved")), cache.positions


def check_kv_cache(out):
    attended, stored = out
    nan_row(1)(attended)
    assert int(np.asarray(stored)[1, 0]) == 2**31 - 1  # saturated, never the wrapped 5


# (name, function of one int64 array, the array, check of the jitted result, "raise" or a check when eager)
ENTRIES = [
    ("sinusoidal", lambda p: pe.sinusoidal(p, 8), i64(1, BIG), nan_row(1), "raise"),
    ("sinusoidal_table", lambda o: pe.sinusoidal_table(3, 8, offset=o), i64(1, BIG), nan_row(1), "raise"),
    ("apply_rotary", lambda p: pe.apply_rotary(X, p, layout="interleaved"), i64(1, BIG), nan_row(1), "raise"),
    (
        "apply_rotary_dynamic_ntk_length",
        lambda n: pe.apply_rotary(X, jnp.arange(2), scaling=DYNAMIC, length=n, layout="interleaved"),
        np.int64(BIG),
        all_nan,
        "raise",
    ),
    (
        "apply_rotary_dynamic_ntk_positions",
        lambda p: pe.apply_rotary(X, p, scaling=DYNAMIC, layout="interleaved"),
        i64(1, BIG),
        all_nan,
        "raise",
    ),
    (
        "apply_rotary_longrope_length",
        lambda n: pe.apply_rotary(X[:, :, :4], jnp.arange(2), scaling=LONG, length=n, layout="interleaved"),
        np.int64(BIG),
        all_nan,
        "raise",
    ),
    (
        "alibi_bias",
        lambda k: pe.alibi_bias(i64(0), k, num_heads=2, is_causal=False),
        i64(1, BIG),
        equals(-pe.alibi_slopes(2)[None, :, None, None] * np.array([1.0, BIG])),
        "raise",
    ),
    (
        "t5_buckets",
        lambda k: pe.t5_buckets(i64(0), k, is_causal=False),
        i64(1, BIG, -BIG),
        equals([[[17, 31, 15]]]),
        "raise",
    ),
    (
        "t5_bias",
        lambda k: pe.t5_bias(i64(0), k, table=T5_TABLE, is_causal=False)[0, 0, 0],
        i64(1, BIG, -BIG),
        equals(T5_DISTANT),
        "raise",
    ),
    (
        "transformer_xl_logits",
        lambda p: pe.transformer_xl_logits(Q, Q, p, i64(0, 1), **XL)[0, 0],
        i64(1, BIG),
        nan_row(1),
        "raise",
    ),
    (
        "positions_from_segment_ids",
        lambda s: pe.positions_from_segment_ids(s),
        i64(5, BIG, BIG, 5),
        equals([0, 0, 1, 0]),
        equals([0, 0, 1, 0]),
    ),
    ("lookup_nan", lambda p: learned_nnx("nan").encode(p), i64(1, BIG), nan_row(1), "raise"),
    ("lookup_clip", lambda p: learned_nnx("clip").encode(p), i64(1, BIG), equals(TABLE[[1, 6]]), "raise"),
    (
        "lookup_wrap",
        lambda p: learned_nnx("wrap").encode(p),
        i64(1, BIG),
        equals(TABLE[[1, BIG % 7]]),
        "raise",
    ),
    (
        "schemes.Learned",
        lambda p: schemes.Learned(7, 4, table=TABLE).encode(p),
        i64(1, BIG),
        nan_row(1),
        "raise",
    ),
    ("schemes.Sinusoidal", lambda p: schemes.Sinusoidal(8).encode(p), i64(1, BIG), nan_row(1), "raise"),
    (
        "schemes.Rotary",
        lambda p: schemes.Rotary(8, layout="interleaved").rotate(Q, Q, p, p)[0][0],
        i64(1, BIG),
        nan_row(1),
        "raise",
    ),
    (
        "schemes.Rotary_dynamic_ntk",
        lambda p: schemes.Rotary(8, scaling=DYNAMIC, layout="interleaved").rotate(Q, Q, p, p)[0],
        i64(1, BIG),
        all_nan,
        "raise",
    ),
    (
        "schemes.ALiBi",
        lambda k: schemes.ALiBi(2).attention_bias(i64(0), k),
        i64(1, BIG),
        equals(-pe.alibi_slopes(2)[None, :, None, None] * np.array([1.0, BIG])),
        "raise",
    ),
    (
        "schemes.T5Bias",
        lambda k: schemes.T5Bias(2, is_causal=False, table=T5_TABLE).attention_bias(i64(0), k)[0, 0, 0],
        i64(1, BIG, -BIG),
        equals(T5_DISTANT),
        "raise",
    ),
    (
        "schemes.TransformerXLRelative",
        lambda p: schemes.TransformerXLRelative(2, 8, **XL).attention_logits_bias(Q, Q, p, i64(0, 1))[0, 0],
        i64(1, BIG),
        nan_row(1),
        "raise",
    ),
    ("nnx.Learned", lambda p: learned_nnx("nan")(Q[0, :, 0, :4], p), i64(1, BIG), nan_row(1), "raise"),
    ("nnx.Sinusoidal", lambda p: pn.Sinusoidal(8).encode(p), i64(1, BIG), nan_row(1), "raise"),
    (
        "nnx.Rotary",
        lambda p: pn.Rotary(8, layout="interleaved")(Q, Q, p, p)[0][0],
        i64(1, BIG),
        nan_row(1),
        "raise",
    ),
    (
        "nnx.ALiBi",
        lambda k: pn.ALiBi(2).attention_bias(i64(0), k),
        i64(1, BIG),
        equals(-pe.alibi_slopes(2)[None, :, None, None] * np.array([1.0, BIG])),
        "raise",
    ),
    (
        "nnx.T5Bias",
        lambda k: t5_nnx().attention_bias(i64(0), k)[0, 0, 0],
        i64(1, BIG, -BIG),
        equals(T5_DISTANT),
        "raise",
    ),
    (
        "nnx.TransformerXLRelative",
        lambda p: pn.TransformerXLRelative(2, 8, rngs=nnx.Rngs(0)).attention_logits_bias(Q, Q, p, i64(0, 1))[
            0, 0
        ],
        i64(1, BIG),
        nan_row(1),
        "raise",
    ),
    (
        "linen.Learned",
        lambda p: linen_apply(pl.Learned(7, 4), {"params": {"embedding": TABLE}}, p, method="encode"),
        i64(1, BIG),
        nan_row(1),
        "raise",
    ),
    (
        "linen.Sinusoidal",
        lambda p: linen_apply(pl.Sinusoidal(8), {}, p, method="encode"),
        i64(1, BIG),
        nan_row(1),
        "raise",
    ),
    (
        "linen.Rotary",
        lambda p: linen_apply(pl.Rotary(8, layout="interleaved"), {}, Q, Q, p, p)[0][0],
        i64(1, BIG),
        nan_row(1),
        "raise",
    ),
    (
        "linen.ALiBi",
        lambda k: linen_apply(pl.ALiBi(2), {}, i64(0), k),
        i64(1, BIG),
        equals(-pe.alibi_slopes(2)[None, :, None, None] * np.array([1.0, BIG])),
        "raise",
    ),
    (
        "linen.T5Bias",
        lambda k: linen_apply(pl.T5Bias(2, is_causal=False), T5_VARIABLES, i64(0), k)[0, 0, 0],
        i64(1, BIG, -BIG),
        equals(T5_DISTANT),
        "raise",
    ),
    (
        "linen.TransformerXLRelative",
        lambda p: linen_apply(
            pl.TransformerXLRelative(2, 8),
            {"params": XL},
            Q,
            Q,
            p,
            i64(0, 1),
            method="attention_logits_bias",
        )[0, 0],
        i64(1, BIG),
        nan_row(1),
        "raise",
    ),
    (
        "attention_rotary",
        lambda p: pe.attention(
            Q, Q, Q, scheme=schemes.Rotary(8, layout="interleaved"), q_positions=p, k_positions=i64(0, 1)
        )[0],
        i64(1, BIG),
        nan_row(1),
        "raise",
    ),
    (
        "attention_alibi",
        lambda k: pe.attention(Q, Q, V, scheme=schemes.ALiBi(2), q_positions=i64(0, 1), k_positions=k),
        i64(0, BIG),
        # the key at BIG gets a bias of -BIG/4 or less: every query attends to the key at 0 only (values 1,
        # where the key at 5 that wrapping would give, values 2, would still get weight)
        equals(np.ones((1, 2, 2, 8))),
        "raise",
    ),
    ("KVCache", kv_cache_attend, i64(1, BIG), check_kv_cache, "raise"),
    (
        "kerple_bias",
        lambda k: pe.kerple_bias(i64(0, 3), k, kernel="log", **R),
        i64(1, BIG),
        as_float64(lambda k: pe.kerple_bias(jnp.array([0.0, 3.0]), k, kernel="log", **R), [1, BIG]),
        "raise",
    ),
    (
        "fire_bias",
        lambda k: pe.fire_bias(i64(0, 3), k, mlp=FIRE_MLP, c=0.1, threshold=4.0),
        i64(1, BIG),
        as_float64(
            lambda k: pe.fire_bias(jnp.array([0.0, 3.0]), k, mlp=FIRE_MLP, c=0.1, threshold=4.0), [1, BIG]
        ),
        "raise",
    ),
    (
        "cope_logits",
        lambda k: pe.cope_logits(Q, Q, i64(0, 3), k, embeddings=COPE_EMBEDDINGS),
        i64(1, BIG),
        as_float64(
            lambda k: pe.cope_logits(Q, Q, jnp.array([0.0, 3.0]), k, embeddings=COPE_EMBEDDINGS), [1, BIG]
        ),
        "raise",
    ),
    (
        "xpos_rotate",
        lambda p: pe.xpos_rotate(Q, Q, p, p, layout="split"),
        i64(BIG - 1, BIG),
        all_nan,
        "raise",
    ),
    (
        "schemes.Kerple",
        lambda k: schemes.Kerple(2, kernel="log", **R).attention_bias(i64(0, 3), k),
        i64(1, BIG),
        as_float64(lambda k: pe.kerple_bias(jnp.array([0.0, 3.0]), k, kernel="log", **R), [1, BIG]),
        "raise",
    ),
    (
        "nnx.XPos",
        lambda p: pn.XPos(8, layout="split").rotate(Q, Q, p, p),
        i64(BIG - 1, BIG),
        all_nan,
        "raise",
    ),
    ("learned_lookup", lambda p: pe.learned_lookup(p, table=TABLE), i64(1, BIG), nan_row(1), "raise"),
    (
        "schemes.FIRE",
        lambda k: schemes.FIRE(
            2,
            width=4,
            hidden_kernel=FIRE_MLP[0],
            hidden_bias=FIRE_MLP[1],
            output_kernel=FIRE_MLP[2],
            output_bias=FIRE_MLP[3],
            c=np.float32(0.1),
            threshold=np.float32(4.0),
        ).attention_bias(i64(0, 3), k),
        i64(1, BIG),
        as_float64(
            lambda k: pe.fire_bias(jnp.array([0.0, 3.0]), k, mlp=FIRE_MLP, c=0.1, threshold=4.0), [1, BIG]
        ),
        "raise",
    ),
    (
        "schemes.XPos",
        lambda p: schemes.XPos(8, layout="split").rotate(Q, Q, p, p),
        i64(BIG - 1, BIG),
        all_nan,
        "raise",
    ),
    (
        "schemes.CoPE",
        lambda k: schemes.CoPE(3, 8, embedding=COPE_EMBEDDINGS).attention_logits_bias(Q, Q, i64(0, 3), k),
        i64(1, BIG),
        as_float64(
            lambda k: pe.cope_logits(Q, Q, jnp.array([0.0, 3.0]), k, embeddings=COPE_EMBEDDINGS), [1, BIG]
        ),
        "raise",
    ),
    (
        "linen.Kerple",
        lambda k: linen_apply(
            pl.Kerple(2, kernel="log"),
            {"params": {"r1_raw": np.log(np.expm1(R["r1"])), "r2_raw": np.log(np.expm1(R["r2"]))}},
            i64(0, 3),
            k,
            method="attention_bias",
        ),
        i64(1, BIG),
        as_float64(lambda k: pe.kerple_bias(jnp.array([0.0, 3.0]), k, kernel="log", **R), [1, BIG]),
        "raise",
    ),
]


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("fn, value, check, eager", [e[1:] for e in ENTRIES], ids=[e[0] for e in ENTRIES])
def test_int64_beyond_int32_never_wraps(fn, value, check, eager, mode):
    array = jnp.asarray(value)
    assert array.dtype == jnp.int64
    if mode == "jit":
        check(jax.jit(fn)(array))
    elif eager == "raise":
        with pytest.raises(ValueError, match="4294967301|must lie in"):
            fn(array)
    else:
        eager(fn(array))


def test_error_policy_reports_the_int64_values():
    module = learned_nnx("error")
    with pytest.raises(
        Exception, match=r"positions=<values from 1 to 4294967301>\): positions must lie in \[0, 7\)"
    ):
        jax.block_until_ready(jax.jit(lambda p: module.encode(p))(jnp.asarray(i64(1, BIG))))


def test_host_sizes_and_lengths_beyond_int32_are_python_ints_or_errors():
    # Static sizes and lengths are read as Python ints: never narrowed to int32 on the way.
    with pytest.raises(ValueError, match=r"randomized_positions\(max_length=4294967301\)"):
        pe.randomized_positions(jax.random.key(0), 3, np.int64(BIG))
    scaling = pe.rope.DynamicNTK(2.0, original_max_position=4)
    np.testing.assert_array_equal(
        pe.rope_frequencies(8, scaling=scaling, length=np.int64(BIG)),
        pe.rope_frequencies(8, scaling=scaling, length=BIG),
    )
    assert not np.array_equal(
        pe.rope_frequencies(8, scaling=scaling, length=BIG), pe.rope_frequencies(8, scaling=scaling, length=5)
    )


def test_uint32_with_int64_positions_are_exact():
    q = jnp.asarray(np.array([2**32 - 1], np.uint32))
    got = jax.jit(lambda q, k: pe.t5_buckets(q, k, is_causal=False))(q, jnp.asarray(i64(2**32 - 2, 0)))
    np.testing.assert_array_equal(np.asarray(got), [[[1, 15]]])  # a distance of -1, then a far one


@pytest.mark.parametrize(
    "positions, representable, error",
    [
        (i64(2**24, 2**24 + 1), i64(2**24, 2**24 + 2), r"16777217 would round; use an int32 cache"),
        (
            np.array([0.5, 0.1]),
            np.array([0.5, 0.25]),
            r"would round these float64 values; pass float32 positions",
        ),
        (np.array([0.0, 2.0**24 + 1]), np.array([0.0, 2.0**24 + 2]), r"would round these float64 values"),
    ],
    ids=["int64", "float64_fraction", "float64_integer"],
)
def test_a_float32_cache_never_rounds_64_bit_positions(positions, representable, error):
    """int64 and float64 positions a float32 cache would round raise when concrete (host or jax arrays) and
    make the row NaN when traced; exactly representable ones are stored as given."""
    cache = pe.KVCache.init(batch=1, capacity=2, num_kv_heads=1, head_dim=8, position_dtype=jnp.float32)
    x = jnp.ones((1, 2, 1, 8), jnp.float32)
    for given in (positions, jnp.asarray(positions)):
        with pytest.raises(ValueError, match=r"KVCache.append\(positions=.*" + error):
            cache.append(x, x, given)
    step = jax.jit(lambda p: cache.append(x, x, p).attend(x[:, :1], scheme=schemes.ALiBi(1)))
    assert np.isnan(np.asarray(step(jnp.asarray(positions)))).all()
    stored = cache.append(x, x, jnp.asarray(representable)).positions
    np.testing.assert_array_equal(np.asarray(stored), representable[None].astype(np.float32))
    assert np.isfinite(np.asarray(step(jnp.asarray(representable)))).all()
