"""The NNX Transformer example trains with any scheme, and its cached greedy decoding equals full attention."""

import importlib.util
import pathlib
import sys

import jax.numpy as jnp
import numpy as np
import pytest

_PATH = pathlib.Path(__file__).parent.parent / "examples" / "nnx_transformer.py"
_SPEC = importlib.util.spec_from_file_location("nnx_transformer", _PATH)
example = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = example  # dataclasses look their module up
_SPEC.loader.exec_module(example)


@pytest.mark.parametrize(
    "scheme, num_layers",
    [
        ("rotary", 1),  # a relative scheme
        ("learned", 1),  # an absolute one
        # per layer: a local layer (window 2), a layer with no encoding, a global one with CoPE's positions
        ("rotary@2,none,cope", 3),
    ],
)
def test_example_trains_and_decodes_like_full_attention(scheme, num_layers):
    sizes = {"length": 3, "symbols": 4, "width": 16, "num_heads": 2, "num_layers": num_layers, "batch": 8}
    sizes["steps"] = 8
    argv = ["--scheme", scheme] + [
        item for key, value in sizes.items() for item in (f"--{key.replace('_', '-')}", str(value))
    ]
    result = example.main(argv)  # the command line, on tiny shapes
    config = result["model"].config
    assert config == example.Config(scheme=scheme, **sizes)
    losses = result["losses"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert 0.0 <= result["accuracy"] <= 1.0
    model, test, decoded, logits = result["model"], result["test"], result["decoded"], result["logits"]
    # Teacher-forced on the decoded tokens, one causal pass over the whole sequence gives the same logits.
    prompt = test[:, : config.length + 2]
    sequence = jnp.concatenate([jnp.asarray(prompt), decoded], axis=1)[:, :-1]
    full, _ = model(sequence, jnp.arange(sequence.shape[1]))
    full = np.asarray(full[:, prompt.shape[1] - 1 :])
    np.testing.assert_allclose(np.asarray(logits), full, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(decoded), np.argmax(full, -1))


def test_layer_patterns_are_configuration():
    config = example.Config(scheme="rotary@4,rotary@4,rotary_1m", num_layers=5, width=16, num_heads=2)
    assert example.layer_pattern(config) == [
        ("rotary", 4),
        ("rotary", 4),
        ("rotary_1m", None),
        ("rotary", 4),
        ("rotary", 4),
    ]
    model = example.Transformer(config, rngs=example.nnx.Rngs(0))
    assert model.schemes[0] is model.schemes[1] and model.schemes[2].base == 1_000_000.0
    assert model.windows == (4, 4, None, 4, 4)
    # The window restricts attention: the same model without it computes other logits.
    tokens = jnp.zeros((1, 9), jnp.int32).at[0, :5].set(jnp.arange(2, 7))
    windowed, _ = model(tokens, jnp.arange(9))
    model.windows = (None,) * 5
    global_only, _ = model(tokens, jnp.arange(9))
    assert np.allclose(windowed[:, :4], global_only[:, :4], atol=1e-5)  # within the window: the same
    assert not np.allclose(windowed[:, 4:], global_only[:, 4:], atol=1e-3)
    with pytest.raises(ValueError, match="a window must be a positive int"):
        example.layer_pattern(example.Config(scheme="rotary@0"))
    with pytest.raises(ValueError, match=r"make_scheme\(name='rope'\)"):
        example.Transformer(example.Config(scheme="rope"), rngs=example.nnx.Rngs(0))
