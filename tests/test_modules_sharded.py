"""The modules with parameters and activations sharded over a (data, model) mesh of 8 host devices.

Both JAX sharding modes are covered: automatic (the compiler propagates shardings) and explicit (shardings
are part of the types, so the gather of a learned table must name its output sharding).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from references import reference_alibi, reference_rotary, reference_sinusoidal

from posenc_jax import linen as pl
from posenc_jax import nnx as pn

B, L, D, H, HD, MAX_LENGTH = 4, 8, 8, 4, 8, 32
RNG = np.random.default_rng(0)
X = RNG.standard_normal((B, L, D)).astype(np.float32)
Q = RNG.standard_normal((B, L, H, HD)).astype(np.float32)
POSITIONS = (np.arange(B)[:, None] * 3 + np.arange(L)).astype(np.int32)
TABLE = RNG.standard_normal((MAX_LENGTH, D)).astype(np.float32)
MODES = {"auto": AxisType.Auto, "explicit": AxisType.Explicit}


def _mesh(mode):
    assert len(jax.devices()) == 8
    return jax.make_mesh((2, 4), ("data", "model"), axis_types=(MODES[mode],) * 2)


def _inputs():
    return (
        jax.device_put(jnp.asarray(X), P("data", None, "model")),
        jax.device_put(jnp.asarray(Q), P("data", None, "model", None)),
        jax.device_put(jnp.asarray(POSITIONS), P("data", None)),
    )


def _assert_sharded(array, mesh, spec):
    assert array.sharding.is_equivalent_to(NamedSharding(mesh, spec), array.ndim), array.sharding


def _check_outputs(mesh, embedded_learned, embedded_sinusoidal, rotated, bias, unchanged, table):
    np.testing.assert_array_equal(np.asarray(unchanged), X)
    _assert_sharded(unchanged, mesh, P("data", None, "model"))
    np.testing.assert_allclose(np.asarray(embedded_learned), X + table[POSITIONS], atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(embedded_sinusoidal), X + reference_sinusoidal(POSITIONS, D), atol=2e-6
    )
    np.testing.assert_allclose(np.asarray(rotated), reference_rotary(Q, POSITIONS), atol=2e-6)
    np.testing.assert_allclose(np.asarray(bias), reference_alibi(H, POSITIONS, POSITIONS, True), atol=1e-7)
    for out in (embedded_learned, embedded_sinusoidal):
        _assert_sharded(out, mesh, P("data", None, "model"))
    _assert_sharded(rotated, mesh, P("data", None, "model", None))
    assert len(bias.sharding.device_set) == 8


@pytest.mark.parametrize("mode", MODES)
def test_nnx_sharded(mode):
    mesh = _mesh(mode)
    with jax.set_mesh(mesh):
        learned = pn.Learned(
            MAX_LENGTH,
            D,
            embedding_init=nnx.with_partitioning(nnx.initializers.normal(0.02), (None, "model")),
            rngs=nnx.Rngs(0),
        )
        _assert_sharded(learned.embedding[...], mesh, P(None, "model"))
        learned.embedding[...] = jax.device_put(jnp.asarray(TABLE), P(None, "model"))
        sinusoidal, rotary, alibi = (
            pn.Sinusoidal(D),
            pn.Rotary(HD, layout="interleaved"),
            pn.ALiBi(H, is_causal=True),
        )
        x, q, positions = _inputs()

        @nnx.jit
        def forward(learned, x, q, positions):
            return (
                learned.embed(x, positions),
                sinusoidal.embed(x, positions),
                rotary.rotate(q, q, positions, positions)[0],
                alibi.attention_bias(positions, positions),
                pn.NoPosition().embed(x, positions),
            )

        _check_outputs(mesh, *forward(learned, x, q, positions), TABLE)
        grads = nnx.jit(nnx.grad(lambda m, x, p: jnp.sum(m(x, p))))(learned, x, positions)
    counts = np.zeros((MAX_LENGTH, D))
    np.add.at(counts, POSITIONS.ravel(), 1.0)
    np.testing.assert_array_equal(np.asarray(grads["embedding"][...]), counts)


@pytest.mark.parametrize("mode", MODES)
def test_linen_sharded(mode):
    mesh = _mesh(mode)
    with jax.set_mesh(mesh):
        x, q, positions = _inputs()
        learned = pl.Learned(
            MAX_LENGTH, D, embedding_init=nn.with_partitioning(nn.initializers.normal(0.02), (None, "model"))
        )
        if mode == "auto":  # Linen's with_partitioning constrains the unsharded init value: auto mode only
            boxed = learned.init(jax.random.key(0), x, positions)
            assert nn.get_partition_spec(boxed)["params"]["embedding"] == P(None, "model")
        variables = {"params": {"embedding": jax.device_put(jnp.asarray(TABLE), P(None, "model"))}}

        @jax.jit
        def forward(variables, x, q, positions):
            return (
                learned.apply(variables, x, positions),
                pl.Sinusoidal(D).apply({}, x, positions),
                pl.Rotary(HD, layout="interleaved").apply({}, q, q, positions, positions, method="rotate")[0],
                pl.ALiBi(H, is_causal=True).apply({}, positions, positions),
                pl.NoPosition().apply({}, x, positions),
            )

        _check_outputs(mesh, *forward(variables, x, q, positions), TABLE)
        grads = jax.jit(jax.grad(lambda v, x, p: jnp.sum(learned.apply(v, x, p))))(variables, x, positions)
    counts = np.zeros((MAX_LENGTH, D))
    np.add.at(counts, POSITIONS.ravel(), 1.0)
    np.testing.assert_array_equal(np.asarray(grads["params"]["embedding"]), counts)
