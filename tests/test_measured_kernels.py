"""Kernels of the image layer seen through a measurement (algorithms/_measured_kernels)."""

import warnings

import numpy as np
import pytest
from scipy.optimize import nnls as scipy_nnls

from skinvert import LatentPursuitInverter, make_random_generator
from skinvert._array_api import namespace_of
from skinvert.activations import Activation
from skinvert.algorithms._measured import phi_regions
from skinvert.algorithms._measured_kernels import nnls_warm, passive_lstsq, piece_matrices
from skinvert.operators import Measurement


def get_namespace(a):
    return namespace_of(a)[0]


def _wide_problem(B, m, k, s, seed):
    """Rows ``t = M x*`` with an ``s``-sparse non-negative ``x*``, M (B, m, k):
    for ``s`` well below ``m / 2`` ``x*`` is the unique solution."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((B, m, k))
    X = np.zeros((B, k))
    for b in range(B):
        X[b, rng.choice(k, s, replace=False)] = rng.random(s) + 0.5
    return M, np.einsum("bmk,bk->bm", M, X), X


def _kkt_tau(r):
    return np.finfo(r.dtype).eps ** 0.5 * (np.max(np.abs(r), axis=1) + np.finfo(r.dtype).eps)


@pytest.mark.parametrize("warm", [False, True])
def test_nnls_warm_matches_scipy_on_wide_rows(warm):
    B, m, k = 6, 30, 45
    M, t, X = _wide_problem(B, m, k, 8, seed=1)
    G = np.transpose(M, (0, 2, 1)) @ M
    r = np.einsum("bmk,bm->bk", M, t)
    ref = np.stack([scipy_nnls(M[b], t[b])[0] for b in range(B)])
    x0 = np.zeros((B, k))
    if warm:  # a nearby start: the reference support, perturbed
        x0 = np.clip(ref + 0.3 * np.random.default_rng(2).standard_normal((B, k)), 0, None)
    xp = get_namespace(G)
    x, conv = nnls_warm(G, r, x0, xp, tau=_kkt_tau(r), cap=np.full(B, float(m)), max_iter=300)
    assert np.all(conv)
    np.testing.assert_allclose(ref, X, atol=1e-8)
    np.testing.assert_allclose(x, X, atol=1e-8)


def test_nnls_warm_shared_gram_and_lam():
    rng = np.random.default_rng(3)
    m, k, B, lam = 40, 25, 5, 0.3
    A = rng.standard_normal((m, k))
    t = rng.standard_normal((B, m))
    G, r = A.T @ A, t @ A
    x, conv = nnls_warm(
        G,
        r - lam,
        np.zeros((B, k)),
        get_namespace(G),
        tau=_kkt_tau(r),
        cap=np.full(B, float(k)),
        max_iter=300,
    )
    assert np.all(conv)
    g = x @ G - r + lam
    tol = 1e-7 * np.max(np.abs(r))
    assert np.all(x >= 0)
    assert np.all(np.abs(g[x > 0]) <= tol) and np.all(g[x == 0] >= -tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_passive_lstsq_solves_on_the_passive_set(dtype):
    rng = np.random.default_rng(4)
    B, k = 4, 12
    R = rng.standard_normal((B, 20, k))
    G = (np.transpose(R, (0, 2, 1)) @ R).astype(dtype)
    c = rng.standard_normal((B, k)).astype(dtype)
    F = rng.random((B, k)) < 0.5
    z = passive_lstsq(G, c, F, get_namespace(G))
    assert z.dtype == dtype
    assert np.all(z[~F] == 0)
    for b in range(B):
        f = F[b]
        ref = np.linalg.solve(G[b][np.ix_(f, f)].astype(np.float64), c[b, f])
        tol = (1e-3 if dtype == np.float32 else 1e-8) * np.max(np.abs(ref))
        np.testing.assert_allclose(z[b, f], ref, rtol=0, atol=tol)
    # Rows picked from a larger stack of Gram matrices.
    sub = np.array([2, 0])
    z_sub = passive_lstsq(G, c[sub], F[sub], get_namespace(G), sub=sub)
    np.testing.assert_array_equal(z_sub, z[sub])


@pytest.mark.parametrize("shared", [False, True])
def test_passive_lstsq_numpy_path_equals_the_generic_one(shared):
    """NumPy gathers the systems by fancy indexing (its own path): the same
    systems and solutions as the namespace-generic path, bit for bit,
    padding slots and an empty passive set included."""
    xps = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(7)
    B, k = 6, 15
    R = rng.standard_normal((1 if shared else B, 25, k))
    G = np.transpose(R, (0, 2, 1)) @ R
    G = G[0] if shared else G
    c = rng.standard_normal((B, k))
    F = rng.random((B, k)) < 0.6
    F[1] = False  # a row with no passive column
    sub = None if shared else np.array([5, 3, 0, 1, 4, 2])
    z = passive_lstsq(G, c, F, np, sub=sub)
    z_generic = passive_lstsq(
        xps.asarray(G), xps.asarray(c), xps.asarray(F), xps,
        sub=None if sub is None else xps.asarray(sub),
    )
    np.testing.assert_array_equal(z, np.asarray(z_generic))
    assert np.all(z[1] == 0)


@pytest.mark.parametrize(
    "act", [("plu", {"slope": 0.1, "c": 1.0}), ("leaky_relu", {"slope": 0.2})]
)
def test_piece_matrices_equal_a_d_w(act):
    rng = np.random.default_rng(5)
    n, k, m, B = 30, 12, 9, 5
    W = rng.standard_normal((n, k))
    A = rng.standard_normal((m, n))
    U = 1.5 * rng.standard_normal((B, n))
    U[0] = 0.0  # a row entirely on the unit-slope piece
    xp = get_namespace(W)
    phi = Activation(act[0], **act[1])
    _, D, _ = phi_regions(phi, U, xp)
    meas = Measurement(A, xp=xp, dtype=np.float64)
    M = piece_matrices(meas, W, A @ W, D, phi.slope, xp)
    ref = np.einsum("mn,bn,nk->bmk", A, D, W)
    np.testing.assert_allclose(M, ref, atol=1e-12 * np.max(np.abs(ref)))


def test_latent_pursuit_through_fewer_measurements_than_units():
    # m = 120 < n_L = 150: every per-piece problem of the image layer is a
    # wide non-negative least squares (the WIDE_PIECE_STEPS regime).
    G = make_random_generator(
        [10, 60, 150, 200], output_activation=("plu", {"slope": 0.1, "c": 1.0}), random_state=0
    )
    rng = np.random.default_rng(0)
    m = 120
    A = rng.standard_normal((m, G.n_output)) / np.sqrt(m)
    Z = rng.standard_normal((12, G.n_latent))
    Y = G.forward(Z) @ A.T
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Zh = LatentPursuitInverter(G, measurement=A).fit(Y).transform(Y)
    err = np.linalg.norm(Zh - Z, axis=1) / np.linalg.norm(Z, axis=1)
    assert np.all(err < 1e-3)
