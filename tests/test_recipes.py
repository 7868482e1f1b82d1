"""The production recipes under examples/recipes: their layer patterns, their numbers, cached decoding."""

import jax.numpy as jnp
import numpy as np
from test_rotary_variants import gemma_apply_rope

import posenc_jax as pe
from examples.recipes.common import decode, full_pass
from examples.recipes.gemma3_local_global import gemma3_layers
from examples.recipes.gemma_p_rope import gemma_rope
from examples.recipes.llama4_nope import llama4_layers
from posenc_jax import schemes

RNG = np.random.default_rng(4)
Q = RNG.standard_normal((2, 7, 4, 8)).astype(np.float32)
K = RNG.standard_normal((2, 7, 2, 8)).astype(np.float32)
V = RNG.standard_normal((2, 7, 2, 8)).astype(np.float32)
POSITIONS = np.stack([np.arange(7), np.arange(7) + 100]).astype(np.int32)


def test_llama4_has_no_encoding_in_every_4th_layer_and_decodes_like_the_full_pass():
    layers = llama4_layers(8, 8)
    nope = [i for i, (scheme, _) in enumerate(layers) if isinstance(scheme, schemes.NoPosition)]
    assert nope == [3, 7] and all(window is None for _, window in layers)
    assert layers[0][0].base == 500_000.0 and layers[0][0].layout == "split"
    distinct = [layers[0], layers[3]]
    for full, cached in zip(
        full_pass(distinct, Q, K, V, POSITIONS), decode(distinct, Q, K, V, POSITIONS), strict=True
    ):
        np.testing.assert_allclose(np.asarray(cached), np.asarray(full), atol=1e-5)
    # The NoPE layer sees no positions: reversed positions change the rotary layer only.
    reversed_positions = POSITIONS[:, ::-1].copy()
    rotary, none = full_pass(distinct, Q, K, V, POSITIONS)
    rotary_r, none_r = full_pass(distinct, Q, K, V, reversed_positions)
    np.testing.assert_array_equal(np.asarray(none), np.asarray(none_r))
    assert not np.allclose(np.asarray(rotary), np.asarray(rotary_r))


def test_gemma3_alternates_five_local_layers_with_one_global_layer():
    layers = gemma3_layers(12, 8, sliding_window=3, global_scaling=pe.rope.Linear(8.0))
    assert [w for _, w in layers] == [3, 3, 3, 3, 3, None] * 2
    assert [s.base for s, _ in layers[4:6]] == [10_000.0, 1_000_000.0]
    distinct = [layers[0], layers[5]]
    full = full_pass(distinct, Q, K, V, POSITIONS)
    for got, cached in zip(full, decode(distinct, Q, K, V, POSITIONS), strict=True):
        np.testing.assert_allclose(np.asarray(cached), np.asarray(got), atol=1e-5)
    # The local layer is attention under the causal mask of its window.
    index = np.arange(7)
    window_mask = ((index[None, :] <= index[:, None]) & (index[None, :] > index[:, None] - 3))[None, None]
    masked = pe.attention(
        Q,
        K,
        V,
        scheme=layers[0][0],
        q_positions=POSITIONS,
        k_positions=POSITIONS,
        mask=jnp.asarray(window_mask),
    )
    np.testing.assert_allclose(np.asarray(full[0]), np.asarray(masked), atol=1e-6)


def test_gemma_rope_proportion_is_gemmas_apply_rope():
    for proportion in (0.25, 1.0):
        want = gemma_apply_rope(Q, POSITIONS, base_frequency=10_000, rope_proportion=proportion)
        got, _ = gemma_rope(8, rope_proportion=proportion).rotate(Q, Q, POSITIONS, POSITIONS)
        np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=3e-6)
