"""The experiment's attention (hand-written gradient) against a float64 numpy reference, and the training
step with it against the step with the previous attention (the throughput benchmark's baseline)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.bench.throughput import baseline_attention
from experiments.ordering.model import ModelConfig, Transformer, attend, attention_mask, logit_bias
from posenc_jax.linen import ALiBi, Sinusoidal


def _reference(q, k, v, bias, d_out):
    """Softmax attention and its gradient in float64, from the formulas (per batch row and head)."""
    q, k, v, bias, d_out = (np.asarray(a, np.float64) for a in (q, k, v, bias, d_out))
    bias = np.broadcast_to(bias, (q.shape[0], q.shape[2], q.shape[1], k.shape[1]))
    out, d_q, d_k, d_v, d_bias = (np.zeros_like(a) for a in (q, q, k, v, bias))
    for b in range(q.shape[0]):
        for h in range(q.shape[2]):
            scale = 1.0 / np.sqrt(q.shape[-1])
            logits = scale * q[b, :, h] @ k[b, :, h].T + bias[b, h]
            p = np.exp(logits - logits.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            out[b, :, h] = p @ v[b, :, h]
            g = d_out[b, :, h]
            d_v[b, :, h] = p.T @ g
            d_p = g @ v[b, :, h].T
            d_logits = p * (d_p - (d_p * p).sum(-1, keepdims=True))
            d_q[b, :, h] = scale * d_logits @ k[b, :, h]
            d_k[b, :, h] = scale * d_logits.T @ q[b, :, h]
            d_bias[b, h] = d_logits
    return out, d_q, d_k, d_v, d_bias


@pytest.mark.parametrize("bias_heads", [1, 3])
def test_attend_and_its_gradient_match_the_float64_reference(bias_heads):
    rng = np.random.default_rng(0)
    q, k, v, d_out = (rng.normal(size=(2, 5, 3, 4)).astype(np.float32) for _ in range(4))
    segments = jnp.asarray([[1, 1, 1, 2, 2], [1, 1, 1, 1, 0]])
    mask = attention_mask(segments, causal=True)
    bias = logit_bias(mask, jnp.asarray(rng.normal(size=(2, bias_heads, 5, 5)), jnp.float32))

    def loss(q, k, v, bias):
        return jnp.sum(attend(q, k, v, bias) * d_out)

    out = jax.jit(attend)(q, k, v, bias)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(q, k, v, bias)
    expected = _reference(q, k, v, bias, d_out)
    np.testing.assert_allclose(out, expected[0], atol=2e-6)
    for got, want in zip(grads[:3], expected[1:4], strict=True):
        np.testing.assert_allclose(got, want, atol=2e-5)
    # The bias's gradient is summed over the axes it was broadcast along (zero where masked).
    want_bias = expected[4].sum(1, keepdims=True) if bias_heads == 1 else expected[4]
    np.testing.assert_allclose(grads[3], want_bias, atol=2e-5)


@pytest.mark.parametrize(("scheme", "causal"), [(Sinusoidal(16), False), (ALiBi(2, is_causal=True), True)])
def test_training_step_gives_the_baseline_step_loss_and_gradient(scheme, causal):
    config = ModelConfig(num_layers=2, width=16, num_heads=2, mlp_ratio=2)
    rng = np.random.default_rng(1)
    tokens = jnp.asarray(rng.integers(0, 8, (4, 12)), jnp.int32)
    segments = jnp.asarray(np.repeat([[1] * 5 + [2] * 7], 4, 0), jnp.int32)
    positions = jnp.asarray(np.repeat([list(range(5)) + list(range(7))], 4, 0), jnp.int32)
    targets = jnp.asarray(rng.integers(0, 5, (4, 12)), jnp.int32)
    results = []
    for attention in (attend, baseline_attention):
        model = Transformer(scheme, config, 8, 5, causal=causal, attention=attention)
        params = model.init(jax.random.key(0), tokens, positions, segments)

        def loss(params, model=model):
            logits = model.apply(params, tokens, positions, segments)
            return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

        results.append(jax.jit(jax.value_and_grad(loss))(params))
    (loss_new, grads_new), (loss_old, grads_old) = results
    np.testing.assert_allclose(loss_new, loss_old, rtol=1e-6)
    for new, old in zip(jax.tree.leaves(grads_new), jax.tree.leaves(grads_old), strict=True):
        np.testing.assert_allclose(new, old, rtol=1e-4, atol=1e-6)
