"""T5Bias and TransformerXLRelative as NNX and Linen modules: same numbers, references, dtypes, init, errors."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from references import reference_t5_bucket, reference_transformer_xl

from posenc_jax import KVCache, randomized_positions
from posenc_jax import attention as pe_attention
from posenc_jax import linen as pl
from posenc_jax import nnx as pn

#: The scheme values' fields that hold parameters (the modules hold them as Flax parameters instead).
PARAMETERS = ("table", "kernel", "content_bias", "position_bias")

B, L, H, HD = 2, 5, 4, 8
RNG = np.random.default_rng(0)
Q = jnp.asarray(RNG.standard_normal((B, L, H, HD)), jnp.float32)
K = jnp.asarray(RNG.standard_normal((B, L, H, HD)), jnp.float32)
POSITIONS = np.array([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]], np.int32)


def _t5_pair(**kwargs):
    """The NNX module and the Linen module with the NNX module's table, plus that table."""
    module = pn.T5Bias(H, rngs=nnx.Rngs(0), **kwargs)
    table = module.embedding[...]
    return module, pl.T5Bias(H, **kwargs), {"params": {"embedding": table}}, np.asarray(table, np.float64)


def _txl_pair(**kwargs):
    module = pn.TransformerXLRelative(H, HD, rngs=nnx.Rngs(0), **kwargs)
    # Non-zero biases, so that u and v are exercised.
    module.content_bias[...] = jnp.asarray(RNG.standard_normal((H, HD)), module.content_bias[...].dtype)
    module.position_bias[...] = jnp.asarray(RNG.standard_normal((H, HD)), module.position_bias[...].dtype)
    params = {name: getattr(module, name)[...] for name in ("kernel", "content_bias", "position_bias")}
    return module, pl.TransformerXLRelative(H, HD, **kwargs), {"params": params}, params


@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5_modules_agree_and_match_the_reference(bidirectional):
    nnx_module, linen_module, variables, table = _t5_pair(
        is_causal=not bidirectional, num_buckets=16, max_distance=20
    )
    got_nnx = nnx_module.attention_bias(POSITIONS, POSITIONS)
    got_linen = jax.jit(lambda v, p: linen_module.apply(v, p, p))(variables, POSITIONS)
    np.testing.assert_array_equal(np.asarray(got_nnx), np.asarray(got_linen))
    buckets = reference_t5_bucket(
        POSITIONS[:, None, :] - POSITIONS[:, :, None],
        num_buckets=16,
        max_distance=20,
        is_causal=not bidirectional,
    )
    np.testing.assert_array_equal(np.asarray(got_nnx, np.float64), np.moveaxis(table[buckets], -1, 1))


def test_t5_module_initial_table_dtype_and_jit():
    module = pn.T5Bias(H, is_causal=False, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(1))
    table = np.asarray(module.embedding[...], np.float32)
    assert table.shape == (32, H) and module.embedding[...].dtype == jnp.bfloat16
    limit = np.sqrt(3.0 / ((32 + H) / 2))  # uniform with variance 1 / fan_avg
    assert np.abs(table).max() <= limit and table.std() > limit / 4
    assert module(POSITIONS, POSITIONS).dtype == jnp.bfloat16
    as_f32 = pn.T5Bias(H, is_causal=False, dtype=jnp.float32, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(1))
    assert as_f32(POSITIONS, POSITIONS).dtype == jnp.float32
    jitted = nnx.jit(lambda m, p: m.attention_bias(p, p))(module, POSITIONS)
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(module(POSITIONS, POSITIONS)))


@pytest.mark.parametrize("positions", ["explicit", "none"])
def test_transformer_xl_modules_agree_and_match_the_reference(positions):
    nnx_module, linen_module, variables, params = _txl_pair(rel_dim=12)
    qp = kp = POSITIONS if positions == "explicit" else None
    got_nnx = nnx_module.attention_logits_bias(Q, K, qp, kp)
    got_linen = jax.jit(lambda v, q, k: linen_module.apply(v, q, k, qp, kp))(variables, Q, K)
    np.testing.assert_allclose(np.asarray(got_nnx), np.asarray(got_linen), rtol=1e-6, atol=1e-6)
    ref_positions = POSITIONS if positions == "explicit" else np.arange(L)
    want = reference_transformer_xl(
        Q, K, ref_positions, ref_positions, params["kernel"], params["content_bias"], params["position_bias"]
    )
    np.testing.assert_allclose(np.asarray(got_nnx, np.float64), want, atol=3e-6 * np.abs(want).max())


def test_transformer_xl_module_initial_parameters_and_default_rel_dim():
    module = pn.TransformerXLRelative(H, HD, rngs=nnx.Rngs(2))
    kernel = np.asarray(module.kernel[...])
    assert kernel.shape == (H * HD, H, HD)  # rel_dim defaults to the model width
    assert 0.7 < kernel.std() * np.sqrt(H * HD) < 1.3  # variance 1 / rel_dim
    assert not np.any(np.asarray(module.content_bias[...])) and not np.any(
        np.asarray(module.position_bias[...])
    )
    variables = pl.TransformerXLRelative(H, HD).init(jax.random.key(0), Q, K)
    assert jax.tree.map(jnp.shape, variables["params"]) == {
        "kernel": (H * HD, H, HD),
        "content_bias": (H, HD),
        "position_bias": (H, HD),
    }


def test_transformer_xl_module_follows_bfloat16_queries_and_trains():
    nnx_module, linen_module, variables, _ = _txl_pair()
    low = nnx_module(Q.astype(jnp.bfloat16), K.astype(jnp.bfloat16), POSITIONS, POSITIONS)
    full = nnx_module(Q, K, POSITIONS, POSITIONS)
    assert low.dtype == jnp.bfloat16 and full.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(low, np.float32), np.asarray(full), atol=0.05 * float(jnp.abs(full).max())
    )
    forced = pn.TransformerXLRelative(H, HD, dtype=jnp.float32, rngs=nnx.Rngs(0))
    assert forced(Q.astype(jnp.bfloat16), K.astype(jnp.bfloat16), POSITIONS, POSITIONS).dtype == jnp.float32

    def loss(v):
        return jnp.sum(linen_module.apply(v, Q, K, POSITIONS, POSITIONS) ** 2)

    grads = jax.grad(loss)(variables)["params"]
    assert all(float(jnp.abs(g).max()) > 0 for g in grads.values())


def test_randomized_positions_need_no_special_code_and_only_distances_matter():
    positions = randomized_positions(jax.random.key(0), L, 2048, batch_shape=(B,))
    t5 = pn.T5Bias(H, is_causal=False, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(
        np.asarray(t5(positions, positions)), np.asarray(t5(positions + 5000, positions + 5000))
    )
    txl, *_ = _txl_pair()
    got = txl(Q, K, positions, positions)
    np.testing.assert_allclose(
        np.asarray(txl(Q, K, positions + 5000, positions + 5000)),
        np.asarray(got),
        atol=3e-6 * float(jnp.abs(got).max()),
    )


def test_other_schemes_add_no_content_term():
    for scheme in (
        pn.Rotary(HD, layout="interleaved"),
        pn.ALiBi(H),
        pn.NoPosition(),
        pn.T5Bias(H, is_causal=False, rngs=nnx.Rngs(0)),
    ):
        assert scheme.attention_logits_bias(Q, K, POSITIONS, POSITIONS) is None
    assert pn.TransformerXLRelative(H, HD, rngs=nnx.Rngs(0)).attention_bias(POSITIONS, POSITIONS) is None


@pytest.mark.parametrize(
    "make,error,words",
    [
        (lambda: pn.T5Bias(0, is_causal=False, rngs=nnx.Rngs(0)), ValueError, "T5Bias(num_heads=0)"),
        (lambda: pn.T5Bias(H, is_causal="yes", rngs=nnx.Rngs(0)), TypeError, "T5Bias(is_causal='yes')"),
        (
            lambda: pl.T5Bias(H, is_causal=False, num_buckets=6, max_distance=1),
            ValueError,
            "T5Bias(max_distance=1",
        ),
        (
            lambda: pn.T5Bias(H, is_causal=False, dtype=jnp.int32, rngs=nnx.Rngs(0)),
            TypeError,
            "T5Bias(dtype=int32)",
        ),
        (lambda: pn.TransformerXLRelative(H, HD, rel_dim=7, rngs=nnx.Rngs(0)), ValueError, "rel_dim=7"),
        (lambda: pl.TransformerXLRelative(H, 0), ValueError, "TransformerXLRelative(head_dim=0)"),
        (
            lambda: pl.TransformerXLRelative(H, HD, scale=float("nan")),
            ValueError,
            "TransformerXLRelative(scale=nan)",
        ),
        (
            lambda: pn.TransformerXLRelative(H, HD, base=0.5, rngs=nnx.Rngs(0)),
            ValueError,
            "TransformerXLRelative(base=0.5)",
        ),
        (
            lambda: pn.TransformerXLRelative(H, HD, rngs=nnx.Rngs(0))(Q[..., :4], K, None, None),
            ValueError,
            "TransformerXLRelative.attention_logits_bias(q shape=(2, 5, 4, 4))",
        ),
        (
            lambda: pn.T5Bias(H, is_causal=False, rngs=nnx.Rngs(0))(POSITIONS * 1.0, POSITIONS),
            TypeError,
            "t5_bias(q_positions=<float64[2,5]>): q_positions must be integers",
        ),
    ],
)
def test_bad_module_arguments(make, error, words):
    with pytest.raises(error, match=re.escape(words)):
        make()


def test_t5_bias_requires_the_direction():
    with pytest.raises(TypeError, match="is_causal"):
        pn.T5Bias(H, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="is_causal"):
        pl.T5Bias(H)


# ------------------------------------------------------------------------------------- within attention()

AQ = RNG.standard_normal((B, 7, H, HD)).astype(np.float32)
AK = RNG.standard_normal((B, 7, 2, HD)).astype(np.float32)  # two key/value heads for the four query heads
AV = RNG.standard_normal((B, 7, 2, HD)).astype(np.float32)
APOS = np.stack([np.arange(7), np.sort(RNG.choice(500, 7, replace=False))]).astype(np.int32)
CAUSAL = np.tril(np.ones((7, 7), bool))[None, None]


def _relative_schemes():
    t5 = pn.T5Bias(H, is_causal=True, num_buckets=8, max_distance=20, rngs=nnx.Rngs(0))
    txl, *_ = _txl_pair(rel_dim=12)
    table = np.asarray(t5.embedding[...], np.float64)
    t5_ref = np.moveaxis(
        table[
            reference_t5_bucket(
                APOS[:, None, :] - APOS[:, :, None], num_buckets=8, max_distance=20, is_causal=True
            )
        ],
        -1,
        1,
    )
    kernel, u, v = (np.asarray(getattr(txl, n)[...]) for n in ("kernel", "content_bias", "position_bias"))
    txl_ref = reference_transformer_xl(AQ, np.repeat(AK, 2, axis=2), APOS, APOS, kernel, u, v)
    return {"t5": (t5, t5_ref), "transformer_xl": (txl, txl_ref)}


@pytest.mark.parametrize("name", ["t5", "transformer_xl"])
def test_attention_adds_the_relative_terms(name):
    from test_attention import reference_attention

    scheme, term = _relative_schemes()[name]
    run = nnx.jit(
        lambda s, q, k, v, p, m: pe_attention(q, k, v, scheme=s, q_positions=p, k_positions=p, mask=m)
    )
    got = run(scheme, AQ, AK, AV, APOS, jnp.asarray(CAUSAL))
    np.testing.assert_allclose(np.asarray(got), reference_attention(AQ, AK, AV, term, CAUSAL), atol=1e-5)


@pytest.mark.parametrize("name", ["t5", "transformer_xl"])
def test_decoding_with_the_cache_equals_full_attention(name):
    scheme, _ = _relative_schemes()[name]
    full = pe_attention(AQ, AK, AV, scheme=scheme, q_positions=APOS, k_positions=APOS, mask=jnp.asarray(CAUSAL))

    @nnx.jit
    def step(scheme, cache, q, k, v, positions):
        cache = cache.append(k, v, positions)
        return cache, cache.attend(q, scheme=scheme)

    cache = KVCache.init(batch=B, capacity=9, num_kv_heads=2, head_dim=HD)
    cache, out = step(scheme, cache, AQ[:, :3], AK[:, :3], AV[:, :3], APOS[:, :3])
    outputs = [out]
    for t in range(3, 7):
        cache, out = step(
            scheme, cache, AQ[:, t : t + 1], AK[:, t : t + 1], AV[:, t : t + 1], APOS[:, t : t + 1]
        )
        outputs.append(out)
    np.testing.assert_allclose(np.asarray(jnp.concatenate(outputs, axis=1)), np.asarray(full), atol=1e-5)


def test_same_arguments_and_defaults_in_both_apis_and_the_values():
    import dataclasses
    import inspect

    from posenc_jax import schemes

    required = object()
    initializers = ("embedding_init", "kernel_init", "bias_init")

    def default(value):
        return required if value in (dataclasses.MISSING, inspect.Parameter.empty) else value

    for name, value_type in (
        ("T5Bias", schemes.T5Bias),
        ("TransformerXLRelative", schemes.TransformerXLRelative),
    ):
        value = {f.name: default(f.default) for f in dataclasses.fields(value_type) if f.name not in PARAMETERS}
        nnx_params = inspect.signature(getattr(pn, name).__init__).parameters
        nnx_args = {
            n: default(p.default) for n, p in nnx_params.items() if n not in ("self", "rngs", *initializers)
        }
        linen_fields = {
            f.name: default(f.default)
            for f in dataclasses.fields(getattr(pl, name))
            if f.name not in ("parent", "name", *initializers)
        }
        assert value == nnx_args == linen_fields, name
        assert nnx_params["rngs"].kind is inspect.Parameter.KEYWORD_ONLY
        nnx_inits = {n: nnx_params[n].default for n in initializers if n in nnx_params}
        linen_inits = {
            f.name: f.default for f in dataclasses.fields(getattr(pl, name)) if f.name in initializers
        }
        assert nnx_inits == linen_inits and nnx_inits, name
