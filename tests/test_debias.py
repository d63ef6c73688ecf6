"""The debiasing's shortcut for near-exact rows (piecewise-linear phi): one
step of iterative refinement of Algorithm 1's least squares must give the
code Algorithm 1 itself (the SVD least squares) gives, to rounding."""

import numpy as np
import pytest

from skinvert import LatentPursuitInverter, make_random_generator
from skinvert._array_api import namespace_of
from skinvert.algorithms._batch import Batch, PursuitResult
from skinvert.algorithms._refine import _near_exact, _refine_near_exact
from skinvert.algorithms.oracle import oracle_end_to_end

PLU = ("plu", {"slope": 0.1, "c": 1.0})


def _noiseless(output_activation, seed, dtype):
    """A random 8-60-150-300 generator, 40 codes and the Batch of their signals."""
    G = make_random_generator([8, 60, 150, 300], output_activation=output_activation,
                              random_state=0)
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((40, 8))
    X = G.forward(Z).astype(dtype)
    W = [w.astype(dtype) for w in G.weights]
    b = [v.astype(dtype) for v in G.biases]
    xp, _ = namespace_of(X)
    obs = np.ones_like(X)
    return G, rng, Z, X, W, b, xp, obs, Batch(X, obs, W, b, G.activation, xp)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_refinement_step_equals_algorithm_1_on_near_exact_rows(dtype):
    G, rng, Z, X, W, b, xp, obs, batch = _noiseless(PLU, 0, dtype)
    res = PursuitResult()
    res.supports = G.supports(Z)
    # A near-exact start: the true code perturbed at 1e-3 of sqrt(eps).
    eps = np.finfo(dtype).eps
    res.z = (Z * (1 + 1e-3 * np.sqrt(eps) * rng.standard_normal(Z.shape))).astype(dtype)
    near, loss = _near_exact(res.z, batch, xp)
    assert near.all()
    z, ok = _refine_near_exact(res, batch, near, loss, xp)
    assert ok.all() and z.dtype == dtype
    masks = [S.astype(dtype) for S in res.supports]
    ref, _, _ = oracle_end_to_end(X, obs, W, b, G.activation, masks, xp)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    assert np.max(np.abs(z - ref)) <= tol * np.max(np.abs(ref))
    # And the estimator: Latent-Pursuit's codes are the true ones to rounding.
    Zhat = LatentPursuitInverter(G).fit(X).transform(X)
    assert Zhat.dtype == dtype
    assert np.max(np.abs(Zhat - Z)) <= tol * np.max(np.abs(Z)) * 10


def test_singular_systems_go_to_algorithm_1():
    # s_1 < n_0: the code is not unique, the normal equations are singular;
    # the rows go to Algorithm 1 (minimum-norm least squares), nothing raises.
    G = make_random_generator([30, 20, 200], output_activation=PLU, random_state=0)
    Z = np.random.default_rng(0).standard_normal((6, 30))
    X = G.forward(Z)
    xp, _ = namespace_of(X)
    batch = Batch(X, np.ones_like(X), G.weights, G.biases, G.activation, xp)
    res = PursuitResult()
    res.supports, res.z = G.supports(Z), Z.copy()
    near, loss = _near_exact(res.z, batch, xp)
    z, ok = _refine_near_exact(res, batch, near, loss, xp)
    assert np.all(np.isfinite(z)) and not ok.any()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_smooth_phi_near_exact_rows_start_from_the_pursuits_code(dtype, monkeypatch):
    # tanh: rows that fit y to rounding run Algorithm 1's steps from the
    # pursuit's z (no least squares on atanh(y)) and reach the code
    # Algorithm 1 gives from that least squares.
    from skinvert.algorithms import _refine
    from skinvert.algorithms import oracle as oracle_module

    G, rng, Z, X, W, b, xp, obs, batch = _noiseless("tanh", 1, dtype)
    masks = [S.astype(dtype) for S in G.supports(Z)]
    ref, _, _ = oracle_end_to_end(X, obs, W, b, G.activation, masks, xp)
    res = PursuitResult()
    res.supports = G.supports(Z)
    eps = np.finfo(dtype).eps
    res.z = (Z * (1 + 1e-3 * np.sqrt(eps) * rng.standard_normal(Z.shape))).astype(dtype)
    assert _near_exact(res.z, batch, xp)[0].all()
    svd_starts = []
    lstsq = oracle_module.refined_lstsq

    def record(A, *a, **kw):
        svd_starts.append(A.shape[0])
        return lstsq(A, *a, **kw)

    monkeypatch.setattr(oracle_module, "refined_lstsq", record)
    _refine.debias(res, batch, gamma=0.0, max_iter=30)
    assert svd_starts == []
    assert res.z.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 1e-4
    assert np.max(np.abs(res.z - ref)) <= tol * np.max(np.abs(ref))


@pytest.mark.parametrize("missing", [False, True], ids=["shared_gram", "per_row_maps"])
def test_refinement_in_blocks_matches_one_block(monkeypatch, missing):
    # The near-exact refinement builds its per-row maps in blocks of rows
    # (host_block_rows); rows are independent, so blocks change nothing.
    # Every entry observed: the normal equations from the shared W_L^T W_L;
    # with missing entries: from each row's (n, n_0) map.
    from skinvert.algorithms import _refine

    G = make_random_generator([8, 60, 150, 300], output_activation=PLU, random_state=0)
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((40, 8))
    X = G.forward(Z)
    obs = np.ones_like(X)
    if missing:
        obs[rng.random(X.shape) < 0.2] = 0.0
    xp, _ = namespace_of(X)
    batch = Batch(X, obs, G.weights, G.biases, G.activation, xp)

    def run():
        res = PursuitResult()
        res.supports = G.supports(Z)
        res.z = Z * (1 + 1e-9 * np.random.default_rng(3).standard_normal(Z.shape))
        near, loss = _near_exact(res.z, batch, xp)
        return _refine_near_exact(res, batch, near, loss, xp)

    one, ok_one = run()
    sizes = []
    name = "affine_map" if missing else "_image_normal_equations"
    spied = getattr(_refine, name)

    def record(*args, **kwargs):
        sizes.append(args[3].shape[0] if not missing else kwargs["n_samples"])
        return spied(*args, **kwargs)

    monkeypatch.setattr(_refine, "host_block_rows", lambda xp, dt, n: 16)
    monkeypatch.setattr(_refine, name, record)
    blocks, ok_blocks = run()
    assert sizes == [16, 16, 8]
    assert ok_one.all() and np.array_equal(ok_one, ok_blocks)
    np.testing.assert_allclose(blocks, one, rtol=0, atol=1e-13)
    np.testing.assert_allclose(one, Z, rtol=0, atol=1e-14)


def test_shared_gram_refinement_equals_per_row_maps(monkeypatch):
    # Every entry observed (PLU): A_S^T A_S = P^T (W_L^T W_L) P without the
    # per-row (n, n_0) maps; the same refined codes as from the maps.
    from skinvert.algorithms import _refine

    G = make_random_generator([8, 60, 150, 300], output_activation=PLU, random_state=1)
    rng = np.random.default_rng(4)
    Z = rng.standard_normal((30, 8))
    X = G.forward(Z)
    xp, _ = namespace_of(X)
    batch = Batch(X, np.ones_like(X), G.weights, G.biases, G.activation, xp)
    assert _refine._shared_image_gram(batch, np.ones_like(X), xp) is not None

    def refine(z0):
        res = PursuitResult()
        res.supports = G.supports(Z)
        res.z = z0.copy()
        near, loss = _near_exact(res.z, batch, xp)
        assert near.all()
        return _refine_near_exact(res, batch, near, loss, xp)[0]

    z0 = Z * (1 + 1e-10 * rng.standard_normal(Z.shape))
    shared = refine(z0)
    monkeypatch.setattr(_refine, "_shared_image_gram", lambda batch, w, xp: None)
    maps = refine(z0)
    err = np.abs(z0 - Z).max()
    assert err > 1e-12  # the start is off ...
    np.testing.assert_allclose(shared, Z, rtol=0, atol=1e-14)  # ... both refine it
    np.testing.assert_allclose(maps, Z, rtol=0, atol=1e-14)
    np.testing.assert_allclose(shared, maps, rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "case", ["plu_clean", "tanh_clean", "tanh_noisy", "plu_missing", "wide_fallback"]
)
def test_reported_loss_is_that_of_the_returned_codes(case):
    """The loss ``transform`` reports comes from the stage that last computed
    it (the debiasing's refined rows, the refresh) when it is that of the
    returned codes, and is computed afresh otherwise: either way it is the
    loss of eq. 1 at the returned codes."""
    from skinvert._array_api import namespace_of as ns
    from skinvert.algorithms.gradient_descent import loss_and_gradient

    sizes = [6, 40, 30] if case == "wide_fallback" else [8, 60, 150, 300]
    act = "tanh" if case.startswith("tanh") or case == "wide_fallback" else PLU
    G = make_random_generator(sizes, output_activation=act, random_state=1)
    rng = np.random.default_rng(2)
    X = G.forward(rng.standard_normal((30, sizes[0])))
    kw = {}
    if case == "tanh_noisy":
        X = np.clip(X + 1e-2 * rng.standard_normal(X.shape), -0.999, 0.999)
        kw["noise_std"] = 1e-2
    if case == "plu_missing":
        X[rng.random(X.shape) < 0.2] = np.nan
    Z, info = LatentPursuitInverter(G, **kw).fit(np.nan_to_num(X)).transform(X, return_info=True)
    obs = (~np.isnan(X)).astype(float)
    xp, _ = ns(X)
    W, b = G.weights, G.biases
    expect, _ = loss_and_gradient(Z, np.nan_to_num(X), obs, W, b, G.activation, xp,
                                  gradient=False)
    # Exact fits have losses at rounding level (residuals of eps ||y||),
    # whose bits depend on the BLAS path: those agree to that level only.
    rounding = 0.5 * (100 * np.finfo(float).eps * np.linalg.norm(np.nan_to_num(X), axis=1)) ** 2
    assert np.all(np.abs(info["loss"] - expect) <= 1e-9 * expect + rounding)


def test_refresh_keeps_the_recorded_loss_that_of_its_codes():
    """A loss recorded for the current z (the debiasing's) is carried through
    the support refresh, which moves some rows: it stays the loss of the new
    codes; a z replaced without one has no recorded loss."""
    from skinvert.algorithms._refine import refresh

    G, rng, Z, X, W, b, xp, obs, batch = _noiseless(PLU, 3, np.float64)
    res = PursuitResult()
    # Codes on the wrong linear region for half of the rows (their supports
    # those of other codes): the refresh moves those to their own region.
    Z0 = Z.copy()
    Z0[::2] = Z[::2] + 0.3 * rng.standard_normal(Z[::2].shape)
    res.z, res.supports = Z0, G.supports(Z)
    res.set_loss(batch.loss(res.z))
    refresh(res, batch, gamma=0.0, max_iter=3, debias_max_iter=20)
    assert np.any(res.n_refresh > 0)
    known = res.known_loss()
    assert known is not None and res.z is not Z0
    np.testing.assert_allclose(known, batch.loss(res.z), rtol=1e-9, atol=1e-28)
    res.z = res.z + 0.0  # a new array: the recorded loss no longer applies
    assert res.known_loss() is None
