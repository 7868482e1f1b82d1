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


@pytest.mark.parametrize("scheme", ["rotary", "learned"])  # a relative and an absolute scheme
def test_example_trains_and_decodes_like_full_attention(scheme):
    sizes = {"length": 3, "symbols": 4, "width": 16, "num_heads": 2, "num_layers": 1, "batch": 8, "steps": 8}
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
