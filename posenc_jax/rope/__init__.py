"""RoPE scalings for long context: frequency rules passed as ``scaling=`` to the rotary function and schemes.

A scaling maps the geometric rotary frequencies ``w_i = base ** (-2i / d)`` (``d`` = rotary_dim) to new ones,
and some also define an attention factor (:func:`posenc_jax.rope_attention_factor`), by which the rotated
queries and keys are each multiplied. :func:`posenc_jax.rope_frequencies` returns the scaled frequencies.

* :class:`Linear`: position interpolation (Chen et al. 2023), ``w_i / factor``.
* :class:`NTK`: NTK-aware base scaling; :class:`DynamicNTK`: the same with a factor that grows with length.
* :class:`YaRN`: Peng et al. 2023; :class:`Llama3`: the Llama 3.1 rule; :class:`LongRoPE`: per-pair factors.

The length-dependent scalings (``DynamicNTK``, ``LongRoPE``) also accept a traced length (one compilation for
every length); DynamicNTK's frequencies are then computed in the graph in double-float32 arithmetic (relative
error about ``1e-13``): sin/cos within ``2e-7`` of float64 for positions below ``2**24`` and within ``1e-5`` at
any int32 position, where the static path stays within ``1e-6``.

>>> import posenc_jax as pe
>>> scaling = pe.rope.YaRN(4.0, original_max_position=2048)
>>> scheme = pe.schemes.Rotary(8, layout="split", scaling=scaling)
"""

from posenc_jax._src.scaling import NTK as NTK
from posenc_jax._src.scaling import DynamicNTK as DynamicNTK
from posenc_jax._src.scaling import Linear as Linear
from posenc_jax._src.scaling import Llama3 as Llama3
from posenc_jax._src.scaling import LongRoPE as LongRoPE
from posenc_jax._src.scaling import Scaling as Scaling
from posenc_jax._src.scaling import YaRN as YaRN

__all__ = ["NTK", "DynamicNTK", "Linear", "Llama3", "LongRoPE", "Scaling", "YaRN"]
