"""A small pre-LayerNorm Transformer (Flax Linen) that takes its positional scheme as a module.

The model never knows which scheme it holds. It asks the scheme the protocol's questions:
``embed(x, positions)`` (what to add to the token embeddings), ``rotate(q, k, q_positions, k_positions)``
(how to transform queries and keys, in every layer), ``attention_bias(q_positions, k_positions)`` (what to
add to the attention logits, or ``None``) and ``attention_logits_bias(q, k, q_positions, k_positions)`` (a
term of the logits that depends on each layer's queries and keys, or ``None``; a scheme's parameters are
shared by all layers). Attention stays within a packed segment and, for the decoder, is causal.

Two entry points share the parameters: ``__call__`` runs a whole (packed) batch; ``decode_step`` runs one
token per row against a key/value cache, for greedy autoregressive decoding with fixed shapes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["ModelConfig", "Transformer", "attention_mask", "init_cache", "logit_bias"]

_MASKED = -1e30  # finite, so a row with every key masked (padding) stays finite


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Size of the Transformer.

    Attributes:
      num_layers: number of blocks.
      width: model width (``num_heads * head_dim``).
      num_heads: attention heads.
      mlp_ratio: hidden width of the MLP over ``width``.
      dropout: dropout rate on the embeddings and on each block's attention and MLP outputs, at training
        only (``deterministic=False``); 0 adds no operation at all.
    """

    num_layers: int = 2
    width: int = 64
    num_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("num_layers", "width", "num_heads", "mlp_ratio"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig({name}={value!r}): must be a positive integer")
        if not (isinstance(self.dropout, float | int) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"ModelConfig(dropout={self.dropout!r}): must be in [0, 1)")
        if self.width % self.num_heads or (self.width // self.num_heads) % 2:
            raise ValueError(
                f"ModelConfig(width={self.width}, num_heads={self.num_heads}): width must be a multiple "
                "of num_heads with an even head dimension"
            )

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads


def attention_mask(segment_ids: jax.Array, *, causal: bool) -> jax.Array:
    """Which keys each query may attend to.

    Args:
      segment_ids: `[batch, length]` int, 0 for padding.
      causal: also forbid keys after the query.

    Returns:
      `[batch, 1, length, length]` bool: same non-zero segment (and key index ≤ query index if causal).

    >>> attention_mask(jnp.array([[1, 1, 2, 0]]), causal=True)[0, 0].astype(int).tolist()
    [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    """
    same = (segment_ids[:, :, None] == segment_ids[:, None, :]) & (segment_ids[:, None, :] > 0)
    if causal:
        length = segment_ids.shape[-1]
        same = same & jnp.tril(jnp.ones((length, length), bool))
    return same[:, None]


def init_cache(config: ModelConfig, batch: int, length: int, dtype=jnp.float32) -> tuple:
    """An empty key/value cache: per layer keys `[batch, heads, length, head_dim]` and values
    `[batch, heads, head_dim, length]` (zeros)."""
    k_shape = (batch, config.num_heads, length, config.head_dim)
    v_shape = (batch, config.num_heads, config.head_dim, length)
    return tuple((jnp.zeros(k_shape, dtype), jnp.zeros(v_shape, dtype)) for _ in range(config.num_layers))


def _attend(q, k, v, logit_bias):
    """Softmax attention; ``logit_bias`` `[batch or 1, heads or 1, q_len, k_len]` holds the mask and bias.

    The softmax is normalised after the value product: one pass less over the `[batch, heads, q, k]`
    weights, which dominate the cost of small models on CPU.
    """
    logits = jnp.einsum("bqhd,bkhd->bhqk", q * (1.0 / jnp.sqrt(q.shape[-1])).astype(q.dtype), k)
    logits = logits + logit_bias
    unnormalised = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
    out = jnp.einsum("bhqk,bkhd->bqhd", unnormalised, v)
    return out / jnp.sum(unnormalised, axis=-1).transpose(0, 2, 1)[..., None]


def _attend_one(q, cache_k, cache_v, logit_bias):
    """`_attend` for one query per row (``q`` `[batch, 1, heads, head_dim]`) against the whole cache.

    The cache is laid out so that both products are plain batched matrix products over the leading
    `(batch, heads)` axes, contracting the minor axis (keys `[batch, heads, length, head_dim]`, values
    `[batch, heads, head_dim, length]`): no transpose of the cache at any decoding step.
    """
    scale = (1.0 / jnp.sqrt(q.shape[-1])).astype(q.dtype)
    q = q.transpose(0, 2, 1, 3) * scale  # [batch, heads, 1, head_dim]
    logits = jnp.einsum("bhqd,bhkd->bhqk", q, cache_k) + logit_bias  # [batch, heads, 1, length]
    unnormalised = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
    out = jnp.einsum("bhqk,bhdk->bhqd", unnormalised, cache_v)  # [batch, heads, 1, head_dim]
    out = out / jnp.sum(unnormalised, axis=-1, keepdims=True)
    return out.transpose(0, 2, 1, 3)


def logit_bias(mask: jax.Array, bias: jax.Array | None) -> jax.Array:
    """Folds the attention mask and the scheme's bias into one additive term, computed once per forward.

    Args:
      mask: `[batch, 1, q_len, k_len]` bool.
      bias: `[batch or 1, heads, q_len, k_len]` or ``None``.

    Returns:
      float32 ``bias`` (or 0) where ``mask``, else a large negative number (finite, so that a query with no
      allowed key stays finite).
    """
    return jnp.where(mask, 0.0 if bias is None else bias, _MASKED).astype(jnp.float32)


def _with_term(bias: jax.Array, term: jax.Array | None) -> jax.Array:
    """``bias`` (mask and static bias) plus a layer's content-dependent logits term, if any (float32)."""
    return bias if term is None else bias + term.astype(jnp.float32)


class Block(nn.Module):
    """Pre-LayerNorm attention + MLP block."""

    config: ModelConfig

    def setup(self):
        c = self.config
        self.attention_norm = nn.LayerNorm()
        self.qkv = nn.DenseGeneral((3, c.num_heads, c.head_dim))
        self.out = nn.DenseGeneral(c.width, axis=(-2, -1))
        self.mlp_norm = nn.LayerNorm()
        self.mlp_in = nn.Dense(c.mlp_ratio * c.width)
        self.mlp_out = nn.Dense(c.width)
        self.dropout = nn.Dropout(c.dropout)

    def _drop(self, x, deterministic):
        return x if deterministic or not self.config.dropout else self.dropout(x, deterministic=False)

    def _mlp(self, x, deterministic=True):
        return x + self._drop(self.mlp_out(nn.relu(self.mlp_in(self.mlp_norm(x)))), deterministic)

    def __call__(self, x, positions, bias, scheme, deterministic=True):
        qkv = self.qkv(self.attention_norm(x))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        q, k = scheme.rotate(q, k, positions, positions)
        bias = _with_term(bias, scheme.attention_logits_bias(q, k, positions, positions))
        x = x + self._drop(self.out(_attend(q, k, v, bias)), deterministic)
        return self._mlp(x, deterministic)

    def step(self, x, position, positions, index, cache, bias, scheme):
        """One token per row: ``x`` `[batch, 1, width]` at ``position``, written to the cache at ``index``;
        ``positions`` `[batch, length]` are those of the cache's slots."""
        qkv = self.qkv(self.attention_norm(x))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        q, k = scheme.rotate(q, k, position, position)
        k = k.transpose(0, 2, 1, 3).astype(cache[0].dtype)  # [batch, heads, 1, head_dim]
        v = v.transpose(0, 2, 3, 1).astype(cache[1].dtype)  # [batch, heads, head_dim, 1]
        cache_k = jax.lax.dynamic_update_slice_in_dim(cache[0], k, index, 2)
        cache_v = jax.lax.dynamic_update_slice_in_dim(cache[1], v, index, 3)
        # Slots after `index` hold zeros; the mask in `bias` hides them.
        term = scheme.attention_logits_bias(q, cache_k.transpose(0, 2, 1, 3), position, positions)
        y = self._mlp(x + self.out(_attend_one(q, cache_k, cache_v, _with_term(bias, term))))
        return y, (cache_k, cache_v)


class Transformer(nn.Module):
    """Token classifier over packed sequences.

    Attributes:
      scheme: a positional scheme module with ``embed``, ``rotate``, ``attention_bias`` and
        ``attention_logits_bias``.
      config: the `ModelConfig`.
      vocab_size: input vocabulary size.
      num_classes: output classes.
      causal: causal attention (decoder) or bidirectional (encoder).

    >>> from posenc_jax.linen import Sinusoidal
    >>> model = Transformer(Sinusoidal(16), ModelConfig(1, 16, 2, 2), 8, 5, causal=False)
    >>> tokens = jnp.zeros((1, 4), jnp.int32)
    >>> params = model.init(jax.random.key(0), tokens, jnp.arange(4)[None], jnp.ones((1, 4), jnp.int32))
    >>> model.apply(params, tokens, jnp.arange(4)[None], jnp.ones((1, 4), jnp.int32)).shape
    (1, 4, 5)
    """

    scheme: Any
    config: ModelConfig
    vocab_size: int
    num_classes: int
    causal: bool

    def setup(self):
        c = self.config
        # Unit-variance token embeddings, the scale of the sinusoidal code (entries of RMS 1/sqrt(2)).
        self.token_embedding = nn.Embed(
            self.vocab_size, c.width, embedding_init=nn.initializers.normal(stddev=1.0)
        )
        self.blocks = [Block(c) for _ in range(c.num_layers)]
        self.final_norm = nn.LayerNorm()
        self.head = nn.Dense(self.num_classes)
        self.dropout = nn.Dropout(c.dropout)

    def _drop(self, x, deterministic):
        return x if deterministic or not self.config.dropout else self.dropout(x, deterministic=False)

    def __call__(self, tokens, positions, segment_ids, deterministic=True):
        """Logits for every token.

        Args:
          tokens: `[batch, length]` int.
          positions: `[batch, length]` int positions given to the scheme.
          segment_ids: `[batch, length]` int, 0 for padding.
          deterministic: no dropout (evaluation); ``False`` needs a ``"dropout"`` rng when
            ``config.dropout > 0``.

        Returns:
          `[batch, length, num_classes]` float32 logits.
        """
        x = self._drop(self.scheme.embed(self.token_embedding(tokens), positions), deterministic)
        mask = attention_mask(segment_ids, causal=self.causal)
        bias = logit_bias(mask, self.scheme.attention_bias(positions, positions))
        for block in self.blocks:
            x = block(x, positions, bias, self.scheme, deterministic)
        return self.head(self.final_norm(x))

    def decode_step(self, token, index, positions, cache):
        """Runs the token at column ``index`` of every row against the cache (one example per row).

        Args:
          token: `[batch]` int token at column ``index``.
          index: scalar int column (the same for all rows).
          positions: `[batch, length]` int positions of the whole rows.
          cache: from `init_cache` or a previous step.

        Returns:
          ``(logits [batch, num_classes], cache)``.
        """
        position = jax.lax.dynamic_slice_in_dim(positions, index, 1, axis=1)
        x = self.scheme.embed(self.token_embedding(token[:, None]), position)
        length = positions.shape[1]
        mask = (jnp.arange(length) <= index)[None, None, None, :]
        bias = logit_bias(mask, self.scheme.attention_bias(position, positions))
        new_cache = []
        for block, layer_cache in zip(self.blocks, cache, strict=True):
            x, layer_cache = block.step(x, position, positions, index, layer_cache, bias, self.scheme)
            new_cache.append(layer_cache)
        return self.head(self.final_norm(x))[:, 0], tuple(new_cache)
