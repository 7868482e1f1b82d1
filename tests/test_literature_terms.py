"""Kerple, FIRE, CoPE and xPos as functions, against float64 transcriptions of the papers' formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from references import reference_cope, reference_fire, reference_kerple, reference_xpos_logits

from posenc_jax._src.cope import cope_logits
from posenc_jax._src.fire import fire_bias
from posenc_jax._src.kerple import kerple_bias
from posenc_jax._src.xpos import exact_radius, xpos_rotate

B, L, H, KV, HD = 2, 5, 4, 2, 8
RNG = np.random.default_rng(0)
Q = RNG.standard_normal((B, L, H, HD)).astype(np.float32)
K = RNG.standard_normal((B, L, KV, HD)).astype(np.float32)
POSITIONS = np.stack([np.arange(L), np.array([3, 9, 10, 20, 41])]).astype(np.int32)
R1 = RNG.uniform(0.1, 2.0, H).astype(np.float32)
R2 = RNG.uniform(0.1, 1.9, H).astype(np.float32)
MLP = (
    RNG.standard_normal(6).astype(np.float32),
    RNG.standard_normal(6).astype(np.float32),
    RNG.standard_normal((6, H)).astype(np.float32),
    RNG.standard_normal(H).astype(np.float32),
)
EMBEDDINGS = RNG.standard_normal((4, HD)).astype(np.float32)


@pytest.mark.parametrize("kernel", ["log", "power"])
def test_kerple_matches_the_paper(kernel):
    got = jax.jit(lambda p, a, b: kerple_bias(p, p, r1=a, r2=b, kernel=kernel))(POSITIONS, R1, R2)
    want = reference_kerple(POSITIONS, POSITIONS, R1, R2, kernel)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2e-6, atol=1e-6)
    # float positions and 1-D positions broadcast as the other biases do
    got = kerple_bias(np.arange(3.0, dtype=np.float32) + 0.5, np.arange(4), r1=R1, r2=R2, kernel=kernel)
    want = reference_kerple(np.arange(3.0) + 0.5, np.arange(4), R1, R2, kernel)
    assert got.shape == (1, H, 3, 4)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2e-6, atol=1e-6)


def test_kerple_power_gradient_is_finite_at_distance_zero():
    grads = jax.grad(lambda r2: kerple_bias(POSITIONS, POSITIONS, r1=R1, r2=r2, kernel="power").sum())(R2)
    assert np.all(np.isfinite(np.asarray(grads))) and np.all(np.asarray(grads) != 0)


def test_fire_matches_the_paper_with_and_past_the_threshold():
    far = POSITIONS + np.array([[0], [1000]], np.int32)  # the second row's queries are past L = 16
    run = jax.jit(lambda p, mlp, c, t: fire_bias(p, p, mlp=mlp, c=c, threshold=t))
    for positions in (POSITIONS, far):
        got = run(positions, MLP, jnp.float32(0.3), jnp.float32(16.0))
        want = reference_fire(positions, positions, MLP, 0.3, 16.0)
        np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-5, atol=1e-5)


def test_fire_gradients_reach_c_and_threshold():
    def loss(c, t):
        return jnp.sum(fire_bias(POSITIONS, POSITIONS, mlp=MLP, c=c, threshold=t) ** 2)

    dc, dt = jax.grad(loss, argnums=(0, 1))(jnp.float32(0.3), jnp.float32(4.0))
    assert float(dc) != 0 and float(dt) != 0


@pytest.mark.parametrize("masked", [False, True])
def test_cope_matches_the_paper(masked):
    mask = RNG.random((B, 1, L, L)) < 0.7 if masked else None
    got = jax.jit(lambda q, k, p, e, m: cope_logits(q, k, p, p, embeddings=e, mask=m))(
        Q, K, POSITIONS, EMBEDDINGS, mask
    )
    want = reference_cope(Q, K, POSITIONS, POSITIONS, EMBEDDINGS, mask)
    visible = POSITIONS[:, None, :, None] >= POSITIONS[:, None, None, :]
    visible = visible if mask is None else visible & mask
    np.testing.assert_allclose(
        np.where(visible, np.asarray(got, np.float64), 0.0), np.where(visible, want, 0.0), rtol=1e-5, atol=1e-5
    )
    assert np.all(np.isfinite(np.asarray(got)))


def test_cope_positions_are_fractional_and_clipped():
    # Gates of 1/2 (q·k = 0) give p_ij = (i - j + 1) / 2: fractional, and clipped at npos - 1 = 3.
    q = np.zeros((1, 9, 1, 2), np.float32)
    q[..., 0] = 1.0
    k = np.zeros((1, 9, 1, 2), np.float32)
    k[..., 1] = 1.0
    embeddings = np.stack([np.arange(4.0), np.zeros(4)], axis=1).astype(np.float32)  # q·e[p] = p
    got = np.asarray(cope_logits(q, k, np.arange(9), np.arange(9), embeddings=embeddings))[0, 0]
    i, j = np.tril_indices(9)
    np.testing.assert_allclose(got[i, j], np.minimum((i - j + 1) / 2, 3.0), atol=1e-6)


@pytest.mark.parametrize("layout", ["split", "interleaved"])
def test_xpos_matches_the_paper(layout):
    qk = jax.jit(lambda q, k, p: xpos_rotate(q, k, p, p, layout=layout, scale_base=8.0))
    q2, k2 = qk(Q, K, POSITIONS)
    got = np.einsum("bqhd,bkhd->bhqk", np.asarray(q2, np.float64), np.repeat(np.asarray(k2, np.float64), 2, 2))
    want = reference_xpos_logits(Q, K, POSITIONS, POSITIONS, layout=layout, scale_base=8.0)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


def test_xpos_depends_on_distances_only_far_out():
    offset = np.int32(2**30)
    q2, k2 = xpos_rotate(Q, K, POSITIONS + offset, POSITIONS + offset, layout="split")
    got = np.einsum("bqhd,bkhd->bhqk", np.asarray(q2, np.float64), np.repeat(np.asarray(k2, np.float64), 2, 2))
    want = reference_xpos_logits(Q, K, POSITIONS, POSITIONS, layout="split")
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())
    # A decoding query at the end of a window of R + 100 keys: the near keys exact, the far ones finite.
    radius = exact_radius(HD)
    keys = np.arange(0, int(radius) + 100, 50, dtype=np.int32)
    kk = np.broadcast_to(K[:1, :1], (1, len(keys), KV, HD))
    q2, k2 = xpos_rotate(Q[:1, :1], kk, keys[-1:], keys, layout="split")
    assert np.all(np.isfinite(np.asarray(q2))) and np.all(np.isfinite(np.asarray(k2)))
    got = np.einsum("bqhd,bkhd->bhqk", np.asarray(q2, np.float64), np.repeat(np.asarray(k2, np.float64), 2, 2))
    near = reference_xpos_logits(
        Q[:1, :1], kk[:, -3:], keys[-1:] - keys[-3], keys[-3:] - keys[-3], layout="split"
    )
    np.testing.assert_allclose(got[..., -3:], near, rtol=2e-5, atol=2e-5 * np.abs(near).max())


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: kerple_bias(POSITIONS, POSITIONS, r1=R1, r2=R2, kernel="exp"),
            ValueError,
            r"kerple_bias\(kernel='exp'\)",
        ),
        (
            lambda: kerple_bias(POSITIONS, POSITIONS, r1=R1, r2=R2[:2], kernel="log"),
            ValueError,
            r"r2 must have shape \[4\]",
        ),
        (
            lambda: kerple_bias(POSITIONS, POSITIONS, r1=np.ones(4, int), r2=R2, kernel="log"),
            TypeError,
            "r1 must be a floating",
        ),
        (
            lambda: fire_bias(POSITIONS, POSITIONS, mlp=MLP[:3], c=0.1, threshold=8.0),
            TypeError,
            r"fire_bias\(mlp=",
        ),
        (
            lambda: fire_bias(
                POSITIONS, POSITIONS, mlp=(MLP[0], MLP[1], MLP[2][:3], MLP[3]), c=0.1, threshold=8.0
            ),
            ValueError,
            "mlp must be a tuple",
        ),
        (
            lambda: fire_bias(POSITIONS, POSITIONS, mlp=MLP, c="a", threshold=8.0),
            TypeError,
            r"fire_bias\(c='a'\)",
        ),
        (
            lambda: cope_logits(Q, K, POSITIONS, POSITIONS, embeddings=EMBEDDINGS[:, :3]),
            ValueError,
            r"embeddings must have shape \[npos, head_dim=8\]",
        ),
        (
            lambda: cope_logits(Q, K[..., :4], POSITIONS, POSITIONS, embeddings=EMBEDDINGS),
            ValueError,
            r"cope_logits\(k=",
        ),
        (
            lambda: cope_logits(Q, K, POSITIONS, POSITIONS, embeddings=EMBEDDINGS, mask=np.ones((L, L))),
            TypeError,
            "mask must be a boolean",
        ),
        (
            lambda: xpos_rotate(Q, K, POSITIONS, POSITIONS, layout="halves"),
            ValueError,
            r"xpos_rotate\(layout='halves'\)",
        ),
        (
            lambda: xpos_rotate(Q, K, POSITIONS, POSITIONS, layout="split", gamma=0.0),
            ValueError,
            r"gamma must be a finite real number > 0",
        ),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_xpos_fixed_center_lets_keys_scaled_in_one_call_serve_later_queries():
    qk = lambda q, k, qp, kp, center: xpos_rotate(q, k, qp, kp, layout="split", scale_base=8.0, center=center)  # noqa: E731
    want = reference_xpos_logits(Q, K, POSITIONS, POSITIONS, layout="split", scale_base=8.0)
    for center in (None, 0, 30):
        q2, k2 = qk(Q, K, POSITIONS, POSITIONS, center)
        got = np.einsum(
            "bqhd,bkhd->bhqk", np.asarray(q2, np.float64), np.repeat(np.asarray(k2, np.float64), 2, 2)
        )
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())

    # Keys scaled one call at a time (as a cache of rotated keys holds them), queried by the last position.
    def cached_logits(center):
        keys = [
            qk(Q[:, t : t + 1], K[:, t : t + 1], POSITIONS[:, t : t + 1], POSITIONS[:, t : t + 1], center)[1]
            for t in range(L)
        ]
        q_last, _ = qk(Q[:, -1:], K[:, -1:], POSITIONS[:, -1:], POSITIONS[:, -1:], center)
        return np.einsum(
            "bqhd,bkhd->bhqk", np.asarray(q_last, np.float64), np.repeat(np.concatenate(keys, 1), 2, 2)
        )

    np.testing.assert_allclose(cached_logits(0), want[:, :, -1:], rtol=2e-5, atol=2e-5 * np.abs(want).max())
    assert not np.allclose(cached_logits(None), want[:, :, -1:], atol=1e-3)
    with pytest.raises(TypeError, match=r"xpos_rotate\(center=0.5\)"):
        qk(Q, K, POSITIONS, POSITIONS, 0.5)
