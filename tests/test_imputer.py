"""GeneratorImputer: inpainting with the generator."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from skinvert import (
    GeneratorImputer,
    GradientDescentInverter,
    LatentPursuitInverter,
    OracleInverter,
    make_random_generator,
)
from skinvert.metrics import snr_db


def test_imputer_restores_missing_and_keeps_observed():
    G = make_random_generator([8, 50, 140, 300], random_state=0)
    rng = np.random.default_rng(0)
    X = G.forward(rng.standard_normal((20, 8)))
    Xm = X.copy()
    Xm[rng.random(X.shape) < 0.45] = np.nan
    Xf = GeneratorImputer(LatentPursuitInverter(G)).fit(Xm).transform(Xm)
    obs = ~np.isnan(Xm)
    np.testing.assert_array_equal(Xf[obs], Xm[obs])
    missing_ref = np.where(obs, np.nan, X)
    assert np.median(snr_db(missing_ref, np.where(obs, np.nan, Xf))) >= 60


def test_imputer_in_pipeline_before_a_nan_intolerant_model():
    G = make_random_generator([4, 30, 80, 120], random_state=1)
    rng = np.random.default_rng(1)
    X = G.forward(rng.standard_normal((30, 4)))
    y = X[:, 0] + X[:, 1]
    Xm = X.copy()
    Xm[:, :40] = np.nan
    pipe = make_pipeline(GeneratorImputer(LatentPursuitInverter(G)), Ridge(alpha=1e-6)).fit(Xm, y)
    assert pipe.score(Xm, y) > 0.99


def test_imputer_accepts_any_inverter():
    G = make_random_generator([4, 30, 80, 120], random_state=2)
    X = G.forward(np.random.default_rng(2).standard_normal((5, 4)))
    imp = GeneratorImputer(OracleInverter(G)).fit(X)
    np.testing.assert_array_equal(imp.transform(X), X)


def test_imputer_refuses_an_inverter_with_a_measurement():
    G = make_random_generator([3, 12, 20], output_activation="identity", random_state=0)
    A = np.random.default_rng(0).standard_normal((15, 20))
    X = G.forward(np.random.default_rng(1).standard_normal((4, 3))) @ A.T
    with pytest.raises(ValueError, match="measurement"):
        GeneratorImputer(GradientDescentInverter(G, measurement=A)).fit(X)
