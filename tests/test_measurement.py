"""Linear measurements y = A G(z) + e (the ``measurement`` parameter)."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import aslinearoperator

from skinvert import (
    GradientDescentInverter,
    LatentPursuitInverter,
    LayeredBPInverter,
    OracleInverter,
    make_random_generator,
)
from skinvert.algorithms.gradient_descent import loss_and_gradient
from skinvert.operators import Measurement

from ._helpers import record_oracle_runs, snr_db

PLU = ("plu", {"slope": 0.1, "c": 1.0})


def _problem(act, m, n_rows=12, seed=0):
    # 10-60-150-200: m >= n_L = 150 keeps every layer problem of the pursuit
    # (also the per-piece image layer) overdetermined.
    G = make_random_generator([10, 60, 150, 200], output_activation=act, random_state=0)
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, G.n_output)) / np.sqrt(m)
    Z = rng.standard_normal((n_rows, G.n_latent))
    return G, A, Z, G.forward(Z) @ A.T


@pytest.mark.parametrize("act", ["identity", PLU, ("leaky_relu", {"slope": 0.2})])
def test_latent_pursuit_recovers_z_from_gaussian_measurements(act):
    G, A, Z, Y = _problem(act, m=180)
    est = LatentPursuitInverter(G, measurement=A).fit(Y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Zhat = est.transform(Y)
    assert np.all(snr_db(Z, Zhat) >= 60)
    assert est.n_features_in_ == 180
    assert est.inverse_transform(Zhat).shape == (Z.shape[0], G.n_output)
    assert est.score(Y) > -1e-20


@pytest.mark.parametrize("act", ["identity", PLU, "tanh"])
def test_gradient_descent_recovers_z_from_gaussian_measurements(act):
    G = make_random_generator([5, 40, 100], output_activation=act, random_state=0)
    rng = np.random.default_rng(1)
    A = rng.standard_normal((60, 100)) / np.sqrt(60)
    Z = rng.standard_normal((10, 5))
    Y = G.forward(Z) @ A.T
    est = GradientDescentInverter(G, measurement=A, n_restarts=3, random_state=0).fit(Y)
    Zhat = est.transform(Y)
    assert np.median(snr_db(Z, Zhat)) >= 60
    assert np.mean(snr_db(Z, Zhat) >= 60) >= 0.8


def test_gradient_through_measurement_matches_finite_differences():
    G = make_random_generator([5, 30, 50], output_activation="tanh", random_state=0)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((20, 50))
    Y = rng.standard_normal((3, 20))
    obs = (rng.random(Y.shape) > 0.2).astype(float)
    Z = rng.standard_normal((3, 5))
    Ws, bs = G.as_arrays(np, dtype=np.float64)
    meas = Measurement(A, np, np.float64)
    kw = dict(alpha=0.1, measurement=meas)
    loss, grad = loss_and_gradient(Z, Y, obs, Ws, bs, G.activation, np, **kw)
    R = obs * (G.forward(Z) @ A.T - Y)
    np.testing.assert_allclose(loss, 0.5 * np.sum(R * R, 1) + 0.05 * np.sum(Z * Z, 1))
    h = 1e-6
    for j in range(5):
        E = np.zeros_like(Z)
        E[:, j] = h
        lp, _ = loss_and_gradient(Z + E, Y, obs, Ws, bs, G.activation, np, **kw)
        lm, _ = loss_and_gradient(Z - E, Y, obs, Ws, bs, G.activation, np, **kw)
        np.testing.assert_allclose(grad[:, j], (lp - lm) / (2 * h), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(
    "wrap", [sp.csr_array, aslinearoperator], ids=["sparse", "LinearOperator"]
)
def test_operators_give_the_dense_result(wrap):
    G, A, Z, Y = _problem(PLU, m=180, n_rows=6)
    dense = LatentPursuitInverter(G, measurement=A).fit(Y).transform(Y)
    other = LatentPursuitInverter(G, measurement=wrap(A)).fit(Y).transform(Y)
    np.testing.assert_allclose(other, dense, rtol=1e-7, atol=1e-9)
    gd_d = GradientDescentInverter(G, measurement=A, transform_max_iter=20, random_state=0)
    gd_o = GradientDescentInverter(G, measurement=wrap(A), transform_max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(
            gd_o.fit(Y).transform(Y), gd_d.fit(Y).transform(Y), rtol=1e-9, atol=1e-12
        )


def test_missing_measurements():
    G, A, Z, Y = _problem(PLU, m=200, n_rows=8)
    rng = np.random.default_rng(3)
    Ym = Y.copy()
    Ym[rng.random(Y.shape) < 0.1] = np.nan  # about 180 measurements left per row
    est = LatentPursuitInverter(G, measurement=A).fit(Ym)
    Zhat = est.transform(Ym)
    assert np.median(snr_db(Z, Zhat)) >= 60
    assert est.score(Ym) > -1e-12
    gd = GradientDescentInverter(G, measurement=A, transform_max_iter=5, random_state=0).fit(Ym)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.all(np.isfinite(gd.transform(Ym)))


@pytest.mark.parametrize("cls", [GradientDescentInverter, LatentPursuitInverter])
def test_float32_preserved(cls):
    G, A, Z, Y = _problem("identity", m=180, n_rows=4)
    est = cls(G, measurement=A, transform_max_iter=50).fit(Y.astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Zhat = est.transform(Y.astype(np.float32))
    assert Zhat.dtype == np.float32


@pytest.mark.parametrize("cls", [GradientDescentInverter, LatentPursuitInverter])
def test_shape_errors_name_both_sizes(cls):
    G, A, Z, Y = _problem("identity", m=180, n_rows=3)
    with pytest.raises(ValueError, match="180 measurements"):
        cls(G, measurement=A).fit(Y[:, :170])
    with pytest.raises(ValueError, match="200"):
        cls(G, measurement=A[:, :190]).fit(Y)
    with pytest.raises(ValueError, match="2-D"):
        cls(G, measurement=A[0]).fit(Y)
    bad = A.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        cls(G, measurement=bad).fit(Y)
    with pytest.raises(TypeError, match="measurement"):
        cls(G, measurement="A").fit(Y)
    est = cls(G, measurement=A).fit(Y)
    with pytest.raises(ValueError, match="180 features"):
        est.transform(Y[:, :170])


def test_unsupported_combinations_raise():
    G, A, Z, Y = _problem("tanh", m=180, n_rows=3)
    with pytest.raises(ValueError, match="only supported by GradientDescentInverter"):
        LatentPursuitInverter(G, measurement=A).fit(Y)
    G, A, Z, Y = _problem(PLU, m=180, n_rows=3)
    with pytest.raises(ValueError, match="identity output only"):
        LatentPursuitInverter(G, measurement=A, solver="paper").fit(Y)
    with pytest.raises(ValueError, match="identity output only"):
        LayeredBPInverter(G, measurement=A).fit(Y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_layered_bp_and_paper_solver_with_identity_output():
    G, A, Z, Y = _problem("identity", m=180, n_rows=4)
    Zhat = LatentPursuitInverter(G, measurement=A, solver="paper").fit(Y).transform(Y)
    assert np.all(np.isfinite(Zhat))
    Zhat = LayeredBPInverter(G, measurement=A).fit(Y).transform(Y)
    assert np.median(snr_db(Z, Zhat)) >= 60


def test_parameter_untouched_and_generator_size():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((30, 40))
    X = rng.standard_normal((5, 30))
    G = make_random_generator([10, 40, 40], output_activation="identity", random_state=0)
    est = GradientDescentInverter(G, measurement=A, transform_max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X).transform(X)
    assert est.get_params()["measurement"] is A
    assert est.generator_.n_output == 40 and est.n_features_in_ == 30


def test_array_api_strict_matches_numpy():
    xps = pytest.importorskip("array_api_strict")
    from sklearn import config_context

    G, A, Z, Y = _problem(PLU, m=180, n_rows=4)
    ref = LatentPursuitInverter(G, measurement=A).fit(Y).transform(Y)
    gd_ref = GradientDescentInverter(G, measurement=A, transform_max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gd_ref = gd_ref.fit(Y).transform(Y)
        with config_context(array_api_dispatch=True):
            Ys = xps.asarray(Y)
            As = xps.asarray(A)
            out = LatentPursuitInverter(G, measurement=As).fit(Ys).transform(Ys)
            gd = GradientDescentInverter(G, measurement=As, transform_max_iter=30, random_state=0)
            gd = gd.fit(Ys).transform(Ys)
            with pytest.raises(TypeError, match="NumPy data"):
                LatentPursuitInverter(G, measurement=aslinearoperator(A)).fit(Ys)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.asarray(gd), gd_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("act", ["identity", PLU, "tanh"])
def test_oracle_recovers_z_from_measurements_on_true_supports(act):
    """Algorithm 1 through A: exact with the true supports, for every output
    (tanh: from the identity start, Levenberg-Marquardt through A and phi)."""
    G, A, Z, Y = _problem(act, m=180)
    Y = np.where(np.random.default_rng(3).random(Y.shape) < 0.1, np.nan, Y)  # missing measurements
    est = OracleInverter(G, measurement=A).fit(Y)
    Zhat = est.transform(Y, supports=G.supports(Z))
    assert np.all(snr_db(Z, Zhat) >= 60)


def test_oracle_estimates_supports_through_measurements():
    G, A, Z, Y = _problem("identity", m=180)
    est = OracleInverter(G, measurement=A).fit(Y)
    assert est.support_estimator_.measurement is A
    assert np.all(snr_db(Z, est.transform(Y)) >= 60)


def test_layerwise_oracle_refuses_a_measurement():
    G, A, Z, Y = _problem("identity", m=180)
    with pytest.raises(ValueError, match="layerwise"):
        OracleInverter(G, method="layerwise", measurement=A).fit(Y)


def test_refresh_rounds_through_a_measurement_are_short(monkeypatch):
    """Fewer measurements than units (m = 120 < n_L = 150): the pursuit's
    supports need the refresh. Rows with every measurement observed take the
    fixed-support polish (no Algorithm 1 run beyond the debiasing); rows with
    a missing measurement take rounds of refresh_step_iter (6)
    Levenberg-Marquardt iterations, then the moved rows run to convergence."""
    G, A, Z, Y = _problem(PLU, m=120, n_rows=16)
    calls = record_oracle_runs(monkeypatch)
    est = LatentPursuitInverter(G, measurement=A).fit(Y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Zhat, info = est.transform(Y, return_info=True)
    assert calls == [30]  # the debiasing only
    assert np.any(info["stage"] == "refresh") and np.all(info["n_iter"] >= 0)
    assert np.median(snr_db(Z, Zhat)) >= 60

    calls.clear()
    Y_missing = Y.copy()
    Y_missing[:, 0] = np.nan  # every row misses one measurement
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Zhat = est.transform(Y_missing)
    assert calls[0] == 30 and calls[-1] == 30  # the debiasing, the finish
    assert calls[1:-1] and set(calls[1:-1]) == {6}  # the refresh rounds
    assert np.median(snr_db(Z, Zhat)) >= 60
