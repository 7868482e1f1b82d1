"""Positional schemes as Flax NNX modules: each holds a value of :mod:`posenc_jax.schemes`, delegating to it."""

from posenc_jax._src.nnx import FIRE as FIRE
from posenc_jax._src.nnx import ALiBi as ALiBi
from posenc_jax._src.nnx import CoPE as CoPE
from posenc_jax._src.nnx import Kerple as Kerple
from posenc_jax._src.nnx import Learned as Learned
from posenc_jax._src.nnx import NoPosition as NoPosition
from posenc_jax._src.nnx import Rotary as Rotary
from posenc_jax._src.nnx import Sinusoidal as Sinusoidal
from posenc_jax._src.nnx import T5Bias as T5Bias
from posenc_jax._src.nnx import TransformerXLRelative as TransformerXLRelative
from posenc_jax._src.nnx import XPos as XPos

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
