"""Positional schemes as Flax Linen modules: the classes of :mod:`posenc_jax.nnx`, same names, same numbers."""

from posenc_jax._src.linen import FIRE as FIRE
from posenc_jax._src.linen import ALiBi as ALiBi
from posenc_jax._src.linen import CoPE as CoPE
from posenc_jax._src.linen import Kerple as Kerple
from posenc_jax._src.linen import Learned as Learned
from posenc_jax._src.linen import NoPosition as NoPosition
from posenc_jax._src.linen import Rotary as Rotary
from posenc_jax._src.linen import Sinusoidal as Sinusoidal
from posenc_jax._src.linen import T5Bias as T5Bias
from posenc_jax._src.linen import TransformerXLRelative as TransformerXLRelative
from posenc_jax._src.linen import XPos as XPos

__all__ = [
    "ALiBi",
    "Learned",
    "NoPosition",
    "Rotary",
    "Sinusoidal",
    "T5Bias",
    "TransformerXLRelative",
    "CoPE",
    "FIRE",
    "Kerple",
    "XPos",
]
