"""RoPE frequency scalings (context extension), passed as ``scaling=`` to the rotary functions and schemes.

>>> import posenc_jax as pe
>>> scheme = pe.schemes.Rotary(8, layout="split", scaling=pe.rope.YaRN(4.0, original_max_position=2048))
"""

from posenc_jax._src.scaling import NTK as NTK
from posenc_jax._src.scaling import DynamicNTK as DynamicNTK
from posenc_jax._src.scaling import Linear as Linear
from posenc_jax._src.scaling import Llama3 as Llama3
from posenc_jax._src.scaling import LongRoPE as LongRoPE
from posenc_jax._src.scaling import Scaling as Scaling
from posenc_jax._src.scaling import YaRN as YaRN

__all__ = ["NTK", "DynamicNTK", "Linear", "Llama3", "LongRoPE", "Scaling", "YaRN"]
