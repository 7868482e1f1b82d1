"""One table of bad input: every public name meets it with an error that names the call and the argument.

Each message reads ``call(argument=value): what is allowed[; the fix]``, ``TypeError`` for a wrong type and
``ValueError`` for a wrong value. ``BAD`` holds, per public callable of ``posenc_jax.__all__``, bad inputs with
the exception type and the argument the message must name; ``MESSAGES`` adds rows whose message is checked word
for word as well; ``SCHEME_BAD`` does the same for every scheme value (``posenc_jax.schemes``) and Flax module
(``posenc_jax.nnx``, ``posenc_jax.linen``): constructors and calls. Two tests check that the tables cover every
public callable, value and module.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import posenc_jax as pe
from posenc_jax import linen as pl
from posenc_jax import nnx as pn
from posenc_jax import schemes
from posenc_jax.schemes import Rotary

_X = jnp.ones((1, 2, 1, 4))  # [batch, length, heads, head_dim]
_P = jnp.arange(2)

# (public name, the call that must fail, exception type, call as named in the message, argument)
BAD = [
    ("sinusoidal", lambda: pe.sinusoidal(np.array([2**40]), 8), ValueError, "sinusoidal", "positions"),
    ("sinusoidal", lambda: pe.sinusoidal(_P, 8, dtype=None), TypeError, "sinusoidal", "dtype"),
    (
        "sinusoidal_table",
        lambda: pe.sinusoidal_table(3, 8, offset=0.5),
        TypeError,
        "sinusoidal_table",
        "offset",
    ),
    ("paper_frequencies", lambda: pe.paper_frequencies(0), ValueError, "paper_frequencies", "dim"),
    ("paper_frequencies", lambda: pe.paper_frequencies(8, base="e"), TypeError, "paper_frequencies", "base"),
    (
        "tensor2tensor_frequencies",
        lambda: pe.tensor2tensor_frequencies(8, min_timescale=0.0),
        ValueError,
        "tensor2tensor_frequencies",
        "min_timescale",
    ),
    (
        "apply_rotary",
        lambda: pe.apply_rotary(_X.astype(jnp.int32), _P, layout="interleaved"),
        TypeError,
        "apply_rotary",
        "x",
    ),
    (
        "apply_rotary",
        lambda: pe.apply_rotary(_X, jnp.arange(3), layout="interleaved"),
        ValueError,
        "apply_rotary",
        "positions",
    ),
    (
        "apply_rotary",
        lambda: pe.apply_rotary(_X, _P, rotary_dim=6, layout="interleaved"),
        ValueError,
        "apply_rotary",
        "rotary_dim",
    ),
    ("apply_rotary", lambda: pe.apply_rotary(_X, _P), TypeError, "apply_rotary", "layout"),
    (
        "learned_lookup",
        lambda: pe.learned_lookup(jnp.arange(2.0), table=jnp.ones((4, 8))),
        TypeError,
        "learned_lookup",
        "positions",
    ),
    (
        "apply_rotary",
        lambda: pe.apply_rotary(_X, _P, scaling="ntk", layout="interleaved"),
        TypeError,
        "apply_rotary",
        "scaling",
    ),
    (
        "rotary_interleaved_to_split",
        lambda: pe.rotary_interleaved_to_split(np.ones(8), head_dim=5),
        ValueError,
        "rotary_interleaved_to_split",
        "head_dim",
    ),
    (
        "rotary_split_to_interleaved",
        lambda: pe.rotary_split_to_interleaved(np.ones(8), head_dim=4, axis=1.0),
        TypeError,
        "rotary_split_to_interleaved",
        "axis",
    ),
    (
        "interleaved_to_split",
        lambda: pe.interleaved_to_split(jnp.ones(3)),
        ValueError,
        "interleaved_to_split",
        "x",
    ),
    (
        "split_to_interleaved",
        lambda: pe.split_to_interleaved(jnp.ones((2, 4)), axis=1.0),
        TypeError,
        "split_to_interleaved",
        "axis",
    ),
    ("alibi_slopes", lambda: pe.alibi_slopes(0), ValueError, "alibi_slopes", "num_heads"),
    (
        "alibi_bias",
        lambda: pe.alibi_bias(_P, _P, num_heads=2, is_causal=1),
        TypeError,
        "alibi_bias",
        "is_causal",
    ),
    (
        "alibi_bias",
        lambda: pe.alibi_bias(_P, jnp.arange(2, dtype=jnp.bfloat16), num_heads=2, is_causal=True),
        TypeError,
        "alibi_bias",
        "k_positions",
    ),
    (
        "positions_from_segment_ids",
        lambda: pe.positions_from_segment_ids([1.5]),
        TypeError,
        "positions_from_segment_ids",
        "segment_ids",
    ),
    (
        "randomized_positions",
        lambda: pe.randomized_positions(jax.random.key(0), 4, 2**31),
        ValueError,
        "randomized_positions",
        "max_length",
    ),
    (
        "randomized_positions",
        lambda: pe.randomized_positions(0, 4, 8),
        TypeError,
        "randomized_positions",
        "key",
    ),
    (
        "grid_positions",
        lambda: pe.grid_positions(4, class_tokens=-1),
        ValueError,
        "grid_positions",
        "class_tokens",
    ),
    ("rope_frequencies", lambda: pe.rope_frequencies(7), ValueError, "rope_frequencies", "head_dim"),
    (
        "rope_attention_factor",
        lambda: pe.rope_attention_factor("yarn"),
        TypeError,
        "rope_attention_factor",
        "scaling",
    ),
    ("t5_buckets", lambda: pe.t5_buckets(_P, _P, is_causal=1), TypeError, "t5_buckets", "is_causal"),
    (
        "t5_buckets",
        lambda: pe.t5_buckets(_P, _P, num_buckets=3, is_causal=False),
        ValueError,
        "t5_buckets",
        "num_buckets",
    ),
    (
        "t5_bias",
        lambda: pe.t5_bias(_P, jnp.arange(2.0), table=jnp.ones((8, 2)), is_causal=False),
        TypeError,
        "t5_bias",
        "k_positions",
    ),
    (
        "transformer_xl_logits",
        lambda: pe.transformer_xl_logits(
            _X,
            _X,
            _P,
            _P,
            kernel=jnp.ones((4, 1, 4)),
            content_bias=jnp.ones((1, 4)),
            position_bias=jnp.ones((1, 4)),
            base=1.0,
        ),
        ValueError,
        "transformer_xl_logits",
        "base",
    ),
    ("Linear", lambda: pe.rope.Linear("2"), TypeError, "Linear", "factor"),
    ("NTK", lambda: pe.rope.NTK(factor=0), ValueError, "NTK", "factor"),
    (
        "DynamicNTK",
        lambda: pe.rope.DynamicNTK(factor=-1.0, original_max_position=2048),
        ValueError,
        "DynamicNTK",
        "factor",
    ),
    ("YaRN", lambda: pe.rope.YaRN(factor=0.5, original_max_position=2048), ValueError, "YaRN", "factor"),
    (
        "Llama3",
        lambda: pe.rope.Llama3(factor=8.0, low_freq_factor=0.0),
        ValueError,
        "Llama3",
        "low_freq_factor",
    ),
    ("LongRoPE", lambda: pe.rope.LongRoPE((1.0,), (1.0, 2.0), 4096), ValueError, "LongRoPE", "long_factors"),
    (
        "attention",
        lambda: pe.attention(
            _X, _X, _X, scheme=Rotary(4, layout="interleaved"), q_positions=_P, k_positions=_P, is_causal=1
        ),
        TypeError,
        "attention",
        "is_causal",
    ),
    (
        "attention",
        lambda: pe.attention(_X, _X, _X, scheme="rope", q_positions=_P, k_positions=_P),
        TypeError,
        "attention",
        "scheme",
    ),
    (
        "KVCache",
        lambda: pe.KVCache.init(batch=0, capacity=4, num_kv_heads=1, head_dim=4),
        ValueError,
        "KVCache.init",
        "batch",
    ),
    (
        "KVCache",
        lambda: pe.KVCache.init(batch=1, capacity=4, num_kv_heads=1, head_dim=4).append(
            _X, _X, np.array([0, 2**32])
        ),
        ValueError,
        "KVCache.append",
        "positions",
    ),
    (
        "t5_buckets",
        lambda: pe.t5_buckets(_P * 1.0, _P, is_causal=False),
        TypeError,
        "t5_buckets",
        "q_positions",
    ),
    (
        "t5_buckets",
        lambda: pe.t5_buckets(_P, _P, num_buckets=7, is_causal=False),
        ValueError,
        "t5_buckets",
        "num_buckets",
    ),
    (
        "t5_bias",
        lambda: pe.t5_bias(_P, _P, table=jnp.zeros((8, 2)), max_distance=2, is_causal=False),
        ValueError,
        "t5_bias",
        "max_distance",
    ),
    (
        "t5_bias",
        lambda: pe.t5_bias(_P, _P, table=jnp.zeros(8), is_causal=False),
        ValueError,
        "t5_bias",
        "table",
    ),
    (
        "transformer_xl_logits",
        lambda: pe.transformer_xl_logits(
            _X,
            _X,
            _P,
            _P,
            kernel=jnp.zeros((3, 1, 4)),
            content_bias=jnp.zeros((1, 4)),
            position_bias=jnp.zeros((1, 4)),
        ),
        ValueError,
        "transformer_xl_logits",
        "kernel",
    ),
    (
        "transformer_xl_logits",
        lambda: pe.transformer_xl_logits(
            _X,
            _X,
            _P,
            None,
            kernel=jnp.zeros((4, 1, 4)),
            content_bias=jnp.zeros((1, 4)),
            position_bias=jnp.zeros((1, 4)),
        ),
        ValueError,
        "transformer_xl_logits",
        "k_positions",
    ),
    (
        "transformer_xl_logits",
        lambda: pe.transformer_xl_logits(
            _X,
            _X,
            _P,
            _P,
            kernel=jnp.zeros((4, 1, 4)),
            content_bias=jnp.zeros((1, 4)),
            position_bias=jnp.zeros((1, 4)),
            scale="1",
        ),
        TypeError,
        "transformer_xl_logits",
        "scale",
    ),
    (
        "kerple_bias",
        lambda: pe.kerple_bias(_P, _P, r1=jnp.ones(2), r2=jnp.ones(3), kernel="log"),
        ValueError,
        "kerple_bias",
        "r2",
    ),
    (
        "fire_bias",
        lambda: pe.fire_bias(_P, _P, mlp=(jnp.ones(2),), c=0.1, threshold=8.0),
        TypeError,
        "fire_bias",
        "mlp",
    ),
    (
        "fire_bias",
        lambda: pe.fire_bias(
            _P, _P, mlp=(jnp.ones(1), jnp.ones(1), jnp.ones((1, 1)), jnp.ones(1)), c=0.1, threshold=8.0, eps=0.0
        ),
        ValueError,
        "fire_bias",
        "eps",
    ),
    (
        "cope_logits",
        lambda: pe.cope_logits(_X, _X, _P, _P, embeddings=jnp.ones((4, 3))),
        ValueError,
        "cope_logits",
        "embeddings",
    ),
    (
        "xpos_rotate",
        lambda: pe.xpos_rotate(_X, _X, _P, _P, layout="split", scale_base=-1.0),
        ValueError,
        "xpos_rotate",
        "scale_base",
    ),
]

# Names in __all__ that take no input of their own.
NO_INPUT = {"__version__", "PositionalScheme"}


def check_message(call, error, name, argument, pattern=""):
    """``call()`` raises exactly ``error`` with ``name(argument=...): ...``, and ``pattern`` in the message."""
    with pytest.raises(error) as caught:
        call()
    assert type(caught.value) is error, type(caught.value)  # TypeError for a type, ValueError for a value
    message = str(caught.value)
    # call(argument=value): what is allowed  (value shown as repr, or <dtype[shape]> for arrays)
    assert re.match(rf"{re.escape(name)}\({re.escape(argument)}=[^\n]*?\): \S", message), message
    assert re.search(pattern, message), (pattern, message)


@pytest.mark.parametrize(
    "call, error, name, argument", [row[1:] for row in BAD], ids=[f"{row[0]}-{row[4]}" for row in BAD]
)
def test_bad_input_names_the_call_and_the_argument(call, error, name, argument):
    check_message(call, error, name, argument)


# Rows whose message is checked beyond its call(argument=value) start: (public name, call, exception type,
# call as named in the message, argument, a regex the rest of the message must match).
_R = jnp.arange(4)
MESSAGES = [
    ("sinusoidal", lambda: pe.sinusoidal(_R, 7), ValueError, "sinusoidal", "dim", r"dim must be even"),
    ("sinusoidal", lambda: pe.sinusoidal(_R, 0), ValueError, "sinusoidal", "dim", r"positive"),
    ("sinusoidal", lambda: pe.sinusoidal(_R, -4), ValueError, "sinusoidal", "dim", r"positive"),
    ("sinusoidal", lambda: pe.sinusoidal(_R, 8.0), TypeError, "sinusoidal", "dim", r"Python int"),
    ("sinusoidal", lambda: pe.sinusoidal(_R, True), TypeError, "sinusoidal", "dim", r"dim=True"),
    (
        "sinusoidal",
        lambda: pe.sinusoidal(_R, 8, base=1.0),
        ValueError,
        "sinusoidal",
        "base",
        r"finite real number > 1",
    ),
    (
        "sinusoidal",
        lambda: pe.sinusoidal(_R, 8, base=float("inf")),
        ValueError,
        "sinusoidal",
        "base",
        r"base=inf",
    ),
    (
        "sinusoidal",
        lambda: pe.sinusoidal(_R, 8, base=float("nan")),
        ValueError,
        "sinusoidal",
        "base",
        r"base=nan",
    ),
    (
        "sinusoidal",
        lambda: pe.sinusoidal(_R, 8, frequencies=np.ones(3)),
        ValueError,
        "sinusoidal",
        "frequencies",
        r"sinusoidal\(frequencies=<float64\[3\]>\): frequencies must have shape \(4,\) for dim=8",
    ),
    (
        "sinusoidal",
        lambda: pe.sinusoidal(_R, 4, frequencies=[1.0, np.nan]),
        ValueError,
        "sinusoidal",
        "frequencies",
        r"frequencies must be finite",
    ),
    (
        "sinusoidal",
        lambda: jax.jit(lambda f: pe.sinusoidal(_R, 4, frequencies=f))(jnp.ones(2)),
        TypeError,
        "sinusoidal",
        "frequencies",
        r"frequencies=<traced.*must be concrete",
    ),
    (
        "sinusoidal",
        lambda: pe.sinusoidal(_R * 1j, 8),
        TypeError,
        "sinusoidal",
        "positions",
        r"sinusoidal\(positions=<complex64\[4\]>\): positions must be an integer or float32",
    ),
    (
        "sinusoidal",
        lambda: pe.sinusoidal(np.array([True]), 8),
        TypeError,
        "sinusoidal",
        "positions",
        r"sinusoidal\(positions=<bool\[1\]>\): positions must be an integer",
    ),
    (
        "sinusoidal",
        lambda: pe.sinusoidal(jnp.arange(4, dtype=jnp.bfloat16), 8),
        TypeError,
        "sinusoidal",
        "positions",
        r"sinusoidal\(positions=<bfloat16\[4\]>\): 16-bit floating positions.*cannot represent",
    ),
    (
        "sinusoidal",
        lambda: jax.jit(lambda p: pe.sinusoidal(p, 8))(jnp.arange(3, dtype=jnp.bfloat16)),
        TypeError,
        "sinusoidal",
        "positions",
        r"sinusoidal\(positions=<traced bfloat16\[3\]>\): 16-bit",  # at trace time, under jit
    ),
    (
        "sinusoidal",
        lambda: pe.sinusoidal(np.arange(4, dtype=np.float16), 8),
        TypeError,
        "sinusoidal",
        "positions",
        r"sinusoidal\(positions=<float16\[4\]>\): 16-bit floating positions",
    ),
    (
        "sinusoidal",
        lambda: pe.sinusoidal(np.array([2**31], dtype=np.int64), 8),
        ValueError,
        "sinusoidal",
        "positions",
        r"sinusoidal\(positions=<int64\[1\] containing 2147483648>\): integer positions must lie in \[-2\*\*31, 2\*\*31\)",
    ),
    (
        "sinusoidal",
        lambda: pe.sinusoidal([-(2**31) - 1], 8),
        ValueError,
        "sinusoidal",
        "positions",
        r"sinusoidal\(positions=<int64\[1\] containing -2147483649>\): integer positions",
    ),
    (
        "sinusoidal",
        lambda: pe.sinusoidal(np.array([1.0, np.nan], np.float32), 8),
        ValueError,
        "sinusoidal",
        "positions",
        r"sinusoidal\(positions=<float32\[2\] containing nan>\): floating positions must be finite",
    ),
    (
        "sinusoidal",
        lambda: pe.sinusoidal(np.array(["a"]), 8),
        TypeError,
        "sinusoidal",
        "positions",
        r"sinusoidal\(positions=<<U1\[1\]>\): positions must be an integer",
    ),
    (
        "sinusoidal",
        lambda: pe.sinusoidal(_R, 8, layout="halves"),
        ValueError,
        "sinusoidal",
        "layout",
        r"layout='halves'",
    ),
    (
        "sinusoidal",
        lambda: pe.sinusoidal(_R, 8, dtype=jnp.int32),
        TypeError,
        "sinusoidal",
        "dtype",
        r"dtype=int32.*floating",
    ),
    (
        "sinusoidal",
        lambda: pe.sinusoidal(_R, 8, dtype=np.float64),
        ValueError,
        "sinusoidal",
        "dtype",
        r"dtype=float64.*jax_enable_x64",
    ),
    (
        "sinusoidal",
        lambda: pe.sinusoidal(_R, 8, dtype="banana"),
        TypeError,
        "sinusoidal",
        "dtype",
        r"dtype='banana'",
    ),
    ("sinusoidal_table", lambda: pe.sinusoidal_table(-1, 8), ValueError, "sinusoidal_table", "length", r">= 0"),
    (
        "sinusoidal_table",
        lambda: pe.sinusoidal_table(3.0, 8),
        TypeError,
        "sinusoidal_table",
        "length",
        r"length=3.0",
    ),
    (
        "sinusoidal_table",
        lambda: pe.sinusoidal_table(3, 8, offset=1.5),
        TypeError,
        "sinusoidal_table",
        "offset",
        r"integer",
    ),
    (
        "sinusoidal_table",
        lambda: pe.sinusoidal_table(3, 8, offset=jnp.zeros((2, 2), jnp.int32)),
        ValueError,
        "sinusoidal_table",
        "offset",
        r"sinusoidal_table\(offset=<int32\[2,2\]>\): offset must be a scalar or of shape \[batch\]",
    ),
    (
        "sinusoidal_table",
        lambda: pe.sinusoidal_table(3, 8, offset=np.int64(2**31)),
        ValueError,
        "sinusoidal_table",
        "offset",
        r"sinusoidal_table\(offset=<int64\[\] containing 2147483648>\): integer offset must lie in",
    ),
    (
        "tensor2tensor_frequencies",
        lambda: pe.tensor2tensor_frequencies(5),
        ValueError,
        "tensor2tensor_frequencies",
        "dim",
        r"tensor2tensor_frequencies\(dim=5\)",
    ),
    (
        "tensor2tensor_frequencies",
        lambda: pe.tensor2tensor_frequencies(8, min_timescale=10.0, max_timescale=1.0),
        ValueError,
        "tensor2tensor_frequencies",
        "max_timescale",
        r"max_timescale must be >= min_timescale",
    ),
    (
        "paper_frequencies",
        lambda: pe.paper_frequencies(8, base=0.5),
        ValueError,
        "paper_frequencies",
        "base",
        r"paper_frequencies\(base=0.5\)",
    ),
    (
        "positions_from_segment_ids",
        lambda: pe.positions_from_segment_ids(jnp.zeros((2, 3))),
        TypeError,
        "positions_from_segment_ids",
        "segment_ids",
        r"segment_ids=<float32\[2,3\]>\): segment_ids must be an integer array",
    ),
    (
        "positions_from_segment_ids",
        lambda: pe.positions_from_segment_ids(np.ones(3, bool)),
        TypeError,
        "positions_from_segment_ids",
        "segment_ids",
        r"segment_ids=<bool\[3\]>\): segment_ids must be an integer array",
    ),
    (
        "positions_from_segment_ids",
        lambda: pe.positions_from_segment_ids(jnp.int32(3)),
        ValueError,
        "positions_from_segment_ids",
        "segment_ids",
        r"segment_ids=<int32\[\]>\): segment_ids must have shape \[length\]",
    ),
]
_KEY = jax.random.key(0)
MESSAGES += [
    (
        "randomized_positions",
        lambda: pe.randomized_positions(_KEY, 8, 4),
        ValueError,
        "randomized_positions",
        "max_length",
        r"max_length must be >= length=8",
    ),
    (
        "randomized_positions",
        lambda: pe.randomized_positions(_KEY, 0, 4),
        ValueError,
        "randomized_positions",
        "length",
        r"length must be a positive Python int",
    ),
    (
        "randomized_positions",
        lambda: pe.randomized_positions(_KEY, 2, -1),
        ValueError,
        "randomized_positions",
        "max_length",
        r"positive",
    ),
    (
        "randomized_positions",
        lambda: pe.randomized_positions(_KEY, 2.0, 4),
        TypeError,
        "randomized_positions",
        "length",
        r"length must be a positive Python int",
    ),
    (
        "randomized_positions",
        lambda: pe.randomized_positions(_KEY, 2, 4, batch_shape=3),
        TypeError,
        "randomized_positions",
        "batch_shape",
        r"batch_shape must be a tuple",
    ),
    (
        "randomized_positions",
        lambda: pe.randomized_positions(_KEY, 2, 4, batch_shape=(2, -1)),
        ValueError,
        "randomized_positions",
        "batch_shape",
        r"tuple of non-negative Python ints",
    ),
    (
        "randomized_positions",
        lambda: pe.randomized_positions(jax.random.split(_KEY), 2, 4),
        ValueError,
        "randomized_positions",
        "key",
        r"key=<key<fry>\[2\]>\): key must be a single PRNG key",
    ),
    (
        "randomized_positions",
        lambda: pe.randomized_positions(0, 2, 4),
        TypeError,
        "randomized_positions",
        "key",
        r"key must be a single PRNG key",
    ),
    (
        "randomized_positions",
        lambda: pe.randomized_positions(jnp.zeros(2, jnp.float32), 2, 4),
        TypeError,
        "randomized_positions",
        "key",
        r"key must be a single PRNG key",
    ),
]


@pytest.mark.parametrize(
    "call, error, name, argument, pattern",
    [row[1:] for row in MESSAGES],
    ids=[f"{row[0]}-{row[4]}-{i}" for i, row in enumerate(MESSAGES)],
)
def test_bad_input_messages_say_what_is_allowed(call, error, name, argument, pattern):
    check_message(call, error, name, argument, pattern)


def test_the_table_covers_every_public_callable():
    covered = {row[0] for row in BAD + MESSAGES}
    public = set(pe.__all__) - NO_INPUT
    assert public <= covered, sorted(public - covered)
    assert all(callable(getattr(pe, name)) for name in public)


# ------------------------------------------------------------------------- scheme values and Flax modules

_E = jnp.ones((1, 2, 8))  # token embeddings [batch, length, dim]
_Q = jnp.ones((1, 2, 2, 8))  # [batch, length, heads, head_dim]


def _rngs():
    return nnx.Rngs(0)


def _linen_call(module, *args, method="__call__"):
    """Runs a Linen module's method the way a user does: init, then apply."""
    variables = module.init(jax.random.key(0), *args, method=method)
    return module.apply(variables, *args, method=method)


# (module.Name, the call that must fail, exception type, call as named in the message, argument)
SCHEME_BAD = [
    (
        "schemes.NoPosition",
        lambda: schemes.NoPosition().embed(_E.astype(jnp.int32)),
        TypeError,
        "NoPosition.embed",
        "x",
    ),
    (
        "schemes.NoPosition",
        lambda: schemes.NoPosition().rotate(_Q[0], _Q[0]),
        ValueError,
        "NoPosition.rotate",
        "q",
    ),
    ("schemes.Sinusoidal", lambda: schemes.Sinusoidal(8.0), TypeError, "Sinusoidal", "dim"),
    ("schemes.Sinusoidal", lambda: schemes.Sinusoidal(8, dtype=jnp.int32), TypeError, "Sinusoidal", "dtype"),
    ("schemes.Sinusoidal", lambda: schemes.Sinusoidal(4).embed(_E), ValueError, "Sinusoidal.embed", "x"),
    ("schemes.Learned", lambda: schemes.Learned(0, 8), ValueError, "Learned", "max_length"),
    ("schemes.Learned", lambda: schemes.Learned(4, 8).embed(_E), ValueError, "Learned.embed", "table"),
    ("schemes.Learned", lambda: schemes.Learned(4, 8, table=jnp.ones((8, 4))), ValueError, "Learned", "table"),
    (
        "schemes.Learned",
        lambda: schemes.Learned(4, 8, out_of_range="drop"),
        ValueError,
        "Learned",
        "out_of_range",
    ),
    (
        "schemes.Learned",
        lambda: schemes.Learned(4, 8, table=jnp.ones((4, 8))).embed(_E, np.array([0, 2**32 + 3])),
        ValueError,
        "Learned.embed",
        "positions",
    ),
    ("schemes.Rotary", lambda: schemes.Rotary(8, layout="neox"), ValueError, "Rotary", "layout"),
    (
        "schemes.Rotary",
        lambda: schemes.Rotary(8, rotary_dim=16, layout="interleaved"),
        ValueError,
        "Rotary",
        "rotary_dim",
    ),
    (
        "schemes.Rotary",
        lambda: schemes.Rotary(4, layout="interleaved").rotate(_Q, _Q),
        ValueError,
        "Rotary.rotate",
        "q",
    ),
    ("schemes.ALiBi", lambda: schemes.ALiBi(0), ValueError, "ALiBi", "num_heads"),
    ("schemes.ALiBi", lambda: schemes.ALiBi(2, is_causal="yes"), TypeError, "ALiBi", "is_causal"),
    (
        "schemes.T5Bias",
        lambda: schemes.T5Bias(0, is_causal=False),
        ValueError,
        "T5Bias",
        "num_heads",
    ),
    (
        "schemes.TransformerXLRelative",
        lambda: schemes.TransformerXLRelative(2, 0),
        ValueError,
        "TransformerXLRelative",
        "head_dim",
    ),
    ("nnx.NoPosition", lambda: pn.NoPosition()(_E, jnp.arange(3)), ValueError, "NoPosition.embed", "positions"),
    ("nnx.Sinusoidal", lambda: pn.Sinusoidal(7), ValueError, "Sinusoidal", "dim"),
    (
        "nnx.Sinusoidal",
        lambda: pn.Sinusoidal(8)(_E, jnp.arange(2.0, dtype=jnp.bfloat16)),
        TypeError,
        "Sinusoidal.embed",
        "positions",
    ),
    (
        "nnx.Learned",
        lambda: pn.Learned(4, 8, param_dtype=jnp.int32, rngs=_rngs()),
        TypeError,
        "Learned",
        "param_dtype",
    ),
    (
        "nnx.Learned",
        lambda: pn.Learned(4, 8, rngs=_rngs())(_E, jnp.arange(2.0)),
        TypeError,
        "Learned.embed",
        "positions",
    ),
    (
        "nnx.Learned",
        lambda: pn.Learned(4, 8, rngs=_rngs())(_E, jnp.array([0, 4])),
        ValueError,
        "Learned.embed",
        "positions",
    ),
    ("nnx.Rotary", lambda: pn.Rotary(7, layout="interleaved"), ValueError, "Rotary", "head_dim"),
    ("nnx.Rotary", lambda: pn.Rotary(8), TypeError, "Rotary", "layout"),
    ("nnx.ALiBi", lambda: pn.ALiBi(2.0), TypeError, "ALiBi", "num_heads"),
    ("nnx.T5Bias", lambda: pn.T5Bias(2, is_causal=1, rngs=_rngs()), TypeError, "T5Bias", "is_causal"),
    (
        "nnx.TransformerXLRelative",
        lambda: pn.TransformerXLRelative(2, 4, rel_dim=3, rngs=_rngs()),
        ValueError,
        "TransformerXLRelative",
        "rel_dim",
    ),
    ("linen.NoPosition", lambda: _linen_call(pl.NoPosition(), _E[0, 0]), ValueError, "NoPosition.embed", "x"),
    ("linen.Sinusoidal", lambda: pl.Sinusoidal(8, base=1.0), ValueError, "Sinusoidal", "base"),
    ("linen.Learned", lambda: pl.Learned(4, 0), ValueError, "Learned", "dim"),
    (
        "linen.Learned",
        lambda: _linen_call(pl.Learned(4, 8), jnp.ones((1, 5, 8))),
        ValueError,
        "Learned.embed",
        "x",
    ),
    ("linen.Rotary", lambda: pl.Rotary(8, base=0.5, layout="interleaved"), ValueError, "Rotary", "base"),
    ("linen.ALiBi", lambda: pl.ALiBi(-1), ValueError, "ALiBi", "num_heads"),
    (
        "linen.T5Bias",
        lambda: pl.T5Bias(2, is_causal=False, num_buckets=0),
        ValueError,
        "T5Bias",
        "num_buckets",
    ),
    (
        "linen.TransformerXLRelative",
        lambda: pl.TransformerXLRelative(0, 4),
        ValueError,
        "TransformerXLRelative",
        "num_heads",
    ),
    (
        "schemes.Kerple",
        lambda: schemes.Kerple(2, kernel="log", r1=jnp.ones(2), r2=jnp.ones((2, 1))),
        ValueError,
        "Kerple",
        "r2",
    ),
    (
        "schemes.FIRE",
        lambda: schemes.FIRE(2, eps=-1.0),
        ValueError,
        "FIRE",
        "eps",
    ),
    ("schemes.CoPE", lambda: schemes.CoPE(4, 8, scale=0.0), ValueError, "CoPE", "scale"),
    (
        "schemes.CoPE",
        lambda: schemes.CoPE(4, 8).attention_logits_bias(_Q, _Q, None, None),
        ValueError,
        "CoPE.attention_logits_bias",
        "embedding",
    ),
    ("schemes.XPos", lambda: schemes.XPos(8, layout="split", gamma=-1.0), ValueError, "XPos", "gamma"),
    ("schemes.XPos", lambda: schemes.XPos(4, layout="split").rotate(_Q, _Q), ValueError, "XPos.rotate", "q"),
    ("nnx.Kerple", lambda: pn.Kerple(2, kernel="cubic", rngs=_rngs()), ValueError, "Kerple", "kernel"),
    (
        "nnx.FIRE",
        lambda: pn.FIRE(2, initial_threshold=0.0, rngs=_rngs()),
        ValueError,
        "FIRE",
        "initial_threshold",
    ),
    ("nnx.CoPE", lambda: pn.CoPE(8, 0, rngs=_rngs()), ValueError, "CoPE", "head_dim"),
    ("nnx.XPos", lambda: pn.XPos(8, layout="split", base=1.0), ValueError, "XPos", "base"),
    (
        "linen.Kerple",
        lambda: pl.Kerple(2, kernel="log", param_dtype=jnp.int32),
        TypeError,
        "Kerple",
        "param_dtype",
    ),
    ("linen.FIRE", lambda: pl.FIRE(2, eps=0.0), ValueError, "FIRE", "eps"),
    ("linen.CoPE", lambda: pl.CoPE(-1, 8), ValueError, "CoPE", "npos"),
    ("linen.XPos", lambda: pl.XPos(6.0, layout="split"), TypeError, "XPos", "head_dim"),
]
SCHEME_NO_INPUT = {"schemes.PositionalScheme", "schemes.SchemeDefaults"}


@pytest.mark.parametrize(
    "call, error, name, argument",
    [row[1:] for row in SCHEME_BAD],
    ids=[f"{row[0]}-{row[4]}" for row in SCHEME_BAD],
)
def test_scheme_and_module_bad_input_names_the_call_and_the_argument(call, error, name, argument):
    check_message(call, error, name, argument)


def test_the_scheme_table_covers_every_scheme_value_and_module():
    covered = {row[0] for row in SCHEME_BAD}
    public = {
        f"{module.__name__.rsplit('.', 1)[1]}.{name}" for module in (schemes, pn, pl) for name in module.__all__
    }
    assert public - SCHEME_NO_INPUT <= covered, sorted(public - SCHEME_NO_INPUT - covered)
