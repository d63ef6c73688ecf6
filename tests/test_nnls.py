"""The batched Lawson-Hanson solver of the non-negative layer problems (eqs. 8-9)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import nnls

from skinvert import LatentPursuitInverter, make_random_generator
from skinvert.solvers._lawson_hanson import nnls_lawson_hanson

from ._helpers import snr_db


def _problem(m, k, B, s, seed):
    """Wide (k > m) non-negative systems with a planted s-sparse solution."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, k)) / np.sqrt(m)
    X = np.zeros((B, k))
    for i in range(B):
        X[i, rng.choice(k, s, replace=False)] = rng.uniform(0.5, 2.0, s)
    return W, X, X @ W.T


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(3, 40),
    extra=st.integers(0, 40),
    B=st.integers(1, 6),
    lam=st.sampled_from([0.0, 1e-3, 1e-1]),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_scipy_nnls(m, extra, B, lam, seed):
    """Every row reaches the KKT point of min 1/2||Wx - t||^2 + lam 1^T x, x >= 0:
    an objective no larger than scipy's (sequential) NNLS, to rounding."""
    rng = np.random.default_rng(seed)
    # lam = 0: as many columns as you like (Lawson-Hanson keeps the passive
    # columns independent); lam > 0: at most m columns (see the Notes of
    # nnls_lawson_hanson).
    k = m + extra if lam == 0 else max(1, m - extra)
    W = rng.standard_normal((m, k))
    T = rng.standard_normal((B, m))
    G, R = W.T @ W, T @ W
    x, conv = nnls_lawson_hanson(G, R, lam, np, rank=m)
    assert conv.all()
    assert (x >= 0).all()
    f = 0.5 * np.sum((x @ W.T - T) ** 2, axis=1) + lam * x.sum(1)
    for i in range(B):
        # With full column rank, lam 1^T x folds into the data (complete the
        # square): W x = t - lam W^{+T} 1 is an NNLS with the same minimiser.
        t_i = T[i] - lam * np.linalg.pinv(W).T @ np.ones(k) if lam else T[i]
        xs, _ = nnls(W, t_i, maxiter=50 * k)
        fs = 0.5 * np.sum((W @ xs - T[i]) ** 2) + lam * xs.sum()
        assert f[i] <= fs + 1e-8 * (1 + abs(fs))


def test_recovers_planted_sparse_solution_of_wide_system():
    W, X, T = _problem(60, 90, 8, 20, 0)
    x, conv = nnls_lawson_hanson(W.T @ W, T @ W, 0.0, np, rank=60)
    assert conv.all()
    np.testing.assert_allclose(x, X, atol=1e-10)


def test_per_row_gram_and_rank():
    """(B, k, k) Gram matrices (rows with missing entries) give the same
    solutions as the shared Gram restricted to each row's equations."""
    W, X, T = _problem(50, 70, 5, 15, 1)
    w = np.ones_like(T)
    w[:, :5] = 0.0
    G = np.einsum("mi,bm,mj->bij", W, w, W)
    x, conv = nnls_lawson_hanson(G, (w * T) @ W, 0.0, np, rank=w.sum(1))
    assert conv.all()
    np.testing.assert_allclose(x, X, atol=1e-9)


@pytest.mark.parametrize("per_row", [False, True])
def test_blocks_of_rows_give_the_one_block_answer(monkeypatch, per_row):
    """On NumPy the rows run in blocks (host_block_rows): same x, same flags,
    with a shared or a per-row Gram matrix, rank and lam."""
    from skinvert.solvers import _lawson_hanson as lh

    W, X, T = _problem(40, 60, 11, 12, 2)
    G, r, rank, lam = W.T @ W, T @ W, 40, 0.0
    if per_row:
        w = np.ones_like(T)
        w[::2, :4] = 0.0
        G = np.einsum("mi,bm,mj->bij", W, w, W)
        r, rank = (w * T) @ W, w.sum(1)
        lam = np.linspace(0.0, 1e-3, len(T))
    sizes = []

    def rows(xp, dtype, row_elements, minimum=16):
        sizes.append(np.dtype(dtype).itemsize * row_elements)
        return 4

    monkeypatch.setattr(lh, "host_block_rows", lambda xp, dtype, n, minimum=16: 10**9)
    x1, c1 = lh.nnls_lawson_hanson(G, r, lam, np, rank=rank)
    monkeypatch.setattr(lh, "host_block_rows", rows)
    x4, c4 = lh.nnls_lawson_hanson(G, r, lam, np, rank=rank)
    assert len(sizes) == 4  # the call and its 3 blocks of at most 4 rows
    np.testing.assert_array_equal(c4, c1)
    np.testing.assert_allclose(x4, x1, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype):
    W, X, T = _problem(40, 50, 3, 10, 2)
    W, T = W.astype(dtype), T.astype(dtype)
    x, conv = nnls_lawson_hanson(W.T @ W, T @ W, 0.0, np, rank=40)
    assert x.dtype == dtype
    assert conv.all()
    rtol = 1e-3 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(x, X, atol=rtol * X.max())


def test_array_api_strict_equals_numpy():
    xps = pytest.importorskip("array_api_strict")
    W, X, T = _problem(30, 45, 4, 8, 3)
    G, R = W.T @ W, T @ W
    x_np, c_np = nnls_lawson_hanson(G, R, 0.0, np, rank=30)
    x_s, c_s = nnls_lawson_hanson(xps.asarray(G), xps.asarray(R), 0.0, xps, rank=30)
    np.testing.assert_allclose(np.asarray(x_s), x_np, atol=1e-12)
    assert np.array_equal(np.asarray(c_s), c_np)


def test_latent_pursuit_exact_with_hidden_layer_wider_than_signal():
    """The paper's Figure 4 regime n_0 < s_1 < n < n_1 (here scaled down by 10:
    n_0 = 10, n_1 = 85, n = 63): the image layer has more unknowns than
    equations, yet its non-negative solution is unique and Latent-Pursuit
    recovers z exactly."""
    G = make_random_generator([10, 85, 63], output_activation="tanh", random_state=0)
    Z = np.random.default_rng(0).standard_normal((16, 10))
    X = G.forward(Z)
    Zhat = LatentPursuitInverter(G).fit(X).transform(X)
    assert np.median(snr_db(Z, Zhat)) >= 100
