"""Every bad input of the core gets a clear error naming the argument, the value and what is allowed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posenc_jax import paper_frequencies, sinusoidal, sinusoidal_table, tensor2tensor_frequencies

# (description, call, exception type, regex the message must match)
BAD_INPUTS = [
    ("odd dim", lambda: sinusoidal(jnp.arange(4), 7), ValueError, r"sinusoidal\(dim=7\): dim must be even"),
    ("zero dim", lambda: sinusoidal(jnp.arange(4), 0), ValueError, r"dim=0.*positive"),
    ("negative dim", lambda: sinusoidal(jnp.arange(4), -4), ValueError, r"dim=-4.*positive"),
    ("float dim", lambda: sinusoidal(jnp.arange(4), 8.0), TypeError, r"dim=8.0.*Python int"),
    ("bool dim", lambda: sinusoidal(jnp.arange(4), True), TypeError, r"dim=True"),
    ("base 1", lambda: sinusoidal(jnp.arange(4), 8, base=1.0), ValueError, r"base=1.0.*finite real number > 1"),
    ("base inf", lambda: sinusoidal(jnp.arange(4), 8, base=float("inf")), ValueError, r"base=inf"),
    ("base nan", lambda: sinusoidal(jnp.arange(4), 8, base=float("nan")), ValueError, r"base=nan"),
    (
        "frequencies wrong length",
        lambda: sinusoidal(jnp.arange(4), 8, frequencies=np.ones(3)),
        ValueError,
        r"sinusoidal\(frequencies=<float64\[3\]>\): frequencies must have shape \(4,\) for dim=8",
    ),
    (
        "frequencies non-finite",
        lambda: sinusoidal(jnp.arange(4), 4, frequencies=[1.0, np.nan]),
        ValueError,
        r"frequencies must be finite",
    ),
    (
        "frequencies traced",
        lambda: jax.jit(lambda f: sinusoidal(jnp.arange(4), 4, frequencies=f))(jnp.ones(2)),
        TypeError,
        r"frequencies=<traced.*must be concrete",
    ),
    (
        "complex positions",
        lambda: sinusoidal(jnp.arange(4) * 1j, 8),
        TypeError,
        r"sinusoidal\(positions=<complex64\[4\]>\): positions must be an integer or float32",
    ),
    (
        "bool positions",
        lambda: sinusoidal(np.array([True]), 8),
        TypeError,
        r"sinusoidal\(positions=<bool\[1\]>\): positions must be an integer",
    ),
    (
        "bfloat16 positions",
        lambda: sinusoidal(jnp.arange(4, dtype=jnp.bfloat16), 8),
        TypeError,
        r"sinusoidal\(positions=<bfloat16\[4\]>\): 16-bit floating positions.*cannot represent",
    ),
    (
        "float16 positions",
        lambda: sinusoidal(np.arange(4, dtype=np.float16), 8),
        TypeError,
        r"sinusoidal\(positions=<float16\[4\]>\): 16-bit floating positions",
    ),
    (
        "int64 position 2**31 (x64 off)",
        lambda: sinusoidal(np.array([2**31], dtype=np.int64), 8),
        ValueError,
        r"sinusoidal\(positions=<int64\[1\] containing 2147483648>\): integer positions must lie in \[-2\*\*31, 2\*\*31\)",
    ),
    (
        "python int below int32",
        lambda: sinusoidal([-(2**31) - 1], 8),
        ValueError,
        r"sinusoidal\(positions=<int64\[1\] containing -2147483649>\): integer positions",
    ),
    (
        "host nan position",
        lambda: sinusoidal(np.array([1.0, np.nan], np.float32), 8),
        ValueError,
        r"sinusoidal\(positions=<float32\[2\] containing nan>\): floating positions must be finite",
    ),
    (
        "string positions",
        lambda: sinusoidal(np.array(["a"]), 8),
        TypeError,
        r"sinusoidal\(positions=<<U1\[1\]>\): positions must be an integer",
    ),
    ("unknown layout", lambda: sinusoidal(jnp.arange(4), 8, layout="halves"), ValueError, r"layout='halves'"),
    (
        "integer dtype",
        lambda: sinusoidal(jnp.arange(4), 8, dtype=jnp.int32),
        TypeError,
        r"dtype=int32.*floating",
    ),
    (
        "float64 dtype, x64 off",
        lambda: sinusoidal(jnp.arange(4), 8, dtype=np.float64),
        ValueError,
        r"dtype=float64.*jax_enable_x64",
    ),
    ("not a dtype", lambda: sinusoidal(jnp.arange(4), 8, dtype="banana"), TypeError, r"dtype='banana'"),
    ("negative length", lambda: sinusoidal_table(-1, 8), ValueError, r"length=-1.*>= 0"),
    ("float length", lambda: sinusoidal_table(3.0, 8), TypeError, r"length=3.0"),
    ("float offset", lambda: sinusoidal_table(3, 8, offset=1.5), TypeError, r"offset.*integer"),
    (
        "offset rank 2",
        lambda: sinusoidal_table(3, 8, offset=jnp.zeros((2, 2), jnp.int32)),
        ValueError,
        r"sinusoidal_table\(offset=<int32\[2,2\]>\): offset must be a scalar or of shape \[batch\]",
    ),
    (
        "offset out of int32",
        lambda: sinusoidal_table(3, 8, offset=np.int64(2**31)),
        ValueError,
        r"sinusoidal_table\(offset=<int64\[\] containing 2147483648>\): integer offset must lie in",
    ),
    ("t2t odd dim", lambda: tensor2tensor_frequencies(5), ValueError, r"tensor2tensor_frequencies\(dim=5\)"),
    (
        "t2t max < min",
        lambda: tensor2tensor_frequencies(8, min_timescale=10.0, max_timescale=1.0),
        ValueError,
        r"max_timescale must be >= min_timescale",
    ),
    ("paper base 0.5", lambda: paper_frequencies(8, base=0.5), ValueError, r"paper_frequencies\(base=0.5\)"),
]


@pytest.mark.parametrize("call, error, pattern", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_clear_error(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_dtype_checks_raise_at_trace_time_under_jit():
    with pytest.raises(TypeError, match=r"sinusoidal\(positions=<traced bfloat16\[3\]>\): 16-bit"):
        jax.jit(lambda p: sinusoidal(p, 8))(jnp.arange(3, dtype=jnp.bfloat16))
