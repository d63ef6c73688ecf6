"""Issue 18 (the estimators as a user meets them) and issue 17 rows 7-11, one test per item."""

import os
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skinvert import (
    GeneratorImputer,
    GradientDescentInverter,
    LatentPursuitInverter,
    LayeredBPInverter,
    OracleInverter,
    make_random_generator,
)
from skinvert.inverters import DataRangeWarning
from skinvert.metrics import heldout_pixel_scorer

HERE = os.path.abspath(__file__)
G = make_random_generator([20, 80, 200, 400], random_state=0)
PLU = ("plu", {"slope": 0.1, "c": 1.0})


def _X(n=8, seed=0, g=G):
    return g.forward(np.random.default_rng(seed).standard_normal((n, g.n_latent)))


# -- 1. generator required; names and torch modules accepted -----------------------------
@pytest.mark.parametrize("cls", [GradientDescentInverter, LatentPursuitInverter,
                                 LayeredBPInverter, OracleInverter])
def test_generator_is_required(cls):
    with pytest.raises(TypeError, match="generator"):
        cls()
    with pytest.raises(TypeError, match="load_pretrained_generator.*from_torch"):
        cls(None).fit(_X())
    with pytest.raises(TypeError, match="got int.*from_torch"):
        cls(3).fit(_X())
    with pytest.raises(ValueError, match="'nope' is neither a pretrained generator"):
        cls("nope").fit(_X())


def test_imputer_needs_an_inverter():
    with pytest.raises(TypeError, match="inverter"):
        GeneratorImputer()
    with pytest.raises(TypeError, match="GeneratorImputer needs an inverter.*from_torch"):
        GeneratorImputer(None).fit(_X())


def test_generator_by_name_and_by_torch_module():
    from skinvert.datasets import load_pretrained_generator

    ref = load_pretrained_generator("digits-fc")
    X = _X(3, g=ref)
    est = LatentPursuitInverter("digits-fc").fit(X)
    assert est.get_params()["generator"] == "digits-fc"  # converted in fit, not in __init__
    assert est.generator_.layer_sizes == ref.layer_sizes
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 30), torch.nn.ReLU(), torch.nn.Linear(30, 60), torch.nn.Tanh()
    ).double()
    from skinvert.io import from_torch

    g = from_torch(net)
    Z = np.random.default_rng(0).standard_normal((5, 4))
    est = LatentPursuitInverter(net).fit(g.forward(Z))
    assert est.generator is net
    np.testing.assert_allclose(est.transform(g.forward(Z)), Z, atol=1e-8)


# -- 2. saturated and out-of-range data ------------------------------------------------
def test_all_saturated_rows_are_an_error():
    """0/1 images into a sigmoid generator: nothing for phi^-1 to invert (issue 17 row 8)."""
    g = make_random_generator([5, 40, 100], output_activation="sigmoid", random_state=0)
    X = (np.random.default_rng(0).random((4, 100)) > 0.5).astype(float)
    for est in [LatentPursuitInverter(g), LayeredBPInverter(g),
                OracleInverter(g, method="layerwise")]:
        est.fit(_X(2, g=g))
        with pytest.raises(ValueError, match=r"4 row\(s\) of X have no usable entry.*row 0"):
            est.transform(X)
    # Gradient descent keeps saturated values as observations: finite codes.
    Z = GradientDescentInverter(g, transform_max_iter=20, random_state=0).fit(X).transform(X)
    assert np.all(np.isfinite(Z))


def test_mostly_saturated_rows_warn():
    g = make_random_generator([5, 40, 100], output_activation="tanh", random_state=0)
    X = _X(4, g=g)
    X[:, :95] = 1.0
    est = LayeredBPInverter(g).fit(_X(2, g=g))
    with pytest.warns(DataRangeWarning, match=r"up to 95 % of a row\) are saturated.*missing"):
        est.transform(X)


def test_unscaled_data_gets_a_hint():
    g = make_random_generator([5, 40, 100], output_activation="tanh", random_state=0)
    X = np.random.default_rng(0).integers(0, 256, (4, 100)).astype(float)
    X[:, 0] = 0.5  # one usable entry per row
    est = GradientDescentInverter(g, transform_max_iter=20, random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(DataRangeWarning, match=r"looks unscaled.*X / 127.5 - 1"):
            est.transform(X)


@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls", [LatentPursuitInverter, LayeredBPInverter, OracleInverter,
                                 GradientDescentInverter])
def test_out_of_range_data_gives_bounded_codes(cls, dtype, act):
    """Issue 17 row 7: 5x noise on a tanh / sigmoid output: finite, bounded codes, one
    DataRangeWarning, no overflow (the old code gave codes up to 3.6e18)."""
    g = make_random_generator([20, 80, 200, 400], output_activation=act, random_state=0)
    rng = np.random.default_rng(0)
    X = _X(10, g=g)
    Xn = (X + 5.0 * rng.standard_normal(X.shape)).astype(dtype)
    est = cls(g).fit(X.astype(dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(DataRangeWarning, match="outside the range.*clipped"):
            Z = est.transform(Xn)
    assert Z.dtype == dtype and np.all(np.isfinite(Z))
    assert np.max(np.abs(Z)) < 10  # |z| of N(0, I) codes; the old code: up to 1e3-1e18


# -- 3. held-out scorer and score under a measurement ------------------------------------
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("make", [
    lambda g, A: GradientDescentInverter(g, measurement=A, transform_max_iter=100,
                                         random_state=0),
    lambda g, A: LatentPursuitInverter(g, measurement=A),
])
def test_heldout_scorer_with_a_measurement_in_grid_search(make):
    g = make_random_generator([5, 30, 60], output_activation="identity", random_state=0)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((40, 60))
    Y = _X(24, g=g) @ A.T + 1e-2 * rng.standard_normal((24, 40))
    param = "alpha" if isinstance(make(g, A), GradientDescentInverter) else "noise_std"
    grid = {param: [1e-2, 1.0]} if param == "alpha" else {param: [1e-3, 1e-2]}
    search = GridSearchCV(make(g, A), grid, scoring=heldout_pixel_scorer(0.1), cv=3).fit(Y)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    est = search.best_estimator_
    # score compares A G(z_hat) with y.
    fit = est.inverse_transform(est.transform(Y)) @ A.T
    np.testing.assert_allclose(est.score(Y), -np.mean((fit - Y) ** 2), rtol=1e-10)


# -- 4. progress ---------------------------------------------------------------------
def test_progress_bar_with_verbose_only(capsys):
    X = _X(40)
    LatentPursuitInverter(G).fit(X).transform(X)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    LatentPursuitInverter(G, verbose=1).fit(X).transform(X)
    err = capsys.readouterr().err
    assert "LatentPursuitInverter" in err and "40/40" in err


def test_verbose_batches_move():
    est = LatentPursuitInverter(G, verbose=1).fit(_X(2))
    assert len(est._batches(2000, 8)) >= 20


# -- 5. warnings: at the caller, one per call, naming the parameter, not on recovered rows
def _gd_not_converging():
    return GradientDescentInverter(G, transform_max_iter=3, random_state=0)


@pytest.mark.parametrize("call", [
    lambda est, X: est.fit(X).transform(X),
    lambda est, X: est.fit_transform(X),
    lambda est, X: est.fit(X).score(X),
    lambda est, X: make_pipeline(FunctionTransformer(), est).fit(X).transform(X),
    lambda est, X: make_pipeline(FunctionTransformer(), est).fit_transform(X),
], ids=["transform", "fit_transform", "score", "pipeline", "pipeline-fit_transform"])
def test_convergence_warning_points_at_the_caller(call):
    X = _X(6)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        call(_gd_not_converging(), X)
    conv = [w for w in rec if issubclass(w.category, ConvergenceWarning)]
    assert len(conv) >= 1 and all(w.filename == HERE for w in conv)
    assert (
        "6 row(s) in gradient descent, still descending at the cap (raise transform_max_iter)"
        in str(conv[0].message)
    )


def test_one_warning_per_call_across_batches_and_jobs():
    X = _X(12)
    for kw in [dict(batch_size=3), dict(batch_size=3, n_jobs=2)]:
        est = GradientDescentInverter(G, transform_max_iter=3, random_state=0, **kw).fit(X)
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            est.transform(X)
        conv = [w for w in rec if issubclass(w.category, ConvergenceWarning)]
        assert len(conv) == 1 and "12 row(s)" in str(conv[0].message)


def test_no_warning_on_recovered_rows_with_a_measurement():
    """Latent-Pursuit through A with a PLU output: every row recovered exactly; the
    old code warned 'did not converge ... 16 row(s) in layer 2 (pieces of phi)'."""
    g = make_random_generator([10, 60, 150, 200], output_activation=PLU, random_state=0)
    rng = np.random.default_rng(0)
    rng.standard_normal((180, 200)), rng.standard_normal((16, 10))  # same draws as measured
    A = rng.standard_normal((120, 200)) / np.sqrt(120)
    Z = rng.standard_normal((16, 10))
    Y = g.forward(Z) @ A.T
    est = LatentPursuitInverter(g, measurement=A, refine_max_iter=2).fit(Y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Zh, info = est.transform(Y, return_info=True)
    np.testing.assert_allclose(Zh, Z, atol=1e-10)
    assert info.recovered.all() and info.converged.all()


def test_oracle_without_supports_says_what_it_runs():
    g = make_random_generator([5, 30, 60], output_activation="identity", random_state=0)
    X = _X(6, g=g) + 0.5 * np.random.default_rng(1).standard_normal((6, 60))
    est = OracleInverter(g, support_estimator=GradientDescentInverter(
        g, transform_max_iter=2, random_state=0)).fit(X)
    with pytest.warns(ConvergenceWarning) as rec:
        _, info = est.transform(X, return_info=True)
    msg = str(rec[0].message)
    assert rec[0].filename == HERE
    assert msg.startswith("OracleInverter (supports estimated by GradientDescentInverter")
    assert "support_estimator's transform_max_iter" in msg
    assert set(info.stage) == {"oracle on GradientDescentInverter's supports"}
    assert "OracleInverter" in OracleInverter.__doc__ and "no Oracle any more" in \
        " ".join(OracleInverter.__doc__.split())


# -- 6. per-row diagnostics ------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("make, stage", [
    (lambda **k: LatentPursuitInverter(G, **k), "pursuit"),
    (lambda **k: LayeredBPInverter(G, **k), "pursuit"),
    (lambda **k: OracleInverter(G, **k), "oracle"),
    (lambda **k: GradientDescentInverter(G, transform_max_iter=50, n_restarts=2,
                                         random_state=0, **k), "start"),
])
def test_return_info_per_row(make, stage):
    X = _X(10)
    est = make().fit(X)
    kw = {"supports": G.supports(np.zeros((10, 20)) + 0)} if stage == "oracle" else {}
    if stage == "oracle":
        kw = {"supports": G.supports(np.random.default_rng(0).standard_normal((10, 20)))}
    before = dict(vars(est))
    Z, info = est.transform(X, return_info=True, **kw)
    assert set(vars(est)) == set(before)  # transform does not mutate the estimator
    np.testing.assert_array_equal(est.transform(X, **kw), Z)
    for key in ("loss", "converged", "recovered", "n_iter", "stage", "n_saturated",
                "n_out_of_range"):
        assert info[key].shape == (10,), key
    assert info.n_not_converged == int(np.sum(~info.converged))
    assert all(s.startswith(stage) for s in info.stage)
    if stage == "start":
        assert np.all(info.n_iter >= 1) and np.all(info.n_iter <= 50)
    # Batches and joblib workers give the same diagnostics, concatenated in row order.
    _, info3 = make(batch_size=3, n_jobs=2).fit(X).transform(X, return_info=True, **kw)
    np.testing.assert_array_equal(info3.converged, info.converged)
    np.testing.assert_array_equal(info3.stage, info.stage)
    np.testing.assert_allclose(info3.loss, info.loss, rtol=1e-6, atol=1e-20)


# -- 7. from_torch and the CLI -----------------------------------------------------------
def test_from_torch_leaky_hidden_layer():
    torch = pytest.importorskip("torch")
    from skinvert.io import from_torch

    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.LeakyReLU(),
                              torch.nn.Linear(8, 10), torch.nn.Tanh())
    with pytest.raises(TypeError, match="LeakyReLU at index 1.*hidden activations must be ReLU"):
        from_torch(net)


@pytest.mark.parametrize("argv, match", [
    (["demo", "--generator", "nope"], "--generator 'nope': Unknown pretrained"),
    (["demo", "--generator", "missing.npz"], "No such file"),
    (["demo", "--n-signals", "0"], "--n-signals must be >= 1"),
    (["demo", "--masks", "bogus"], "unknown mask 'bogus'"),
])
def test_cli_bad_arguments_are_one_line_errors(argv, match, capsys):
    from skinvert._demo import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert match in err[-1]


# -- issue 17 row 9: Oracle supports ----------------------------------------------------
def _oracle():
    g = make_random_generator([3, 12, 30], random_state=0)
    Z = np.random.default_rng(0).standard_normal((4, 3))
    return g, g.forward(Z), g.supports(Z), OracleInverter(g).fit(g.forward(Z))


@pytest.mark.parametrize("bad, exc", [
    (lambda S: [s.astype(str) for s in S], TypeError),
    (lambda S: [np.where(s, np.nan, 0.0) for s in S], ValueError),
    (lambda S: [s * 0.5 for s in S], ValueError),
    (lambda S: [s * 2 for s in S], ValueError),
    (lambda S: [-s.astype(int) for s in S], ValueError),
    (lambda S: [s.astype(complex) for s in S], TypeError),
    (lambda S: [s.tolist()[:-1] for s in S], ValueError),
    (lambda S: [S[0], S[0]], ValueError),
    (lambda S: "supports", TypeError),
    (lambda S: 3, TypeError),
    (lambda S: ["ab"], TypeError),
], ids=["str", "nan", "half", "two", "minus-one", "complex", "short-lists", "one-layer",
        "a-str", "an-int", "str-in-list"])
def test_oracle_supports_are_validated(bad, exc):
    g, X, S, est = _oracle()
    with pytest.raises(exc, match="supports"):
        est.transform(X, supports=bad(S))


def test_oracle_supports_accepted_forms():
    g, X, S, est = _oracle()
    ref = est.transform(X, supports=S)
    for good in ([s.astype(int) for s in S], [s.astype(float) for s in S],
                 [s.tolist() for s in S], np.hstack(S)):
        np.testing.assert_array_equal(est.transform(X, supports=good), ref)


# -- issue 17 row 10: batch invariance on rows the pursuit does not recover --------------
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("make", [
    lambda **k: LatentPursuitInverter(G, **k),
    lambda **k: LayeredBPInverter(G, **k),
    lambda **k: OracleInverter(G, **k),
], ids=["lp", "lbp", "oracle"])
def test_batch_invariance_on_rows_not_recovered(make):
    rng = np.random.default_rng(3)
    X = _X(30) + 0.1 * rng.standard_normal((30, 400))
    X[rng.random(X.shape) < 0.2] = np.nan
    a, info = make().fit(X).transform(X, return_info=True)
    assert not info.recovered.any()  # noisy: no row is fitted exactly
    b = make(batch_size=7).fit(X).transform(X)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-7)


# -- issue 17 row 11: GeneratorImputer with pandas output --------------------------------
def test_imputer_set_output_pandas():
    pd = pytest.importorskip("pandas")
    X = _X(5)
    X[:, :50] = np.nan
    df = pd.DataFrame(X, columns=[f"px{i}" for i in range(400)])
    pipe = make_pipeline(GeneratorImputer(LatentPursuitInverter(G)))
    pipe.set_output(transform="pandas")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. no "X does not have valid feature names"
        out = pipe.fit(df).transform(df)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(df.columns)
    assert not out.isna().any().any()
    np.testing.assert_array_equal(GeneratorImputer(LatentPursuitInverter(G)).fit(X)
                                  .get_feature_names_out(), [f"x{i}" for i in range(400)])


def test_gradient_descent_warning_tells_stalled_rows_from_descending_ones():
    # A small net where gradient descent stalls on many rows. The rows the
    # warning (and info["stage"]) calls stalled gain nothing from 10x the
    # iterations, so raising transform_max_iter would not help them; the rows
    # still descending do gain (measured: 24 of 25 stalled rows gain exactly
    # nothing, the 9 descending ones 100x to 1e10x).
    g = make_random_generator([4, 8, 30], random_state=1)
    X = g.forward(np.random.default_rng(1).standard_normal((40, 4)))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        _, info = GradientDescentInverter(g, transform_max_iter=400, random_state=0).fit(
            X).transform(X, return_info=True)
    msg = str([w for w in rec if issubclass(w.category, ConvergenceWarning)][0].message)
    assert "stalled at a spurious stationary point (raise n_restarts, or use HybridInverter" in msg
    assert "still descending at the cap (raise transform_max_iter)" in msg
    stage = info["stage"].astype(str)
    stalled, descending = np.char.endswith(stage, ", stalled"), np.char.endswith(
        stage, ", still descending")
    counts = info["not_converged"]
    assert stalled.sum() == counts["gradient descent, stalled at a spurious stationary point"]
    assert descending.sum() == counts["gradient descent, still descending at the cap"]
    assert stalled.sum() >= 10 and descending.sum() >= 3
    assert not np.any(stalled & info["converged"]) and not np.any(descending & info["converged"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, long = GradientDescentInverter(g, transform_max_iter=4000, random_state=0).fit(
            X).transform(X, return_info=True)
    gain = info["loss"] / np.maximum(long["loss"], 1e-300)
    assert np.all(gain[descending] >= 2)
    assert np.mean(gain[stalled] < 2) >= 0.9


def test_rows_not_fit_exactly_on_declared_clean_signals_are_reported():
    # Layered BP without its support refresh fails on an image layer wider
    # than the image (n_L > n): no row is fit, and none may be returned
    # silently when the user declared clean signals (no noise_std, no lam).
    g = make_random_generator([20, 140, 120], random_state=1)
    X = g.forward(np.random.default_rng(1).standard_normal((20, 20)))
    est = LayeredBPInverter(g, refresh_max_iter=0).fit(X)
    with pytest.warns(ConvergenceWarning, match=r"did not fit 20 of 20 rows exactly .*noise_std"):
        _, info = est.transform(X, return_info=True)
    assert not info["recovered"].any()
    # Latent-Pursuit recovers them all: no warning of any kind.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, info = LatentPursuitInverter(g).fit(X).transform(X, return_info=True)
    assert info["recovered"].all()
    # With a noise level (or a lambda) an inexact fit is expected: not reported.
    Xn = X + 1e-3 * np.random.default_rng(2).standard_normal(X.shape)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        LatentPursuitInverter(g, noise_std=1e-3).fit(Xn).transform(Xn)
    assert not [w for w in rec if "did not fit" in str(w.message)]
