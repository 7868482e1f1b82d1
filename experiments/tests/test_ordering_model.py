"""The experiment's Transformer: masks, packing isolation, the cached decoding step, every scheme."""

from __future__ import annotations

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
    ["none", "sinusoidal", "learned", "rotary", "alibi", "randomized_rotary", "t5", "randomized_relative"],
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
