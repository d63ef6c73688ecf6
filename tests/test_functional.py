"""The functional API: latent_pursuit, layered_basis_pursuit, oracle_inversion."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from skinvert import (
    LatentPursuitInverter,
    LayeredBPInverter,
    OracleInverter,
    latent_pursuit,
    layered_basis_pursuit,
    make_random_generator,
    oracle_inversion,
)
from skinvert.solvers import FISTA, ActiveSet, LinearizedADMM


@pytest.fixture(scope="module")
def data():
    G = make_random_generator([6, 30, 80, 160], random_state=0)
    Z = np.random.default_rng(0).standard_normal((10, 6))
    return G, Z, G.forward(Z)


def test_functions_equal_their_estimators(data):
    """Each estimator is a thin wrapper of the function's private twin."""
    G, Z, X = data
    X = X.copy()
    X[np.random.default_rng(1).random(X.shape) < 0.2] = np.nan
    np.testing.assert_array_equal(
        latent_pursuit(X, G), LatentPursuitInverter(G).fit(X).transform(X)
    )
    np.testing.assert_array_equal(
        layered_basis_pursuit(X, G, lam=1e-3), LayeredBPInverter(G, lam=1e-3).fit(X).transform(X)
    )
    S = G.supports(Z)
    np.testing.assert_array_equal(
        oracle_inversion(X, G, S), OracleInverter(G).fit(X).transform(X, supports=S)
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_recovery_and_dtype(data, dtype):
    G, Z, X = data
    Zh, supports = latent_pursuit(X.astype(dtype), G, return_supports=True)
    assert Zh.dtype == dtype
    assert [S.shape for S in supports] == [S.shape for S in G.supports(Z)]
    tol = 1e-6 if dtype == np.float64 else 1e-2
    np.testing.assert_allclose(Zh, Z, atol=tol)
    np.testing.assert_allclose(oracle_inversion(X.astype(dtype), G, G.supports(Z)), Z, atol=tol)


def test_solver_objects_and_aliases(data):
    """A solver object owns its knobs; "paper" is FISTA + linearized ADMM."""
    G, Z, X = data
    exact = latent_pursuit(X, G, solver=ActiveSet(max_iter=30))
    np.testing.assert_array_equal(exact, latent_pursuit(X, G))
    paper = latent_pursuit(X, G, solver="paper", max_iter=300)
    mixed = latent_pursuit(
        X,
        G,
        solver={
            "image": FISTA(300),
            "hidden": LinearizedADMM(max_iter=300),
            "latent": LinearizedADMM(max_iter=300),
        },
    )
    np.testing.assert_array_equal(paper, mixed)
    with pytest.raises(ValueError, match="image"):
        latent_pursuit(X, G, solver=LinearizedADMM())


def test_validation(data):
    G, Z, X = data
    with pytest.raises(InvalidParameterError):
        latent_pursuit(X, G, lam=-1.0)
    with pytest.raises(InvalidParameterError):
        layered_basis_pursuit(X, G, solver="nope")
    with pytest.raises(ValueError, match="at most one"):
        layered_basis_pursuit(X, G, epsilon=0.1, noise_std=0.1)
    with pytest.raises(ValueError, match="features"):
        latent_pursuit(X[:, :10], G)
    with pytest.raises(ValueError, match="supports"):
        oracle_inversion(X, G, G.supports(Z)[:1])
    with pytest.raises(ValueError, match="lam"):
        latent_pursuit(X, G, lam=[0.0, 0.1, 0.2])


def test_lam_per_sample_types(data):
    """lam given as NumPy float32 scalars (normalised once) works like floats."""
    G, Z, X = data
    a = latent_pursuit(X, G, lam=np.float32(1e-3))
    b = latent_pursuit(X, G, lam=[float(np.float32(1e-3))] * 2)
    np.testing.assert_array_equal(a, b)


def test_noise_retries_are_exposed(data):
    G, Z, X = data
    Y = X + 1e-3 * np.random.default_rng(2).standard_normal(X.shape)
    Zr = latent_pursuit(Y, G, noise_std=1e-3)
    Zp = latent_pursuit(Y, G, noise_std=1e-3, noise_retries=())
    loss = lambda Zh: np.sum((G.forward(Zh) - Y) ** 2, axis=1)  # noqa: E731
    assert np.all(loss(Zr) <= loss(Zp) * (1 + 1e-12))


def test_estimators_accept_solver_objects(data):
    """solver= takes an object (cloned with the estimator) as well as an alias."""
    G, Z, X = data
    est = LatentPursuitInverter(G, solver=ActiveSet(max_iter=30, constraint_max_iter=5))
    np.testing.assert_array_equal(clone(est).fit(X).transform(X), latent_pursuit(X, G))
    bp = LayeredBPInverter(G, solver=FISTA(2000, tol=1e-12)).fit(X)
    np.testing.assert_array_equal(
        bp.transform(X), layered_basis_pursuit(X, G, solver="paper", max_iter=2000, tol=1e-12)
    )
