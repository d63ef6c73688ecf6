"""Bad input gets a clear error naming what was expected; inputs are never modified."""

import numpy as np
import pytest

from skinvert import GradientDescentInverter, OracleInverter, make_random_generator

G = make_random_generator([3, 12, 30], random_state=0)
ESTIMATORS = [
    lambda: GradientDescentInverter(G, transform_max_iter=50, random_state=0),
    lambda: OracleInverter(G, transform_max_iter=5),
]


def _X(n=5, seed=0):
    return G.forward(np.random.default_rng(seed).standard_normal((n, 3)))


@pytest.mark.parametrize("make", ESTIMATORS)
@pytest.mark.parametrize(
    "X, match",
    [
        (np.full((2, 30), np.inf), "infinity|inf"),
        (np.ones((2, 29)), "29 features.*30"),
        (np.ones(30), "2D array"),
        (np.ones((0, 30)), "0 sample"),
        (np.array([["a"] * 30], dtype=object), "could not convert|Unable to convert|float"),
        (np.ones((2, 30), dtype=complex), "[Cc]omplex"),
    ],
)
def test_fit_rejects(make, X, match):
    with pytest.raises(ValueError, match=match):
        make().fit(X)


@pytest.mark.parametrize("make", ESTIMATORS)
def test_transform_rejects(make):
    est = make().fit(_X())
    with pytest.raises(ValueError, match="inf"):
        est.transform(np.where(np.eye(2, 30) > 0, np.inf, 0.1))
    with pytest.raises(ValueError, match="29 features"):
        est.transform(np.ones((2, 29)))
    with pytest.raises(ValueError, match="2D array"):
        est.transform(np.ones(30))
    Xn = _X(3)
    Xn[1] = np.nan
    with pytest.raises(ValueError, match=r"1 row\(s\) of X have no observed entry.*row 1"):
        est.transform(Xn)
    with pytest.raises(ValueError, match="latent components|features"):
        est.inverse_transform(np.ones((2, 4)))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("make", ESTIMATORS)
def test_inputs_not_modified_and_repeatable(make):
    X = _X(6)
    X[0, :5] = np.nan
    X.setflags(write=False)  # any in-place write would raise
    Xc = X.copy()
    est = make().fit(X)
    a = est.transform(X)
    b = est.transform(X)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(X, Xc)
    est.score(X)


def test_unfitted_errors():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        OracleInverter(G).transform(_X())


def test_bad_parameters():
    with pytest.raises(ValueError, match="learning_rate"):
        GradientDescentInverter(G, learning_rate=-1).fit(_X())
    with pytest.raises(ValueError, match="method"):
        OracleInverter(G, method="svd").fit(_X())
    with pytest.raises(ValueError, match="generator"):
        OracleInverter("G").fit(_X())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_score_uses_observed_entries_only():
    X = _X(4)
    Xm = X.copy()
    Xm[:, :10] = np.nan
    est = GradientDescentInverter(G, transform_max_iter=100, random_state=0).fit(X)
    R = X - est.inverse_transform(est.transform(X))
    assert est.score(X) == pytest.approx(-np.mean(R**2), rel=1e-12)
    Rm = (Xm - est.inverse_transform(est.transform(Xm)))[:, 10:]
    assert est.score(Xm) == pytest.approx(-np.mean(Rm**2), rel=1e-12)
