"""Scale-out through jax.sharding (8 host devices) and behaviour with jax_enable_x64 on."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from references import reference_sinusoidal

from posenc_jax import sinusoidal, sinusoidal_table

COLLECTIVES = ("all-gather", "all-reduce", "collective-permute", "all-to-all", "reduce-scatter")


def test_sharded_positions_give_sharded_output_without_communication():
    assert len(jax.devices()) == 8
    mesh = Mesh(np.array(jax.devices()), ("seq",))
    positions = jax.device_put(jnp.arange(8 * 16, dtype=jnp.int32) + 2**30, NamedSharding(mesh, P("seq")))
    fn = jax.jit(lambda p: sinusoidal(p, 32))
    out = fn(positions)
    assert out.sharding.is_equivalent_to(NamedSharding(mesh, P("seq", None)), out.ndim)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(sinusoidal(np.asarray(positions), 32)))
    hlo = fn.lower(positions).compile().as_text()
    assert not [c for c in COLLECTIVES if c in hlo]


def test_sharded_batch_of_offsets_for_the_table():
    mesh = Mesh(np.array(jax.devices()).reshape(8), ("data",))
    offsets = jax.device_put(jnp.arange(8, dtype=jnp.int32) * 1000, NamedSharding(mesh, P("data")))
    fn = jax.jit(lambda o: sinusoidal_table(24, 16, offset=o))
    out = fn(offsets)
    assert out.sharding.is_equivalent_to(NamedSharding(mesh, P("data", None, None)), out.ndim)
    expected = reference_sinusoidal(np.arange(8)[:, None] * 1000 + np.arange(24), 16)
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-6)
    hlo = fn.lower(offsets).compile().as_text()
    assert not [c for c in COLLECTIVES if c in hlo]


def test_with_x64_enabled():
    # jax_enable_x64 must be set before jax is first used, hence a fresh interpreter.
    script = textwrap.dedent(
        """
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp, numpy as np, pytest
        from references import reference_sinusoidal
        from posenc_jax import sinusoidal, sinusoidal_table
        p64 = np.array([0, 5, 2**31 - 1, -(2**31), 2**24 + 3], dtype=np.int64)
        for fn in (sinusoidal, jax.jit(lambda p, **k: sinusoidal(p, **k), static_argnames="dim")):
            out = fn(jnp.asarray(p64), dim=64)
            assert out.dtype == jnp.float32, out.dtype
            assert np.abs(np.asarray(out) - reference_sinusoidal(p64, 64)).max() < 1e-6
        f64 = sinusoidal(jnp.asarray([0.5, 1e6 + 0.25]), 64, dtype=jnp.float64)
        assert f64.dtype == jnp.float64
        assert np.abs(np.asarray(f64) - reference_sinusoidal([0.5, 1e6 + 0.25], 64)).max() < 1e-6
        # traced int64 beyond the int32 range: NaN rows (they cannot raise under jit)
        out = jax.jit(lambda p: sinusoidal(p, 8))(jnp.asarray([1, 2**40], jnp.int64))
        assert np.isnan(np.asarray(out[1])).all() and not np.isnan(np.asarray(out[0])).any()
        with pytest.raises(ValueError, match=r"positions=<int64\\[1\\] containing 1099511627776>"):
            sinusoidal(np.array([2**40]), 8)
        # float64 positions must round to an int32: [2**31 - 1/2, 2**31) raise on the host, NaN when traced
        with pytest.raises(ValueError, match=r"containing 2147483647.75>\\): floating positions must be finite"):
            sinusoidal(np.array([2**31 - 0.25]), 8)
        edge = np.array([2**31 - 0.25, 2**31 - 0.75, -(2**31) + 0.75])
        out = np.asarray(jax.jit(lambda p: sinusoidal(p, 8))(jnp.asarray(edge)))
        assert np.isnan(out[0]).all() and np.abs(out[1:] - reference_sinusoidal(edge[1:], 8)).max() < 1e-6
        t = sinusoidal_table(10, 16, offset=jnp.asarray([2**31 - 5], jnp.int64))
        assert np.abs(np.asarray(t) - reference_sinusoidal(2**31 - 5 + np.arange(10)[None], 16)).max() < 1e-6
        # a traced DynamicNTK length (max(positions) + 1 in the graph) from int64 positions
        from posenc_jax import apply_rotary, rope_frequencies
        from posenc_jax.rope import DynamicNTK
        scaling = DynamicNTK(4.0, 16)
        p = np.array([2**20, 5], np.int64)
        got = jax.jit(lambda x, p: apply_rotary(x, p, scaling=scaling, layout="interleaved"))(jnp.ones((2, 1, 8), jnp.float32), p)
        theta = p[:, None] * rope_frequencies(8, scaling=scaling, length=2**20 + 1)
        assert got.dtype == jnp.float32, got.dtype
        assert np.abs(np.asarray(got)[:, 0, 0::2] - (np.cos(theta) - np.sin(theta))).max() < 1e-6
        assert np.abs(np.asarray(got)[:, 0, 1::2] - (np.cos(theta) + np.sin(theta))).max() < 1e-6
        print("x64 ok")
        """
    )
    env = dict(os.environ, PYTHONPATH=os.path.dirname(__file__), XLA_FLAGS="")
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "x64 ok" in result.stdout
