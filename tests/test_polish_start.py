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
    first takes the polish from the fitted linear start; rows whose loss is
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
    assert est.start_coef_ is not None  # the fitted linear decoder starts the polish
    started = np.isin(info["stage"], ["linear start", "descent starts"])
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


NOISY = make_random_generator([10, 60, 150, 300], output_activation="tanh", random_state=0)


def _record_batches(monkeypatch, owner, name):
    """Wrap ``owner.name`` (whose first argument is a Batch) to record the
    rows of each call's batch; returns the list."""
    calls = []
    fn = getattr(owner, name)

    def counted(batch, *args, **kwargs):
        calls.append(batch.Y.shape[0])
        return fn(batch, *args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def _noisy_signals(n, sigma=1e-2, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, NOISY.n_latent))
    return Z, NOISY.forward(Z) + sigma * rng.standard_normal((n, NOISY.n_output))


@pytest.mark.parametrize(
    "kwargs, fitted",
    [({"noise_std": 1e-2}, True), ({}, False), ({"noise_std": 1e-2, "lam": 1e-4}, False),
     ({"noise_std": 1e-2, "refresh_max_iter": 0}, False),
     ({"noise_std": 1e-2, "debias": False}, False), ({"noise_std": 1e-2, "gamma": 0.1}, False),
     ({"noise_std": 1e-2, "solver": "paper"}, False)],
    ids=["noise_std", "clean", "lam", "no_refresh", "no_debias", "gamma", "paper_solvers"],
)
def test_linear_start_fitted_only_where_the_noisy_polish_runs(kwargs, fitted):
    """``fit`` regresses the codes on noisy samples of the generator (the
    hybrid's linear decoder) only where the noisy polish before the pass
    runs; the hybrid's own pursuit start (no such polish) fits none."""
    from skinvert import HybridInverter

    _, X = _noisy_signals(8)
    est = LatentPursuitInverter(NOISY, **kwargs).fit(X)
    assert (est.start_coef_ is not None) == fitted
    if fitted:
        assert est.start_coef_.shape == (2 * NOISY.n_output, NOISY.n_latent)
    hybrid = HybridInverter(NOISY, noise_std=1e-2, random_state=0).fit(X)
    assert hybrid.pursuit_.start_coef_ is None and hybrid.start_coef_ is not None


def test_linear_start_is_deterministic_and_starts_the_noisy_polish(monkeypatch):
    """The decoder's samples come from a fixed seed (``random_state`` is
    unused: the pursuit stays deterministic); the estimator's noisy rows
    start from it, the functional API's from the linearized network."""
    from skinvert import latent_pursuit as latent_pursuit_fn

    Z, X = _noisy_signals(12)
    a = LatentPursuitInverter(NOISY, noise_std=1e-2, random_state=1).fit(X)
    b = LatentPursuitInverter(NOISY, noise_std=1e-2, random_state=2).fit(X)
    np.testing.assert_array_equal(a.start_coef_, b.start_coef_)
    calls = _record_batches(monkeypatch, _polish_start, "linearized_start")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Za, info = a.transform(X, return_info=True)
        assert calls == []
        np.testing.assert_array_equal(b.transform(X), Za)
        latent_pursuit_fn(X, NOISY, noise_std=1e-2)
    assert len(calls) == 1
    assert set(info["stage"]) <= {"linear start", "descent starts"}


def test_rows_the_noisy_start_leaves_take_the_descent_rounds(monkeypatch):
    """Rows whose start (and its Adam steps) leaves the polish above the noise
    level take the hybrid's rounds of shared descent starts, not the pass;
    their codes are consistent with the noise at about the Oracle's error."""
    from skinvert import OracleInverter
    from skinvert.algorithms.noise import NoiseModel
    from skinvert.inverters import _pursuit

    Z, X = _noisy_signals(16, seed=1)
    real = _pursuit.linear_start_decoder

    def zero_odd_rows(*args):
        decode = real(*args)

        def start(Y, obs):
            z0 = decode(Y, obs)
            z0[1::2] = 0.0  # no active unit (zero biases): neither Adam nor the polish moves
            return z0

        return start

    monkeypatch.setattr(_pursuit, "linear_start_decoder", zero_odd_rows)
    passes = _record_batches(monkeypatch, latent_pursuit, "_one_pass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Zs, info = LatentPursuitInverter(NOISY, noise_std=1e-2).fit(X).transform(
            X, return_info=True)
        Zo = OracleInverter(NOISY).fit(X).transform(X, supports=NOISY.supports(Z))
    assert passes == []
    assert np.all(info["stage"][1::2] == "descent starts")
    assert np.all(info["stage"][0::2] == "linear start")
    n = X.shape[1]
    assert np.all(info["loss"] <= 0.5 * 1e-4 * (n + NoiseModel(1e-2).retry_sd * np.sqrt(2 * n)))
    err, err_o = (np.linalg.norm(E - Z, axis=1) for E in (Zs, Zo))
    assert np.sqrt(np.mean(err**2)) <= 1.1 * np.sqrt(np.mean(err_o**2))


def test_descent_polish_rows_do_not_depend_on_their_batch(monkeypatch):
    """The noise polish's prior draws are shared by every row: a row starts
    from the same codes, and ends at the same code, alone as in any batch
    (one draw per row and start made them depend on the batch's size and
    the row's position)."""
    from skinvert.algorithms import _refine
    from skinvert.algorithms._batch import Batch

    starts = []
    real = _refine.momentum_descent

    def spy(Z0, *args, **kwargs):
        starts.append(np.array(Z0))
        return real(Z0, *args, **kwargs)

    monkeypatch.setattr(_refine, "momentum_descent", spy)
    _, X = _noisy_signals(5, seed=2)
    G = NOISY
    batch = Batch(X, np.ones_like(X), G.weights, G.biases, G.activation, np)
    Z0 = np.zeros((5, G.n_latent))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = _refine.descent_polish(batch, Z0, max_iter=30, n_starts=3)
        for i in (0, 3, 4):
            alone = _refine.descent_polish(batch.take(np.array([i])), Z0[i : i + 1],
                                           max_iter=30, n_starts=3)
            np.testing.assert_array_equal(starts[-1], starts[0][i::5])
            np.testing.assert_allclose(alone[0], whole[i], rtol=0, atol=1e-9)


def test_noisy_start_decides_rows_within_three_standard_deviations(monkeypatch):
    """The start keeps a noisy row only where its loss is within 3 chi-square
    standard deviations of its mean (a code in a wrong support region
    passed the pass's 10); noise 1.3x the declared level puts every loss
    about 8 deviations above its mean: no row is decided by the start or its
    descent rounds, all by the pass (which accepts up to 10)."""
    Z, X = _noisy_signals(8, seed=3)
    rng = np.random.default_rng(4)
    X_loud = NOISY.forward(Z) + 1.3e-2 * rng.standard_normal(X.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = LatentPursuitInverter(NOISY, noise_std=1e-2).fit(X)
        _, info = est.transform(X, return_info=True)
        _, info_loud = est.transform(X_loud, return_info=True)
    assert np.all(info["stage"] == "linear start")
    n = X.shape[1]
    mean_loss = 0.5 * 1e-4 * n
    assert np.all(info_loud["loss"] > mean_loss + 3 * 0.5 * 1e-4 * np.sqrt(2 * n))
    assert not np.any(np.isin(info_loud["stage"], ["linear start", "descent starts"]))


def test_jacobian_gram_is_the_polish_gram_at_its_fixed_points():
    """The J^T J that decides whether a row with missing entries may stop on
    a boundary is the polish's own at a fixed point (missing rows zeroed)."""
    from skinvert.algorithms._batch import Batch
    from skinvert.algorithms.polish import polish_batch

    Z, X = _noisy_signals(6, seed=5)
    obs = np.ones_like(X)
    obs[::2, ::3] = 0.0
    G = NOISY
    zs, _, _, fixed, gram = polish_batch(Z, X * obs, obs, G.weights, G.biases, G.activation,
                                         np, tol=1e-6, return_gram=True)
    assert fixed.sum() >= 3
    batch = Batch(X * obs, obs, G.weights, G.biases, G.activation, np)
    mine = _polish_start._jacobian_gram(zs, batch)
    np.testing.assert_allclose(mine[fixed], gram[fixed], rtol=1e-5,
                               atol=1e-5 * np.abs(gram[fixed]).max())


@pytest.mark.parametrize("namespace", ["array_api_strict", "torch"])
def test_noisy_start_and_descent_rounds_are_namespace_generic(namespace, monkeypatch):
    """The fitted linear start, the descent rounds (odd rows' start zeroed)
    and the boundary test of rows with missing entries run in any array API
    namespace, with NumPy's codes and stages; float32 is preserved."""
    import sklearn

    from skinvert.inverters import _pursuit

    xp = pytest.importorskip(namespace)
    Z, X = _noisy_signals(12, seed=6)
    X[::3, :100] = np.nan
    real = _pursuit.linear_start_decoder

    def zero_odd_rows(*args):
        decode = real(*args)

        def start(Y, obs):
            z0 = decode(Y, obs)
            ns = sklearn.utils._array_api.get_namespace(z0)[0]
            odd = np.arange(z0.shape[0]) % 2 == 1
            odd = ns.asarray(odd, device=sklearn.utils._array_api.device(z0))
            return ns.where(odd[:, None], ns.zeros_like(z0), z0)

        return start

    monkeypatch.setattr(_pursuit, "linear_start_decoder", zero_odd_rows)
    fill = np.nan_to_num(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Z_np, info_np = LatentPursuitInverter(NOISY, noise_std=1e-2).fit(fill).transform(
            X, return_info=True)
        Z32 = LatentPursuitInverter(NOISY, noise_std=1e-2).fit(
            fill.astype(np.float32)).transform(X.astype(np.float32))
        with sklearn.config_context(array_api_dispatch=True):
            Xx = xp.asarray(np.ascontiguousarray(X))
            est = LatentPursuitInverter(NOISY, noise_std=1e-2).fit(xp.asarray(fill))
            Zx, info = est.transform(Xx, return_info=True)
    assert {"linear start", "descent starts"} <= set(info_np["stage"])
    assert type(Zx) is type(Xx)
    np.testing.assert_array_equal(info["stage"], info_np["stage"])
    np.testing.assert_allclose(np.asarray(Zx), Z_np, rtol=0, atol=1e-7)
    assert Z32.dtype == np.float32
    np.testing.assert_allclose(Z32, Z_np, rtol=0, atol=1e-3)


# A 240-unit image layer above a 120-unit hidden layer: about half the rows
# have fewer active image units than the hidden layer has units, so the
# pass would solve that layer's eq. 9 with more unknowns than equations.
NEXT_WIDE = make_random_generator([10, 120, 240, 360], output_activation="tanh", random_state=3)


def test_rows_with_a_wide_next_layer_take_the_start(monkeypatch):
    """Clean rows whose image layer has fewer active units than the layer
    below has units (read off the image layer's least squares) take the
    start where a batch has at least NEXT_LAYER_WIDE_MIN_ROWS of them: no
    Lawson-Hanson, the same exact codes as the pass; the other rows run the
    pass. Fewer such rows: all run the pass."""
    Z, X = _signals(NEXT_WIDE, 48, seed=1)
    S = NEXT_WIDE.supports(Z)
    wide = S[-1].sum(axis=1) < 120  # the image layer's active units
    assert 16 <= wide.sum() < 48
    lh = record_rows(monkeypatch, _active_set, "nnls_lawson_hanson", arg=1)
    est = LatentPursuitInverter(NEXT_WIDE).fit(X)
    Zs, info = est.transform(X, return_info=True)
    started = info["stage"] == "linearized start"
    np.testing.assert_array_equal(started, wide)
    assert lh == []
    np.testing.assert_allclose(Zs, Z, rtol=0, atol=1e-12 * np.abs(Z).max())
    # Fewer than NEXT_LAYER_WIDE_MIN_ROWS such rows in the batch: the pass.
    monkeypatch.setattr(_polish_start, "NEXT_LAYER_WIDE_MIN_ROWS", int(wide.sum()) + 1)
    Zp, info_p = est.transform(X, return_info=True)
    assert "linearized start" not in set(info_p["stage"]) and len(lh) > 0
    np.testing.assert_allclose(Zp, Zs, rtol=0, atol=1e-12 * np.abs(Z).max())


def test_a_wide_latent_layer_keeps_the_pass():
    """The rule is about a middle (non-negative) layer: with one hidden
    layer the layer below the image layer's is z's, whose rows with fewer
    active units than n_0 have no unique code; they keep the pass. With two
    hidden layers the rows of a wide middle layer are the rule's."""
    from skinvert.algorithms._batch import Batch

    def rows(G, X):
        batch = Batch(X, np.ones_like(X), G.weights, G.biases, G.activation, np)
        return _polish_start.polish_start_rows(batch)

    G = make_random_generator([10, 14, 60], output_activation="tanh", random_state=0)
    Z, X = _signals(G, 64, seed=2)
    assert (G.supports(Z)[-1].sum(axis=1) < 10).sum() >= 16
    assert not rows(G, X).any()
    _, info = LatentPursuitInverter(G).fit(X).transform(X, return_info=True)
    assert "linearized start" not in set(info["stage"])
    Z, X = _signals(NEXT_WIDE, 48, seed=1)
    np.testing.assert_array_equal(rows(NEXT_WIDE, X), NEXT_WIDE.supports(Z)[-1].sum(axis=1) < 120)
