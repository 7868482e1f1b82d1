"""Learned tables never fail silently: the out-of-range policies, static and traced, in both Flax APIs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from posenc_jax import learned_lookup
from posenc_jax import linen as pl
from posenc_jax import nnx as pn

MAX_LENGTH, DIM = 8, 4
TABLE = np.arange(MAX_LENGTH * DIM, dtype=np.float32).reshape(MAX_LENGTH, DIM)
BAD = np.array([[-1, 0, 3, 8], [2, 9, 7, 5]], np.int32)  # -1, 8 and 9 are outside [0, 8)
GOOD = np.array([[0, 1, 2, 3], [4, 5, 6, 7]], np.int32)
MESSAGE = r"Learned.embed\(positions=<values from -1 to 9>\): positions must lie in \[0, 8\) for max_length=8"


def make(api, out_of_range):
    """A Learned module holding TABLE, and a function ``(x, positions) -> x + table[positions]``.

    ``out_of_range=None`` leaves the module's default policy.
    """
    policy = {} if out_of_range is None else {"out_of_range": out_of_range}
    if api == "nnx":
        module = pn.Learned(MAX_LENGTH, DIM, **policy, rngs=nnx.Rngs(0))
        module.embedding[...] = jnp.asarray(TABLE)
        return module, lambda m, x, p: m(x, p)
    module = pl.Learned(MAX_LENGTH, DIM, **policy)
    variables = {"params": {"embedding": jnp.asarray(TABLE)}}
    return variables, lambda v, x, p: module.apply(v, x, p)


def jit_for(api, fn):
    return nnx.jit(fn) if api == "nnx" else jax.jit(fn)


X = jnp.zeros((2, 4, DIM))


# ------------------------------------------------------------------------------------ policy "nan" (default)


@pytest.mark.parametrize("api", ["nnx", "linen"])
def test_default_policy_gives_nan_rows_under_jit_and_raises_on_concrete_positions(api):
    holder, fn = make(api, None)  # the default policy
    jitted = jit_for(api, fn)
    got = np.asarray(jitted(holder, X, jnp.asarray(BAD)))
    bad = (BAD < 0) | (BAD >= MAX_LENGTH)
    assert np.isnan(got[bad]).all()  # every feature of every bad row
    np.testing.assert_array_equal(got[~bad], TABLE[BAD[~bad]])
    # NaN poisons the loss, and its gradient, of the whole step
    loss = jax.jit(lambda e: jnp.sum(e**2))(jnp.asarray(got))
    assert np.isnan(np.asarray(loss))
    with pytest.raises(ValueError, match=MESSAGE):
        fn(holder, X, BAD)  # concrete positions are checked on the host
    np.testing.assert_array_equal(np.asarray(jitted(holder, X, jnp.asarray(GOOD))), TABLE[GOOD])


def test_default_policy_exports_and_error_policy_does_not():
    """The default program has no host callback, so ``jax.export`` takes it; ``"error"``'s it refuses.

    (Writing the exported module to bytes with ``Exported.serialize`` also needs jax's optional
    ``flatbuffers`` dependency; the StableHLO module below is what it stores.)
    """
    from jax import export

    args = (X, jnp.asarray(GOOD))
    programs = {}
    for policy in ("nan", "error"):
        module, _ = make("nnx", policy)
        graphdef, state = nnx.split(module)
        programs[policy] = (jax.jit(lambda state, x, p, g=graphdef: nnx.merge(g, state)(x, p)), state)
    model, state = programs["nan"]
    exported = export.export(model)(state, *args)
    assert exported.mlir_module_serialized  # the portable StableHLO bytes
    np.testing.assert_array_equal(np.asarray(exported.call(state, *args)), TABLE[GOOD])
    got = np.asarray(exported.call(state, X, jnp.asarray(BAD)))
    assert np.isnan(got[0, 0]).all() and np.isnan(got[1, 1]).all() and not np.isnan(got[0, 1]).any()
    model, state = programs["error"]
    with pytest.raises(NotImplementedError, match="host_callbacks"):
        export.export(model)(state, *args)


@pytest.mark.parametrize("policy", ["nan", "error", "clip"])
@pytest.mark.parametrize("api", ["nnx", "linen"])
def test_host_int64_positions_are_checked_before_any_conversion(api, policy):
    # 2**32 + 3 would become row 3 after a conversion to int32.
    holder, fn = make(api, policy)
    positions = np.array([[0, 1, 2, 2**32 + 3], [0, 1, 2, 3]], np.int64)
    with pytest.raises(
        ValueError,
        match=r"Learned.embed\(positions=<int64\[2,4\] containing 4294967299>\): integer positions must lie in",
    ):
        fn(holder, X, positions)
    encode = (
        (lambda: holder.encode(positions))
        if api == "nnx"
        else (lambda: pl.Learned(MAX_LENGTH, DIM).apply(holder, positions, method="encode"))
    )
    with pytest.raises(ValueError, match=r"Learned.encode\(positions=<int64\[2,4\] containing 4294967299>\)"):
        encode()


@pytest.mark.parametrize("policy", ["nan", "error"])
def test_empty_positions_under_jit(policy):
    module, fn = make("nnx", policy)
    out = nnx.jit(fn)(module, X[:, :0], jnp.zeros((2, 0), jnp.int32))
    assert out.shape == (2, 0, DIM)


# --------------------------------------------------------------------------------------------- policy "error"


@pytest.mark.parametrize("api", ["nnx", "linen"])
def test_error_policy_raises_at_run_time_under_plain_jit(api):
    holder, fn = make(api, "error")
    jitted = jit_for(api, fn)
    good = jitted(holder, X, jnp.asarray(GOOD))  # valid traced positions run
    np.testing.assert_array_equal(np.asarray(good), TABLE[GOOD])
    with pytest.raises(jax.errors.JaxRuntimeError, match=MESSAGE):
        jax.block_until_ready(jitted(holder, X, jnp.asarray(BAD)))
    # the same compiled function still works afterwards
    np.testing.assert_array_equal(np.asarray(jitted(holder, X, jnp.asarray(GOOD))), TABLE[GOOD])


@pytest.mark.parametrize("api", ["nnx", "linen"])
def test_error_policy_under_vmap_and_jit_of_vmap(api):
    holder, fn = make(api, "error")
    if api == "nnx":
        mapped = nnx.vmap(fn, in_axes=(None, 0, 0))
    else:
        mapped = jax.vmap(fn, in_axes=(None, 0, 0))
    # Without jit the check runs eagerly and raises the ValueError itself; under jit it arrives wrapped.
    for transform, error in ((mapped, ValueError), (jit_for(api, mapped), jax.errors.JaxRuntimeError)):
        np.testing.assert_array_equal(np.asarray(transform(holder, X, jnp.asarray(GOOD))), TABLE[GOOD])
        with pytest.raises(error, match=r"positions must lie in \[0, 8\) for max_length=8"):
            jax.block_until_ready(transform(holder, X, jnp.asarray(BAD)))


def test_error_policy_under_grad():
    module, fn = make("nnx", "error")
    grad = nnx.jit(nnx.grad(lambda m, x, p: jnp.sum(fn(m, x, p))))
    assert grad(module, X, jnp.asarray(GOOD))["embedding"][...].shape == (MAX_LENGTH, DIM)
    with pytest.raises(jax.errors.JaxRuntimeError, match=MESSAGE):
        jax.block_until_ready(grad(module, X, jnp.asarray(BAD)))


@pytest.mark.parametrize("api", ["nnx", "linen"])
def test_error_policy_with_concrete_positions_raises_value_error_at_once(api):
    holder, fn = make(api, "error")
    with pytest.raises(ValueError, match=MESSAGE):
        fn(holder, X, BAD)
    with pytest.raises(ValueError, match=r"positions=<values from -1 to -1>"):
        fn(holder, X[:, :1], jnp.array([-1]))


def test_plain_jax_jit_without_any_wrapper_over_the_pure_lookup():
    fn = jax.jit(lambda t, p: learned_lookup(p, table=t, out_of_range="error"))
    np.testing.assert_array_equal(np.asarray(fn(TABLE, GOOD)), TABLE[GOOD])
    with pytest.raises(jax.errors.JaxRuntimeError, match=MESSAGE.replace("Learned.embed", "learned_lookup")):
        jax.block_until_ready(fn(TABLE, BAD))


# ------------------------------------------------------------------------------------------- "clip" / "wrap"


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("api", ["nnx", "linen"])
@pytest.mark.parametrize(
    "policy,rows",
    [
        ("clip", np.array([[0, 0, 3, 7], [2, 7, 7, 5]])),  # negative -> first row, too large -> last row
        ("wrap", np.array([[7, 0, 3, 0], [2, 1, 7, 5]])),  # modulo max_length
    ],
)
def test_clip_and_wrap(api, policy, rows, jit):
    holder, fn = make(api, policy)
    fn = jit_for(api, fn) if jit else fn
    np.testing.assert_array_equal(np.asarray(fn(holder, X, jnp.asarray(BAD))), TABLE[rows])


# ------------------------------------------------------------------------------------------------ static length


@pytest.mark.parametrize("policy", ["nan", "error", "clip", "wrap"])
@pytest.mark.parametrize("api", ["nnx", "linen"])
def test_static_length_beyond_the_table_raises_at_trace_time(api, policy):
    holder, fn = make(api, policy)
    too_long = jnp.zeros((2, MAX_LENGTH + 1, DIM))
    match = r"Learned.embed\(x=<(traced )?float32\[2,9,4\]>\): its length 9 exceeds max_length=8"
    with pytest.raises(ValueError, match=match):
        fn(holder, too_long, None)
    with pytest.raises(ValueError, match=match):
        jit_for(api, fn)(holder, too_long, None)


def test_linen_submodule_in_a_model_raises_under_jit():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x, positions):
            return pl.Learned(MAX_LENGTH, DIM, out_of_range="error")(x, positions)

    variables = Model().init(jax.random.key(0), X, jnp.asarray(GOOD))
    apply = jax.jit(Model().apply)
    apply(variables, X, jnp.asarray(GOOD))
    with pytest.raises(jax.errors.JaxRuntimeError, match=MESSAGE):
        jax.block_until_ready(apply(variables, X, jnp.asarray(BAD)))


# ---------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args,kwargs,error,match",
    [
        (
            (TABLE, GOOD.astype(np.float32)),
            {},
            TypeError,
            r"learned_lookup\(positions=<float32\[2,4\]>\): positions must be integers",
        ),
        (
            (TABLE, GOOD.astype(bool)),
            {},
            TypeError,
            r"learned_lookup\(positions=<bool\[2,4\]>\): positions must be an integer",
        ),
        (
            (TABLE[0], GOOD),
            {},
            ValueError,
            r"learned_lookup\(table=<float32\[4\]>\): table must have shape \[max_length, dim\]",
        ),
        (
            (TABLE, GOOD),
            {"out_of_range": "ignore"},
            ValueError,
            r"learned_lookup\(out_of_range='ignore'\): out_of_range must be one of \('nan', 'error', 'clip', 'wrap'\)",
        ),
        (
            (TABLE, np.array([2**40])),
            {"out_of_range": "clip"},
            ValueError,
            r"learned_lookup\(positions=<int64\[1\] containing 1099511627776>\): integer positions must lie in",
        ),
    ],
)
def test_lookup_bad_input(args, kwargs, error, match):
    table, positions = args
    with pytest.raises(error, match=match):
        learned_lookup(positions, table=table, **kwargs)


def test_run_time_error_is_reported_once(caplog):
    # JAX logs exceptions raised in callbacks before re-raising them; ours reaches the caller only.
    fn = jax.jit(lambda t, p: learned_lookup(p, table=t, out_of_range="error"))
    with caplog.at_level("ERROR"), pytest.raises(jax.errors.JaxRuntimeError, match="positions must lie in"):
        jax.block_until_ready(fn(TABLE, BAD))
    assert not [record for record in caplog.records if "callback failed" in record.getMessage()]
