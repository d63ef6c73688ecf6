"""Latent-Pursuit's polish from the linearized network: clean signals of wide
image layers (also through a measurement) and noisy signals
(:mod:`skinvert.algorithms._polish_start`)."""

import warnings

import numpy as np
import pytest

from skinvert import LatentPursuitInverter, ReLUGenerator, make_random_generator
from skinvert.algorithms import _polish_start, latent_pursuit
from skinvert.solvers import _active_set

from ._helpers import record_rows, without_polish_start

# A 300-unit layer above 200 pixels: eq. 8 has more unknowns than equations.
WIDE = make_random_generator([20, 300, 200], output_activation="tanh", random_state=0)


def _signals(G, n, seed=0):
    Z = np.random.default_rng(seed).standard_normal((n, G.n_latent))
    return Z, G.forward(Z)


def test_wide_layer_rows_are_fitted_by_the_linearized_start(monkeypatch):
    """Every clean row of a wide image layer: the polish from the linearized
    network's least squares fits it exactly, without Lawson-Hanson, and
    returns the code the pass and its refresh return."""
    Z, X = _signals(WIDE, 24)
    lh = record_rows(monkeypatch, _active_set, "nnls_lawson_hanson", arg=1)
    Zs, info = LatentPursuitInverter(WIDE).fit(X).transform(X, return_info=True)
    assert lh == []
    assert np.all(info["stage"] == "linearized start")
    assert np.all(info["n_iter"] > 0) and np.all(info["recovered"])
    np.testing.assert_allclose(Zs, Z, atol=1e-12)
    without_polish_start(monkeypatch)
    Zp, info_p = LatentPursuitInverter(WIDE).fit(X).transform(X, return_info=True)
    assert len(lh) > 0 and "linearized start" not in set(info_p["stage"])
    np.testing.assert_allclose(Zs, Zp, atol=1e-12)


def test_rows_the_start_does_not_fit_take_the_pass(monkeypatch):
    """Rows with missing entries, and rows whose polish does not fit, run the
    pass; the merged result is each part's own, row for row."""
    Z, X = _signals(WIDE, 12)
    X[[1, 4], :5] = np.nan  # not fully observed: the pass
    real = _polish_start.linearized_start

    def bad_odd_rows(batch):
        z0 = real(batch)
        z0[1::2] = 0.0  # no active unit (zero biases): the polish cannot move
        return z0

    monkeypatch.setattr(_polish_start, "linearized_start", bad_odd_rows)
    est = LatentPursuitInverter(WIDE).fit(np.nan_to_num(X))
    Zm, info = est.transform(X, return_info=True)
    started = info["stage"] == "linearized start"
    # Rows 0, 2, ... (the start's 0-based order within its rows) fit; rows 1
    # and 4 were not started; the rest failed the start.
    assert 3 <= started.sum() <= 6 and not started[1] and not started[4]
    np.testing.assert_allclose(Zm, Z, atol=1e-10)
    without_polish_start(monkeypatch)
    Zp, info_p = LatentPursuitInverter(WIDE).fit(np.nan_to_num(X)).transform(X, return_info=True)
    np.testing.assert_array_equal(Zm[~started], Zp[~started])
    np.testing.assert_array_equal(info["stage"][~started], info_p["stage"][~started])
    np.testing.assert_array_equal(info["n_iter"][~started], info_p["n_iter"][~started])
    np.testing.assert_allclose(info["loss"], info_p["loss"], rtol=0, atol=1e-20)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"noise_std": 1e-3}, {"refresh_max_iter": 0},
     {"solver": "paper", "transform_max_iter": 20}, {"lam": 1e-4}, {"debias": False}],
    ids=["defaults", "noise_std", "no_refresh", "paper_solvers", "lam", "no_debias"],
)
def test_no_start_unless_exact_and_refreshed(monkeypatch, kwargs):
    """The start belongs to the refresh: not with a lambda, the paper's
    solvers, or without the refresh (the paper's Algorithm 5 with its
    debiasing) or the debiasing."""
    _, X = _signals(WIDE, 6)
    calls = record_rows(monkeypatch, latent_pursuit, "polish_start", arg=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        LatentPursuitInverter(WIDE, **kwargs).fit(X).transform(X)
    assert calls == ([6] if set(kwargs) <= {"noise_std"} else [])


def test_noisy_rows_consistent_with_the_noise_keep_the_start(monkeypatch):
    """With ``noise_std`` every row (any layer width, missing entries too)
    first takes the polish from the linearized start; rows whose loss is
    consistent with the noise keep it, the others run the pass and its
    noise retries. The error stays the Oracle's (Theorem 3)."""
    from skinvert import OracleInverter
    from skinvert.algorithms.noise import NoiseModel

    G = make_random_generator([10, 60, 150, 300], output_activation="tanh", random_state=0)
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((32, 10))
    X = G.forward(Z) + 1e-2 * rng.standard_normal((32, 300))
    X[3, :4] = np.nan
    X[5, rng.random(300) < 0.5] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = LatentPursuitInverter(G, noise_std=1e-2).fit(np.nan_to_num(X))
        Zs, info = est.transform(X, return_info=True)
        Zo = OracleInverter(G).fit(np.nan_to_num(X)).transform(X, supports=G.supports(Z))
        without_polish_start(monkeypatch)
        Zp = LatentPursuitInverter(G, noise_std=1e-2).fit(np.nan_to_num(X)).transform(X)
    started = info["stage"] == "linearized start"
    assert started.sum() >= 16
    n = np.sum(~np.isnan(X), axis=1)
    bound = 0.5 * 1e-4 * (n + NoiseModel(1e-2).retry_sd * np.sqrt(2 * n))
    assert np.all(info["loss"][started] <= bound[started])

    def rms(E):
        return np.sqrt(np.mean(np.sum((E - Z) ** 2, axis=1)))

    assert rms(Zs) <= 1.1 * rms(Zo)
    assert rms(Zs) <= 1.05 * rms(Zp)


def test_no_start_on_a_tall_image_layer(monkeypatch):
    G = make_random_generator([20, 150, 200], output_activation="tanh", random_state=0)
    _, X = _signals(G, 6)
    calls = record_rows(monkeypatch, latent_pursuit, "polish_start", arg=1)
    _, info = LatentPursuitInverter(G).fit(X).transform(X, return_info=True)
    assert calls == [] and "linearized start" not in set(info["stage"])


def test_start_float32_and_rows_independent_of_their_batch():
    Z, X = _signals(WIDE, 9, seed=1)
    est = LatentPursuitInverter(WIDE).fit(X)
    Zs = est.transform(X)
    for idx in ([0], [3, 8], [2, 5, 6]):
        np.testing.assert_array_equal(est.transform(X[idx]), Zs[idx])
    X32 = X.astype(np.float32)
    Z32, info = LatentPursuitInverter(WIDE).fit(X32).transform(X32, return_info=True)
    assert Z32.dtype == np.float32
    assert np.all(info["stage"] == "linearized start")
    np.testing.assert_allclose(Z32, Z, atol=1e-4)


@pytest.mark.parametrize("namespace", ["array_api_strict", "torch"])
def test_start_is_namespace_generic(namespace):
    import sklearn

    xp = pytest.importorskip(namespace)
    # The last layer scaled: saturated entries, so the start takes the
    # per-row normal equations on the usable ones.
    G = ReLUGenerator([WIDE.weights[0], 6 * WIDE.weights[1]],
                      [WIDE.biases[0], 6 * WIDE.biases[1]], output_activation="tanh")
    Z, X = _signals(G, 6)
    assert np.any(np.abs(X) > 1 - 1e-9)
    Z_np, info_np = LatentPursuitInverter(G).fit(X).transform(X, return_info=True)
    with sklearn.config_context(array_api_dispatch=True):
        Xx = xp.asarray(np.ascontiguousarray(X))
        Zx, info = LatentPursuitInverter(G).fit(Xx).transform(Xx, return_info=True)
    assert type(Zx) is type(Xx)
    np.testing.assert_array_equal(info["stage"], info_np["stage"])
    assert {"linearized start", "refresh"} <= set(info["stage"])  # both paths, merged
    np.testing.assert_allclose(np.asarray(Zx), Z_np, rtol=0, atol=1e-12)
    np.testing.assert_allclose(Z_np, Z, rtol=0, atol=1e-10)


@pytest.mark.parametrize("output", ["plu", "identity"])
def test_start_through_a_measurement(output, monkeypatch):
    """Fewer measurements than the last hidden layer's units (compressed
    sensing): the start on ``y ~ A (M z + c)`` (identity output: A folded
    into the last layer), the rows it fits exact; the others take the pass."""
    G = make_random_generator([10, 60, 150, 300], output_activation=output, random_state=1)
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((16, 10))
    A = rng.standard_normal((100, 300)) / 10.0
    Y = G.forward(Z) @ A.T
    Zs, info = LatentPursuitInverter(G, measurement=A).fit(Y).transform(Y, return_info=True)
    started = info["stage"] == "linearized start"
    assert started.sum() >= 12
    np.testing.assert_allclose(Zs[started], Z[started], atol=1e-10)
    without_polish_start(monkeypatch)
    Zp = LatentPursuitInverter(G, measurement=A).fit(Y).transform(Y)
    np.testing.assert_array_equal(Zs[~started], Zp[~started])
    exact = np.all(np.abs(Zp - Z) < 1e-8, axis=1)
    assert np.all(np.abs(Zs - Z) < 1e-8, axis=1).sum() >= exact.sum()
