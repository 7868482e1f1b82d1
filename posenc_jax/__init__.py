"""posenc_jax: positional encodings for JAX and Flax.

The sinusoidal encoding of "Attention is all you need", for pair index ``i = 0 … dim/2 - 1``::

    PE(pos, 2i)     = sin(pos * w_i),    w_i = base ** (-2i / dim)
    PE(pos, 2i + 1) = cos(pos * w_i)

computed accurately (float32 within 1e-6 of float64 at any int32 position), plus learned, rotary, ALiBi,
T5 and Transformer-XL relative attention, and randomized positions, as pure functions, frozen scheme values
(:mod:`posenc_jax.schemes`) and Flax (NNX and Linen) modules over one protocol (:class:`PositionalScheme`);
:func:`attention` and :class:`KVCache` apply any scheme in attention and incremental decoding.
"""

__version__ = "0.9.0"

from posenc_jax import rope as rope
from posenc_jax import schemes as schemes
from posenc_jax._src.alibi import alibi_bias as alibi_bias
from posenc_jax._src.alibi import alibi_slopes as alibi_slopes
from posenc_jax._src.attention import KVCache as KVCache
from posenc_jax._src.attention import attention as attention
from posenc_jax._src.cope import cope_logits as cope_logits
from posenc_jax._src.fire import fire_bias as fire_bias
from posenc_jax._src.frequencies import paper_frequencies as paper_frequencies
from posenc_jax._src.frequencies import tensor2tensor_frequencies as tensor2tensor_frequencies
from posenc_jax._src.grids import grid_positions as grid_positions
from posenc_jax._src.kerple import kerple_bias as kerple_bias
from posenc_jax._src.layouts import interleaved_to_split as interleaved_to_split
from posenc_jax._src.layouts import split_to_interleaved as split_to_interleaved
from posenc_jax._src.learned import learned_lookup as learned_lookup
from posenc_jax._src.randomized import randomized_positions as randomized_positions
from posenc_jax._src.relative import t5_bias as t5_bias
from posenc_jax._src.relative import t5_buckets as t5_buckets
from posenc_jax._src.relative import transformer_xl_logits as transformer_xl_logits
from posenc_jax._src.rotary import apply_rotary as apply_rotary
from posenc_jax._src.rotary import rotary_interleaved_to_split as rotary_interleaved_to_split
from posenc_jax._src.rotary import rotary_split_to_interleaved as rotary_split_to_interleaved
from posenc_jax._src.scaling import rope_attention_factor as rope_attention_factor
from posenc_jax._src.scaling import rope_frequencies as rope_frequencies
from posenc_jax._src.schemes import PositionalScheme as PositionalScheme
from posenc_jax._src.segments import positions_from_segment_ids as positions_from_segment_ids
from posenc_jax._src.sinusoidal import sinusoidal as sinusoidal
from posenc_jax._src.sinusoidal import sinusoidal_table as sinusoidal_table
from posenc_jax._src.xpos import xpos_rotate as xpos_rotate

__all__ = [
    "__version__",
    "KVCache",
    "PositionalScheme",
    "alibi_bias",
    "alibi_slopes",
    "apply_rotary",
    "attention",
    "grid_positions",
    "interleaved_to_split",
    "learned_lookup",
    "paper_frequencies",
    "positions_from_segment_ids",
    "randomized_positions",
    "rope_attention_factor",
    "rope_frequencies",
    "rotary_interleaved_to_split",
    "rotary_split_to_interleaved",
    "sinusoidal",
    "sinusoidal_table",
    "split_to_interleaved",
    "t5_bias",
    "t5_buckets",
    "tensor2tensor_frequencies",
    "transformer_xl_logits",
    "cope_logits",
    "fire_bias",
    "kerple_bias",
    "xpos_rotate",
]
