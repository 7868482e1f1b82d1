"""Positional schemes as frozen, checked values: one implementation each, shared by NNX, Linen and attention.

Every value implements :class:`PositionalScheme` (``embed``, ``rotate``, ``attention_bias``,
``attention_logits_bias``) and can be passed as it is to :func:`posenc_jax.attention` or held by a model.
:mod:`posenc_jax.nnx` and :mod:`posenc_jax.linen` wrap the same values.
"""

from posenc_jax._src.cope import CoPE as CoPE
from posenc_jax._src.fire import FIRE as FIRE
from posenc_jax._src.kerple import Kerple as Kerple
from posenc_jax._src.schemes import ALiBi as ALiBi
from posenc_jax._src.schemes import Learned as Learned
from posenc_jax._src.schemes import NoPosition as NoPosition
from posenc_jax._src.schemes import PositionalScheme as PositionalScheme
from posenc_jax._src.schemes import Rotary as Rotary
from posenc_jax._src.schemes import SchemeDefaults as SchemeDefaults
from posenc_jax._src.schemes import Sinusoidal as Sinusoidal
from posenc_jax._src.schemes import T5Bias as T5Bias
from posenc_jax._src.schemes import TransformerXLRelative as TransformerXLRelative
from posenc_jax._src.xpos import XPos as XPos

__all__ = [
    "ALiBi",
    "Learned",
    "NoPosition",
    "PositionalScheme",
    "Rotary",
    "SchemeDefaults",
    "Sinusoidal",
    "T5Bias",
    "TransformerXLRelative",
    "CoPE",
    "FIRE",
    "Kerple",
    "XPos",
]
