"""Every public function and module exports with symbolic batch and length, serializes, deserializes and
runs at two concrete shapes with the numbers of the unexported call.

Each entry is a function of flat arrays and the arrays' templates: a shape of sizes and the letters
``"b"`` / ``"l"`` (symbolic in the export, concrete when run), or a concrete array (parameters, exported at
their own shape). Parameters and module states are passed as flat arrays, so that the exported calling
convention has no custom pytree nodes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import export

import posenc_jax as pe
from posenc_jax import linen as pl
from posenc_jax import nnx as pn
from posenc_jax import schemes

H, KV, HD = 4, 2, 8
RNG = np.random.default_rng(0)
F32, I32 = np.float32, np.int32

# templates
QS = (("b", "l", H, HD), F32)  # queries
KS = (("b", "l", KV, HD), F32)  # keys, values
XS = (("b", "l", H, HD), F32)
EMB = (("b", "l", 16), F32)  # token embeddings
POS = (("b", "l"), I32)  # positions: increasing per row, with an offset
OFF = (("b",), I32)  # offsets
T5_TABLE = RNG.standard_normal((32, H)).astype(F32)
TABLE = RNG.standard_normal((64, 16)).astype(F32)
XL = (
    RNG.standard_normal((32, H, HD)).astype(F32) / 8,
    RNG.standard_normal((H, HD)).astype(F32),
    RNG.standard_normal((H, HD)).astype(F32),
)
MLP = (
    RNG.standard_normal(8).astype(F32),
    RNG.standard_normal(8).astype(F32),
    RNG.standard_normal((8, H)).astype(F32),
    np.zeros(H, F32),
)
R1, R2 = np.linspace(0.5, 2.0, H).astype(F32), np.linspace(0.1, 1.5, H).astype(F32)
COPE = RNG.standard_normal((8, HD)).astype(F32)


def flat(tree):
    leaves, treedef = jax.tree.flatten(tree)
    return [np.asarray(leaf) for leaf in leaves], treedef


def nnx_entry(module, run, *templates):
    """``run(module, *data)`` through ``nnx.split`` / ``merge``, the module's state as flat arrays."""
    graph, state = nnx.split(module)
    leaves, treedef = flat(state)

    def fn(*args):
        merged = nnx.merge(graph, jax.tree.unflatten(treedef, args[: len(leaves)]))
        return run(merged, *args[len(leaves) :])

    return fn, [*leaves, *templates]


def linen_entry(module, variables, run, *templates):
    """``module.apply(variables, *data)`` (``run(apply, *data)``), the variables as flat arrays."""
    leaves, treedef = flat(variables)

    def fn(*args):
        apply = lambda *a, **k: module.apply(jax.tree.unflatten(treedef, args[: len(leaves)]), *a, **k)  # noqa: E731
        return run(apply, *args[len(leaves) :])

    return fn, [*leaves, *templates]


def attend_with(scheme):
    return lambda q, k, v, p: pe.attention(q, k, v, scheme=scheme, q_positions=p, k_positions=p, is_causal=True)


def kv_cache(scheme):
    def fn(q, k, v, p):
        cache = pe.KVCache.init(batch=q.shape[0], capacity=16, num_kv_heads=KV, head_dim=HD)
        cache = cache.append(k, v, p)
        return cache.attend(q, scheme=scheme), cache.positions, cache.length

    return fn


ROTARY = schemes.Rotary(HD, layout="split")
ENTRIES = {
    # pure functions
    "sinusoidal": (lambda p: pe.sinusoidal(p, 16), [POS]),
    "sinusoidal_table": (lambda o: pe.sinusoidal_table(5, 16, offset=o), [OFF]),
    "apply_rotary": (lambda x, p: pe.apply_rotary(x, p, layout="split"), [XS, POS]),
    "apply_rotary_dynamic_ntk": (
        lambda x, p: pe.apply_rotary(x, p, layout="split", scaling=pe.rope.DynamicNTK(2.0, 4)),
        [XS, POS],
    ),
    "alibi_bias": (lambda q, k: pe.alibi_bias(q, k, num_heads=H, is_causal=True), [POS, POS]),
    "t5_buckets": (lambda q, k: pe.t5_buckets(q, k, is_causal=False), [POS, POS]),
    "t5_bias": (lambda t, q, k: pe.t5_bias(q, k, table=t, is_causal=True), [T5_TABLE, POS, POS]),
    "transformer_xl_logits": (
        lambda q, k, p, w, u, v: pe.transformer_xl_logits(
            q, k, p, p, kernel=w, content_bias=u, position_bias=v
        ),
        [QS, KS, POS, *XL],
    ),
    "kerple_bias": (lambda q, r1, r2: pe.kerple_bias(q, q, r1=r1, r2=r2, kernel="log"), [POS, R1, R2]),
    "fire_bias": (lambda q, *mlp: pe.fire_bias(q, q, mlp=mlp, c=0.1, threshold=4.0), [POS, *MLP]),
    "cope_logits": (lambda q, k, p, e: pe.cope_logits(q, k, p, p, embeddings=e), [QS, KS, POS, COPE]),
    "xpos_rotate": (lambda q, k, p: pe.xpos_rotate(q, k, p, p, layout="split"), [QS, KS, POS]),
    "positions_from_segment_ids": (pe.positions_from_segment_ids, [POS]),
    "interleaved_to_split": (pe.interleaved_to_split, [EMB]),
    "rotary_split_to_interleaved": (lambda x: pe.rotary_split_to_interleaved(x, head_dim=HD), [XS]),
    "split_to_interleaved": (pe.split_to_interleaved, [EMB]),
    "rotary_interleaved_to_split": (lambda x: pe.rotary_interleaved_to_split(x, head_dim=HD), [XS]),
    "learned_lookup": (lambda t, p: pe.learned_lookup(p, table=t), [TABLE, POS]),
    # scheme values' methods
    "schemes.Sinusoidal.embed": (lambda x, p: schemes.Sinusoidal(16).embed(x, p), [EMB, POS]),
    "schemes.Learned.embed": (
        lambda t, x, p: schemes.Learned(64, 16, table=t).embed(x, p),
        [TABLE, EMB, POS],
    ),
    "schemes.Rotary.rotate": (lambda q, k, p: ROTARY.rotate(q, k, p, p), [QS, KS, POS]),
    "schemes.ALiBi.attention_bias": (lambda q: schemes.ALiBi(H).attention_bias(q, q), [POS]),
    "schemes.T5Bias.attention_bias": (
        lambda t, q: schemes.T5Bias(H, is_causal=False, num_buckets=t.shape[0], table=t).attention_bias(q, q),
        [T5_TABLE, POS],
    ),
    "schemes.TransformerXLRelative.attention_logits_bias": (
        lambda q, k, p, w, u, v: schemes.TransformerXLRelative(
            H, HD, rel_dim=32, kernel=w, content_bias=u, position_bias=v
        ).attention_logits_bias(q, k, p, p),
        [QS, KS, POS, *XL],
    ),
    "schemes.Kerple.attention_bias": (
        lambda q, r1, r2: schemes.Kerple(H, kernel="log", r1=r1, r2=r2).attention_bias(q, q),
        [POS, R1, R2],
    ),
    "schemes.FIRE.attention_bias": (
        lambda q, w1, b1, w2, b2: schemes.FIRE(
            H,
            width=8,
            hidden_kernel=w1,
            hidden_bias=b1,
            output_kernel=w2,
            output_bias=b2,
            c=np.float32(0.1),
            threshold=np.float32(4.0),
        ).attention_bias(q, q),
        [POS, *MLP],
    ),
    "schemes.XPos.rotate": (lambda q, k, p: schemes.XPos(HD, layout="split").rotate(q, k, p, p), [QS, KS, POS]),
    # attention and the cache, with a scheme value
    "attention_cope": (
        lambda q, k, v, p, e: attend_with(schemes.CoPE(8, HD, embedding=e))(q, k, v, p),
        [QS, KS, KS, POS, COPE],
    ),
    "attention_no_position": (attend_with(schemes.NoPosition()), [QS, KS, KS, POS]),
    "attention_rotary": (attend_with(ROTARY), [QS, KS, KS, POS]),
    "KVCache_rotary": (kv_cache(ROTARY), [QS, KS, KS, POS]),
    # NNX modules through split / merge, in attention and with their own methods
    "nnx.Sinusoidal": nnx_entry(pn.Sinusoidal(16), lambda m, x, p: m(x, p), EMB, POS),
    "nnx.Learned": nnx_entry(pn.Learned(64, 16, rngs=nnx.Rngs(0)), lambda m, x, p: m(x, p), EMB, POS),
    "nnx.Rotary": nnx_entry(pn.Rotary(HD, layout="split"), lambda m, *a: attend_with(m)(*a), QS, KS, KS, POS),
    "nnx.ALiBi": nnx_entry(pn.ALiBi(H), lambda m, *a: attend_with(m)(*a), QS, KS, KS, POS),
    "nnx.T5Bias": nnx_entry(
        pn.T5Bias(H, is_causal=True, rngs=nnx.Rngs(0)), lambda m, *a: kv_cache(m)(*a), QS, KS, KS, POS
    ),
    "nnx.TransformerXLRelative": nnx_entry(
        pn.TransformerXLRelative(H, HD, rngs=nnx.Rngs(0)), lambda m, *a: attend_with(m)(*a), QS, KS, KS, POS
    ),
    "nnx.Kerple": nnx_entry(
        pn.Kerple(H, kernel="power", rngs=nnx.Rngs(0)), lambda m, *a: attend_with(m)(*a), QS, KS, KS, POS
    ),
    "nnx.FIRE": nnx_entry(pn.FIRE(H, rngs=nnx.Rngs(0)), lambda m, *a: attend_with(m)(*a), QS, KS, KS, POS),
    "nnx.CoPE": nnx_entry(pn.CoPE(8, HD, rngs=nnx.Rngs(0)), lambda m, *a: attend_with(m)(*a), QS, KS, KS, POS),
    "nnx.XPos": nnx_entry(pn.XPos(HD, layout="split"), lambda m, *a: attend_with(m)(*a), QS, KS, KS, POS),
}


def _linen_entries():
    """Linen modules through ``apply``: the variables come from ``init`` at a small concrete shape."""
    q = jnp.ones((1, 3, H, HD))
    p = jnp.arange(3)
    cases = {
        "linen.Sinusoidal": (pl.Sinusoidal(16), (jnp.ones((1, 3, 16)), p), lambda a, x, p: a(x, p), [EMB, POS]),
        "linen.Learned": (pl.Learned(64, 16), (jnp.ones((1, 3, 16)), p), lambda a, x, p: a(x, p), [EMB, POS]),
        "linen.Rotary": (pl.Rotary(HD, layout="split"), (q, q, p, p), lambda a, x, p: a(x, x, p, p), [XS, POS]),
        "linen.ALiBi": (pl.ALiBi(H), (p, p), lambda a, q: a(q, q), [POS]),
        "linen.T5Bias": (pl.T5Bias(H, is_causal=False), (p, p), lambda a, q: a(q, q), [POS]),
        "linen.TransformerXLRelative": (
            pl.TransformerXLRelative(H, HD),
            (q, q, p, p),
            lambda a, q, k, p: a(q, k, p, p, method="attention_logits_bias"),
            [QS, KS, POS],
        ),
        "linen.Kerple": (
            pl.Kerple(H, kernel="log"),
            (p, p),
            lambda a, q: a(q, q, method="attention_bias"),
            [POS],
        ),
        "linen.FIRE": (pl.FIRE(H), (p, p), lambda a, q: a(q, q, method="attention_bias"), [POS]),
        "linen.XPos": (
            pl.XPos(HD, layout="split"),
            (q, q, p, p),
            lambda a, q, k, p: a(q, k, p, p),
            [QS, KS, POS],
        ),
    }
    entries = {}
    for name, (module, init_args, run, templates) in cases.items():
        variables = (
            module.init(jax.random.key(0), *init_args)
            if name != "linen.TransformerXLRelative"
            else (module.init(jax.random.key(0), *init_args, method="attention_logits_bias"))
        )
        entries[name] = linen_entry(module, variables, run, *templates)
    return entries


ENTRIES.update(_linen_entries())


def concrete(template, batch, length, salt):
    if not isinstance(template, tuple):
        return template  # a parameter
    shape, dtype = template
    sizes = tuple({"b": batch, "l": length}.get(s, s) for s in shape)
    rng = np.random.default_rng(salt)
    if dtype == I32:  # increasing positions per row, each row with its own offset (ids: runs of equal values)
        if shape == ("b",):
            return rng.integers(0, 1000, size=sizes).astype(I32)
        steps = rng.integers(0, 3, size=sizes)
        return (np.cumsum(steps, axis=-1) + rng.integers(0, 30, size=sizes[:-1] + (1,))).astype(I32)
    return rng.standard_normal(sizes).astype(dtype)


def symbolic(template, batch, length):
    if not isinstance(template, tuple):
        return jax.ShapeDtypeStruct(np.shape(template), np.asarray(template).dtype)
    shape, dtype = template
    return jax.ShapeDtypeStruct(tuple({"b": batch, "l": length}.get(s, s) for s in shape), dtype)


@pytest.mark.parametrize("fn, templates", ENTRIES.values(), ids=ENTRIES.keys())
def test_exports_with_symbolic_batch_and_length_and_round_trips(fn, templates):
    batch, length = export.symbolic_shape("b, l")
    exported = export.export(jax.jit(fn))(*(symbolic(t, batch, length) for t in templates))
    restored = export.deserialize(exported.serialize())
    for rows, size in ((2, 5), (3, 9)):
        args = [concrete(t, rows, size, salt) for salt, t in enumerate(templates)]
        want = jax.tree.leaves(fn(*args))
        got = jax.tree.leaves(restored.call(*args))
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6, atol=1e-6)


def test_randomized_positions_exports_with_a_traced_key():
    # Its sizes are static arguments by design (they shape the output); the key is the traced input.
    fn = jax.jit(lambda key: pe.randomized_positions(key, 4, 100, batch_shape=(2,)))
    key = jax.random.key_data(jax.random.key(3))
    exported = export.export(jax.jit(lambda data: fn(jax.random.wrap_key_data(data))))(key)
    restored = export.deserialize(exported.serialize())
    np.testing.assert_array_equal(np.asarray(restored.call(key)), np.asarray(fn(jax.random.key(3))))
