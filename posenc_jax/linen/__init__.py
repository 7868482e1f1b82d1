"""Positional schemes as Flax Linen modules: the classes of :mod:`posenc_jax.nnx`, same names, same numbers."""

try:
    import flax  # noqa: F401  (the one dependency of the modules beyond jax and numpy)
except ImportError as error:  # pragma: no cover - exercised by tests/test_install.py in a subprocess
    raise ImportError(
        "posenc_jax.linen needs flax, which the base install leaves out: pip install 'posenc_jax[flax]' "
        "(the functions, posenc_jax.schemes, attention and KVCache work without it)"
    ) from error


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
