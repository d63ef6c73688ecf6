"""HybridInverter and the exact polish (issue 13; the paper's section 6.1 outlook)."""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from skinvert import (
    GeneratorImputer,
    HybridInverter,
    ReLUGenerator,
    make_random_generator,
    polish,
)
from skinvert.algorithms.gradient_descent import adam_descent
from skinvert.algorithms.hybrid import HybridStarts, hybrid_batch
from skinvert.algorithms.polish import forward_loss, jacobian, polish_batch
from skinvert.operators import Measurement

from ._helpers import snr_db

PIECEWISE = ["identity", "leaky_relu", "plu"]


def _net(seed, act, n0=6, n1=40, n=90):
    return make_random_generator([n0, n1, n], output_activation=act, random_state=seed)


def _inside(G, Z, rng, scale=1e-3):
    """A start in the support region of Z (same hidden supports and phi pieces)."""
    W, b = G.as_arrays(np, dtype=np.float64)
    _, U, M = forward_loss(Z, np.zeros((len(Z), G.n_output)), np.ones((len(Z), G.n_output)),
                           W, b, G.activation, np)
    for _ in range(40):
        Z0 = Z + scale * rng.standard_normal(Z.shape)
        _, U0, M0 = forward_loss(Z0, np.zeros_like(U), np.ones_like(U), W, b, G.activation, np)
        pieces = G.activation.derivative(U, np) == G.activation.derivative(U0, np)
        if all(np.array_equal(a, c) for a, c in zip(M, M0)) and pieces.all():
            return Z0
        scale /= 4
    raise AssertionError("no start in the support region")


@given(seed=st.integers(0, 2**16), act=st.sampled_from(PIECEWISE))
def test_polish_from_true_region_is_one_gauss_newton_step(seed, act):
    # Piecewise-linear phi, no noise: the fixed-support problem is linear
    # least squares, so one Gauss-Newton step lands on z. In double precision
    # the steps are mixed-precision (J^T J from the single-precision map):
    # the first lands within cond(J)^2 eps_32 of z (here 1e-3 * that from
    # it), the next on rounding, a last one confirms the fixed point (3
    # steps on 887 of 900 rows of 60 seeds x 3 phi, at most 4).
    G = _net(seed, act)
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((5, G.n_latent))
    Z0 = _inside(G, Z, rng)
    Zh, info = polish(Z0, G.forward(Z), G, return_info=True)
    np.testing.assert_allclose(Zh, Z, rtol=0, atol=1e-12 * np.abs(Z).max())
    assert np.all(info["n_iter"] <= 4) and np.all(info["fixed_point"])


@given(seed=st.integers(0, 2**16), act=st.sampled_from(["tanh", "sigmoid"]))
def test_polish_from_true_region_smooth_output(seed, act):
    G = _net(seed, act)
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((5, G.n_latent))
    Zh, info = polish(_inside(G, Z, rng), G.forward(Z), G, return_info=True)
    assert np.all(snr_db(Z, Zh) > 120) and np.all(info["fixed_point"])


@given(seed=st.integers(0, 2**16), act=st.sampled_from(PIECEWISE + ["tanh"]),
       extra=st.integers(0, 20))
def test_polish_exact_where_jacobian_has_full_column_rank(seed, act, extra):
    # y = A G(z) with m = n_0 + extra Gaussian measurements: on the true
    # supports the end-to-end Jacobian A diag(phi') A_S has full column rank,
    # so the fixed-support problem pins z down and the polish finds it.
    G = _net(seed, act)
    rng = np.random.default_rng(seed + 1)
    Z = rng.standard_normal((4, G.n_latent))
    m = G.n_latent + extra
    A = rng.standard_normal((m, G.n_output)) / np.sqrt(m)
    Y = G.forward(Z) @ A.T
    W, b = G.as_arrays(np, dtype=np.float64)
    meas = Measurement(A, np, np.float64)
    _, U, M = forward_loss(Z, Y, np.ones_like(Y), W, b, G.activation, np, measurement=meas)
    J = jacobian(U, M, W, b, G.activation, np, measurement=meas)
    s = np.linalg.svd(J, compute_uv=False)
    full = s[:, -1] > 1e-6 * s[:, 0]
    Zh = polish(_inside(G, Z, rng), Y, G, measurement=A)
    assert np.all(snr_db(Z[full], Zh[full]) > 100)


@given(seed=st.integers(0, 2**16), m=st.integers(8, 40), noisy=st.booleans())
def test_hybrid_never_worse_than_its_best_start(seed, m, noisy):
    G = _net(seed, "tanh")
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((6, G.n_latent))
    A = rng.standard_normal((m, G.n_output)) / np.sqrt(m)
    Y = G.forward(Z) @ A.T + (0.05 * rng.standard_normal((6, m)) if noisy else 0.0)
    W, b = G.as_arrays(np, dtype=np.float64)
    meas = Measurement(A, np, np.float64)
    init = rng.standard_normal((3, G.n_latent))
    obs = np.ones_like(Y)
    starts = HybridStarts(init, max_iter=30)
    Zh, info = hybrid_batch(Y, obs, W, b, G.activation, np, starts, measurement=meas,
                            noise_std=0.05 if noisy else None)
    best = np.full(6, np.inf)
    for r in range(3):
        Z0 = np.repeat(init[r : r + 1], 6, axis=0)
        _, lr, _, _ = adam_descent(Z0, Y, obs, W, b, G.activation, np, learning_rate=0.05,
                                   max_iter=30, measurement=meas)
        best = np.minimum(best, lr)
    loss, _, _ = forward_loss(Zh, Y, obs, W, b, G.activation, np, measurement=meas)
    # Rounding differs between batch shapes (GEMM blocking): compare to 1e-10.
    np.testing.assert_allclose(loss, info["loss"], rtol=1e-10, atol=1e-14)
    assert np.all(info["loss"] <= best * (1 + 1e-10))


@pytest.mark.parametrize("seed", [0, 1])
def test_basin_hopping_only_on_rows_no_start_fits(seed):
    # One short start leaves rows unfit (tanh, 12 measurements of 90 pixels);
    # the basin-hopping rounds restart those from their best code and fit
    # more of them, while the rows the start fits are untouched.
    from skinvert.algorithms.hybrid import _rounds, consistent_loss_bound

    G = make_random_generator([6, 40, 90], output_activation="tanh", random_state=seed)
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((16, 6))
    A = rng.standard_normal((12, 90)) / np.sqrt(12)
    Y = G.forward(Z) @ A.T
    W, b = G.as_arrays(np, dtype=np.float64)
    meas, obs = Measurement(A, np, np.float64), np.ones_like(Y)
    init, hops = rng.standard_normal((1, 6)), rng.standard_normal((6, 6))
    args = (Y, obs, W, b, G.activation, np)
    Z1, i1 = hybrid_batch(*args, HybridStarts(init, max_iter=20), measurement=meas)
    Z2, i2 = hybrid_batch(*args, HybridStarts(init, max_iter=20, perturb_codes=hops,
                                              per_round=2), measurement=meas)
    bound = consistent_loss_bound(Y, obs, np)
    fit1, fit2 = i1["loss"] <= bound, i2["loss"] <= bound
    assert fit1.sum() < fit2.sum()
    np.testing.assert_array_equal(Z2[fit1], Z1[fit1])
    assert np.all(i2["start"][fit1] == 0) and np.all(i2["start"][~fit1] >= 0)
    assert np.all(i2["loss"] <= i1["loss"])
    hopped = i2["start"] >= 1
    assert hopped.any() and np.all(hopped <= ~fit1) and np.all(i2["start"] <= 6)
    assert _rounds(3, 5, 2) == [(0, 2), (2, 3), (3, 5), (5, 7), (7, 8)]
    assert _rounds(2, 0, None) == [(0, 2)]


def test_polish_never_raises_the_loss():
    G = _net(3, "tanh")
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((20, G.n_latent))
    X = G.forward(Z) + 0.1 * rng.standard_normal((20, G.n_output))
    Z0 = rng.standard_normal(Z.shape) * 2
    W, b = G.as_arrays(np, dtype=np.float64)
    obs = np.ones_like(X)
    l0, _, _ = forward_loss(Z0, X, obs, W, b, G.activation, np)
    _, l1, _, _ = polish_batch(Z0, X, obs, W, b, G.activation, np)
    assert np.all(l1 <= l0)


@pytest.fixture(scope="module")
def tanh_cs():
    G = make_random_generator([8, 60, 200], random_state=2)
    rng = np.random.default_rng(4)
    Z = rng.standard_normal((12, 8))
    A = rng.standard_normal((24, 200)) / np.sqrt(24)
    return G, Z, A, G.forward(Z) @ A.T


def test_hybrid_exact_compressed_sensing_tanh(tanh_cs):
    G, Z, A, Y = tanh_cs
    est = HybridInverter(G, measurement=A, n_restarts=4, random_state=0).fit(Y)
    Zh, info = est.transform(Y, return_info=True)
    assert est.pursuit_ is None  # tanh through A: no layer-wise start
    assert np.all(snr_db(Z, Zh) > 60)
    assert info["start"].dtype == np.int32 and np.all(info["start"] >= 0)
    assert np.all(info["fixed_point"])
    assert est.start_max_iter_ == 100 and est.perturb_codes_.shape == (16, 8)
    # basin hopping draws after the other codes: init_codes_ and lipschitz_ as without it
    off = HybridInverter(G, measurement=A, n_restarts=4, n_perturbations=0, random_state=0)
    off.fit(Y)
    np.testing.assert_array_equal(off.init_codes_, est.init_codes_)
    assert off.lipschitz_ == est.lipschitz_ and off.perturb_codes_.shape == (0, 8)


def test_batch_invariance(tanh_cs):
    G, _, A, Y = tanh_cs
    est = HybridInverter(G, measurement=A, n_restarts=3, random_state=0).fit(Y)
    whole = est.transform(Y)
    perm = np.random.default_rng(0).permutation(len(Y))
    np.testing.assert_allclose(est.transform(Y[perm]), whole[perm], rtol=1e-10, atol=1e-12)
    est.set_params(batch_size=5)
    np.testing.assert_allclose(est.transform(Y), whole, rtol=1e-10, atol=1e-12)
    est.set_params(batch_size=4, n_jobs=2)
    np.testing.assert_allclose(est.transform(Y), whole, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("act", ["plu", "tanh"])
def test_pursuit_start_and_missing_entries(act):
    G = make_random_generator([10, 60, 200, 400], output_activation=act, random_state=1)
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((10, 10))
    X = G.forward(Z)
    X[rng.random(X.shape) < 0.45] = np.nan
    X[:3, :130] = np.nan
    est = HybridInverter(G, n_restarts=2, random_state=0).fit(X)
    Zh, info = est.transform(X, return_info=True)
    assert est.pursuit_ is not None and np.all(info["start"] >= -1)
    assert np.all(snr_db(Z, Zh) > 60)


def test_array_api_strict_with_info(tanh_cs):
    array_api_strict = pytest.importorskip("array_api_strict")
    from sklearn import config_context

    G, Z, A, Y = tanh_cs
    with config_context(array_api_dispatch=True):
        Ya = array_api_strict.asarray(Y[:4])
        est = HybridInverter(G, measurement=array_api_strict.asarray(A), n_restarts=4,
                             random_state=0).fit(Ya)
        Zh, info = est.transform(Ya, return_info=True)
        Zp = polish(Zh, Ya, G, measurement=array_api_strict.asarray(A))
    assert type(Zh) is type(Ya) and info["start"].dtype == array_api_strict.int32
    assert np.all(snr_db(Z[:4], np.asarray(Zp)) > 60)


def test_float32_preserved(tanh_cs):
    G, Z, A, Y = tanh_cs
    Y32 = Y.astype(np.float32)
    Zh = HybridInverter(G, measurement=A, n_restarts=4, random_state=0).fit(Y32).transform(Y32)
    assert Zh.dtype == np.float32
    assert np.median(snr_db(Z, Zh)) > 40


def test_noise_selection_and_warning():
    G = make_random_generator([10, 60, 200, 400], output_activation="plu", random_state=1)
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((8, 10))
    X = G.forward(Z) + 1e-2 * rng.standard_normal((8, 400))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        Zh = HybridInverter(G, noise_std=1e-2, n_restarts=2, random_state=0).fit(X).transform(X)
    assert np.median(snr_db(Z, Zh)) > 25
    # Noiseless expectations on noisy data: the rows are not exact fits.
    with pytest.warns(ConvergenceWarning, match=r"8 row\(s\) in every start"):
        HybridInverter(G, n_restarts=1, random_state=0).fit(X).transform(X)


def test_imputer_pipeline_gridsearch():
    G = make_random_generator([6, 40, 100], output_activation="tanh", random_state=5)
    rng = np.random.default_rng(5)
    X = G.forward(rng.standard_normal((12, 6)))
    Xm = X.copy()
    Xm[rng.random(X.shape) < 0.3] = np.nan
    imp = GeneratorImputer(HybridInverter(G, n_restarts=2, random_state=0)).fit(Xm)
    np.testing.assert_allclose(imp.transform(Xm), X, atol=1e-8)
    pipe = make_pipeline(HybridInverter(G, n_restarts=1, random_state=0))
    assert pipe.fit(X).transform(X).shape == (12, 6)
    gs = GridSearchCV(HybridInverter(G, random_state=0), {"n_restarts": [1, 2]}, cv=2).fit(X)
    assert gs.best_score_ > -1e-12


def test_parameter_errors():
    G = make_random_generator([6, 40, 100], output_activation="tanh", random_state=5)
    X = G.forward(np.zeros((2, 6)))
    A = np.ones((10, 100))
    with pytest.raises(ValueError, match="use_pursuit=True"):
        HybridInverter(G, measurement=A, use_pursuit=True).fit(X @ A.T)
    with pytest.raises(ValueError, match="n_restarts=0"):
        HybridInverter(G, measurement=A, n_restarts=0).fit(X @ A.T)
    with pytest.raises(ValueError, match="n_perturbations"):
        HybridInverter(G, measurement=A, n_perturbations=-1).fit(X @ A.T)
    with pytest.raises(ValueError, match="perturbation_scale"):
        HybridInverter(G, measurement=A, perturbation_scale=0.0).fit(X @ A.T)
    with pytest.raises(ValueError, match="start_max_iter"):
        HybridInverter(G, measurement=A, start_max_iter="long").fit(X @ A.T)
    with pytest.raises(ValueError, match="Z0 must have shape"):
        polish(np.zeros((2, 5)), X, G)
    with pytest.raises(ValueError, match="100"):
        polish(np.zeros((2, 6)), X[:, :50], G)


def test_polish_empty_input():
    G = ReLUGenerator([np.eye(3), np.ones((4, 3))], output_activation="identity")
    Z, info = polish(np.zeros((0, 3)), np.zeros((0, 4)), G, return_info=True)
    assert Z.shape == (0, 3) and info["loss"].shape == (0,)


FIXED = make_random_generator([1, 3, 3], output_activation="identity", random_state=0)
_WHY = "the check builds its own X with a number of features other than 3"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(
    [HybridInverter(FIXED, n_restarts=2, start_max_iter=20), HybridInverter(FIXED, n_restarts=2)],
    expected_failed_checks=lambda est: (
        {
            c: _WHY
            for c in (
                "check_array_api_input", "check_array_api_mixed_inputs",
                "check_array_api_same_namespace", "check_dtype_object",
                "check_estimators_dtypes", "check_estimators_fit_returns_self",
                "check_estimators_overwrite_params", "check_fit2d_1feature",
                "check_fit2d_1sample", "check_fit_check_is_fitted", "check_fit_idempotent",
                "check_n_features_in", "check_n_features_in_after_fitting",
                "check_positive_only_tag_during_fit", "check_readonly_memmap_input",
            )
        }
    ),
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
