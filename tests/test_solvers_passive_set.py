"""The compact passive sets of the Lawson-Hanson solver (slots, rank-k updates)."""

import numpy as np
import pytest

from skinvert.solvers._lawson_hanson import nnls_lawson_hanson
from skinvert.solvers._passive_set import PassiveSet


def _gram(m, k, B, seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, k)) / np.sqrt(m)
    return W.T @ W, rng


def _check_inverse(S, G, atol):
    """Every row's maintained inverse is (G_PP)^-1 and its slots match its mask."""
    Sf = S.settled(np)
    P = S.mask(np)
    for b in range(S.idx.shape[0]):
        occ = S.idx[b] < S.k
        cols = S.idx[b][occ]
        assert sorted(cols.tolist()) == np.flatnonzero(P[b]).tolist()
        # the inverse of the slot order: every passive column's slot holds it
        slot = S.slot(np)[b]
        assert np.array_equal(S.idx[b][slot[P[b]]], np.flatnonzero(P[b]))
        Gb = G if G.ndim == 2 else G[b]
        inv = np.linalg.inv(Gb[np.ix_(cols, cols)])
        np.testing.assert_allclose(Sf.M[b][np.ix_(occ, occ)], inv, atol=atol)


@pytest.mark.parametrize("per_row", [False, True])
def test_updates_and_lazy_drops_keep_the_inverse(per_row):
    m, k, B = 40, 60, 5
    G, rng = _gram(m, k, B, 0)
    if per_row:
        G = np.stack([G + 0.1 * np.eye(k) * (b + 1) for b in range(B)])
    S = PassiveSet.empty(B, k, np.float64, None, np)
    for _ in range(6):
        P = S.mask(np)
        q = 7
        J = np.stack([rng.choice(np.flatnonzero(~P[b]), q, replace=False) for b in range(B)])
        valid = rng.random((B, q)) < 0.8
        S, _ = S.add(G, J, valid, np)
        _check_inverse(S, G, 1e-8)
        for _ in range(2):  # two drops pending before the next update
            P = S.mask(np)
            drop = P & (rng.random(P.shape) < 0.15)
            drop[0] = False  # a row that drops nothing
            S = S.drop(drop, np)
            _check_inverse(S, G, 1e-8)
        S = S.compact(np)
        _check_inverse(S, G, 1e-8)


def test_add_decides_the_first_inner_move():
    """With r, add() leaves out the columns of the block whose least squares
    on P + J is not positive, and reports the old columns to drop."""
    m, k, B = 30, 50, 4
    G, rng = _gram(m, k, B, 1)
    r = rng.standard_normal((B, k))
    S = PassiveSet.empty(B, k, np.float64, None, np)
    J = np.tile(np.arange(10), (B, 1))
    S, _ = S.add(G, J, np.ones((B, 10), bool), np)
    x = np.clip(S.solve(r, np), 0, None)
    J2 = np.tile(np.arange(10, 20), (B, 1))
    full, _ = S.add(G, J2, np.ones((B, 10), bool), np)
    z = full.solve(r, np)  # least squares on P + J
    part, (drop, fresh) = S.add(
        G, J2, np.ones((B, 10), bool), np, r=r, x=x, aggressive=np.ones(B, bool)
    )
    P_full = full.mask(np)
    added = part.mask(np) & ~S.mask(np)
    np.testing.assert_array_equal(added, P_full & ~S.mask(np) & (z > 0))
    np.testing.assert_array_equal(drop, S.mask(np) & (z <= 0))
    np.testing.assert_array_equal(fresh, ((z <= 0) & P_full).any(1))


def test_torch_equals_numpy():
    torch = pytest.importorskip("torch")
    from sklearn.externals.array_api_compat import torch as xpt

    rng = np.random.default_rng(2)
    m, k, B, s = 30, 48, 4, 9
    W = rng.standard_normal((m, k)) / np.sqrt(m)
    X = np.zeros((B, k))
    for i in range(B):
        X[i, rng.choice(k, s, replace=False)] = rng.uniform(0.5, 2.0, s)
    G, R = W.T @ W, X @ W.T @ W
    x_np, c_np = nnls_lawson_hanson(G, R, 0.0, np, rank=m)
    x_t, c_t = nnls_lawson_hanson(torch.asarray(G), torch.asarray(R), 0.0, xpt, rank=m)
    np.testing.assert_allclose(x_t.numpy(), x_np, atol=1e-12)
    np.testing.assert_array_equal(c_t.numpy(), c_np)
    np.testing.assert_allclose(x_np, X, atol=1e-10)
