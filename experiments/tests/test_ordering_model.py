"""The experiment's Transformer: masks, packing isolation, the cached decoding step, every scheme."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.ordering import data, tasks
from experiments.ordering.config import SCHEMES
from experiments.ordering.model import ModelConfig, Transformer, attention_mask, init_cache

CONFIG = ModelConfig(num_layers=2, width=16, num_heads=2, mlp_ratio=2)
SMALL = ModelConfig(num_layers=1, width=16, num_heads=2, mlp_ratio=2)
BASES = ("none", "sinusoidal", "learned", "rotary", "alibi", "t5", "relative")


@functools.cache
def _model(base: str, mode: str, config: ModelConfig = CONFIG) -> Transformer:
    module = SCHEMES[base].module(config, mode=mode, max_positions=32)
    return Transformer(module, config, tasks.VOCAB_SIZE, tasks.NUM_CLASSES, causal=mode == "decoder")


def _batch(mode: str, seed: int = 0) -> data.Batch:
    task = tasks.get_task("sort")
    rng = np.random.default_rng(seed)
    ex = data.make_examples(task, rng, data.training_lengths(rng, 3, 6), 6)
    return data.pack_examples(task, ex, mode=mode, segments_per_row=2, row_length=task.pair_length(6))


def _apply(model, params, batch, jit):
    f = lambda p, t, pos, seg: model.apply(p, t, pos, seg)  # noqa: E731
    f = jax.jit(f) if jit else f
    return np.asarray(f(params, batch.tokens, batch.positions, batch.segment_ids))


def test_attention_mask_matches_its_definition():
    seg = np.array([[1, 1, 2, 2, 2, 0], [1, 2, 2, 3, 0, 0]])
    for causal in (False, True):
        mask = np.asarray(attention_mask(jnp.asarray(seg), causal=causal))
        assert mask.shape == (2, 1, 6, 6)
        for b in range(2):
            for i in range(6):
                for j in range(6):
                    expected = seg[b, i] == seg[b, j] and seg[b, j] > 0 and (not causal or j <= i)
                    assert mask[b, 0, i, j] == expected


@functools.cache
def _params(base: str, mode: str):
    batch = _batch(mode)
    model = _model(base, mode, SMALL)
    return jax.jit(model.init)(jax.random.key(0), batch.tokens, batch.positions, batch.segment_ids)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("mode", tasks.MODES)
@pytest.mark.parametrize("base", BASES)
def test_packed_segments_do_not_see_each_other(base, mode, jit):
    model = _model(base, mode, SMALL)
    batch = _batch(mode)
    params = _params(base, mode)
    logits = _apply(model, params, batch, jit)
    assert logits.shape == batch.tokens.shape + (tasks.NUM_CLASSES,)
    assert np.isfinite(logits).all()
    second = batch.segment_ids == 2
    changed = batch._replace(tokens=np.where(second, (batch.tokens + 1) % 5, batch.tokens))
    other = _apply(model, params, changed, jit)
    first = batch.segment_ids == 1
    np.testing.assert_allclose(other[first], logits[first], rtol=1e-5, atol=1e-5)
    assert np.abs(other[second] - logits[second]).max() > 1e-3


@pytest.mark.parametrize("jit", [False, True])
def test_without_positions_every_empty_token_of_an_example_gets_the_same_logits(jit):
    model = _model("none", "encoder", SMALL)
    batch = _batch("encoder", seed=1)
    params = _params("none", "encoder")
    logits = _apply(model, params, batch, jit)
    for r in range(batch.tokens.shape[0]):
        for s in (1, 2):
            outputs = logits[r][(batch.segment_ids[r] == s) & (batch.weights[r] > 0)]
            assert (outputs == outputs[0]).all()


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize(
    "scheme",
    [
        "none",
        "sinusoidal",
        "learned",
        "rotary",
        "alibi",
        "randomized_rotary",
        "t5",
        "relative_at_random_positions",
    ],
)
def test_cached_decoding_step_matches_the_full_causal_forward(scheme, jit):
    spec = SCHEMES[scheme]
    model = _model(spec.base, "decoder")
    task = tasks.get_task("reverse")
    rng = np.random.default_rng(2)
    ex = data.make_examples(task, rng, np.array([1, 4, 7, 3]), 7)
    positions = None
    if spec.randomized:
        positions = data.sorted_random_positions(rng, ex.lengths + ex.output_lengths, 14, 32)
    batch = data.pack_examples(
        task, ex, mode="decoder", segments_per_row=1, row_length=14, example_positions=positions
    )
    params = model.init(jax.random.key(2), batch.tokens, batch.positions, batch.segment_ids)
    full = _apply(model, params, batch, jit)

    def decode(params, tokens, positions):
        def body(cache, t):
            logits, cache = model.apply(
                params, tokens[:, t], t, positions, cache, method=Transformer.decode_step
            )
            return cache, logits

        _, logits = jax.lax.scan(body, init_cache(CONFIG, 4, 14), jnp.arange(14))
        return logits.transpose(1, 0, 2)

    decode = jax.jit(decode) if jit else decode
    stepped = np.asarray(decode(params, jnp.asarray(batch.tokens), jnp.asarray(batch.positions)))
    valid = batch.segment_ids > 0
    np.testing.assert_allclose(stepped[valid], full[valid], rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_layers": 0}, r"ModelConfig\(num_layers=0\): must be a positive integer"),
        ({"width": 30, "num_heads": 4}, r"ModelConfig\(width=30, num_heads=4\): width must be a multiple"),
        ({"width": 12, "num_heads": 4}, r"ModelConfig\(width=12, num_heads=4\).*even head dimension"),
        ({"mlp_ratio": 1.5}, r"ModelConfig\(mlp_ratio=1.5\): must be a positive integer"),
        ({"norm": "sandwich"}, r"ModelConfig\(norm='sandwich'\): must be one of \('pre', 'post'\)"),
        ({"init": "xavier"}, r"ModelConfig\(init='xavier'\): must be one of"),
        ({"attention_bias": 1}, r"ModelConfig\(attention_bias=1\): must be True or False"),
        ({"layer_norm_epsilon": 0}, r"ModelConfig\(layer_norm_epsilon=0\): must be a float in \(0, 1\)"),
        ({"embedding_dropout": "never"}, r"ModelConfig\(embedding_dropout='never'\): must be one of"),
    ],
)
def test_bad_model_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_dropout_acts_only_at_training():
    config = ModelConfig(num_layers=1, width=16, num_heads=2, mlp_ratio=2, dropout=0.5)
    module = SCHEMES["sinusoidal"].module(config, mode="encoder", max_positions=32)
    model = Transformer(module, config, tasks.VOCAB_SIZE, tasks.NUM_CLASSES, causal=False)
    plain = _model("sinusoidal", "encoder", SMALL)
    batch = _batch("encoder")
    params = _params("sinusoidal", "encoder")  # dropout has no parameters: the same tree
    args = (batch.tokens, batch.positions, batch.segment_ids)
    np.testing.assert_array_equal(model.apply(params, *args), plain.apply(params, *args))
    train = [
        model.apply(params, *args, deterministic=False, rngs={"dropout": jax.random.key(k)}) for k in (0, 0, 1)
    ]
    np.testing.assert_array_equal(train[0], train[1])
    assert np.abs(np.asarray(train[0]) - np.asarray(plain.apply(params, *args))).max() > 1e-3
    assert np.abs(np.asarray(train[0]) - np.asarray(train[2])).max() > 1e-3
    with pytest.raises(ValueError, match=r"ModelConfig\(dropout=1.0\): must be in \[0, 1\)"):
        ModelConfig(dropout=1.0)


def test_per_layer_schemes_and_windows_decode_like_the_full_forward():
    from posenc_jax import linen as pl

    config = ModelConfig(num_layers=3, width=16, num_heads=2, mlp_ratio=2)
    layers = (pl.Rotary(config.head_dim, layout="split"), pl.NoPosition())  # a pattern, repeated
    model = Transformer(layers, config, tasks.VOCAB_SIZE, tasks.NUM_CLASSES, causal=True, windows=(3, None))
    assert [(type(s).__name__, w) for s, w in model._layers()] == [
        ("Rotary", 3),
        ("NoPosition", None),
        ("Rotary", 3),
    ]
    task = tasks.get_task("reverse")
    ex = data.make_examples(task, np.random.default_rng(3), np.array([2, 5]), 5)
    batch = data.pack_examples(task, ex, mode="decoder", segments_per_row=1, row_length=10)
    params = model.init(jax.random.key(0), batch.tokens, batch.positions, batch.segment_ids)
    full = _apply(model, params, batch, jit=True)

    @jax.jit
    def decode(params, tokens, positions):
        def body(cache, t):
            logits, cache = model.apply(
                params, tokens[:, t], t, positions, cache, method=Transformer.decode_step
            )
            return cache, logits

        _, logits = jax.lax.scan(body, init_cache(config, 2, 10), jnp.arange(10))
        return logits.transpose(1, 0, 2)

    stepped = np.asarray(decode(params, jnp.asarray(batch.tokens), jnp.asarray(batch.positions)))
    valid = batch.segment_ids > 0
    np.testing.assert_allclose(stepped[valid], full[valid], rtol=2e-4, atol=2e-4)
    # The windows act: without them the same parameters give other logits past the first three tokens.
    unwindowed = Transformer(layers, config, tasks.VOCAB_SIZE, tasks.NUM_CLASSES, causal=True)
    other = _apply(unwindowed, params, batch, jit=True)
    np.testing.assert_allclose(other[:, :3], full[:, :3], rtol=1e-5, atol=1e-5)
    assert not np.allclose(other[:, 3:][valid[:, 3:]], full[:, 3:][valid[:, 3:]], atol=1e-4)


REFERENCE = ModelConfig(
    num_layers=2,
    width=32,
    num_heads=2,
    mlp_ratio=2,
    norm="post",
    attention_bias=False,
    init="reference",
    layer_norm_epsilon=1e-5,
)


def test_reference_model_post_layernorm_bias_free_projections_and_haiku_initialisation():
    """The reference code's Transformer: LayerNorm after each residual sum (none before the head), query,
    key, value and output projections without bias, token embeddings TruncatedNormal(0.02) times √width,
    dense kernels truncated normal of standard deviation 1/√fan_in before truncation, a learned table from a
    truncated unit normal."""
    module = SCHEMES["learned"].module(REFERENCE, mode="encoder", max_positions=128)
    model = Transformer(module, REFERENCE, tasks.VOCAB_SIZE, tasks.NUM_CLASSES, causal=False)
    batch = _batch("encoder")
    params = jax.jit(model.init)(jax.random.key(3), batch.tokens, batch.positions, batch.segment_ids)["params"]
    assert "final_norm" not in params and set(params["blocks_0"]["qkv"]) == {"kernel"}
    assert set(params["blocks_0"]["out"]) == {"kernel"} and "bias" in params["blocks_0"]["mlp_in"]
    assert params["blocks_0"]["attention_norm"]["scale"].shape == (32,)
    embedding = np.asarray(params["token_embedding"]["embedding"])
    assert np.abs(embedding).max() <= 0.04 and 0.015 < embedding.std() < 0.02
    tokens = jnp.asarray(batch.tokens)
    scaled = model.apply({"params": params}, tokens, method=lambda m, t: m._embed_tokens(t))
    np.testing.assert_allclose(scaled, embedding[batch.tokens] * np.sqrt(32), rtol=1e-6)
    kernel = np.asarray(params["blocks_0"]["qkv"]["kernel"])  # fan-in 32
    truncated_std = 0.8796256610342398 / np.sqrt(32)  # a unit normal truncated at ±2: standard deviation 0.8796
    assert np.abs(kernel).max() <= 2 / np.sqrt(32) and abs(kernel.std() / truncated_std - 1) < 0.05
    table = np.asarray(params["scheme"]["embedding"])
    assert np.abs(table).max() <= 2.0 and abs(table.std() / 0.8796256610342398 - 1) < 0.05
    # Post-LayerNorm: every block's output is a LayerNorm's (scale 1 and offset 0 at initialisation).
    x = jax.random.normal(jax.random.key(4), (2, 5, 32))

    def second_block(model, x):
        return model.blocks[1](x, jnp.arange(5)[None].repeat(2, 0), jnp.zeros((2, 1, 5, 5)), model.scheme)

    y = np.asarray(jax.jit(lambda p, x: model.apply(p, x, method=second_block))({"params": params}, x))
    np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var(-1), 1.0, rtol=1e-3)


def test_per_layer_positions_each_layer_reads_its_own():
    model = _model("rotary", "encoder")
    batch = _batch("encoder")
    params = model.init(jax.random.key(5), batch.tokens, batch.positions, batch.segment_ids)
    rng = np.random.default_rng(5)
    drawn = np.sort(rng.choice(200, size=batch.positions.shape, replace=True), axis=-1)
    other = np.sort(rng.choice(200, size=batch.positions.shape, replace=True), axis=-1)

    apply = jax.jit(model.apply)

    def logits(positions):
        return np.asarray(apply(params, batch.tokens, positions, batch.segment_ids))

    shared = logits(drawn)
    np.testing.assert_allclose(logits(np.stack([drawn, drawn], -1)), shared, rtol=1e-5, atol=1e-5)
    assert np.abs(logits(np.stack([drawn, other], -1)) - shared).max() > 1e-3
    # Rotary is relative: moving only the second layer's positions by a constant changes nothing.
    np.testing.assert_allclose(logits(np.stack([drawn, drawn + 7], -1)), shared, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("jit", [False, True])
def test_cached_decoding_step_of_the_reference_model_with_per_layer_positions(jit):
    config = dataclasses.replace(REFERENCE, width=16, num_heads=2)
    module = SCHEMES["randomized_rotary"].module(config, mode="decoder", max_positions=32)
    model = Transformer(module, config, tasks.VOCAB_SIZE, tasks.NUM_CLASSES, causal=True)
    task = tasks.get_task("reverse")
    rng = np.random.default_rng(6)
    ex = data.make_examples(task, rng, np.array([1, 4, 7, 3]), 7)
    positions = data.position_draws(rng, ex.lengths + ex.output_lengths, 14, 64, draws=2)
    batch = data.pack_examples(
        task, ex, mode="decoder", segments_per_row=1, row_length=14, example_positions=positions
    )
    assert batch.positions.shape == (4, 14, 2)
    params = model.init(jax.random.key(6), batch.tokens, batch.positions, batch.segment_ids)
    full = _apply(model, params, batch, jit)

    def decode(params, tokens, positions):
        def body(cache, t):
            logits, cache = model.apply(
                params, tokens[:, t], t, positions, cache, method=Transformer.decode_step
            )
            return cache, logits

        _, logits = jax.lax.scan(body, init_cache(config, 4, 14), jnp.arange(14))
        return logits.transpose(1, 0, 2)

    decode = jax.jit(decode) if jit else decode
    stepped = np.asarray(decode(params, jnp.asarray(batch.tokens), jnp.asarray(batch.positions)))
    valid = batch.segment_ids > 0
    np.testing.assert_allclose(stepped[valid], full[valid], rtol=2e-4, atol=2e-4)


def _sinusoid_table(positions, dim, base=10_000.0):
    """The reference's ``sinusoid_position_encoding``: sines then cosines, frequencies base^(-2i/dim)."""
    inverse = base ** (-np.arange(0, dim, 2) / dim)
    angles = np.outer(positions, inverse)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)


def _reference_noisy_relative(q, k, right, kernel, u, v, noise_max_length, negative_side=True):
    """A float64 numpy transcription of the reference's ``compute_attention_with_noisy_relative_encodings``
    (``randomize_both_sides=False``) for one example: ``q``, ``k`` `[T, H, d]`, ``right`` the sorted draw
    ``r_1 … r_{T-1}`` from ``[1, L)``, ``kernel`` W_R `[H·d, H, d]`. The sinusoid table spans ``[-L, L)``
    as its comments say (``negative_side``), or ``[0, L)`` as its code builds it, read with JAX's clamping
    of out-of-range indices. Returns the logits before the 1/√d scale, `[H, T, T]`."""
    t, h, d = q.shape
    content = np.einsum("thd,Thd->htT", q + u, k)
    left = np.concatenate([[0], -right[::-1]])  # the leftmost entry is a placeholder of the shift
    indexes = np.concatenate([left, [0], right]) + noise_max_length
    if negative_side:
        table = _sinusoid_table(np.arange(-noise_max_length, noise_max_length), h * d)
    else:
        table = _sinusoid_table(np.arange(noise_max_length), h * d)
    encodings = table[np.minimum(indexes, len(table) - 1)]  # [2T, H·d]
    relative_keys = (encodings @ kernel.reshape(h * d, h * d)).reshape(2 * t, h, d)
    relative = np.einsum("thd,Thd->htT", q + v, relative_keys)  # [H, T, 2T]
    # _rel_shift_inner, per head.
    shifted = np.stack([r.reshape(2 * t, t)[1:].reshape(t, 2 * t - 1)[:, :t] for r in relative])
    return content + shifted


def test_randomized_relative_is_the_references_noisy_relative_encoding():
    from experiments.ordering.relative_map import mapped_offsets, randomized_relative_logits

    rng = np.random.default_rng(7)
    heads, head_dim, big = 2, 4, 64
    lengths = (5, 3)
    q = rng.standard_normal((1, sum(lengths), heads, head_dim))
    k = rng.standard_normal((1, sum(lengths), heads, head_dim))
    kernel = rng.standard_normal((heads * head_dim, heads, head_dim)) / 3
    u, v = rng.standard_normal((2, heads, head_dim)) / 3
    draws = [np.sort(rng.choice(np.arange(1, big), size=n - 1, replace=False)) for n in lengths]
    positions = np.concatenate([np.concatenate([[0], r]) for r in draws])[None]  # two packed examples
    ours = np.asarray(
        randomized_relative_logits(
            *(jnp.asarray(a, jnp.float32) for a in (q, k)),
            jnp.asarray(positions),
            kernel=jnp.asarray(kernel, jnp.float32),
            u=jnp.asarray(u, jnp.float32),
            v=jnp.asarray(v, jnp.float32),
        )
    )[0]
    offsets = np.asarray(mapped_offsets(jnp.asarray(positions)))[0]
    start = 0
    for n, right in zip(lengths, draws, strict=True):
        block = slice(start, start + n)
        expected = _reference_noisy_relative(q[0, block], k[0, block], right, kernel, u, v, big)
        # The model adds q·k/√d itself (ordinary attention); the scheme returns the rest.
        logits = ours[:, block, block] + np.einsum("thd,Thd->htT", q[0, block], k[0, block]) / np.sqrt(head_dim)
        np.testing.assert_allclose(logits, expected / np.sqrt(head_dim), rtol=2e-4, atol=2e-4)
        r = np.concatenate([[0], right])
        i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        np.testing.assert_array_equal(offsets[block, block], np.sign(j - i) * r[np.abs(j - i)])
        start += n
    # A map of the offset j - i itself (the same on every diagonal), not a difference of random absolute
    # positions (positions[j] - positions[i] differs along a diagonal).
    assert offsets[0, 2] == offsets[1, 3] == offsets[2, 4] == positions[0, 2]
    assert positions[0, 3] - positions[0, 1] != positions[0, 2] - positions[0, 0]
    # The published code's table has no negative half: JAX clamps every offset ≥ 0 to its last row.
    published = _reference_noisy_relative(q[0, :5], k[0, :5], draws[0], kernel, u, v, big, negative_side=False)
    content = np.einsum("thd,Thd->htT", q[0, :5] + u, k[0, :5])
    upper = (published - content)[:, np.triu_indices(5)[0], np.triu_indices(5)[1]]
    encodings = _sinusoid_table(np.arange(big), heads * head_dim)[[big - 1]]
    keys = (encodings @ kernel.reshape(8, 8)).reshape(1, heads, head_dim)
    last_row = np.einsum("thd,hd->ht", q[0, :5] + v, keys[0])[:, np.triu_indices(5)[0]]
    np.testing.assert_allclose(upper, last_row, rtol=1e-9)
    assert (
        float(jnp.asarray(_sinusoid_table(np.arange(big), 8))[jnp.asarray([big, 2 * big - 1])].std(0).max())
        == 0.0
    )


@pytest.mark.parametrize("scheme", ["kerple", "fire", "cope", "xpos", "rotary_nope_every_2"])
def test_literature_schemes_isolate_segments_and_decode_like_the_full_forward(scheme):
    spec = SCHEMES[scheme]
    if scheme == "cope":  # the scheme that counts keys: packed segments must not count each other's
        _check_segments_isolated(spec)
    model = _model_for(spec)
    task = tasks.get_task("reverse")
    ex = data.make_examples(task, np.random.default_rng(2), np.array([1, 4, 7, 3]), 7)
    batch = data.pack_examples(task, ex, mode="decoder", segments_per_row=1, row_length=14)
    params = model.init(jax.random.key(2), batch.tokens, batch.positions, batch.segment_ids)
    full = _apply(model, params, batch, jit=True)

    @jax.jit
    def decode(params, tokens, positions):
        def body(cache, t):
            logits, cache = model.apply(
                params, tokens[:, t], t, positions, cache, method=Transformer.decode_step
            )
            return cache, logits

        _, logits = jax.lax.scan(body, init_cache(CONFIG, 4, 14), jnp.arange(14))
        return logits.transpose(1, 0, 2)

    stepped = np.asarray(decode(params, jnp.asarray(batch.tokens), jnp.asarray(batch.positions)))
    valid = batch.segment_ids > 0
    np.testing.assert_allclose(stepped[valid], full[valid], rtol=2e-4, atol=2e-4)


def _model_for(spec):
    module = spec.module(CONFIG, mode="decoder", max_positions=32)
    return Transformer(module, CONFIG, tasks.VOCAB_SIZE, tasks.NUM_CLASSES, causal=True)


def _check_segments_isolated(spec):
    encoder = Transformer(
        spec.module(CONFIG, mode="encoder", max_positions=32),
        CONFIG,
        tasks.VOCAB_SIZE,
        tasks.NUM_CLASSES,
        causal=False,
    )
    batch = _batch("encoder")
    params = encoder.init(jax.random.key(1), batch.tokens, batch.positions, batch.segment_ids)
    logits = _apply(encoder, params, batch, jit=True)
    second = batch.segment_ids == 2
    changed = batch._replace(tokens=np.where(second, (batch.tokens + 1) % 5, batch.tokens))
    first = batch.segment_ids == 1
    np.testing.assert_allclose(
        _apply(encoder, params, changed, jit=True)[first], logits[first], rtol=1e-5, atol=1e-5
    )
