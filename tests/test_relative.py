"""T5 buckets and bias, Transformer-XL relative logits: against float64 references written from the papers."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from references import reference_t5_bucket, reference_transformer_xl

from posenc_jax import randomized_positions, t5_bias, t5_buckets, transformer_xl_logits

RNG = np.random.default_rng(0)
DISTANCES = np.arange(-5000, 5001)


# ------------------------------------------------------------------------------------------------- T5


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize(
    "num_buckets,max_distance", [(32, 128), (8, 20), (64, 256), (12, 100), (6, 1000), (4, 10), (200, 3000)]
)
def test_t5_buckets_match_the_reference_over_distances_minus_5000_to_5000(
    num_buckets, max_distance, bidirectional
):
    config = dict(num_buckets=num_buckets, max_distance=max_distance, is_causal=not bidirectional)
    want = reference_t5_bucket(DISTANCES, **config)
    # distance = k_pos - q_pos: one query at 0 against keys at every distance, and the same far from 0.
    got = t5_buckets(np.zeros(1, np.int32), DISTANCES, **config)
    np.testing.assert_array_equal(np.asarray(got)[0, 0], want)
    far = t5_buckets(np.full(1, 10**9, np.int32), DISTANCES + 10**9, **config)
    np.testing.assert_array_equal(np.asarray(far)[0, 0], want)
    # The same distances seen from keys at 0 (a column): the sign flips.
    column = t5_buckets(-DISTANCES, np.zeros(1, np.int32), **config)
    np.testing.assert_array_equal(np.asarray(column)[0, :, 0], want)
    assert got.dtype == jnp.int32 and int(got.max()) < num_buckets


def test_t5_buckets_of_the_usual_configuration_by_hand():
    # 32 buckets, bidirectional: 16 per direction, distances 0..7 exact, then log-spaced up to 128.
    got = np.asarray(
        t5_buckets(
            np.zeros(1, np.int32),
            np.array([-200, -128, -127, -16, -8, -7, -1, 0, 1, 7, 8, 200]),
            is_causal=False,
        )
    )[0, 0]
    np.testing.assert_array_equal(got, [15, 15, 15, 10, 8, 7, 1, 0, 17, 23, 24, 31])


@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5_buckets_saturate_instead_of_wrapping_at_the_int32_limits(bidirectional):
    q = jnp.array([2**31 - 1, -(2**31)], jnp.int32)
    k = jnp.array([-(2**31), 2**31 - 1], jnp.int32)
    got = np.asarray(jax.jit(lambda q, k: t5_buckets(q, k, is_causal=not bidirectional))(q, k))[0]
    want = reference_t5_bucket(
        np.subtract.outer(np.asarray(k, np.int64), np.asarray(q, np.int64)).T,
        num_buckets=32,
        max_distance=128,
        is_causal=not bidirectional,
    )
    np.testing.assert_array_equal(got, want)


_T5_BIAS = jax.jit(lambda table, q, k: t5_bias(q, k, table=table, max_distance=20, is_causal=True))


@pytest.mark.parametrize("jit", [False, True])
def test_t5_bias_gathers_each_heads_bucket_for_per_row_positions(jit):
    table = jnp.asarray(RNG.standard_normal((8, 3)), jnp.float32)
    q = np.sort(RNG.choice(200, (2, 5), replace=False), axis=-1)
    k = np.sort(RNG.choice(200, (2, 7), replace=False), axis=-1)
    got = _T5_BIAS(table, q, k) if jit else t5_bias(q, k, table=table, max_distance=20, is_causal=True)
    buckets = reference_t5_bucket(k[:, None, :] - q[:, :, None], num_buckets=8, max_distance=20, is_causal=True)
    want = np.moveaxis(np.asarray(table, np.float64)[buckets], -1, 1)
    assert got.shape == (2, 3, 5, 7) and got.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(got, np.float64), want)


def test_t5_bias_follows_the_table_dtype_and_broadcasts_batches():
    table = jnp.asarray(RNG.standard_normal((8, 2)), jnp.bfloat16)
    got = t5_bias(
        jnp.arange(4),
        jnp.arange(4)[None] + jnp.array([[0], [3]]),
        table=table,
        max_distance=20,
        is_causal=False,
    )
    assert got.shape == (2, 2, 4, 4) and got.dtype == jnp.bfloat16


def test_t5_bias_with_randomized_positions_depends_only_on_distances():
    table = jnp.asarray(RNG.standard_normal((32, 4)), jnp.float32)
    positions = randomized_positions(jax.random.key(1), 6, 1000, batch_shape=(2,))
    got = t5_bias(positions, positions, table=table, is_causal=False)
    shifted = t5_bias(positions + 12345, positions + 12345, table=table, is_causal=False)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(shifted))
    p = np.asarray(positions)
    buckets = reference_t5_bucket(
        p[:, None, :] - p[:, :, None], num_buckets=32, max_distance=128, is_causal=False
    )
    np.testing.assert_array_equal(np.asarray(got), np.moveaxis(np.asarray(table)[buckets], -1, 1))


@pytest.mark.parametrize(
    "call,error,words",
    [
        (
            lambda: t5_buckets(jnp.arange(3.0), jnp.arange(3), is_causal=False),
            TypeError,
            "q_positions=<float32[3]>): q_positions must be integers",
        ),
        (
            lambda: t5_buckets(jnp.arange(3), jnp.arange(3), num_buckets=10, max_distance=2, is_causal=False),
            ValueError,
            "max_distance=2): max_distance must exceed the 2 distances",
        ),
        (
            lambda: t5_buckets(jnp.arange(3), jnp.arange(3), num_buckets=7, is_causal=False),
            ValueError,
            "num_buckets=7",
        ),
        (
            lambda: t5_buckets(jnp.arange(3), jnp.arange(3), num_buckets=1, is_causal=True),
            ValueError,
            "num_buckets=1",
        ),
        (
            lambda: t5_buckets(jnp.arange(3), jnp.arange(3), num_buckets=2.0, is_causal=True),
            TypeError,
            "num_buckets=2.0",
        ),
        (
            lambda: t5_buckets(jnp.arange(3), jnp.arange(3), max_distance=8, is_causal=False),
            ValueError,
            "max_distance=8",
        ),
        (lambda: t5_buckets(jnp.arange(3), jnp.arange(3), is_causal=1), TypeError, "is_causal=1"),
        (
            lambda: t5_buckets(jnp.zeros((1, 1, 3), int), jnp.arange(3), is_causal=False),
            ValueError,
            "q_positions=<int32[1,1,3]>): q_positions must have shape",
        ),
        (
            lambda: t5_buckets(jnp.zeros((2, 3), int), jnp.zeros((3, 3), int), is_causal=False),
            ValueError,
            "batch",
        ),
        (lambda: t5_buckets(np.array([0, 2**31]), jnp.arange(2), is_causal=False), ValueError, "2147483648"),
        (
            lambda: t5_bias(jnp.arange(3), jnp.arange(3), table=jnp.zeros((8, 2), int), is_causal=False),
            TypeError,
            "table=<int32[8,2]>): table must be a floating array",
        ),
        (
            lambda: t5_bias(jnp.arange(3), jnp.arange(3), table=jnp.zeros(8), is_causal=False),
            ValueError,
            "table=<float32[8]>): table must have shape",
        ),
        (
            lambda: t5_bias(jnp.arange(3), jnp.arange(3), table=jnp.zeros((7, 2)), is_causal=False),
            ValueError,
            "num_buckets=7",
        ),
    ],
)
def test_t5_bad_input(call, error, words):
    with pytest.raises(error, match=re.escape(words)) as info:
        call()
    assert str(info.value).startswith(("t5_buckets(", "t5_bias("))


# ----------------------------------------------------------------------------------------- Transformer-XL

B, H, HD, REL = 2, 3, 4, 8


def _params(rel_dim=REL, dtype=np.float32):
    kernel = RNG.standard_normal((rel_dim, H, HD)) / np.sqrt(rel_dim)
    u, v = RNG.standard_normal((2, H, HD))
    return tuple(jnp.asarray(a, dtype) for a in (kernel, u, v))


def _qk(q_len, k_len, dtype=np.float32, k_batch=B):
    q = RNG.standard_normal((B, q_len, H, HD))
    k = RNG.standard_normal((k_batch, k_len, H, HD))
    return jnp.asarray(q, dtype), jnp.asarray(k, dtype)


_TXL = jax.jit(
    lambda q, k, qp, kp, kernel, u, v: transformer_xl_logits(
        q, k, qp, kp, kernel=kernel, content_bias=u, position_bias=v
    )
)


def _txl(jit, q, k, qp, kp, kernel, u, v):
    if jit:
        return _TXL(q, k, qp, kp, kernel, u, v)
    return transformer_xl_logits(q, k, qp, kp, kernel=kernel, content_bias=u, position_bias=v)


def _positions(kind):
    if kind == "arange":
        return np.arange(6), np.arange(6)
    if kind == "decode":  # one query against a cache of 6 keys
        return np.array([[5], [9]]), np.arange(6)[None] + np.array([[0], [4]])
    if kind == "randomized":
        p = np.asarray(randomized_positions(jax.random.key(3), 6, 500, batch_shape=(B,)))
        return p, p
    if kind == "fractional":
        return np.linspace(0.0, 7.5, 6, dtype=np.float32), np.linspace(-3.25, 40.0, 6, dtype=np.float32)
    if kind == "host_float64":  # host float64 positions are split exactly (no rounding to float32)
        return np.array([123456789.0, 123456790.5, 5.25, 6.0, 7.0, 8.0]), np.arange(6) + 123456780.0
    if kind == "far":  # distances small, positions near the int32 limit
        p = np.arange(6) + (2**31 - 10)
        return p, p[::-1].copy()
    raise AssertionError(kind)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("kind", ["arange", "decode", "randomized", "fractional", "host_float64", "far"])
def test_transformer_xl_matches_the_direct_formula(kind, jit):
    if kind == "host_float64" and jit:
        pytest.skip("a jitted caller converts host float64 arguments to float32 before the function sees them")
    qp, kp = _positions(kind)
    q, k = _qk(qp.shape[-1], kp.shape[-1])
    kernel, u, v = _params()
    got = _txl(jit, q, k, qp, kp, kernel, u, v)
    want = reference_transformer_xl(q, k, qp, kp, kernel, u, v)
    assert got.shape == (B, H, qp.shape[-1], kp.shape[-1]) and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=3e-6 * np.abs(want).max())


_TXL_CONSECUTIVE = jax.jit(
    lambda q, k, kernel, u, v: transformer_xl_logits(
        q, k, None, None, kernel=kernel, content_bias=u, position_bias=v
    )
)


@pytest.mark.parametrize("q_len,k_len", [(6, 6), (1, 6), (4, 7), (7, 3)])
def test_transformer_xl_without_positions_shifts_rows_like_the_direct_formula(q_len, k_len):
    q, k = _qk(q_len, k_len)
    kernel, u, v = _params()
    got = _TXL_CONSECUTIVE(q, k, kernel, u, v)
    want = reference_transformer_xl(q, k, np.arange(q_len), np.arange(k_len), kernel, u, v)
    assert got.shape == (B, H, q_len, k_len)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=3e-6 * np.abs(want).max())
    explicit = _TXL(q, k, np.arange(q_len), np.arange(k_len), kernel, u, v)
    np.testing.assert_allclose(np.asarray(got), np.asarray(explicit), atol=3e-6 * np.abs(want).max())


def test_transformer_xl_scale_base_and_a_shared_key_batch():
    q, k = _qk(4, 5, k_batch=1)
    kernel, u, v = _params(rel_dim=6)
    got = transformer_xl_logits(
        q, k, np.arange(4), np.arange(5), kernel=kernel, content_bias=u, position_bias=v, base=100.0, scale=0.5
    )
    want = reference_transformer_xl(q, k, np.arange(4), np.arange(5), kernel, u, v, base=100.0, scale=0.5)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=3e-6 * np.abs(want).max())


def test_transformer_xl_with_grouped_key_heads_reads_key_head_h_over_group_size():
    # 4 query heads, 2 key heads: query heads 0, 1 read key head 0 and 2, 3 read key head 1.
    q = jnp.asarray(RNG.standard_normal((B, 4, 4, HD)), jnp.float32)
    k = jnp.asarray(RNG.standard_normal((B, 5, 2, HD)), jnp.float32)
    kernel = jnp.asarray(RNG.standard_normal((REL, 4, HD)), jnp.float32)
    u, v = jnp.asarray(RNG.standard_normal((2, 4, HD)), jnp.float32)
    want = reference_transformer_xl(
        q, np.repeat(np.asarray(k), 2, axis=2), np.arange(4), np.arange(5), kernel, u, v
    )
    for qp, kp in ((np.arange(4), np.arange(5)), (None, None)):
        got = transformer_xl_logits(q, k, qp, kp, kernel=kernel, content_bias=u, position_bias=v)
        np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=3e-6 * np.abs(want).max())


def test_transformer_xl_depends_only_on_distances_for_randomized_positions():
    q, k = _qk(6, 6)
    kernel, u, v = _params()
    p = randomized_positions(jax.random.key(4), 6, 1000, batch_shape=(B,))
    got = _TXL(q, k, p, p, kernel, u, v)
    shifted = _TXL(q, k, p + 98765, p + 98765, kernel, u, v)
    np.testing.assert_allclose(np.asarray(shifted), np.asarray(got), atol=3e-6 * float(jnp.abs(got).max()))


def test_transformer_xl_in_bfloat16_stays_close_to_float32():
    q, k = _qk(6, 6)
    kernel, u, v = _params()
    full = transformer_xl_logits(
        q, k, np.arange(6), np.arange(6), kernel=kernel, content_bias=u, position_bias=v
    )
    low = transformer_xl_logits(
        *(a.astype(jnp.bfloat16) for a in (q, k)),
        np.arange(6),
        np.arange(6),
        kernel=kernel.astype(jnp.bfloat16),
        content_bias=u.astype(jnp.bfloat16),
        position_bias=v.astype(jnp.bfloat16),
    )
    assert low.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        np.asarray(low, np.float32), np.asarray(full), atol=0.05 * float(jnp.abs(full).max())
    )


def test_transformer_xl_gradients_reach_every_parameter():
    q, k = _qk(5, 5)
    kernel, u, v = _params()

    def loss(kernel, u, v):
        return jnp.sum(
            transformer_xl_logits(
                q, k, np.arange(5), np.arange(5), kernel=kernel, content_bias=u, position_bias=v
            )
            ** 2
        )

    grads = jax.grad(loss, argnums=(0, 1, 2))(kernel, u, v)
    # d/du of sum(scale^2 (c_j + p_ij)^2) checked against the reference by central differences on one entry.
    eps = 1e-3
    du = np.zeros((H, HD))
    du[1, 2] = eps
    plus = np.sum(
        reference_transformer_xl(q, k, np.arange(5), np.arange(5), kernel, np.asarray(u) + du, v) ** 2
    )
    minus = np.sum(
        reference_transformer_xl(q, k, np.arange(5), np.arange(5), kernel, np.asarray(u) - du, v) ** 2
    )
    np.testing.assert_allclose(float(grads[1][1, 2]), (plus - minus) / (2 * eps), rtol=1e-3)
    assert all(float(jnp.abs(g).max()) > 0 for g in grads)


def _txl_bad(**overrides):
    q, k = _qk(3, 4)
    kernel, u, v = _params()
    args = dict(
        q=q,
        k=k,
        q_positions=np.arange(3),
        k_positions=np.arange(4),
        kernel=kernel,
        content_bias=u,
        position_bias=v,
    )
    args.update(overrides)
    return lambda: transformer_xl_logits(
        args.pop("q"), args.pop("k"), args.pop("q_positions"), args.pop("k_positions"), **args
    )


@pytest.mark.parametrize(
    "overrides,error,words",
    [
        (dict(q=jnp.zeros((2, 3, 3), jnp.float32)), ValueError, "q=<float32[2,3,3]>): q must have shape"),
        (
            dict(q=jnp.zeros((2, 3, 3, 4), jnp.int32)),
            TypeError,
            "q=<int32[2,3,3,4]>): q must be a floating array",
        ),
        (dict(k=jnp.zeros((2, 4, 3, 2))), ValueError, "k=<float32[2,4,3,2]>): k must agree with q"),
        (dict(kernel=jnp.zeros((7, 3, 4))), ValueError, "rel_dim even"),
        (dict(kernel=jnp.zeros((8, 2, 4))), ValueError, "kernel=<float32[8,2,4]>): kernel must have shape"),
        (
            dict(content_bias=jnp.zeros((3, 5))),
            ValueError,
            "content_bias=<float32[3,5]>): content_bias must have shape",
        ),
        (
            dict(position_bias=jnp.zeros((3, 4), jnp.int32)),
            TypeError,
            "position_bias=<int32[3,4]>): position_bias must be a floating array",
        ),
        (
            dict(q_positions=np.arange(4)),
            ValueError,
            "q_positions=<int32[4]>): q_positions must have shape [3] or [2, 3]",
        ),
        (
            dict(k_positions=np.zeros((3, 4), int)),
            ValueError,
            "k_positions=<int32[3,4]>): k_positions must have shape [4] or [2, 4]",
        ),
        (
            dict(k_positions=np.arange(4) > 1),
            TypeError,
            "k_positions=<bool[4]>): k_positions must be an integer",
        ),
        (dict(base=1.0), ValueError, "base=1.0"),
        (dict(k_positions=None), ValueError, "pass both positions or neither"),
        (dict(scale="x"), TypeError, "scale='x'"),
        (dict(scale=float("inf")), ValueError, "scale=inf"),
    ],
)
def test_transformer_xl_bad_input(overrides, error, words):
    with pytest.raises(error, match=re.escape(words)) as info:
        _txl_bad(**overrides)()
    assert str(info.value).startswith("transformer_xl_logits(")


def test_unsigned_with_signed_positions_without_x64_are_a_type_error():
    # uint32 2**31 + 5 and int32 positions have no common 32-bit dtype: refused at trace time, never wrapped.
    q = jnp.asarray(np.array([2**31 + 5], np.uint32))
    with pytest.raises(TypeError, match=r"t5_buckets\(q_positions=<traced uint32\[1\]>\): signed and unsigned"):
        jax.jit(lambda q: t5_buckets(q, jnp.arange(3), is_causal=False))(q)
    # two unsigned arrays subtract exactly in uint32
    got = jax.jit(lambda q, k: t5_buckets(q, k, is_causal=False))(q, q + jnp.uint32(1))
    np.testing.assert_array_equal(np.asarray(got), [[[17]]])
