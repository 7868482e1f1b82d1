"""The Flax modules, NNX and Linen: the scheme protocol, jit, grad, vmap, bfloat16, equal numbers across APIs.

Each scheme is checked through all three protocol methods (``embed``, ``rotate``, ``attention_bias``) against
float64 references written from the formulas.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from references import reference_alibi, reference_rotary, reference_sinusoidal

from posenc_jax import linen as pl
from posenc_jax import nnx as pn

#: The scheme values' fields that hold parameters (the modules hold them as Flax parameters instead).
PARAMETERS = ("table", "kernel", "content_bias", "position_bias")

SCHEMES = ("NoPosition", "Sinusoidal", "Learned", "Rotary", "ALiBi")
APIS = ("nnx", "linen")
B, L, D, H, HD = 2, 6, 8, 4, 8

RNG = np.random.default_rng(0)
X = RNG.standard_normal((B, L, D)).astype(np.float32)
Q = RNG.standard_normal((B, L, H, HD)).astype(np.float32)
K = RNG.standard_normal((B, L, H, HD)).astype(np.float32)
POSITIONS = np.array([[0, 1, 2, 3, 4, 5], [7, 8, 9, 10, 11, 12]], np.int32)  # e.g. decoding at offset 7

CONFIG = {
    "NoPosition": ((), {}),
    "Sinusoidal": ((D,), {}),
    "Learned": ((16, D), {}),
    "Rotary": ((HD,), {"layout": "split"}),
    "ALiBi": ((H,), {"is_causal": True}),
}


class Scheme:
    """One scheme in one API, with the protocol's three methods callable jitted or not."""

    def __init__(self, api, name, *args, **kwargs):
        self.api, self.name = api, name
        if api == "nnx":
            if name == "Learned":
                kwargs.setdefault("rngs", nnx.Rngs(0))
            self.module = getattr(pn, name)(*args, **kwargs)
            self.variables = None
        else:
            self.module = getattr(pl, name)(*args, **kwargs)
            self.variables = self.module.init(jax.random.key(0), X) if name == "Learned" else {}

    @classmethod
    def default(cls, api, name, **overrides):
        args, kwargs = CONFIG[name]
        return cls(api, name, *args, **{**kwargs, **overrides})

    def table(self):
        if self.api == "nnx":
            return np.asarray(self.module.embedding[...])
        return np.asarray(self.variables["params"]["embedding"])

    def set_table(self, table):
        if self.api == "nnx":
            self.module.embedding[...] = jnp.asarray(table)
        else:
            self.variables = {"params": {"embedding": jnp.asarray(table)}}

    def protocol(self, x, q, k, positions, jit):
        """``(embed(x), rotate(q, k), attention_bias)`` with the same positions for queries and keys."""
        if self.api == "nnx":

            def run(module, x, q, k, positions):
                return (
                    module.embed(x, positions),
                    module.rotate(q, k, positions, positions),
                    module.attention_bias(positions, positions),
                )

            return (nnx.jit(run) if jit else run)(self.module, x, q, k, positions)

        def run(variables, x, q, k, positions):
            apply = self.module.apply
            return (
                apply(variables, x, positions, method="embed"),
                apply(variables, q, k, positions, positions, method="rotate"),
                apply(variables, positions, positions, method="attention_bias"),
            )

        return (jax.jit(run) if jit else run)(self.variables, x, q, k, positions)


def expected(scheme, x, q, k, positions):
    """float64 references for the protocol outputs of ``scheme``."""
    x64, q64, k64 = (np.asarray(a, np.float64) for a in (x, q, k))
    embedded, rotated, bias = x64, (q64, k64), None
    if scheme.name == "Sinusoidal":
        embedded = x64 + reference_sinusoidal(positions, D)
    elif scheme.name == "Learned":
        embedded = x64 + scheme.table().astype(np.float64)[positions]
    elif scheme.name == "Rotary":
        rotated = tuple(reference_rotary(a, positions, layout="split") for a in (q64, k64))
    elif scheme.name == "ALiBi":
        bias = reference_alibi(H, positions, positions, is_causal=True)
    return embedded, rotated, bias


def _assert_protocol(got, want, atol):
    (embedded, (q, k), bias), (w_embedded, (w_q, w_k), w_bias) = got, want
    np.testing.assert_allclose(np.asarray(embedded, np.float64), w_embedded, atol=atol)
    np.testing.assert_allclose(np.asarray(q, np.float64), w_q, atol=atol)
    np.testing.assert_allclose(np.asarray(k, np.float64), w_k, atol=atol)
    if w_bias is None:
        assert bias is None
    else:
        assert bias.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(bias), w_bias, atol=atol)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name", SCHEMES)
@pytest.mark.parametrize("api", APIS)
def test_protocol_matches_reference(api, name, jit):
    scheme = Scheme.default(api, name)
    got = scheme.protocol(jnp.asarray(X), jnp.asarray(Q), jnp.asarray(K), jnp.asarray(POSITIONS), jit)
    _assert_protocol(got, expected(scheme, X, Q, K, POSITIONS), atol=2e-6)
    assert got[0].dtype == jnp.float32 and got[1][0].dtype == jnp.float32


@pytest.mark.parametrize("name", ["Sinusoidal", "Learned", "NoPosition"])
@pytest.mark.parametrize("api", APIS)
def test_call_defaults_to_arange_and_encode_alone(api, name):
    scheme = Scheme.default(api, name)
    module, variables = scheme.module, scheme.variables
    x2 = jnp.asarray(X[0])  # [length, dim] works too
    if api == "nnx":
        out3, out2 = module(jnp.asarray(X)), module(x2)
    else:
        out3, out2 = module.apply(variables, jnp.asarray(X)), module.apply(variables, x2)
    arange = np.arange(L)
    want = expected(scheme, X, Q, K, arange)[0]
    np.testing.assert_allclose(np.asarray(out3), want, atol=2e-6)
    np.testing.assert_allclose(np.asarray(out2), want[0], atol=2e-6)
    if name != "NoPosition":
        encoding = module.encode(arange) if api == "nnx" else module.apply(variables, arange, method="encode")
        np.testing.assert_allclose(np.asarray(encoding), want[0] - X[0], atol=2e-6)


@pytest.mark.parametrize("api", APIS)
def test_rotary_call_is_rotate_and_alibi_call_is_the_bias(api):
    rotary, alibi = Scheme.default(api, "Rotary"), Scheme.default(api, "ALiBi")
    q, k = jnp.asarray(Q), jnp.asarray(K)
    if api == "nnx":
        rotated, bias = rotary.module(q, k), alibi.module(jnp.arange(L), jnp.arange(L))
    else:
        rotated = rotary.module.apply({}, q, k)
        bias = alibi.module.apply({}, jnp.arange(L), jnp.arange(L))
    for got, x in zip(rotated, (Q, K), strict=True):
        np.testing.assert_allclose(
            np.asarray(got), reference_rotary(x, np.arange(L), layout="split"), atol=2e-6
        )
    np.testing.assert_allclose(
        np.asarray(bias), reference_alibi(H, np.arange(L), np.arange(L), True), atol=1e-7
    )


# ------------------------------------------------------------------------------------------------------ grad


def _loss(embedded, rotated, bias):
    total = jnp.sum(embedded) + jnp.sum(rotated[0] * rotated[1])
    return total if bias is None else total + jnp.sum(bias)


@pytest.mark.parametrize("name", SCHEMES)
@pytest.mark.parametrize("api", APIS)
def test_grad_flows_into_learned_only_and_through_the_inputs(api, name):
    scheme = Scheme.default(api, name)
    x, q, k, positions = jnp.asarray(X), jnp.asarray(Q), jnp.asarray(K), jnp.asarray(POSITIONS)
    if api == "nnx":

        def loss(module, x, q, k):
            return _loss(module.embed(x, positions), module.rotate(q, k, positions, positions), None)

        grads, gx, gq, gk = nnx.jit(nnx.grad(loss, argnums=(0, 1, 2, 3)))(scheme.module, x, q, k)
        params = jax.tree.leaves(nnx.state(grads, nnx.Param))
    else:

        def loss(variables, x, q, k):
            apply = scheme.module.apply
            return _loss(
                apply(variables, x, positions, method="embed"),
                apply(variables, q, k, positions, positions, method="rotate"),
                None,
            )

        grads, gx, gq, gk = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(scheme.variables, x, q, k)
        params = jax.tree.leaves(grads)
    np.testing.assert_array_equal(np.asarray(gx), np.ones_like(X))  # d sum(x + e) / dx
    if name == "Learned":
        (table_grad,) = params
        counts = np.zeros((16, D))
        np.add.at(counts, POSITIONS.ravel(), 1.0)  # each use of a row adds 1 per feature
        np.testing.assert_array_equal(np.asarray(table_grad), counts)
    else:
        assert params == []
    if name == "Rotary":  # d <R(p)q, R(p)k> / dq = R(p)^T R(p) k = k
        np.testing.assert_allclose(np.asarray(gq), K, atol=2e-6)
        np.testing.assert_allclose(np.asarray(gk), Q, atol=2e-6)
    else:
        np.testing.assert_array_equal(np.asarray(gq), K)


@pytest.mark.parametrize("api", APIS)
def test_grad_of_alibi_bias_wrt_float_positions(api):
    scheme = Scheme.default(api, "ALiBi", is_causal=False)

    def bias_sum(p):
        if api == "nnx":
            return jnp.sum(scheme.module.attention_bias(p, jnp.arange(3.0)))
        return jnp.sum(scheme.module.apply({}, p, jnp.arange(3.0), method="attention_bias"))

    # d/dq_i sum_{h,j} -m_h |q_i - j| = -sum_h m_h * sum_j sign(q_i - j)
    q = jnp.array([0.5, 2.5])
    slopes = np.array([2.0 ** (-2.0 * (h + 1)) for h in range(H)])
    want = np.array([-slopes.sum() * np.sign(qi - np.arange(3.0)).sum() for qi in (0.5, 2.5)])
    np.testing.assert_allclose(np.asarray(jax.jit(jax.grad(bias_sum))(q)), want, rtol=1e-6)


# ------------------------------------------------------------------------------------------------------ vmap


@pytest.mark.parametrize("name", SCHEMES)
@pytest.mark.parametrize("api", APIS)
def test_vmap_over_examples(api, name):
    scheme = Scheme.default(api, name)
    x, q, k, positions = jnp.asarray(X), jnp.asarray(Q), jnp.asarray(K), jnp.asarray(POSITIONS)
    if api == "nnx":
        one = nnx.vmap(
            lambda module, x, q, k, p: (
                module.embed(x, p),
                module.rotate(q, k, p, p),
                module.attention_bias(p, p),
            ),
            in_axes=(None, 0, 0, 0, 0),
        )
        embedded, (rq, rk), bias = one(scheme.module, x[:, None], q[:, None], k[:, None], positions[:, None])
    else:
        apply = scheme.module.apply

        def one(x, q, k, p):
            return (
                apply(scheme.variables, x, p, method="embed"),
                apply(scheme.variables, q, k, p, p, method="rotate"),
                apply(scheme.variables, p, p, method="attention_bias"),
            )

        embedded, (rq, rk), bias = jax.vmap(one)(x[:, None], q[:, None], k[:, None], positions[:, None])
    got = (embedded[:, 0], (rq[:, 0], rk[:, 0]), None if bias is None else bias[:, 0])
    _assert_protocol(got, expected(scheme, X, Q, K, POSITIONS), atol=2e-6)


# -------------------------------------------------------------------------------------------------- bfloat16


@pytest.mark.parametrize("name", SCHEMES)
@pytest.mark.parametrize("api", APIS)
def test_bfloat16_activations(api, name):
    overrides = {}
    if name == "Sinusoidal":
        overrides = {"dtype": jnp.bfloat16}
    elif name == "Learned":
        overrides = {"dtype": jnp.bfloat16, "param_dtype": jnp.bfloat16}
    if name == "Learned":
        scheme = Scheme(api, name, 1024, D, **overrides)  # rows for the late positions below
    else:
        scheme = Scheme.default(api, name, **overrides)
    x, q, k = (jnp.asarray(a, jnp.bfloat16) for a in (X, Q, K))
    positions = POSITIONS + 1000  # positions a bfloat16 angle could not even represent
    (embedded, (rq, rk), bias) = scheme.protocol(x, q, k, jnp.asarray(positions), jit=True)
    assert embedded.dtype == rq.dtype == rk.dtype == jnp.bfloat16
    if name == "Learned":
        assert scheme.table().dtype == jnp.bfloat16
    as32 = [np.asarray(a, np.float32) for a in (x, q, k)]
    want = expected(scheme, *as32, positions)
    # One bfloat16 rounding of correct float32 values: within a few bfloat16 ulps (2**-8 relative).
    _assert_protocol((embedded, (rq, rk), bias), want, atol=0.05)


@pytest.mark.parametrize("name", SCHEMES)
@pytest.mark.parametrize("api", APIS)
def test_bfloat16_in_bfloat16_out_by_default(api, name):
    # dtype=None follows the input for every module (a float32 table or encoding is rounded once to x's
    # dtype): bfloat16 activations stay bfloat16. The attention bias stays float32 (it meets the logits).
    scheme = Scheme.default(api, name)
    x, q, k = (jnp.asarray(a, jnp.bfloat16) for a in (X, Q, K))
    embedded, (rq, rk), bias = scheme.protocol(x, q, k, jnp.asarray(POSITIONS), jit=False)
    assert embedded.dtype == rq.dtype == rk.dtype == jnp.bfloat16
    assert bias is None or bias.dtype == jnp.float32
    if name in ("Sinusoidal", "Learned"):  # an explicit dtype still wins; encode alone keeps its own dtype
        explicit = Scheme.default(api, name, dtype=jnp.float32)
        assert explicit.protocol(x, q, k, jnp.asarray(POSITIONS), jit=False)[0].dtype == jnp.float32
        module, variables = scheme.module, scheme.variables
        arange = jnp.arange(L)
        encoding = module.encode(arange) if api == "nnx" else module.apply(variables, arange, method="encode")
        assert encoding.dtype == jnp.float32


def test_same_arguments_and_defaults_in_every_api():
    """NNX constructors, Linen fields and the scheme values take the same names with the same defaults."""
    import dataclasses
    import inspect

    from posenc_jax import schemes

    values = {"Learned": schemes.Learned}
    required = object()  # no default, in each API's own way of saying it

    def default(value):
        return required if value in (dataclasses.MISSING, inspect.Parameter.empty) else value

    for name in SCHEMES:
        value_type = values[name] if name in values else getattr(schemes, name)
        value = {f.name: default(f.default) for f in dataclasses.fields(value_type) if f.name not in PARAMETERS}
        nnx_params = inspect.signature(getattr(pn, name).__init__).parameters
        nnx_args = {
            n: default(p.default) for n, p in nnx_params.items() if n not in ("self", "rngs", "embedding_init")
        }
        linen_fields = {
            f.name: default(f.default)
            for f in dataclasses.fields(getattr(pl, name))
            if f.name not in ("parent", "name", "embedding_init")
        }
        assert value == nnx_args == linen_fields, name
        if name == "Learned":
            assert nnx_params["rngs"].kind is inspect.Parameter.KEYWORD_ONLY
            assert "embedding_init" in nnx_params and "embedding_init" in {
                f.name for f in dataclasses.fields(pl.Learned)
            }
    assert (
        pn.ALiBi(2).is_causal is False and pl.ALiBi(2).is_causal is False
    )  # the default that is right everywhere


# ------------------------------------------------------------------------------------- equality across APIs


@pytest.mark.parametrize("name", SCHEMES)
def test_nnx_and_linen_give_identical_numbers_jitted(name):
    nnx_scheme, linen_scheme = Scheme.default("nnx", name), Scheme.default("linen", name)
    if name == "Learned":  # equal parameter values (the two APIs draw different initial tables)
        linen_scheme.set_table(nnx_scheme.table())
    args = (jnp.asarray(X), jnp.asarray(Q), jnp.asarray(K), jnp.asarray(POSITIONS))
    got_nnx = nnx_scheme.protocol(*args, jit=True)
    assert jax.tree.leaves(got_nnx)
    chex.assert_trees_all_equal(got_nnx, linen_scheme.protocol(*args, jit=True))


@pytest.mark.parametrize("name", ["NoPosition", "Sinusoidal", "Rotary", "ALiBi"])
def test_modules_and_scheme_values_give_identical_numbers(name):
    from posenc_jax import schemes

    args, kwargs = CONFIG[name]
    value = getattr(schemes, name)(*args, **kwargs)
    module = Scheme.default("nnx", name)
    assert module.module.scheme == value
    inputs = (jnp.asarray(X), jnp.asarray(Q), jnp.asarray(K), jnp.asarray(POSITIONS))
    x, q, k, p = inputs
    got_value = (value.embed(x, p), value.rotate(q, k, p, p), value.attention_bias(p, p))
    chex.assert_trees_all_equal(module.protocol(*inputs, jit=False), got_value)


def test_linen_modules_compose_inside_a_model():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x, q, k, positions):
            scheme = pl.Learned(16, D)
            rotary = pl.Rotary(HD, layout="interleaved")
            alibi = pl.ALiBi(H)
            return scheme(x, positions), rotary.rotate(q, k, positions, positions), alibi(positions, positions)

    args = (jnp.asarray(X), jnp.asarray(Q), jnp.asarray(K), jnp.asarray(POSITIONS))
    variables = Model().init(jax.random.key(0), *args)
    assert jax.tree.map(jnp.shape, variables) == {"params": {"Learned_0": {"embedding": (16, D)}}}
    embedded, _, bias = jax.jit(Model().apply)(variables, *args)
    table = np.asarray(variables["params"]["Learned_0"]["embedding"], np.float64)
    np.testing.assert_allclose(np.asarray(embedded), X + table[POSITIONS], atol=1e-6)
    assert bias.shape == (B, H, L, L)


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "name,call,error,match",
    [
        (
            "Sinusoidal",
            "embed_wrong_dim",
            ValueError,
            r"Sinusoidal.embed\(x=<float32\[2,6,7\]>\): the last axis of x must equal the scheme's dim=8",
        ),
        (
            "Learned",
            "embed_wrong_dim",
            ValueError,
            r"Learned.embed\(x=<float32\[2,6,7\]>\): the last axis of x must equal the scheme's dim=8",
        ),
        (
            "Sinusoidal",
            "embed_rank_4",
            ValueError,
            r"Sinusoidal.embed\(x=<float32\[1,2,6,8\]>\): x must have shape \[batch, length, dim\] or \[length, dim\]",
        ),
        (
            "NoPosition",
            "embed_rank_4",
            ValueError,
            r"NoPosition.embed\(x=<float32\[1,2,6,8\]>\): x must have shape",
        ),
        (
            "Sinusoidal",
            "embed_bad_positions",
            ValueError,
            r"Sinusoidal.embed\(positions=<int32\[3,6\]>\): positions must broadcast to x's leading axes \(2, 6\)",
        ),
        (
            "Learned",
            "embed_bad_positions",
            ValueError,
            r"Learned.embed\(positions=<int32\[3,6\]>\): positions must broadcast",
        ),
        (
            "Learned",
            "embed_float_positions",
            TypeError,
            r"Learned.embed\(positions=<float32\[6\]>\): positions must be integers",
        ),
        (
            "Sinusoidal",
            "embed_int_x",
            TypeError,
            r"Sinusoidal.embed\(x=<int32\[2,6,8\]>\): x must be a floating array",
        ),
        (
            "Rotary",
            "rotate_wrong_head_dim",
            ValueError,
            r"Rotary.rotate\(q=<float32\[2,6,4,6\]>\): the last axis of q must equal the scheme's head_dim=8",
        ),
        (
            "Rotary",
            "rotate_bad_positions",
            ValueError,
            r"apply_rotary\(positions=<int32\[5\]>\): positions must broadcast",
        ),
        (
            "Rotary",
            "rotate_bf16_positions",
            TypeError,
            r"apply_rotary\(positions=<bfloat16\[6\]>\): 16-bit floating positions",
        ),
        (
            "NoPosition",
            "rotate_rank_3",
            ValueError,
            r"NoPosition.rotate\(q=<float32\[2,6,8\]>\): q must have shape",
        ),
    ],
)
def test_bad_call_input(api, name, call, error, match):
    scheme = Scheme.default(api, name)
    x, q, k = jnp.asarray(X), jnp.asarray(Q), jnp.asarray(K)
    arange = jnp.arange(L)
    method, args = {
        "embed_wrong_dim": ("embed", (x[..., :7], None)),
        "embed_rank_4": ("embed", (x[None], None)),
        "embed_bad_positions": ("embed", (x, jnp.zeros((3, L), jnp.int32))),
        "embed_float_positions": ("embed", (x, arange.astype(jnp.float32))),
        "embed_int_x": ("embed", (x.astype(jnp.int32), None)),
        "rotate_wrong_head_dim": ("rotate", (q[..., :6], k[..., :6], arange, arange)),
        "rotate_bad_positions": ("rotate", (q, k, jnp.arange(5), arange)),
        "rotate_bf16_positions": ("rotate", (q, k, arange.astype(jnp.bfloat16), arange)),
        "rotate_rank_3": ("rotate", (q[..., 0, :], k[..., 0, :], arange, arange)),
    }[call]
    with pytest.raises(error, match=match):
        if api == "nnx":
            getattr(scheme.module, method)(*args)
        else:
            scheme.module.apply(scheme.variables, *args, method=method)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "name,args,kwargs,error,match",
    [
        (
            "Learned",
            (0, 8),
            {},
            ValueError,
            r"Learned\(max_length=0\): max_length must be a positive Python int",
        ),
        ("Learned", (-4, 8), {}, ValueError, r"Learned\(max_length=-4\)"),
        (
            "Learned",
            (4.0, 8),
            {},
            TypeError,
            r"Learned\(max_length=4.0\): max_length must be a positive Python int",
        ),
        ("Learned", (4, 0), {}, ValueError, r"Learned\(dim=0\): dim must be a positive Python int"),
        (
            "Learned",
            (4, 8),
            {"out_of_range": "ignore"},
            ValueError,
            r"Learned\(out_of_range='ignore'\): out_of_range must be one of \('nan', 'error', 'clip', 'wrap'\)",
        ),
        (
            "Learned",
            (4, 8),
            {"dtype": jnp.int32},
            TypeError,
            r"Learned\(dtype=int32\): dtype must be a floating dtype",
        ),
        ("Sinusoidal", (7,), {}, ValueError, r"Sinusoidal\(dim=7\): dim must be even"),
        (
            "Sinusoidal",
            (8,),
            {"layout": "blocks"},
            ValueError,
            r"Sinusoidal\(layout='blocks'\): layout must be one of",
        ),
        (
            "Sinusoidal",
            (8,),
            {"base": 0.5},
            ValueError,
            r"Sinusoidal\(base=0.5\): base must be a finite real number > 1",
        ),
        (
            "Rotary",
            (7,),
            {},
            ValueError,
            r"Rotary\(head_dim=7\): head_dim must be even, got 7",
        ),
        (
            "Rotary",
            (8,),
            {"rotary_dim": 3},
            ValueError,
            r"Rotary\(rotary_dim=3\): rotary_dim must be even, got 3",
        ),
        (
            "Rotary",
            (8,),
            {"rotary_dim": 16},
            ValueError,
            r"Rotary\(rotary_dim=16\): rotary_dim must be <= head_dim=8",
        ),
        ("Rotary", (8,), {"layout": "neox"}, ValueError, r"Rotary\(layout='neox'\): layout must be one of"),
        (
            "Rotary",
            (8,),
            {"layout": None},
            TypeError,
            r"Rotary\(layout=None\): layout is required for rotary embeddings \(it has no default\)",
        ),
        ("ALiBi", (0,), {}, ValueError, r"ALiBi\(num_heads=0\): num_heads must be a positive Python int"),
        (
            "ALiBi",
            (4,),
            {"is_causal": "yes"},
            TypeError,
            r"ALiBi\(is_causal='yes'\): is_causal must be a Python bool",
        ),
    ],
)
def test_bad_constructor_arguments(api, name, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        Scheme(api, name, *args, **kwargs)


@pytest.mark.parametrize("module", [pn.NoPosition(), pl.NoPosition()], ids=APIS)
def test_no_position_says_so_in_its_repr(module):
    for text in (repr(module), str(module)):  # print() shows str
        assert "adds nothing" in text and text.startswith("NoPosition(")


@pytest.mark.parametrize("name", SCHEMES)
def test_every_module_and_value_implements_the_protocol(name):
    import posenc_jax
    from posenc_jax import schemes

    args, kwargs = CONFIG[name]
    modules = [Scheme.default("nnx", name).module, Scheme.default("linen", name).module]
    values = [] if name == "Learned" else [getattr(schemes, name)(*args, **kwargs)]
    for scheme in modules + values:
        assert isinstance(scheme, posenc_jax.PositionalScheme)
    for field, value in zip(("max_length", "dim", "head_dim", "num_heads"), (16, D, HD, H), strict=True):
        if hasattr(modules[1], field):  # the NNX module reads its scheme's fields as attributes too
            assert getattr(modules[0], field) == getattr(modules[1], field) == value
    assert not isinstance("rotary", posenc_jax.PositionalScheme)
