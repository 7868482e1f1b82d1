"""Why decoding with DynamicNTK differs from the full pass, by design.

Dynamic NTK scaling picks its frequencies from the current length ``L``: the unscaled ones while
``L <= L0`` (the original window), a larger base beyond (:class:`posenc_jax.rope.DynamicNTK`). The current
length is not the same thing in the two ways of running a causal model:

* **The full pass** over ``L`` tokens has one length, ``L`` (``max(positions) + 1``): every token, the first
  ones included, is rotated with the frequencies of length ``L``.
* **Decoding** one token at a time has, at step ``t``, the length ``t + 1``: the query and every cached key
  are rotated with the frequencies of length ``t + 1``. :class:`posenc_jax.KVCache` stores keys unrotated
  and rotates them in :meth:`~posenc_jax.KVCache.attend`, so step ``t`` is *exactly* the full pass over the
  first ``t + 1`` tokens (its last row).

So once the sequence is longer than ``L0``, the row ``t`` of a full pass over ``L > t + 1`` tokens uses
frequencies that decoding never saw at step ``t``: a token's output depends on how many tokens come after
it, which no causal decoder can know. That is the rule itself, not a numerical error: within the window
(``L <= L0``) both are the unscaled rotary and agree, and decoding always agrees with the full pass over its
prefix. (A cache of keys rotated once when appended, as in Hugging Face's implementation, mixes the
frequencies of every earlier length and equals neither.) To score a long text as it will be decoded, run
it token by token, or use a length-independent scaling (``pe.rope.YaRN``, ``pe.rope.Llama3``, ``pe.rope.NTK``)
with which decoding equals the full pass.

    python -m examples.recipes.dynamic_ntk_decoding
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import posenc_jax as pe
from posenc_jax import schemes

WINDOW = 3  # the original context window L0


def dynamic_rotary(head_dim: int) -> schemes.Rotary:
    return schemes.Rotary(
        head_dim, layout="split", scaling=pe.rope.DynamicNTK(2.0, original_max_position=WINDOW)
    )


def full_pass(q, k, v, scheme) -> np.ndarray:
    positions = jnp.arange(q.shape[1])
    return np.asarray(
        pe.attention(q, k, v, scheme=scheme, q_positions=positions, k_positions=positions, is_causal=True)
    )


def decode(q, k, v, scheme) -> np.ndarray:
    """One token at a time against a :class:`posenc_jax.KVCache`: ``[batch, length, heads, head_dim]``.

    One compiled step serves every position: the cache and the position are traced, so the step's
    DynamicNTK length (``max(positions) + 1``) is computed in the graph.
    """
    batch, length, kv_heads, head_dim = k.shape

    @jax.jit
    def step(cache, q_t, k_t, v_t, position):
        cache = cache.append(k_t, v_t, position[None])
        return cache, cache.attend(q_t, scheme=scheme)

    cache = pe.KVCache.init(batch=batch, capacity=length, num_kv_heads=kv_heads, head_dim=head_dim)
    outputs = []
    for t in range(length):
        cache, out = step(cache, q[:, t : t + 1], k[:, t : t + 1], v[:, t : t + 1], jnp.int32(t))
        outputs.append(np.asarray(out))
    return np.concatenate(outputs, axis=1)


def check(length: int = 7, seed: int = 0) -> dict[str, float]:
    """Largest differences: decoding vs the full pass (long and within the window), vs each prefix's pass."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((1, length, 2, 8)).astype(np.float32)
    k = rng.standard_normal((1, length, 2, 8)).astype(np.float32)
    v = rng.standard_normal((1, length, 2, 8)).astype(np.float32)
    scheme = dynamic_rotary(8)
    decoded = decode(q, k, v, scheme)
    full = full_pass(q, k, v, scheme)
    prefixes = np.concatenate(
        [full_pass(q[:, : t + 1], k[:, : t + 1], v[:, : t + 1], scheme)[:, t : t + 1] for t in range(length)],
        axis=1,
    )
    inside = slice(0, WINDOW)
    yarn = schemes.Rotary(8, layout="split", scaling=pe.rope.YaRN(2.0, original_max_position=WINDOW))
    return {
        f"decoding vs full pass over {length} tokens (L > L0 = {WINDOW})": float(
            np.max(np.abs(decoded - full))
        ),
        f"decoding vs full pass over {WINDOW} tokens (L <= L0)": float(
            np.max(np.abs(decoded[:, inside] - full_pass(q[:, inside], k[:, inside], v[:, inside], scheme)))
        ),
        "decoding vs the full pass over each prefix": float(np.max(np.abs(decoded - prefixes))),
        "decoding vs full pass, YaRN (length-independent)": float(
            np.max(np.abs(decode(q, k, v, yarn) - full_pass(q, k, v, yarn)))
        ),
    }


def main() -> dict[str, float]:
    """Prints the differences :func:`check` measures, and returns them."""
    results = check()
    for name, value in results.items():
        print(f"{name}: {value:.1e}")
    return results


if __name__ == "__main__":
    main()
