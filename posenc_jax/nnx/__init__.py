"""Positional schemes as Flax NNX modules: each holds a value of :mod:`posenc_jax.schemes`, delegating to it."""

try:
    import flax  # noqa: F401  (the one dependency of the modules beyond jax and numpy)
except ImportError as error:  # pragma: no cover - exercised by tests/test_install.py in a subprocess
    raise ImportError(
        "posenc_jax.nnx needs flax, which the base install leaves out: pip install 'posenc_jax[flax]' "
        "(the functions, posenc_jax.schemes, attention and KVCache work without it)"
    ) from error


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
