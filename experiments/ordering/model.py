"""A small Transformer (Flax Linen, pre- or post-LayerNorm) that takes its positional scheme as a module.

The model never knows which scheme it holds (nor whether its layers hold different ones: ``scheme`` may be a
tuple of modules, one per layer or a pattern repeated over the layers, with optional per-layer sliding
windows, so "no positional encoding in every 4th layer" or "local windowed layers and global layers" are
configurations). It asks the scheme the protocol's questions:
``embed(x, positions)`` (what to add to the token embeddings), ``rotate(q, k, q_positions, k_positions)``
(how to transform queries and keys, in every layer), ``attention_bias(q_positions, k_positions)`` (what to
add to the attention logits, or ``None``) and ``attention_logits_bias(q, k, q_positions, k_positions)`` (a
term of the logits that depends on each layer's queries and keys, or ``None``; a scheme's parameters are
shared by all layers). Attention stays within a packed segment and, for the decoder, is causal.

Positions are `[batch, length]` (one set serves the embedding and every layer) or `[batch, length, layers]`
(layer ``l`` reads ``positions[..., l]``, the embedding and the static bias the first; randomized positions
drawn per layer, as the reference code draws them).

Two entry points share the parameters: ``__call__`` runs a whole (packed) batch; ``decode_step`` runs one
token per row against a key/value cache, for greedy autoregressive decoding with fixed shapes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["ModelConfig", "Transformer", "attend", "attention_mask", "init_cache", "logit_bias"]

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
      norm: ``"pre"`` (LayerNorm before attention and MLP, a final LayerNorm before the head) or ``"post"``
        (the reference code's: LayerNorm after each residual sum, none before the head).
      attention_bias: whether the query, key, value and output projections have biases (the reference's
        have none).
      init: ``"unit_normal"`` (token embeddings N(0, 1), Flax's default dense initialisation) or
        ``"reference"`` (the reference code's Haiku defaults: token embeddings TruncatedNormal(0.02) multiplied
        by √width at every call, dense kernels truncated normal of standard deviation 1/√fan_in before
        truncation).
      layer_norm_epsilon: the LayerNorms' epsilon (Flax's default 1e-6; Haiku's, the reference's, 1e-5).
      embedding_dropout: ``"always"`` or ``"when_added"`` (the reference's: only where the scheme adds a vector
        to the embeddings; the experiment sets `Transformer.drop_embeddings` from it).
    """

    num_layers: int = 2
    width: int = 64
    num_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0
    norm: str = "pre"
    attention_bias: bool = True
    init: str = "unit_normal"
    layer_norm_epsilon: float = 1e-6
    embedding_dropout: str = "always"

    def __post_init__(self):
        for name in ("num_layers", "width", "num_heads", "mlp_ratio"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig({name}={value!r}): must be a positive integer")
        if not (isinstance(self.dropout, float | int) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"ModelConfig(dropout={self.dropout!r}): must be in [0, 1)")
        for name, allowed in (
            ("norm", ("pre", "post")),
            ("init", ("unit_normal", "reference")),
            ("embedding_dropout", ("always", "when_added")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ModelConfig({name}={getattr(self, name)!r}): must be one of {allowed}")
        if not isinstance(self.attention_bias, bool):
            raise ValueError(f"ModelConfig(attention_bias={self.attention_bias!r}): must be True or False")
        if not (isinstance(self.layer_norm_epsilon, float) and 0.0 < self.layer_norm_epsilon < 1.0):
            raise ValueError(
                f"ModelConfig(layer_norm_epsilon={self.layer_norm_epsilon!r}): must be a float in (0, 1)"
            )
        if self.width % self.num_heads or (self.width // self.num_heads) % 2:
            raise ValueError(
                f"ModelConfig(width={self.width}, num_heads={self.num_heads}): width must be a multiple "
                "of num_heads with an even head dimension"
            )

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    def dense_init(self) -> Callable:
        """Kernel initializer of the dense layers (`init`)."""
        return HAIKU_DENSE_INIT if self.init == "reference" else nn.linear.default_kernel_init


#: Haiku's ``hk.Linear`` default: truncated normal (±2 standard deviations) of standard deviation
#: ``1/√fan_in`` before truncation. Flax's variance scaling divides by 0.8796 (the truncated unit normal's
#: standard deviation), so a scale of 0.8796² gives the same distribution.
HAIKU_DENSE_INIT = nn.initializers.variance_scaling(0.87962566103423978**2, "fan_in", "truncated_normal")


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


def attend(q: jax.Array, k: jax.Array, v: jax.Array, logit_bias: jax.Array) -> jax.Array:
    """Softmax attention of every query over every key.

    Args:
      q, k, v: `[batch, length, heads, head_dim]`.
      logit_bias: `[batch or 1, heads or 1, q_len, k_len]` float32, the mask and the scheme's bias.

    Returns:
      `[batch, q_len, heads, head_dim]`.

    The heads are moved next to the batch once, so that both products are plain batched matrix products,
    and the gradient is written by hand (`_softmax_attention`): the products of the backward pass read their
    operands in the layout the CPU kernels want, and nothing but the softmax weights is kept from the
    forward pass.
    """
    scale = (1.0 / jnp.sqrt(q.shape[-1])).astype(q.dtype)
    out = _softmax_attention(*(a.transpose(0, 2, 1, 3) for a in (q * scale, k, v)), logit_bias)
    return out.transpose(0, 2, 1, 3)


@jax.custom_vjp
def _softmax_attention(q, k, v, logit_bias):
    """``softmax(q kᵀ + logit_bias) v`` over `[batch, heads, length, head_dim]` operands."""
    return _softmax_attention_forward(q, k, v, logit_bias)[0]


def _softmax_attention_forward(q, k, v, logit_bias):
    logits = jnp.einsum("bhqd,bhkd->bhqk", q, k) + logit_bias
    unnormalised = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
    weights = unnormalised / jnp.sum(unnormalised, axis=-1, keepdims=True)
    return jnp.einsum("bhqk,bhkd->bhqd", weights, v), (q, k, v, logit_bias, weights)


def _softmax_attention_backward(residuals, d_out):
    # With P the softmax weights and S the logits: dV = Pᵀ dO, dP = dO Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)),
    # dQ = dS K, dK = dSᵀ Q. The transposed products are computed as (Qᵀ dS)ᵀ and (dOᵀ P)ᵀ: small
    # transposes of `[…, length, head_dim]` operands instead of a transposed read of `[…, length, length]`.
    q, k, v, logit_bias, weights = residuals
    d_weights = jnp.einsum("bhqd,bhkd->bhqk", d_out, v)
    d_logits = weights * (d_weights - jnp.sum(d_weights * weights, axis=-1, keepdims=True))
    d_q = jnp.einsum("bhqk,bhkd->bhqd", d_logits, k)
    d_k = jnp.einsum("bhdq,bhqk->bhdk", q.swapaxes(-1, -2), d_logits).swapaxes(-1, -2)
    d_v = jnp.einsum("bhdq,bhqk->bhdk", d_out.swapaxes(-1, -2), weights).swapaxes(-1, -2)
    # The bias's gradient sums over the axes it was broadcast along; when the bias is a constant of the data
    # (the mask, ALiBi's fixed slopes) nothing reads it and the compiler removes it.
    broadcast = tuple(i for i in range(4) if logit_bias.shape[i] == 1 and d_logits.shape[i] != 1)
    d_bias = jnp.sum(d_logits, axis=broadcast, keepdims=True).astype(logit_bias.dtype)
    return d_q, d_k, d_v, d_bias


_softmax_attention.defvjp(_softmax_attention_forward, _softmax_attention_backward)


def _attend_one(q, cache_k, cache_v, logit_bias):
    """`attend` for one query per row (``q`` `[batch, 1, heads, head_dim]`) against the whole cache.

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


def _logits_term(scheme, q, k, q_positions, k_positions, mask):
    """The scheme's content-dependent logits term; schemes that count the visible keys (CoPE's
    ``needs_mask``) also get the mask (`[batch or 1, 1, q_len, k_len]` bool)."""
    if getattr(scheme, "needs_mask", False):
        return scheme.attention_logits_bias(q, k, q_positions, k_positions, mask=mask)
    return scheme.attention_logits_bias(q, k, q_positions, k_positions)


def _with_term(bias: jax.Array, term: jax.Array | None) -> jax.Array:
    """``bias`` (mask and static bias) plus a layer's content-dependent logits term, if any (float32)."""
    return bias if term is None else bias + term.astype(jnp.float32)


class Block(nn.Module):
    """Attention + MLP block, pre- or post-LayerNorm (``config.norm``; ``attention``: see `Transformer`)."""

    config: ModelConfig
    attention: Callable = attend

    def setup(self):
        c = self.config
        dense = {"kernel_init": c.dense_init()}
        self.attention_norm = nn.LayerNorm(epsilon=c.layer_norm_epsilon)
        self.qkv = nn.DenseGeneral((3, c.num_heads, c.head_dim), use_bias=c.attention_bias, **dense)
        self.out = nn.DenseGeneral(c.width, axis=(-2, -1), use_bias=c.attention_bias, **dense)
        self.mlp_norm = nn.LayerNorm(epsilon=c.layer_norm_epsilon)
        self.mlp_in = nn.Dense(c.mlp_ratio * c.width, **dense)
        self.mlp_out = nn.Dense(c.width, **dense)
        self.dropout = nn.Dropout(c.dropout)

    def _drop(self, x, deterministic):
        return x if deterministic or not self.config.dropout else self.dropout(x, deterministic=False)

    def _pre(self, norm, x):
        return norm(x) if self.config.norm == "pre" else x

    def _residual(self, norm, x, y):
        return x + y if self.config.norm == "pre" else norm(x + y)

    def _mlp(self, x, deterministic=True):
        y = self._drop(self.mlp_out(nn.relu(self.mlp_in(self._pre(self.mlp_norm, x)))), deterministic)
        return self._residual(self.mlp_norm, x, y)

    def __call__(self, x, positions, bias, scheme, deterministic=True, mask=None):
        qkv = self.qkv(self._pre(self.attention_norm, x))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        q, k = scheme.rotate(q, k, positions, positions)
        bias = _with_term(bias, _logits_term(scheme, q, k, positions, positions, mask))
        x = self._residual(
            self.attention_norm, x, self._drop(self.out(self.attention(q, k, v, bias)), deterministic)
        )
        return self._mlp(x, deterministic)

    def step(self, x, position, positions, index, cache, bias, scheme, mask=None):
        """One token per row: ``x`` `[batch, 1, width]` at ``position``, written to the cache at ``index``;
        ``positions`` `[batch, length]` are those of the cache's slots."""
        qkv = self.qkv(self._pre(self.attention_norm, x))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        q, k = scheme.rotate(q, k, position, position)
        k = k.transpose(0, 2, 1, 3).astype(cache[0].dtype)  # [batch, heads, 1, head_dim]
        v = v.transpose(0, 2, 3, 1).astype(cache[1].dtype)  # [batch, heads, head_dim, 1]
        cache_k = jax.lax.dynamic_update_slice_in_dim(cache[0], k, index, 2)
        cache_v = jax.lax.dynamic_update_slice_in_dim(cache[1], v, index, 3)
        # Slots after `index` hold zeros; the mask in `bias` hides them.
        term = _logits_term(scheme, q, cache_k.transpose(0, 2, 1, 3), position, positions, mask)
        y = self._mlp(
            self._residual(
                self.attention_norm, x, self.out(_attend_one(q, cache_k, cache_v, _with_term(bias, term)))
            )
        )
        return y, (cache_k, cache_v)


class Transformer(nn.Module):
    """Token classifier over packed sequences.

    Attributes:
      scheme: a positional scheme module with ``embed``, ``rotate``, ``attention_bias`` and
        ``attention_logits_bias``; or a tuple of them, repeated over the layers (layer ``i`` has
        ``scheme[i % len(scheme)]``; repeated entries share their parameters). The first layer's scheme adds
        the absolute encoding (if any) to the token embeddings.
      config: the `ModelConfig`.
      vocab_size: input vocabulary size.
      num_classes: output classes.
      causal: causal attention (decoder) or bidirectional (encoder).
      attention: the attention function of the whole-batch pass, ``(q, k, v, logit_bias) -> out`` (see
        `attend`); benchmarks swap in other implementations of the same function.
      windows: ``None`` (every layer global) or a sliding window per layer, repeated as ``scheme``: ``w``
        lets query ``i`` see the keys of index ``i - w < j`` (and ``j < i + w`` in an encoder), ``None``
        every key; within the segment and causal mask as always.
      drop_embeddings: apply dropout to the embeddings (the reference code does so only where the scheme
        adds a vector to them; the caller, who knows the scheme, decides).

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
    attention: Callable = attend
    windows: tuple[int | None, ...] | None = None
    drop_embeddings: bool = True

    def setup(self):
        c = self.config
        if c.init == "reference":
            # TruncatedNormal(0.02), multiplied by sqrt(width) at every call (`_embed_tokens`).
            embedding_init = nn.initializers.truncated_normal(stddev=0.02)
        else:
            # Unit-variance token embeddings, the scale of the sinusoidal code (entries of RMS 1/sqrt(2)).
            embedding_init = nn.initializers.normal(stddev=1.0)
        self.token_embedding = nn.Embed(self.vocab_size, c.width, embedding_init=embedding_init)
        self.blocks = [Block(c, self.attention) for _ in range(c.num_layers)]
        if c.norm == "pre":
            self.final_norm = nn.LayerNorm(epsilon=c.layer_norm_epsilon)
        self.head = nn.Dense(self.num_classes, kernel_init=c.dense_init())
        self.dropout = nn.Dropout(c.dropout)

    def _drop(self, x, deterministic):
        return x if deterministic or not self.config.dropout else self.dropout(x, deterministic=False)

    def _embed_tokens(self, tokens):
        x = self.token_embedding(tokens)
        return x * jnp.sqrt(jnp.float32(self.config.width)) if self.config.init == "reference" else x

    def _logits(self, x):
        return self.head(self.final_norm(x) if self.config.norm == "pre" else x)

    def _layers(self) -> list[tuple[Any, int | None]]:
        """``(scheme, window)`` of every layer."""
        schemes = self.scheme if isinstance(self.scheme, tuple | list) else (self.scheme,)
        windows = (None,) if self.windows is None else tuple(self.windows)
        n = self.config.num_layers
        return [(schemes[i % len(schemes)], windows[i % len(windows)]) for i in range(n)]

    def _window_mask(self, window: int | None, query_index, key_index):
        """Keys within ``window`` of each query (by index), ``[q_len, k_len]`` bool, or None for all."""
        if window is None:
            return None
        near = key_index[None, :] > query_index[:, None] - window
        if not self.causal:
            near = near & (key_index[None, :] < query_index[:, None] + window)
        return near

    def __call__(self, tokens, positions, segment_ids, deterministic=True):
        """Logits for every token.

        Args:
          tokens: `[batch, length]` int.
          positions: `[batch, length]` int positions given to the scheme, or `[batch, length, layers]` (a set
            per layer; the embedding and the static bias read the first).
          segment_ids: `[batch, length]` int, 0 for padding.
          deterministic: no dropout (evaluation); ``False`` needs a ``"dropout"`` rng when
            ``config.dropout > 0``.

        Returns:
          `[batch, length, num_classes]` float32 logits.
        """
        layers = self._layers()
        x = layers[0][0].embed(self._embed_tokens(tokens), _layer(positions, 0))
        x = self._drop(x, deterministic or not self.drop_embeddings)
        mask = attention_mask(segment_ids, causal=self.causal)
        index = jnp.arange(tokens.shape[1])
        per_layer = positions.ndim == 3
        biases: dict[tuple, jax.Array] = {}  # one per distinct (scheme, window, positions)
        for i, (block, (scheme, window)) in enumerate(zip(self.blocks, layers, strict=True)):
            layer_positions = _layer(positions, i)
            key = (id(scheme), window, i if per_layer else None)
            near = self._window_mask(window, index, index)
            layer_mask = mask if near is None else mask & near[None, None]
            if key not in biases:
                biases[key] = logit_bias(layer_mask, scheme.attention_bias(layer_positions, layer_positions))
            x = block(x, layer_positions, biases[key], scheme, deterministic, layer_mask)
        return self._logits(x)

    def decode_step(self, token, index, positions, cache):
        """Runs the token at column ``index`` of every row against the cache (one example per row).

        Args:
          token: `[batch]` int token at column ``index``.
          index: scalar int column (the same for all rows).
          positions: `[batch, length]` (or `[batch, length, layers]`) int positions of the whole rows.
          cache: from `init_cache` or a previous step.

        Returns:
          ``(logits [batch, num_classes], cache)``.
        """
        position = jax.lax.dynamic_slice_in_dim(positions, index, 1, axis=1)
        layers = self._layers()
        x = layers[0][0].embed(self._embed_tokens(token[:, None]), _layer(position, 0))
        keys = jnp.arange(positions.shape[1])
        mask = keys <= index
        new_cache = []
        per_layer = positions.ndim == 3
        biases: dict[tuple, jax.Array] = {}  # one per distinct (scheme, window, positions)
        for i, (block, layer_cache, (scheme, window)) in enumerate(
            zip(self.blocks, cache, layers, strict=True)
        ):
            layer_position, layer_positions = _layer(position, i), _layer(positions, i)
            key = (id(scheme), window, i if per_layer else None)
            near = self._window_mask(window, jnp.reshape(index, (1,)), keys)
            layer_mask = (mask if near is None else mask & near[0])[None, None, None, :]
            if key not in biases:
                biases[key] = logit_bias(layer_mask, scheme.attention_bias(layer_position, layer_positions))
            x, layer_cache = block.step(
                x, layer_position, layer_positions, index, layer_cache, biases[key], scheme, layer_mask
            )
            new_cache.append(layer_cache)
        return self._logits(x)[:, 0], tuple(new_cache)


def _layer(positions: jax.Array, index: int) -> jax.Array:
    """Layer ``index``'s positions: all of `[batch, length]` ones, or slice ``index`` of per-layer ones."""
    return positions if positions.ndim == 2 else positions[..., index]
