"""Rotary modules with RoPE scalings: NNX == Linen == scheme value, float64 references, one length for q and k."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from posenc_jax import linen as pl
from posenc_jax import nnx as pn
from posenc_jax import rope_attention_factor, rope_frequencies, schemes
from posenc_jax.rope import DynamicNTK, Linear, LongRoPE, YaRN

RNG = np.random.default_rng(5)
Q = RNG.uniform(-1, 1, (2, 3, 2, 8)).astype(np.float32)
K = RNG.uniform(-1, 1, (2, 5, 2, 8)).astype(np.float32)
Q_POS = np.array([[4, 5, 6], [100_000, 100_001, 100_002]], np.int32)
K_POS = np.array([[0, 1, 2, 3, 7000], [0, 1, 2, 3, 4]], np.int32)


def ref_rotate(x, positions, w, factor):
    theta = np.asarray(positions, np.float64)[..., None, None] * w
    a, b = np.asarray(x, np.float64)[..., 0::2], np.asarray(x, np.float64)[..., 1::2]
    out = np.empty(x.shape)
    out[..., 0::2] = (a * np.cos(theta) - b * np.sin(theta)) * factor
    out[..., 1::2] = (b * np.cos(theta) + a * np.sin(theta)) * factor
    return out


def _rotate_all_apis(scaling):
    value = schemes.Rotary(8, scaling=scaling, layout="interleaved")
    nnx_module = pn.Rotary(8, scaling=scaling, layout="interleaved")
    linen_module = pl.Rotary(8, scaling=scaling, layout="interleaved")
    args = (jnp.asarray(Q), jnp.asarray(K), jnp.asarray(Q_POS), jnp.asarray(K_POS))
    got_value = jax.jit(value.rotate)(*args)
    got_nnx = nnx.jit(lambda m, *a: m.rotate(*a))(nnx_module, *args)
    got_linen = jax.jit(lambda *a: linen_module.apply({}, *a, method="rotate"))(*args)
    for other in (got_nnx, got_linen):
        for a, b in zip(got_value, other, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    return got_value


@pytest.mark.parametrize("scaling", [YaRN(8.0, 1024), Linear(2.0)], ids=lambda s: type(s).__name__)
def test_static_scaling_in_every_api(scaling):
    q, k = _rotate_all_apis(scaling)
    w, factor = rope_frequencies(8, scaling=scaling), rope_attention_factor(scaling)
    np.testing.assert_allclose(np.asarray(q), ref_rotate(Q, Q_POS, w, factor), atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.asarray(k), ref_rotate(K, K_POS, w, factor), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "scaling",
    [DynamicNTK(4.0, 1000), LongRoPE((1.0, 1.5, 2.0, 3.0), (2.0, 4.0, 8.0, 16.0), 1000, factor=16.0)],
    ids=lambda s: type(s).__name__,
)
def test_length_dependent_scaling_uses_one_length_for_q_and_k(scaling):
    """The length is max over the query and key positions + 1: here 100_003 (q), not each one's own."""
    q, k = _rotate_all_apis(scaling)
    w, factor = rope_frequencies(8, scaling=scaling, length=100_003), rope_attention_factor(scaling)
    np.testing.assert_allclose(np.asarray(q), ref_rotate(Q, Q_POS, w, factor), atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.asarray(k), ref_rotate(K, K_POS, w, factor), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(scaling="yarn"), TypeError, r"Rotary\(scaling='yarn'\): scaling must be None or one of"),
        (
            dict(layout=None),
            TypeError,
            r"Rotary\(layout=None\): layout is required .* layout=\"split\" for Llama / Hugging Face / Gemma",
        ),
        (dict(scaling=YaRN(2.0, 8), frequencies=(1.0,) * 4), ValueError, r"Rotary\(scaling=YaRN"),
        (dict(scaling=LongRoPE((1.0,), (2.0,), 8)), ValueError, r"LongRoPE has 1 factors per set"),
        (dict(scaling=DynamicNTK(2.0, 8), rotary_dim=2), ValueError, r"Rotary\(rotary_dim=2\): NTK scalings"),
    ],
)
@pytest.mark.parametrize("api", ["value", "nnx", "linen"])
def test_bad_scaling_arguments(api, kwargs, error, match):
    make = {"value": schemes.Rotary, "nnx": pn.Rotary, "linen": pl.Rotary}[api]
    with pytest.raises(error, match=match):
        make(8, **{"layout": "split", **kwargs})
