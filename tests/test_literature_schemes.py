"""Kerple, FIRE, CoPE and xPos as scheme values and NNX / Linen modules: same numbers, the papers' formulas in
attention, cached decoding equal to the full pass, export with symbolic shapes, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from references import reference_cope, reference_fire, reference_kerple, reference_xpos_logits

import posenc_jax as pe
from posenc_jax import linen as pl
from posenc_jax import nnx as pn
from posenc_jax import schemes
from posenc_jax._src.schemes import configuration_fields

B, L, H, KV, HD = 2, 7, 4, 2, 8
RNG = np.random.default_rng(1)
Q = RNG.standard_normal((B, L, H, HD)).astype(np.float32)
K = RNG.standard_normal((B, L, KV, HD)).astype(np.float32)
V = RNG.standard_normal((B, L, KV, HD)).astype(np.float32)
POSITIONS = np.stack([np.arange(L), np.sort(RNG.choice(300, L, replace=False))]).astype(np.int32)
CAUSAL = np.tril(np.ones((L, L), bool))[None, None]
NAMES = ["kerple_log", "kerple_power", "fire", "cope", "xpos"]


def _modules(name):
    """(NNX module, Linen module, Linen variables with the NNX module's parameters)."""
    if name.startswith("kerple"):
        kernel = name.split("_")[1]
        module = pn.Kerple(H, kernel=kernel, rngs=nnx.Rngs(0))
        linen = pl.Kerple(H, kernel=kernel)
        params = {"r1_raw": module.r1_raw[...], "r2_raw": module.r2_raw[...]}
    elif name == "fire":
        module = pn.FIRE(H, width=8, initial_threshold=16.0, rngs=nnx.Rngs(0))
        module.c[...] = jnp.float32(0.4)  # away from the initial values, so that both are exercised
        module.threshold_scale[...] = jnp.float32(1.5)
        linen = pl.FIRE(H, width=8, initial_threshold=16.0)
        params = {n: getattr(module, n)[...] for n in ("hidden_kernel", "hidden_bias", "output_kernel")}
        params |= {n: getattr(module, n)[...] for n in ("output_bias", "c", "threshold_scale")}
    elif name == "cope":
        module = pn.CoPE(4, HD, embedding_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0))
        linen = pl.CoPE(4, HD)
        params = {"embedding": module.embedding[...]}
    else:
        return pn.XPos(HD, layout="split", scale_base=16.0), pl.XPos(HD, layout="split", scale_base=16.0), {}
    return module, linen, {"params": params}


def _reference_terms(name, module, q, k, positions, mask):
    """(logits of q·k in float64 [b, h, q, k], unscaled; the added term) from the papers' formulas."""
    kr = np.repeat(np.asarray(k, np.float64), H // KV, axis=2)
    qk = np.einsum("bqhd,bkhd->bhqk", np.asarray(q, np.float64), kr)
    if name == "xpos":
        return reference_xpos_logits(q, k, positions, positions, layout="split", scale_base=16.0), 0.0
    value = module.value()
    if name.startswith("kerple"):
        term = reference_kerple(positions, positions, value.r1, value.r2, value.kernel)
    elif name == "fire":
        mlp = (value.hidden_kernel, value.hidden_bias, value.output_kernel, value.output_bias)
        term = reference_fire(positions, positions, mlp, value.c, value.threshold)
    else:
        term = reference_cope(q, k, positions, positions, value.embedding, mask)
    return qk, term


def _softmax_attention(logits, v, mask):
    """softmax(logits) v in float64 with kv heads shared by groups of query heads."""
    logits = np.where(mask, logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return np.einsum("bhqk,bkhd->bqhd", weights, np.repeat(np.asarray(v, np.float64), H // KV, axis=2))


@pytest.mark.parametrize("name", NAMES)
def test_nnx_linen_and_the_value_give_the_same_numbers(name):
    module, linen, variables = _modules(name)
    if name in ("cope", "xpos"):
        args = (Q, K, POSITIONS, POSITIONS)
        got_nnx = module(*args)
        got_linen = jax.jit(lambda v, *a: linen.apply(v, *a))(variables, *args)
    else:
        got_nnx = module(POSITIONS, POSITIONS)
        got_linen = jax.jit(lambda v, p: linen.apply(v, p, p))(variables, POSITIONS)
    value = module.scheme if name == "xpos" else module.value()
    got_value = value(*args) if name in ("cope", "xpos") else value(POSITIONS, POSITIONS)
    chex.assert_trees_all_close(got_nnx, got_linen, rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_equal(got_nnx, got_value)
    assert isinstance(value, pe.PositionalScheme) and isinstance(module, pe.PositionalScheme)


@pytest.mark.parametrize("name", NAMES)
def test_attention_adds_each_papers_term(name):
    module, _, _ = _modules(name)
    run = nnx.jit(
        lambda s, q, k, v, p: pe.attention(q, k, v, scheme=s, q_positions=p, k_positions=p, is_causal=True)
    )
    got = run(module, Q, K, V, POSITIONS)
    qk, term = _reference_terms(name, module, Q, K, POSITIONS, CAUSAL)
    want = _softmax_attention(qk / np.sqrt(HD) + term, V, CAUSAL)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)


@pytest.mark.parametrize("name", NAMES)
def test_decoding_with_the_cache_equals_the_full_pass(name):
    module, _, _ = _modules(name)
    full = pe.attention(Q, K, V, scheme=module, q_positions=POSITIONS, k_positions=POSITIONS, is_causal=True)

    @nnx.jit
    def step(scheme, cache, q, k, v, positions):
        cache = cache.append(k, v, positions)
        return cache, cache.attend(q, scheme=scheme)

    cache = pe.KVCache.init(batch=B, capacity=L + 2, num_kv_heads=KV, head_dim=HD)
    cache, out = step(module, cache, Q[:, :3], K[:, :3], V[:, :3], POSITIONS[:, :3])
    outputs = [out]
    for t in range(3, L):
        cache, out = step(
            module, cache, Q[:, t : t + 1], K[:, t : t + 1], V[:, t : t + 1], POSITIONS[:, t : t + 1]
        )
        outputs.append(out)
    np.testing.assert_allclose(np.asarray(jnp.concatenate(outputs, axis=1)), np.asarray(full), atol=2e-5)


@pytest.mark.parametrize("name", NAMES)
def test_exports_with_symbolic_batch_and_length(name):
    from jax import export

    module, _, _ = _modules(name)
    graph, state = nnx.split(module)

    def run(state, q, k, v, positions):
        scheme = nnx.merge(graph, state)
        return pe.attention(
            q, k, v, scheme=scheme, q_positions=positions, k_positions=positions, is_causal=True
        )

    b, n = export.symbolic_shape("b, n")
    shapes = [
        jax.ShapeDtypeStruct((b, n, H, HD), jnp.float32),
        jax.ShapeDtypeStruct((b, n, KV, HD), jnp.float32),
        jax.ShapeDtypeStruct((b, n, KV, HD), jnp.float32),
        jax.ShapeDtypeStruct((b, n), jnp.int32),
    ]
    exported = export.export(jax.jit(run))(state, *shapes)
    got = exported.call(state, Q[:, :5], K[:, :5], V[:, :5], POSITIONS[:, :5])
    want = run(state, Q[:, :5], K[:, :5], V[:, :5], POSITIONS[:, :5])
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)


def test_parameters_stay_in_range_by_construction_and_train():
    for kernel, upper in (("log", np.inf), ("power", 2.0)):
        module = pn.Kerple(H, kernel=kernel, rngs=nnx.Rngs(0))
        module.r1_raw[...] = jnp.array([-50.0, -1.0, 0.0, 50.0])
        module.r2_raw[...] = jnp.array([-50.0, -1.0, 0.0, 50.0])
        value = module.value()
        assert np.all(np.asarray(value.r1) > 0) and np.all(np.asarray(value.r2) > 0)
        assert np.all(np.asarray(value.r2) <= upper)
    initial = pn.Kerple(H, kernel="power", rngs=nnx.Rngs(3)).value()
    assert np.all((np.asarray(initial.r1) >= 0.0099) & (np.asarray(initial.r1) <= 2.0001))
    assert np.all((np.asarray(initial.r2) >= 0.0099) & (np.asarray(initial.r2) <= 1.0001))
    for name in ("kerple_log", "fire", "cope"):
        module, linen, variables = _modules(name)

        def loss(v, name=name, linen=linen):
            if name == "cope":
                return jnp.sum(linen.apply(v, Q, K, POSITIONS, POSITIONS, mask=jnp.asarray(CAUSAL)) ** 2)
            return jnp.sum(linen.apply(v, POSITIONS, POSITIONS) ** 2)

        grads = jax.grad(loss)(variables)["params"]
        assert all(float(jnp.abs(g).max()) > 0 for g in grads.values()), name


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda: pn.Kerple(H, kernel="exp", rngs=nnx.Rngs(0)),
            ValueError,
            r"Kerple\(kernel='exp'\): kernel must be one of",
        ),
        (lambda: pl.Kerple(0, kernel="log"), ValueError, r"Kerple\(num_heads=0\)"),
        (
            lambda: schemes.Kerple(2, kernel="log", r1=np.ones(2, np.float32), r2=-np.ones(2, np.float32)),
            ValueError,
            "r2 must be positive",
        ),
        (
            lambda: schemes.Kerple(
                2, kernel="power", r1=np.ones(2, np.float32), r2=np.full(2, 3.0, np.float32)
            ),
            ValueError,
            "r2 must be positive and <= 2",
        ),
        (lambda: pn.FIRE(H, initial_c=0.0, rngs=nnx.Rngs(0)), ValueError, r"FIRE\(initial_c=0.0\)"),
        (lambda: pl.FIRE(H, width=2.5), TypeError, r"FIRE\(width=2.5\)"),
        (
            lambda: schemes.FIRE(2, width=2, output_kernel=np.ones(2, np.float32)),
            ValueError,
            r"FIRE\(output_kernel=<float32\[2\]>\): output_kernel must have shape \[2, 2\]",
        ),
        (lambda: pn.CoPE(0, HD, rngs=nnx.Rngs(0)), ValueError, r"CoPE\(npos=0\)"),
        (lambda: schemes.CoPE(4, 8, embedding=np.ones((4, 8), int)), TypeError, r"CoPE\(embedding="),
        (lambda: pn.XPos(7, layout="split"), ValueError, r"XPos\(head_dim=7\)"),
        (lambda: pl.XPos(8, layout="halves"), ValueError, r"XPos\(layout='halves'\)"),
        (lambda: schemes.XPos(8, layout="split", scale_base=0), ValueError, r"XPos\(scale_base=0\)"),
        (
            lambda: pe.attention(
                Q,
                K,
                V,
                scheme=schemes.NoPosition(),
                q_positions=POSITIONS,
                k_positions=POSITIONS,
                local_window_size=-1,
            ),
            ValueError,
            r"attention\(local_window_size=-1\)",
        ),
        (
            lambda: pe.attention(
                Q,
                K,
                V,
                scheme=schemes.NoPosition(),
                q_positions=POSITIONS,
                k_positions=POSITIONS,
                local_window_size=(1, 2, 3),
            ),
            ValueError,
            "local_window_size must be None",
        ),
    ],
)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_sliding_window_in_attention_and_the_cache():
    window = (2, 0)  # each query sees itself and the two keys before it
    index = np.arange(L)
    local = CAUSAL & (index[None, :] >= index[:, None] - 2)[None, None]
    scheme = schemes.Rotary(HD, layout="split")
    got = pe.attention(
        Q,
        K,
        V,
        scheme=scheme,
        q_positions=POSITIONS,
        k_positions=POSITIONS,
        is_causal=True,
        local_window_size=window,
    )
    want = pe.attention(
        Q, K, V, scheme=scheme, q_positions=POSITIONS, k_positions=POSITIONS, mask=jnp.asarray(local)
    )
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)

    @jax.jit
    def step(cache, q, k, v, positions):
        cache = cache.append(k, v, positions)
        return cache, cache.attend(q, scheme=scheme, local_window_size=window)

    cache = pe.KVCache.init(batch=B, capacity=L, num_kv_heads=KV, head_dim=HD)
    outputs = []
    for t in range(L):
        cache, out = step(cache, Q[:, t : t + 1], K[:, t : t + 1], V[:, t : t + 1], POSITIONS[:, t : t + 1])
        outputs.append(out)
    np.testing.assert_allclose(np.asarray(jnp.concatenate(outputs, axis=1)), np.asarray(want), atol=1e-5)


def test_same_arguments_and_defaults_in_both_apis():
    import dataclasses
    import inspect

    def default(value):
        return "required" if value in (dataclasses.MISSING, inspect.Parameter.empty) else value

    for name in ("Kerple", "FIRE", "CoPE", "XPos"):
        nnx_params = inspect.signature(getattr(pn, name).__init__).parameters
        nnx_args = {n: default(p.default) for n, p in nnx_params.items() if n not in ("self", "rngs")}
        linen_fields = {
            f.name: default(f.default)
            for f in dataclasses.fields(getattr(pl, name))
            if f.name not in ("parent", "name")
        }
        assert nnx_args.keys() == linen_fields.keys(), name
        value_fields = set(configuration_fields(getattr(schemes, name)))
        assert value_fields == set(nnx_args) - {"embedding_init"}, name
        for arg, value in nnx_args.items():  # initializers compare by behaviour, the rest by value
            assert callable(value) or value == linen_fields[arg], (name, arg)
        if "rngs" in nnx_params:
            assert nnx_params["rngs"].kind is inspect.Parameter.KEYWORD_ONLY
