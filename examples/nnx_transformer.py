"""A small Flax NNX Transformer that takes any positional scheme: trains on reversal, then decodes with a cache.

The model never branches on the scheme: it calls ``scheme.embed`` on the token embeddings and hands the
scheme to :func:`posenc_jax.attention` (training, causal attention over whole sequences) and to
:meth:`posenc_jax.KVCache.attend` (greedy decoding, one token per step against a key/value cache at explicit
positions). The task: after ``BOS a_1 … a_n SEP`` output ``a_n … a_1``.

    python examples/nnx_transformer.py --scheme rotary --steps 300

prints the loss and the exact-match accuracy of greedy decoding on fresh sequences.

Each layer may have its own scheme and attention window. ``--scheme`` takes a comma-separated pattern,
repeated over the layers; ``name@W`` gives that layer a causal sliding window of ``W`` tokens. So the
production patterns are configurations:

    --scheme rotary,rotary,rotary,none --num-layers 4             # Llama 4: no encoding every 4th layer
    --scheme rotary@4,rotary@4,rotary@4,rotary@4,rotary@4,rotary_1m --num-layers 6
                                      # Gemma 3: five local layers (base 10k, window 4), one global (base 1M)

Layers with the same pattern entry share one scheme (and its parameters, if any). Absolute encodings
(sinusoidal, learned) are added once, to the token embeddings, by the first layer's scheme.
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import posenc_jax as pe
from posenc_jax import nnx as pn

BOS, SEP = 0, 1  # the other tokens are symbols


@dataclasses.dataclass(frozen=True)
class Config:
    """The example's sizes and training settings."""

    scheme: str = "rotary"
    length: int = 6  # symbols to reverse
    symbols: int = 8
    width: int = 64
    num_heads: int = 4
    num_layers: int = 2
    batch: int = 64
    steps: int = 300
    learning_rate: float = 3e-3
    seed: int = 0

    @property
    def sequence_length(self) -> int:
        return 2 * self.length + 2  # BOS, symbols, SEP, reversed symbols

    @property
    def vocab(self) -> int:
        return self.symbols + 2


def make_scheme(config: Config, rngs: nnx.Rngs, name: str | None = None) -> pe.PositionalScheme:
    """Any scheme of :mod:`posenc_jax.nnx`, by name; the model only sees the protocol."""
    head_dim = config.width // config.num_heads
    builders = {
        "none": lambda: pn.NoPosition(),
        "sinusoidal": lambda: pn.Sinusoidal(config.width),
        "learned": lambda: pn.Learned(config.sequence_length, config.width, rngs=rngs),
        "rotary": lambda: pn.Rotary(head_dim, layout="split"),
        "rotary_1m": lambda: pn.Rotary(head_dim, layout="split", base=1_000_000.0),
        "alibi": lambda: pn.ALiBi(config.num_heads),
        "kerple": lambda: pn.Kerple(config.num_heads, kernel="log", rngs=rngs),
        "fire": lambda: pn.FIRE(config.num_heads, rngs=rngs),
        "cope": lambda: pn.CoPE(config.sequence_length, head_dim, rngs=rngs),
        "xpos": lambda: pn.XPos(head_dim, layout="split"),
    }
    name = config.scheme if name is None else name
    if name not in builders:
        raise ValueError(f"make_scheme(name={name!r}): unknown scheme; choose from {sorted(builders)}")
    return builders[name]()


def layer_pattern(config: Config) -> list[tuple[str, int | None]]:
    """``(scheme name, sliding window or None)`` per layer: ``config.scheme``'s entries, repeated.

    >>> layer_pattern(Config(scheme="rotary@4,rotary_1m", num_layers=3))
    [('rotary', 4), ('rotary_1m', None), ('rotary', 4)]
    """
    entries = []
    for entry in config.scheme.split(","):
        name, _, window = entry.strip().partition("@")
        if window and not (window.isdigit() and int(window) > 0):
            raise ValueError(f"layer_pattern(scheme={config.scheme!r}): a window must be a positive int")
        entries.append((name, int(window) if window else None))
    return [entries[i % len(entries)] for i in range(config.num_layers)]


class Block(nnx.Module):
    """Pre-LayerNorm causal self-attention and MLP."""

    def __init__(self, width: int, num_heads: int, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.attention_norm = nnx.LayerNorm(width, rngs=rngs)
        self.qkv = nnx.Linear(width, 3 * width, rngs=rngs)
        self.out = nnx.Linear(width, width, rngs=rngs)
        self.mlp_norm = nnx.LayerNorm(width, rngs=rngs)
        self.mlp_in = nnx.Linear(width, 4 * width, rngs=rngs)
        self.mlp_out = nnx.Linear(4 * width, width, rngs=rngs)

    def __call__(self, x, positions, scheme, cache: pe.KVCache | None, window: int | None = None):
        batch, length, width = x.shape
        qkv = self.qkv(self.attention_norm(x)).reshape(batch, length, 3, self.num_heads, -1)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [batch, length, heads, head_dim]
        local = None if window is None else (window - 1, 0)  # the query and the window - 1 keys before it
        if cache is None:  # whole sequences
            y = pe.attention(
                q,
                k,
                v,
                scheme=scheme,
                q_positions=positions,
                k_positions=positions,
                is_causal=True,
                local_window_size=local,
            )
        else:  # new tokens against everything decoded so far
            cache = cache.append(k, v, positions)
            y = cache.attend(q, scheme=scheme, local_window_size=local)
        x = x + self.out(y.reshape(batch, length, width))
        return x + self.mlp_out(nnx.relu(self.mlp_in(self.mlp_norm(x)))), cache


class Transformer(nnx.Module):
    """Decoder-only Transformer over a positional scheme (any :class:`posenc_jax.PositionalScheme`)."""

    def __init__(self, config: Config, *, rngs: nnx.Rngs):
        self.config = config
        pattern = layer_pattern(config)
        # nnx.List from flax 0.12 on; before it, a plain list holds submodules.
        module_list = getattr(nnx, "List", list)
        shared = {name: make_scheme(config, rngs, name) for name in dict.fromkeys(name for name, _ in pattern)}
        self.schemes = module_list([shared[name] for name, _ in pattern])  # one per layer
        self.windows = tuple(window for _, window in pattern)
        self.token_embedding = nnx.Embed(config.vocab, config.width, rngs=rngs)
        self.blocks = module_list(
            [Block(config.width, config.num_heads, rngs=rngs) for _ in range(config.num_layers)]
        )
        self.final_norm = nnx.LayerNorm(config.width, rngs=rngs)
        self.head = nnx.Linear(config.width, config.vocab, rngs=rngs)

    def __call__(self, tokens, positions, caches: tuple[pe.KVCache, ...] | None = None):
        """Logits ``[batch, length, vocab]`` for ``tokens`` at ``positions`` (and the updated caches)."""
        x = self.schemes[0].embed(self.token_embedding(tokens), positions)
        updated = []
        for i, block in enumerate(self.blocks):
            cache = None if caches is None else caches[i]
            x, cache = block(x, positions, self.schemes[i], cache, self.windows[i])
            updated.append(cache)
        return self.head(self.final_norm(x)), None if caches is None else tuple(updated)

    def empty_caches(self, batch: int) -> tuple[pe.KVCache, ...]:
        c = self.config
        return tuple(
            pe.KVCache.init(
                batch=batch,
                capacity=c.sequence_length,
                num_kv_heads=c.num_heads,
                head_dim=c.width // c.num_heads,
            )
            for _ in range(c.num_layers)
        )


def sample(config: Config, rng: np.random.Generator, batch: int) -> np.ndarray:
    """``[batch, sequence_length]`` int32: ``BOS a_1 … a_n SEP a_n … a_1``."""
    symbols = rng.integers(2, config.vocab, size=(batch, config.length))
    column = np.full((batch, 1), 0)
    return np.concatenate([column + BOS, symbols, column + SEP, symbols[:, ::-1]], axis=1).astype(np.int32)


def loss_fn(model: Transformer, tokens: jax.Array) -> jax.Array:
    """Cross-entropy of the reversed half, predicted from the tokens before each."""
    positions = jnp.arange(tokens.shape[1] - 1)
    logits, _ = model(tokens[:, :-1], positions)
    targets = tokens[:, 1:]
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return jnp.mean(losses[:, model.config.length :])  # the predictions after SEP


@nnx.jit
def train_step(model: Transformer, optimizer: nnx.Optimizer, tokens: jax.Array) -> jax.Array:
    loss, grads = nnx.value_and_grad(loss_fn)(model, tokens)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def decode_step(model: Transformer, tokens, positions, caches):
    """Appends ``tokens`` ``[batch, new]`` at ``positions`` to the caches; logits of the last one."""
    logits, caches = model(tokens, positions, caches)
    return logits[:, -1], caches


def greedy_decode(model: Transformer, prompts: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Decodes ``length`` tokens after each prompt; returns them and the logits that chose them."""
    c = model.config
    prompt_length = prompts.shape[1]
    logits, caches = decode_step(
        model, prompts, jnp.arange(prompt_length), model.empty_caches(prompts.shape[0])
    )
    tokens, chosen = [], []
    for step in range(c.length):
        chosen.append(logits)
        tokens.append(jnp.argmax(logits, axis=-1).astype(jnp.int32))
        if step + 1 < c.length:
            position = jnp.array([prompt_length + step])
            logits, caches = decode_step(model, tokens[-1][:, None], position, caches)
    return jnp.stack(tokens, axis=1), jnp.stack(chosen, axis=1)


def run(config: Config, *, log=print) -> dict:
    """Trains ``config.steps`` steps, then decodes a fresh batch; returns the losses and the accuracy."""
    rng = np.random.default_rng(config.seed)
    model = Transformer(config, rngs=nnx.Rngs(config.seed))
    optimizer = nnx.Optimizer(model, optax.adam(config.learning_rate), wrt=nnx.Param)
    losses = []
    for step in range(config.steps):
        losses.append(float(train_step(model, optimizer, jnp.asarray(sample(config, rng, config.batch)))))
        if step % 50 == 0 or step == config.steps - 1:
            log(f"step {step:4d}  loss {losses[-1]:.4f}")
    test = sample(config, rng, config.batch)
    decoded, logits = greedy_decode(model, jnp.asarray(test[:, : config.length + 2]))
    accuracy = float(np.mean(np.all(np.asarray(decoded) == test[:, config.length + 2 :], axis=1)))
    log(f"{config.scheme}: exact-match accuracy of greedy decoding {accuracy:.3f}")
    return {
        "losses": losses,
        "accuracy": accuracy,
        "model": model,
        "test": test,
        "decoded": decoded,
        "logits": logits,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field in dataclasses.fields(Config):
        parser.add_argument(
            f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default
        )
    args = parser.parse_args(argv)
    return run(Config(**vars(args)))


if __name__ == "__main__":
    main()
