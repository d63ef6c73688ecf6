"""The Oracle (Algorithms 1 and 6): exact recovery on known supports."""

import numpy as np
import pytest
import sklearn
from hypothesis import assume, given
from hypothesis import strategies as st
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skinvert import OracleInverter, make_random_generator

from ._helpers import corollary1_met, snr_db


@given(
    n0=st.integers(2, 6),
    growth=st.sampled_from([(4, 3), (5, 2), (6, 3)]),
    act=st.sampled_from(["tanh", "identity", "sigmoid", "plu", "leaky_relu"]),
    method=st.sampled_from(["end_to_end", "layerwise"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_oracle_exact_under_corollary1(n0, growth, act, method, seed):
    g1, g2 = growth
    sizes = [n0, g1 * n0, g1 * g2 * n0, g1 * g2 * 2 * n0 + 5]
    G = make_random_generator(sizes, output_activation=act, random_state=seed)
    Z = np.random.default_rng(seed).standard_normal((40, n0))
    keep = corollary1_met(G, Z)
    assume(keep.sum() >= 5)
    Z = Z[keep]
    X = G.forward(Z)
    Zhat = OracleInverter(G, method=method).fit(X).transform(X, supports=G.supports(Z))
    assert np.min(snr_db(Z, Zhat)) >= 100


def test_oracle_acceptance_net(small_generator):
    """The foundation issue's acceptance: [20, 80, 200, 400], tanh, 512 signals."""
    G = small_generator
    Z = np.random.default_rng(1).standard_normal((512, 20))
    X = G.forward(Z)
    Zhat = OracleInverter(G).fit(X).transform(X, supports=G.supports(Z))
    assert np.min(snr_db(Z, Zhat)) >= 100


def test_oracle_supports_forms_agree(small_generator):
    G = small_generator
    Z = np.random.default_rng(2).standard_normal((10, 20))
    X = G.forward(Z)
    S = G.supports(Z)
    est = OracleInverter(G).fit(X)
    a = est.transform(X, supports=S)
    b = est.transform(X, supports=np.concatenate(S, axis=1))
    c = est.transform(X, supports=[s.astype(float) for s in S])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_oracle_bad_supports(small_generator):
    G = small_generator
    Z = np.random.default_rng(2).standard_normal((4, 20))
    X = G.forward(Z)
    S = G.supports(Z)
    est = OracleInverter(G).fit(X)
    with pytest.raises(ValueError, match="2 arrays"):
        est.transform(X, supports=S[:1])
    with pytest.raises(ValueError, match=r"supports\[1\] \(layer 2\) must have shape \(4, 200\)"):
        est.transform(X, supports=[S[0], S[1][:, :10]])
    with pytest.raises(ValueError, match="shape"):
        est.transform(X, supports=np.ones((4, 3), dtype=bool))


def test_oracle_without_supports_debiases_estimate(small_generator):
    """With no supports, the Oracle debiases the supports of support_estimator."""
    G = small_generator
    Z = np.random.default_rng(3).standard_normal((8, 20))
    X = G.forward(Z)
    est = OracleInverter(G, random_state=0).fit(X)
    Z0 = est.support_estimator_.transform(X)
    expected = est.transform(X, supports=G.supports(Z0))
    np.testing.assert_array_equal(est.transform(X), expected)


def test_oracle_in_pipeline_with_metadata_routing(small_generator):
    G = small_generator
    Z = np.random.default_rng(4).standard_normal((6, 20))
    X = G.forward(Z)
    S = np.concatenate(G.supports(Z), axis=1)
    with sklearn.config_context(enable_metadata_routing=True):
        oracle = OracleInverter(G).set_transform_request(supports=True)
        pipe = make_pipeline(FunctionTransformer(), oracle).fit(X)
        Zhat = pipe.transform(X, supports=S)
    assert np.min(snr_db(Z, Zhat)) >= 100


def test_oracle_with_missing_entries(small_generator):
    G = small_generator
    rng = np.random.default_rng(5)
    Z = rng.standard_normal((16, 20))
    X = G.forward(Z)
    Xm = X.copy()
    Xm[rng.random(X.shape) < 0.45] = np.nan
    for method in ("end_to_end", "layerwise"):
        Zhat = OracleInverter(G, method=method).fit(X).transform(Xm, supports=G.supports(Z))
        assert np.min(snr_db(Z, Zhat)) >= 100


def test_oracle_saturated_tanh_entries():
    """Saturated outputs (tanh == +-1) do not lose the sample."""
    G = make_random_generator([4, 24, 60], random_state=0)
    G = type(G)([G.weights[0], 40 * G.weights[1]], output_activation="tanh")
    Z = np.random.default_rng(6).standard_normal((10, 4))
    X = G.forward(Z)
    assert np.any(np.abs(X) == 1.0)
    Zhat = OracleInverter(G).fit(X).transform(X, supports=G.supports(Z))
    assert np.all(np.isfinite(Zhat))
    assert np.median(snr_db(Z, Zhat)) >= 100


def test_oracle_ridge_shrinks(small_generator):
    G = small_generator
    Z = np.random.default_rng(7).standard_normal((5, 20))
    X = G.forward(Z)
    S = G.supports(Z)
    z0 = OracleInverter(G).fit(X).transform(X, supports=S)
    z1 = OracleInverter(G, gamma=10.0).fit(X).transform(X, supports=S)
    assert np.all(np.linalg.norm(z1, axis=1) < np.linalg.norm(z0, axis=1))
