"""attention() and KVCache against float64 references with the scheme applied by hand; decoding == full attention."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from references import reference_alibi, reference_rotary

import posenc_jax as pe
from posenc_jax import nnx as pn
from posenc_jax import schemes

B, L, H, KV, HD = 2, 7, 4, 2, 8
RNG = np.random.default_rng(0)
Q = RNG.standard_normal((B, L, H, HD)).astype(np.float32)
K = RNG.standard_normal((B, L, KV, HD)).astype(np.float32)
V = RNG.standard_normal((B, L, KV, HD)).astype(np.float32)
POSITIONS = np.stack([np.arange(L), np.arange(L) + 40]).astype(np.int32)  # per-row offsets
MASK = RNG.random((B, 1, L, L)) < 0.7
MASK[..., 0] = True  # every query sees at least one key
CAUSAL = np.tril(np.ones((L, L), bool))[None, None]


def reference_attention(q, k, v, bias=None, mask=None):
    """softmax(q·k / sqrt(d) + bias) v per head in float64; kv heads shared by groups of query heads."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    groups = q.shape[2] // k.shape[2]
    k, v = np.repeat(k, groups, axis=2), np.repeat(v, groups, axis=2)
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + bias
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    return np.einsum("bhqk,bkhd->bqhd", weights, v)


CASES = {
    "none": (schemes.NoPosition(), lambda q, k, p: (q, k, None)),
    "sinusoidal": (schemes.Sinusoidal(16), lambda q, k, p: (q, k, None)),  # absolute: identity here
    "rotary": (
        schemes.Rotary(HD, layout="split", rotary_dim=6),
        lambda q, k, p: (
            reference_rotary(q, p, layout="split", rotary_dim=6),
            reference_rotary(k, p, layout="split", rotary_dim=6),
            None,
        ),
    ),
    "alibi": (schemes.ALiBi(H), lambda q, k, p: (q, k, reference_alibi(H, p, p, is_causal=False))),
    "alibi_causal": (schemes.ALiBi(H, is_causal=True), lambda q, k, p: (q, k, reference_alibi(H, p, p, True))),
}


@pytest.mark.parametrize("masked", [False, True], ids=["no_mask", "mask"])
@pytest.mark.parametrize("case", CASES)
def test_attention_matches_float64_reference(case, masked):
    scheme, by_hand = CASES[case]
    mask = MASK if masked else None
    run = jax.jit(
        lambda q, k, v, p, m: pe.attention(q, k, v, scheme=scheme, q_positions=p, k_positions=p, mask=m)
    )
    got = run(Q, K, V, POSITIONS, None if mask is None else jnp.asarray(mask))
    q, k, bias = by_hand(Q, K, POSITIONS)
    np.testing.assert_allclose(np.asarray(got), reference_attention(q, k, V, bias, mask), atol=2e-6)


def test_nnx_module_as_scheme_and_is_causal():
    module = pn.Rotary(HD, layout="interleaved")
    got = nnx.jit(
        lambda m, q, k, v, p: pe.attention(q, k, v, scheme=m, q_positions=p, k_positions=p, is_causal=True)
    )(module, Q, K, V, POSITIONS)
    q, k = reference_rotary(Q, POSITIONS), reference_rotary(K, POSITIONS)
    np.testing.assert_allclose(np.asarray(got), reference_attention(q, k, V, mask=CAUSAL), atol=2e-6)


def test_bfloat16_attention_stays_bfloat16_with_a_float32_bias():
    scheme, by_hand = CASES["alibi"]
    q16, k16, v16 = (jnp.asarray(a, jnp.bfloat16) for a in (Q, K, V))
    got = pe.attention(q16, k16, v16, scheme=scheme, q_positions=POSITIONS, k_positions=POSITIONS)
    assert got.dtype == jnp.bfloat16
    as64 = [np.asarray(a, np.float64) for a in (q16, k16, v16)]
    want = reference_attention(*as64, by_hand(Q, K, POSITIONS)[2])
    np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=0.03)  # bfloat16 rounding of p and v


@dataclasses.dataclass(frozen=True)
class ContentBias(schemes.SchemeDefaults):
    """A content-dependent logits term: ``w · q_i`` times the distance ``i - j`` (one weight vector)."""

    weight: tuple[float, ...]

    def attention_logits_bias(self, q, k, q_positions, k_positions):
        per_query = jnp.einsum("bqhd,d->bhq", q, jnp.asarray(self.weight, q.dtype))
        distance = (q_positions[:, :, None] - k_positions[:, None, :]).astype(q.dtype)  # [batch, q, k]
        return per_query[..., None] * distance[:, None]


def test_content_dependent_logits_hook_is_added_to_the_logits():
    weight = tuple(RNG.standard_normal(HD).tolist())
    got = pe.attention(Q, K, V, scheme=ContentBias(weight), q_positions=POSITIONS, k_positions=POSITIONS)
    distance = (POSITIONS[:, :, None] - POSITIONS[:, None, :]).astype(np.float64)
    term = np.einsum("bqhd,d->bhq", Q.astype(np.float64), np.array(weight))[..., None] * distance[:, None]
    np.testing.assert_allclose(np.asarray(got), reference_attention(Q, K, V, term), atol=2e-5)


# ------------------------------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("case", ["none", "rotary", "alibi_causal"])
def test_incremental_decoding_with_the_cache_equals_full_causal_attention(case):
    scheme, _ = CASES[case]
    full = pe.attention(
        Q, K, V, scheme=scheme, q_positions=POSITIONS, k_positions=POSITIONS, mask=jnp.asarray(CAUSAL)
    )

    @jax.jit
    def step(cache, q, k, v, positions):
        cache = cache.append(k, v, positions)
        return cache, cache.attend(q, scheme=scheme)  # queries at the positions stored with them

    cache = pe.KVCache.init(batch=B, capacity=L + 2, num_kv_heads=KV, head_dim=HD)
    prompt = 3
    cache, out = step(cache, Q[:, :prompt], K[:, :prompt], V[:, :prompt], POSITIONS[:, :prompt])  # prefill
    outputs = [out]
    for t in range(prompt, L):  # then one token per step (one compiled step)
        cache, out = step(cache, Q[:, t : t + 1], K[:, t : t + 1], V[:, t : t + 1], POSITIONS[:, t : t + 1])
        outputs.append(out)
    np.testing.assert_allclose(np.asarray(jnp.concatenate(outputs, axis=1)), np.asarray(full), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(cache.length), [L, L])
    np.testing.assert_array_equal(np.asarray(cache.positions[:, :L]), POSITIONS)


def test_overflowing_or_unfilled_cache_gives_nan_not_a_truncated_context():
    cache = pe.KVCache.init(batch=B, capacity=4, num_kv_heads=KV, head_dim=HD)
    append = jax.jit(lambda c, k, v, p: c.append(k, v, p))
    cache = append(cache, K[:, :3], V[:, :3], POSITIONS[:, :3])
    assert not np.isnan(np.asarray(cache.attend(Q[:, 2:3], scheme=schemes.NoPosition()))).any()
    cache = append(cache, K[:, 3:5], V[:, 3:5], POSITIONS[:, 3:5])  # 5 entries in a cache of 4
    assert np.isnan(np.asarray(cache.attend(Q[:, 4:5], scheme=schemes.NoPosition()))).all()
    empty = pe.KVCache.init(batch=B, capacity=4, num_kv_heads=KV, head_dim=HD)
    assert np.isnan(np.asarray(empty.attend(Q[:, :1], scheme=schemes.NoPosition()))).all()  # nothing appended


BAD = [
    (
        "scheme not a scheme",
        lambda: pe.attention(Q, K, V, scheme="rotary", q_positions=POSITIONS, k_positions=POSITIONS),
        TypeError,
        r"attention\(scheme='rotary'\): scheme must implement posenc_jax.PositionalScheme",
    ),
    (
        "k and v differ",
        lambda: pe.attention(
            Q, K, V[:, :3], scheme=schemes.NoPosition(), q_positions=POSITIONS, k_positions=POSITIONS
        ),
        ValueError,
        r"attention\(v=<float32\[2,3,2,8\]>\): v must have k's shape \(2, 7, 2, 8\)",
    ),
    (
        "integer q",
        lambda: pe.attention(
            Q.astype(np.int32), K, V, scheme=schemes.NoPosition(), q_positions=POSITIONS, k_positions=POSITIONS
        ),
        TypeError,
        r"attention\(q=<int32\[2,7,4,8\]>\): q must be a floating",
    ),
    (
        "float mask",
        lambda: pe.attention(
            Q, K, V, scheme=schemes.NoPosition(), q_positions=POSITIONS, k_positions=POSITIONS, mask=MASK * 1.0
        ),
        TypeError,
        r"attention\(mask=<float64\[2,1,7,7\]>\): mask must be a boolean rank-4 array",
    ),
    (
        "positions of the wrong length",
        lambda: pe.attention(
            Q, K, V, scheme=schemes.NoPosition(), q_positions=POSITIONS[:, :3], k_positions=POSITIONS
        ),
        ValueError,
        r"attention\(q_positions=<int32\[2,3\]>\): q_positions must broadcast to q's leading axes \(2, 7\)",
    ),
    (
        "is_causal with q_len != k_len",
        lambda: pe.attention(
            Q[:, :1],
            K,
            V,
            scheme=schemes.NoPosition(),
            q_positions=POSITIONS[:, :1],
            k_positions=POSITIONS,
            is_causal=True,
        ),
        ValueError,
        r"attention\(is_causal=True\): is_causal aligns queries and keys by index and needs q_len == k_len, got 1 and 7",
    ),
    (
        "cache: zero capacity",
        lambda: pe.KVCache.init(batch=1, capacity=0, num_kv_heads=1, head_dim=8),
        ValueError,
        r"KVCache.init\(capacity=0\): capacity must be a positive Python int",
    ),
    (
        "cache: float batch",
        lambda: pe.KVCache.init(batch=1.0, capacity=4, num_kv_heads=1, head_dim=8),
        TypeError,
        r"KVCache.init\(batch=1.0\): batch must be a positive Python int",
    ),
    (
        "cache: integer dtype",
        lambda: pe.KVCache.init(batch=1, capacity=4, num_kv_heads=1, head_dim=8, dtype=jnp.int32),
        TypeError,
        r"KVCache.init\(dtype=int32\): dtype must be a floating dtype",
    ),
    (
        "cache: append more than the capacity",
        lambda: pe.KVCache.init(batch=B, capacity=4, num_kv_heads=KV, head_dim=HD).append(K, V, POSITIONS),
        ValueError,
        r"KVCache.append\(k=<float32\[2,7,2,8\]>\): 7 new entries exceed the capacity 4",
    ),
    (
        "cache: wrong heads",
        lambda: pe.KVCache.init(batch=B, capacity=8, num_kv_heads=1, head_dim=HD).append(K, V, POSITIONS),
        ValueError,
        r"KVCache.append\(k=<float32\[2,7,2,8\]>\): k must have shape \[2, new, 1, 8\]",
    ),
    (
        "cache: fractional positions in an integer cache",
        lambda: pe.KVCache.init(batch=B, capacity=8, num_kv_heads=KV, head_dim=HD).append(
            K, V, POSITIONS + 0.5
        ),
        TypeError,
        r"KVCache.append\(positions=<float64\[2,7\]>\): this cache stores integer positions",
    ),
    (
        "cache: host positions beyond int32",
        lambda: pe.KVCache.init(batch=B, capacity=8, num_kv_heads=KV, head_dim=HD).append(
            K, V, POSITIONS.astype(np.int64) + 2**32
        ),
        ValueError,
        r"KVCache.append\(positions=<int64\[2,7\] containing 4294967342>\): integer positions must lie in",
    ),
]


@pytest.mark.parametrize("call, error, match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


HEAD_MISMATCHES = {
    "alibi_1": (lambda: schemes.ALiBi(1), 1),
    "alibi_2": (lambda: schemes.ALiBi(2), 2),
    "t5_3": (lambda: pn.T5Bias(3, is_causal=False, rngs=nnx.Rngs(0)), 3),
    "t5_8": (lambda: pn.T5Bias(8, is_causal=False, rngs=nnx.Rngs(0)), 8),
}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("make, count", HEAD_MISMATCHES.values(), ids=HEAD_MISMATCHES.keys())
def test_a_bias_with_another_head_count_than_the_queries_is_a_value_error(make, count, jit):
    scheme = make()
    # one head is not broadcast to all four, and other counts do not reach jax's own shape assertion
    has = "1 head" if count == 1 else f"{count} heads"  # grammatical: "1 head"
    match = rf"\(scheme=<\w+ with {has}>\): the scheme's attention bias has {has}, but q has {H} heads"
    full = lambda q: pe.attention(q, K, V, scheme=scheme, q_positions=POSITIONS, k_positions=POSITIONS)  # noqa: E731
    with pytest.raises(ValueError, match=r"^attention" + match):
        (jax.jit(full) if jit else full)(Q)  # raised while tracing: before anything runs
    cache = pe.KVCache.init(batch=B, capacity=L, num_kv_heads=KV, head_dim=HD).append(K, V, POSITIONS)
    step = lambda q: cache.attend(q, scheme=scheme)  # noqa: E731
    with pytest.raises(ValueError, match=r"^KVCache.attend" + match):
        (jax.jit(step) if jit else step)(Q)


def test_float32_cache_decodes_fractional_positions_and_never_rounds_integers():
    """A float32 cache stores fractional positions as given; integer positions float32 would round
    (above 2**24) raise when concrete and give NaN rows when traced, never attention at a rounded position."""
    scheme = schemes.ALiBi(H)
    fractional = jnp.array([0.0, 0.5, 1.25, 2.0])
    cache = pe.KVCache.init(batch=B, capacity=4, num_kv_heads=KV, head_dim=HD, position_dtype=jnp.float32)
    cached = cache.append(K[:, :4], V[:, :4], fractional)
    np.testing.assert_array_equal(cached.positions, np.broadcast_to(fractional, (B, 4)))
    full = pe.attention(
        Q[:, 3:4], K[:, :4], V[:, :4], scheme=scheme, q_positions=fractional[3:], k_positions=fractional
    )
    np.testing.assert_allclose(
        cached.attend(Q[:, 3:4], scheme=scheme, q_positions=fractional[3:]), full, rtol=1e-6, atol=1e-6
    )

    with pytest.raises(ValueError, match=r"float32 positions, which would round these float64 values"):
        cache.append(K[:, :2], V[:, :2], np.array([0.1, 0.5]))  # host float64: 0.1 is not a float32
    big = 2**24
    with pytest.raises(
        ValueError, match=r"KVCache.append\(positions=.*16777217 would round; use an int32 cache"
    ):
        cache.append(K[:, :2], V[:, :2], jnp.array([big, big + 1]))
    step = jax.jit(
        lambda p: cache.append(K[:, :2], V[:, :2], p).attend(
            Q[:, :1], scheme=scheme, q_positions=jnp.array([big + 2])
        )
    )
    assert bool(jnp.all(jnp.isnan(step(jnp.array([big, big + 1])))))  # traced: the row is unusable, loudly
    exact = step(jnp.array([big, big + 2]))  # even integers above 2**24 are float32 values: stored exactly
    int_cache = pe.KVCache.init(batch=B, capacity=4, num_kv_heads=KV, head_dim=HD)
    expected = int_cache.append(K[:, :2], V[:, :2], jnp.array([big, big + 2])).attend(
        Q[:, :1], scheme=scheme, q_positions=jnp.array([big + 2])
    )
    np.testing.assert_allclose(exact, expected, rtol=1e-6, atol=1e-6)
