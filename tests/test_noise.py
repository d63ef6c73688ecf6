"""Noise (noise_std, support refresh), missing entries per inverter, and the
held-out pixel scorer."""

import warnings

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from skinvert import (
    GeneratorImputer,
    GradientDescentInverter,
    LatentPursuitInverter,
    LayeredBPInverter,
    OracleInverter,
    make_random_generator,
)
from skinvert.metrics import heldout_pixel_scorer, snr_db

G = make_random_generator([10, 60, 150, 300], random_state=0)


def _noisy(sigma, n=48, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 10))
    X = G.forward(Z)
    return Z, X, X + sigma * rng.standard_normal(X.shape)


def _rms(Zhat, Z):
    return float(np.sqrt(np.mean(np.sum((Zhat - Z) ** 2, axis=1))))


@pytest.mark.parametrize("sigma", [1e-3, 3e-2])
@pytest.mark.parametrize("cls", [LatentPursuitInverter, LayeredBPInverter])
def test_noise_std_matches_the_oracle(cls, sigma):
    # Measured on this net (48 signals): RMS latent error 1.00-1.02x the
    # Oracle's (Theorem 3's estimator, true supports) at both levels.
    Z, _, Y = _noisy(sigma)
    oracle = _rms(OracleInverter(G).fit(Y).transform(Y, supports=G.supports(Z)), Z)
    Zhat = cls(G, noise_std=sigma).fit(Y).transform(Y)
    assert np.all(np.isfinite(Zhat))
    assert _rms(Zhat, Z) <= 1.5 * oracle


def test_noise_std_threshold_needed_on_noisy_supports():
    """Without the support refresh, noise_std's thresholds alone keep the
    spurious (noise-level) entries out of the supports: the pursuit is then
    much closer to the Oracle than the plain pursuit (lam=0)."""
    Z, _, Y = _noisy(1e-2)
    plain = LatentPursuitInverter(G, refresh_max_iter=0).fit(Y).transform(Y)
    thresh = LatentPursuitInverter(G, refresh_max_iter=0, noise_std=1e-2).fit(Y).transform(Y)
    assert _rms(thresh, Z) <= _rms(plain, Z)


def test_noise_std_leaves_noiseless_recovery_exact():
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((16, 10))
    X = G.forward(Z)
    for est in (LatentPursuitInverter(G, noise_std=1e-3), LayeredBPInverter(G, noise_std=1e-3)):
        assert np.median(snr_db(Z, est.fit(X).transform(X))) >= 60


def test_noise_std_preserves_float32():
    _, _, Y = _noisy(1e-2, n=8)
    Zhat = (
        LatentPursuitInverter(G, noise_std=1e-2)
        .fit(Y.astype(np.float32))
        .transform(Y.astype(np.float32))
    )
    assert Zhat.dtype == np.float32 and np.all(np.isfinite(Zhat))


def test_noise_parameters_validated_in_fit():
    _, X, _ = _noisy(0.0, n=4)
    est = LatentPursuitInverter(G, noise_std=-1.0)
    assert est.noise_std == -1.0  # stored untouched
    with pytest.raises(ValueError):
        est.fit(X)
    with pytest.raises(ValueError, match="at most one"):
        LayeredBPInverter(G, epsilon=0.1, noise_std=0.1).fit(X)
    with pytest.raises(ValueError):
        LatentPursuitInverter(G, refresh_max_iter=-1).fit(X)


# -- missing entries -----------------------------------------------------------


def _inverters():
    return [
        LatentPursuitInverter(G),
        LayeredBPInverter(G),
        GradientDescentInverter(G, transform_max_iter=3000, random_state=0),
        OracleInverter(G),
    ]


@pytest.mark.parametrize("est", _inverters(), ids=lambda e: type(e).__name__)
def test_nan_marks_missing_entries(est):
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((12, 10))
    X = G.forward(Z)
    Xm = X.copy()
    Xm[rng.random(X.shape) < 0.3] = np.nan
    est.fit(Xm)
    kw = {"supports": G.supports(Z)} if isinstance(est, OracleInverter) else {}
    Zhat = est.transform(Xm, **kw)
    assert np.all(np.isfinite(Zhat))
    if not isinstance(est, GradientDescentInverter):  # GD may stop in a local minimum
        assert np.median(snr_db(Z, Zhat)) >= 60
        # the unseen entries are restored too
        assert np.median(snr_db(np.where(np.isnan(Xm), X, np.nan), G.forward(Zhat))) >= 40
    # score: observed entries only (finite, and a noiseless fit scores ~0)
    assert np.isfinite(est.score(Xm))
    # a row with every entry missing is refused with a clear message
    Xbad = Xm.copy()
    Xbad[3] = np.nan
    with pytest.raises(ValueError, match="no observed entry"):
        est.transform(Xbad, **kw)


def test_imputer_fills_missing_entries_only():
    rng = np.random.default_rng(4)
    X = G.forward(rng.standard_normal((6, 10)))
    Xm = X.copy()
    Xm[:, :120] = np.nan
    out = GeneratorImputer(LatentPursuitInverter(G)).fit(Xm).transform(Xm)
    assert not np.any(np.isnan(out))
    np.testing.assert_array_equal(out[:, 120:], X[:, 120:])
    np.testing.assert_allclose(out, X, atol=1e-8)


# -- held-out pixels -----------------------------------------------------------


def test_heldout_pixel_scorer_scores_hidden_entries():
    Z, X, _ = _noisy(0.0, n=6)
    est = LatentPursuitInverter(G).fit(X)
    scorer = heldout_pixel_scorer(0.2, random_state=0)
    assert scorer(est, X) == pytest.approx(0.0, abs=1e-12)  # exact inversion
    # a deliberately wrong model scores worse on the hidden entries
    G_wrong = make_random_generator([10, 60, 150, 300], random_state=5)
    assert scorer(LatentPursuitInverter(G_wrong).fit(X), X) < -1e-3
    # the same mask for the same X: deterministic
    assert scorer(est, X) == scorer(est, X)
    with pytest.raises(ValueError):
        heldout_pixel_scorer(1.5)


def test_gridsearch_on_heldout_pixels_runs_and_lam_is_repaired():
    """GridSearchCV over lam on held-out pixels. An over-regularised lam
    shrinks the image layer and breaks its support, but the rows it breaks
    fit the signal far worse than the noise level, so the noise-consistency
    stage (retries, then the multi-start polish) repairs them: every lam
    scores alike (measured: equal to 1e-6)."""
    _, _, Y = _noisy(1e-2, n=30, seed=3)
    search = GridSearchCV(
        LatentPursuitInverter(G, noise_std=1e-2),
        {"lam": [0.0, 1e-2, 3.0]},
        scoring=heldout_pixel_scorer(0.1, random_state=0),
        cv=3,
    ).fit(Y)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and search.best_params_["lam"] in (0.0, 1e-2, 3.0)
    np.testing.assert_allclose(scores, scores[0], rtol=1e-3)


def test_rows_inconsistent_with_the_noise_retry_other_thresholds():
    """A row of the shipped generator (sigma = 1e-3) where the default support
    threshold ends in a wrong basin (loss ~3000x the noise level): the
    noise-consistency retries (other threshold scales) recover the Oracle's
    accuracy; without them the latent error was ~800x larger."""
    from skinvert import latent_pursuit
    from skinvert.datasets import load_pretrained_generator

    G = load_pretrained_generator("fashion-mnist-fc")
    Z = np.random.default_rng(0).standard_normal((256, 20))
    X = G.forward(Z)
    std = 1e-3 * float(np.sqrt(np.mean(X**2)))
    Y = X + std * np.random.default_rng(1).standard_normal(X.shape)
    rows = [216]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = latent_pursuit(Y[rows], G, noise_std=std, noise_retries=())
        retried = latent_pursuit(Y[rows], G, noise_std=std)
        Zo = OracleInverter(G).fit(Y[rows]).transform(Y[rows], supports=G.supports(Z[rows]))
    err = lambda Zh: float(np.linalg.norm(Zh - Z[rows]))  # noqa: E731
    # Measured here: plain 1.35, retried 0.0016, Oracle 0.0016. Whether the
    # default threshold fails on this row depends on rounding, so only the
    # retried result is held to the Oracle's accuracy. Where both reach the
    # same code they differ by rounding of z (not of the error).
    assert err(retried) <= err(plain) + 1e-12 * float(np.linalg.norm(Z[rows]))
    assert err(retried) < 2 * err(Zo)
