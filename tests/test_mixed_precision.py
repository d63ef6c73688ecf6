"""The polish's mixed-precision Gauss-Newton steps.

A double-precision polish of a dense generator without a measurement takes
``J^T J`` from the single-precision map and the gradient ``J^T r`` in double
precision (``mixed_step_factors``): its fixed points are those of the
double-precision iteration, so exact codes stay exact and noisy ones land on
the same minimum to the polish's tolerance.
"""

import numpy as np
import pytest
import sklearn

from skinvert import make_random_generator
from skinvert._linalg import lstsq_solve
from skinvert.activations import get_activation
from skinvert.algorithms import polish as polish_module
from skinvert.algorithms.polish import (
    affine_map,
    forward_loss,
    mixed_step_factors,
    output_gradient,
    polish_batch,
    single_precision_map,
    step_factors,
)


def _setting(seed=0, B=9, noise=1e-2, sizes=(20, 64, 128, 300), phi="tanh"):
    G = make_random_generator(list(sizes), output_activation=phi, random_state=seed)
    W, b = list(G.weights), list(G.biases)
    act = get_activation(G.output_activation)
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((B, sizes[0]))
    Y = G.forward(Z)
    if noise:
        Y = Y + noise * rng.standard_normal(Y.shape)
    obs = (rng.random(Y.shape) > 0.1).astype(float)
    return G, W, b, act, Z, Y, obs


def _spy_mixed(monkeypatch):
    """A list that grows by one at each call of ``mixed_step_factors``."""
    calls = []
    real = polish_module.mixed_step_factors
    monkeypatch.setattr(polish_module, "mixed_step_factors",
                        lambda *a: calls.append(1) or real(*a))
    return calls


def _no_mixed(monkeypatch):
    """Force the double-precision polish (the factors of step_factors)."""
    real = polish_module._StepCache.update.__func__

    def update(cls, cache, live, masks, U, Y, obs, net, measurement, low=None, coarse=None):
        return real(cls, cache, live, masks, U, Y, obs, net, measurement, None)

    monkeypatch.setattr(polish_module._StepCache, "update", classmethod(update))


def _mixed_and_double(monkeypatch, *args, **kwargs):
    """``polish_batch(*args, **kwargs)`` as it runs, then in double precision."""
    mixed = polish_batch(*args, **kwargs)
    _no_mixed(monkeypatch)
    return mixed, polish_batch(*args, **kwargs)


def test_single_precision_map_is_the_map_rounded_and_row_by_row():
    _, W, b, act, Z, Y, obs = _setting()
    _, U, masks = forward_loss(Z, Y, obs, W, b, act, np)
    W32 = [w.astype(np.float32) for w in W]
    A32 = single_precision_map(W32, masks, np, n_samples=Z.shape[0])
    A64, _ = affine_map(W, b, masks, np, n_samples=Z.shape[0])
    assert A32.dtype == np.float32 and A32.shape == A64.shape
    np.testing.assert_allclose(A32, A64, rtol=0, atol=1e-5 * np.abs(A64).max())
    # A row's map is the same whatever the rows built with it.
    for n in (1, 2, 5):
        np.testing.assert_array_equal(single_precision_map(W32, [m[:n] for m in masks], np,
                                                           n_samples=n),
                                      A32[:n])


def test_output_gradient_is_the_transposed_map_applied():
    _, W, b, act, Z, Y, obs = _setting()
    _, U, masks = forward_loss(Z, Y, obs, W, b, act, np)
    A64, _ = affine_map(W, b, masks, np, n_samples=Z.shape[0])
    delta = np.random.default_rng(1).standard_normal(U.shape)
    ref = np.einsum("bnk,bn->bk", A64, delta)
    np.testing.assert_allclose(output_gradient(delta, W, masks, np), ref, rtol=1e-12,
                               atol=1e-12 * np.abs(ref).max())


def test_mixed_step_is_the_gauss_newton_step_to_single_precision():
    _, W, b, act, Z, Y, obs = _setting()
    Z0 = Z + 0.05 * np.random.default_rng(2).standard_normal(Z.shape)
    _, U, masks = forward_loss(Z0, Y, obs, W, b, act, np)
    A64, _ = affine_map(W, b, masks, np, n_samples=Z.shape[0])
    exact, scale = step_factors(A64, U, Y, obs, act, np)
    A32 = single_precision_map([w.astype(np.float32) for w in W], masks, np,
                               n_samples=Z.shape[0])
    mixed, scale_m, ok = mixed_step_factors(A32, U, Y, obs, masks, W, act, np)
    assert ok.all()
    np.testing.assert_allclose(scale_m, scale, rtol=1e-5)
    dz = lstsq_solve(exact, np)
    dz_m = lstsq_solve(mixed, np)
    assert dz_m.dtype == np.float64
    np.testing.assert_allclose(dz_m, dz, rtol=0, atol=1e-4 * np.abs(dz).max())
    assert np.abs(dz_m - dz).max() > 0  # the matrix is single precision


def test_ill_conditioned_rows_take_the_double_precision_step():
    # A first layer with two nearly equal columns: cond(J) ~ 1e5, beyond the
    # mixed step's reach (MIXED_MIN_EIG).
    G, W, b, act, Z, Y, obs = _setting(noise=0.0)
    W = [w.copy() for w in W]
    W[0][:, 1] = W[0][:, 0] * (1.0 + 1e-5)
    x = Z
    for w, c in zip(W[:-1], b[:-1]):
        x = np.maximum(x @ w.T + c, 0)
    Y = act(x @ W[-1].T + b[-1], np)
    _, U, masks = forward_loss(Z, Y, obs, W, b, act, np)
    A32 = single_precision_map([w.astype(np.float32) for w in W], masks, np,
                               n_samples=Z.shape[0])
    _, _, ok = mixed_step_factors(A32, U, Y, obs, masks, W, act, np)
    assert not ok.any()
    cache = polish_module._StepCache.update(
        None, np.ones(Z.shape[0], dtype=bool), masks, U, Y, obs, (W, b, act, np), None,
        ([w.astype(np.float32) for w in W], None),
    )
    A64, _ = affine_map(W, b, masks, np, n_samples=Z.shape[0])
    exact, _ = step_factors(A64, U, Y, obs, act, np)
    # (J^T J, J^T r, the SVD factors, by_gram): every row takes its SVD factors.
    gram, _, *svd, by_gram = cache.factors
    assert not by_gram.any()
    for f, e in zip(svd, exact):
        np.testing.assert_array_equal(f, e)
    np.testing.assert_array_equal(lstsq_solve(cache.factors, np, ridge=0.5, z=Z),
                                  lstsq_solve(exact, np, ridge=0.5, z=Z))


@pytest.mark.parametrize("phi", ["tanh", "sigmoid"])
def test_noiseless_polish_is_exact_in_mixed_precision(phi, monkeypatch):
    _, W, b, act, Z, Y, obs = _setting(noise=0.0, phi=phi)
    Z0 = Z + 0.01 * np.random.default_rng(3).standard_normal(Z.shape)
    (Zm, _, _, fm), (Zd, _, _, fd) = _mixed_and_double(monkeypatch, Z0, Y, obs, W, b, act, np)
    assert fm.all() and fd.all()
    np.testing.assert_allclose(Zm, Z, rtol=0, atol=1e-12)
    np.testing.assert_allclose(Zm, Zd, rtol=0, atol=1e-12)


def test_noisy_polish_reaches_the_double_precision_minimum(monkeypatch):
    _, W, b, act, Z, Y, obs = _setting(B=16)
    Z0 = Z + 0.05 * np.random.default_rng(4).standard_normal(Z.shape)
    calls = _spy_mixed(monkeypatch)
    Zm, lm, _, fm = polish_batch(Z0, Y, obs, W, b, act, np)
    assert calls  # the mixed steps ran
    _no_mixed(monkeypatch)
    Zd, ld, _, fd = polish_batch(Z0, Y, obs, W, b, act, np)
    # Rows at a support fixed point: the same stationary point, to the
    # polish's step tolerance sqrt(eps). (The others stop on a boundary
    # between support regions, where the loss has a kink: both stop there.)
    np.testing.assert_array_equal(fm, fd)
    assert fm.sum() >= 12
    scale = 1.0 + np.abs(Zd[fm]).max(axis=1, keepdims=True)
    assert np.all(np.abs(Zm[fm] - Zd[fm]) <= 1e-6 * scale)
    np.testing.assert_allclose(lm[fm], ld[fm], rtol=1e-13)
    np.testing.assert_allclose(lm[~fm], ld[~fm], rtol=1e-6)
    # The gradient is zero there, in double precision.
    _, U, masks = forward_loss(Zm, Y, obs, W, b, act, np)
    d = act.derivative(U, np) * obs
    g = output_gradient(d * (Y - act(U, np)), W, masks, np)[fm]
    assert np.abs(g).max() <= 1e-8 * np.abs(output_gradient(d * Y, W, masks, np)).max()


def test_long_steps_take_the_single_precision_gradient_and_rows_stop_on_double(monkeypatch):
    # From a far start the first steps are long (COARSE_STEP): their
    # gradient comes from the single-precision map, so fewer rows go through
    # the double-precision back-propagation than take factors; no row stops
    # on such a step, and the fixed points are the double-precision
    # polish's (to its tolerance).
    _, W, b, act, Z, Y, obs = _setting(B=16)
    Z0 = Z + 0.5 * np.random.default_rng(5).standard_normal(Z.shape)
    factored, back = [], []
    real_factors, real_gradient = polish_module.mixed_step_factors, polish_module.output_gradient

    def spy_factors(A32, *args):
        factored.append(A32.shape[0])
        return real_factors(A32, *args)

    def spy_gradient(delta, *args):
        back.append(delta.shape[0])
        return real_gradient(delta, *args)

    monkeypatch.setattr(polish_module, "mixed_step_factors", spy_factors)
    monkeypatch.setattr(polish_module, "output_gradient", spy_gradient)
    Zm, lm, _, fm = polish_batch(Z0, Y, obs, W, b, act, np, tol=1e-10)
    assert sum(factored) > 0 and sum(back) < sum(factored)
    assert back  # the rows near their fixed point took the double-precision one
    _no_mixed(monkeypatch)
    Zd, ld, _, fd = polish_batch(Z0, Y, obs, W, b, act, np, tol=1e-10)
    both = fm & fd
    assert both.sum() >= 8
    scale = 1.0 + np.abs(Zd[both]).max(axis=1, keepdims=True)
    assert np.all(np.abs(Zm[both] - Zd[both]) <= 1e-8 * scale)
    np.testing.assert_allclose(lm[both], ld[both], rtol=1e-12)


def _forward(W, b, act, Z):
    x = Z
    for w, c in zip(W[:-1], b[:-1]):
        x = np.maximum(x @ w.T + c, 0)
    return act(x @ W[-1].T + b[-1], np)


def test_float32_polish_keeps_its_precision(monkeypatch):
    calls = _spy_mixed(monkeypatch)
    _, W, b, act, Z, Y, obs = _setting()
    Z0 = Z + 0.05 * np.random.default_rng(5).standard_normal(Z.shape)
    W32, b32 = [w.astype(np.float32) for w in W], [c.astype(np.float32) for c in b]
    Z32, _, _, _ = polish_batch(Z0.astype(np.float32), Y.astype(np.float32),
                                obs.astype(np.float32), W32, b32, act, np)
    assert Z32.dtype == np.float32 and not calls


@pytest.mark.parametrize("phi", ["identity", "leaky_relu", "plu"])
def test_piecewise_linear_polish_in_mixed_precision_is_exact(phi, monkeypatch):
    # A piecewise-linear phi takes the mixed-precision steps too: the steps
    # that cross support regions cost half, and the refinement below tol
    # lands on the noiseless code to rounding, at a support fixed point.
    calls = _spy_mixed(monkeypatch)
    _, W, b, act, Z, Y, obs = _setting(phi=phi, noise=0.0)
    Z0 = Z + 0.05 * np.random.default_rng(5).standard_normal(Z.shape)
    Zp, loss, n_iter, fixed = polish_batch(Z0, Y, obs, W, b, act, np)
    assert calls and fixed.all() and Zp.dtype == np.float64
    err = np.linalg.norm(Zp - Z, axis=1) / np.linalg.norm(Z, axis=1)
    assert err.max() <= 1e-14, err.max()


@pytest.mark.parametrize("noise", [0.0, 1e-2])
def test_measured_polish_in_mixed_precision(noise, monkeypatch):
    from skinvert.operators import Measurement

    calls = _spy_mixed(monkeypatch)
    _, W, b, act, Z, _, _ = _setting(noise=0.0)
    rng = np.random.default_rng(6)
    A = rng.standard_normal((80, W[-1].shape[0])) / np.sqrt(80)
    meas = Measurement(A, np, np.float64)
    Y = _forward(W, b, act, Z) @ A.T + noise * rng.standard_normal((Z.shape[0], 80))
    obs = (rng.random(Y.shape) > 0.1).astype(float)
    Z0 = Z + 0.02 * rng.standard_normal(Z.shape)
    Zm, lm, _, fm = polish_batch(Z0, Y, obs, W, b, act, np, measurement=meas)
    assert calls and Zm.dtype == np.float64
    # The gradient of the measured loss matches its double-precision Jacobian.
    _, U, masks = forward_loss(Z0, Y, obs, W, b, act, np, measurement=meas)
    A64, _ = affine_map(W, b, masks, np, n_samples=Z.shape[0])
    exact, _ = step_factors(A64, U, Y, obs, act, np, meas)
    A32 = single_precision_map([w.astype(np.float32) for w in W], masks, np,
                               n_samples=Z.shape[0])
    mixed, _, ok = mixed_step_factors(A32, U, Y, obs, masks, W, act, np, meas,
                                      A.astype(np.float32))
    assert ok.all()
    dz, dz_m = lstsq_solve(exact, np), lstsq_solve(mixed, np)
    np.testing.assert_allclose(dz_m, dz, rtol=0, atol=1e-4 * np.abs(dz).max())
    _no_mixed(monkeypatch)
    Zd, ld, _, fd = polish_batch(Z0, Y, obs, W, b, act, np, measurement=meas)
    both = fm & fd
    assert both.sum() >= 6
    if noise == 0:
        np.testing.assert_allclose(Zm[both], Z[both], rtol=0, atol=1e-11)
    np.testing.assert_allclose(lm[both], ld[both], rtol=1e-12, atol=1e-20)  # rounding: ~1e-27


@pytest.mark.parametrize("namespace", ["array_api_strict", "torch"])
def test_mixed_polish_is_namespace_generic(namespace, monkeypatch):
    if namespace == "torch":
        xp = pytest.importorskip("torch")

        def to_xp(a):
            return xp.asarray(np.ascontiguousarray(a))
    else:
        xp = pytest.importorskip("array_api_strict")
        to_xp = xp.asarray
    from skinvert._array_api import namespace_of
    from skinvert.algorithms import _map_updates

    calls = _spy_mixed(monkeypatch)
    updates = []
    real = _map_updates._group_deltas
    monkeypatch.setattr(_map_updates, "_group_deltas",
                        lambda *a: updates.append(1) or real(*a))
    _, W, b, act, Z, Y, obs = _setting(B=6)
    # A start far enough that steps change supports: the maps' low-rank
    # updates run in the namespace too.
    Z0 = Z + 0.3 * np.random.default_rng(7).standard_normal(Z.shape)
    ref, ref_loss, _, _ = polish_batch(Z0, Y, obs, W, b, act, np)
    n_numpy, n_updates = len(calls), len(updates)
    args = [to_xp(a) for a in (Z0, Y, obs)]
    with sklearn.config_context(array_api_dispatch=True):
        ns, _ = namespace_of(args[0])
        Zx, lx, _, _ = polish_batch(*args, [to_xp(w) for w in W], [to_xp(c) for c in b], act,
                                    ns)
    assert len(calls) > n_numpy  # the mixed steps ran in that namespace too
    assert n_updates and len(updates) > n_updates
    assert Zx.dtype == args[0].dtype
    np.testing.assert_allclose(np.asarray(Zx), ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(lx), ref_loss, rtol=1e-8)


def test_mixed_polish_of_a_generator_without_hidden_layers(monkeypatch):
    # z -> tanh(W z + b): one map for every row (it was a (1, n, n_0) view).
    _, W, b, act, Z, Y, obs = _setting(sizes=(5, 40), B=7)
    Z0 = Z + 0.1 * np.random.default_rng(8).standard_normal(Z.shape)
    (Zm, lm, _, fm), (Zd, ld, _, fd) = _mixed_and_double(monkeypatch, Z0, Y, obs, W, b, act,
                                                         np)
    assert fm.all() and fd.all()
    np.testing.assert_allclose(Zm, Zd, rtol=0, atol=1e-6)
    np.testing.assert_allclose(lm, ld, rtol=1e-12)


@pytest.mark.parametrize("noise", [0.0, 1e-2])
def test_mixed_polish_of_a_convolutional_generator(noise, monkeypatch):
    # Bound layers: the map from their float32 copies, the gradient through
    # their double-precision adjoints.
    from .test_conv_inversion import small_conv_generator

    calls = _spy_mixed(monkeypatch)
    G = small_conv_generator("tanh")
    layers = G.bound_layers(np, dtype=np.float64)
    act = get_activation("tanh")
    rng = np.random.default_rng(9)
    Z = rng.standard_normal((6, 8))
    Y = G.forward(Z) + noise * rng.standard_normal((6, G.n_output))
    obs = np.ones_like(Y)
    Z0 = Z + 0.02 * rng.standard_normal(Z.shape)
    Zm, lm, _, fm = polish_batch(Z0, Y, obs, layers, None, act, np)
    assert calls
    _no_mixed(monkeypatch)
    Zd, ld, _, fd = polish_batch(Z0, Y, obs, layers, None, act, np)
    both = fm & fd
    assert both.sum() >= 4
    if noise == 0:
        np.testing.assert_allclose(Zm[both], Z[both], rtol=0, atol=1e-12)
    np.testing.assert_allclose(Zm[both], Zd[both], rtol=0, atol=1e-6)
    np.testing.assert_allclose(lm[both], ld[both], rtol=1e-12, atol=1e-20)


def test_rows_with_fewer_equations_than_unknowns_take_double_precision(monkeypatch):
    from skinvert.operators import Measurement

    built = []
    real_map = polish_module.single_precision_map
    monkeypatch.setattr(polish_module, "single_precision_map",
                        lambda W, masks, xp, n_samples, **kw: built.append(n_samples)
                        or real_map(W, masks, xp, n_samples=n_samples, **kw))
    calls = _spy_mixed(monkeypatch)
    _, W, b, act, Z, Y, obs = _setting(B=8)
    Z0 = Z + 0.05 * np.random.default_rng(10).standard_normal(Z.shape)
    # Rows 0 and 1 observe 12 entries for 20 unknowns: no single-precision map.
    few = obs.copy()
    few[:2] = 0.0
    few[:2, :12] = 1.0
    polish_batch(Z0, Y, few, W, b, act, np)
    assert built and max(built) <= 6
    # Fewer measurements than unknowns for every row: double precision throughout.
    built.clear()
    calls.clear()
    A = np.random.default_rng(11).standard_normal((12, Y.shape[1])) / np.sqrt(12)
    meas = Measurement(A, np, np.float64)
    Ym = _forward(W, b, act, Z) @ A.T
    Zm, lm, im, _ = polish_batch(Z0, Ym, np.ones_like(Ym), W, b, act, np, measurement=meas)
    assert not built and not calls
    _no_mixed(monkeypatch)
    Zd, ld, idd, _ = polish_batch(Z0, Ym, np.ones_like(Ym), W, b, act, np, measurement=meas)
    np.testing.assert_array_equal(Zm, Zd)
    np.testing.assert_array_equal(im, idd)


# -- the debiasing's mixed-precision refinement (noiseless rows a pursuit recovered)


@pytest.mark.parametrize("phi", ["tanh", "sigmoid"])
def test_mixed_refinement_reaches_the_exact_code_from_a_pursuit_estimate(phi):
    from skinvert.algorithms.polish import mixed_refinement

    G, W, b, act, Z, Y, _ = _setting(seed=3, B=12, noise=0.0, phi=phi)
    obs = np.ones_like(Y)
    masks = [m.astype(float) for m in G.supports(Z)]
    rng = np.random.default_rng(4)
    Z0 = Z * (1 + 2e-10 * rng.standard_normal(Z.shape))  # a pass's error
    Z1, ok = mixed_refinement(Z0, Y, obs, W, b, act, masks, np)
    assert ok.all()
    err0 = np.abs(Z0 - Z).max(axis=1) / np.abs(Z).max(axis=1)
    err1 = np.abs(Z1 - Z).max(axis=1) / np.abs(Z).max(axis=1)
    assert err0.min() > 1e-11
    assert err1.max() < 2e-15  # rounding, as Algorithm 1 in double precision


def test_debiasing_of_recovered_tanh_rows_takes_the_mixed_refinement(monkeypatch):
    """Latent-Pursuit's debiasing of noiseless rows (smooth phi, float64):
    the mixed-precision refinement, with Algorithm 1 in double precision for
    the rows it does not take; the codes exact either way."""
    from skinvert import LatentPursuitInverter
    from skinvert.algorithms import _refine

    G = make_random_generator([10, 60, 150, 300], output_activation="tanh", random_state=5)
    Z = np.random.default_rng(6).standard_normal((16, 10))
    X = G.forward(Z)
    taken, double = [], []
    mixed, oracle = _refine.mixed_refinement, _refine._debias_rows

    def spy_mixed(Z0, *args, **kwargs):
        out = mixed(Z0, *args, **kwargs)
        taken.append(int(out[1].sum()))
        return out

    def spy_oracle(res, batch, rows, **kwargs):
        double.append(int(np.sum(rows)) if rows is not None else len(res.z))
        return oracle(res, batch, rows, **kwargs)

    monkeypatch.setattr(_refine, "mixed_refinement", spy_mixed)
    monkeypatch.setattr(_refine, "_debias_rows", spy_oracle)
    Zh = LatentPursuitInverter(G).fit(X).transform(X)
    assert sum(taken) == 16 and double == []
    np.testing.assert_allclose(Zh, Z, rtol=0, atol=1e-13)
    # No row well conditioned enough: Algorithm 1 in double precision.
    taken.clear()
    monkeypatch.setattr(polish_module, "MIXED_MIN_EIG", 2.0)
    Zd = LatentPursuitInverter(G).fit(X).transform(X)
    assert taken == [0] and double == [16]
    np.testing.assert_allclose(Zd, Z, rtol=0, atol=1e-13)


@pytest.mark.parametrize("sizes", [(6, 30, 50, 80), (5, 20, 30, 40, 60)])
def test_low_rank_map_updates_match_a_rebuild(sizes):
    # updated_maps: the single-precision maps after a few hidden units flip,
    # by low-rank updates (few flips) or a rebuild (many), equal the map
    # built afresh on the new supports to float32 rounding; a row's result
    # does not depend on the rows updated with it.
    from skinvert.algorithms._map_updates import updated_maps

    G = make_random_generator(list(sizes), random_state=3)
    W32 = [w.astype(np.float32) for w in G.weights]
    rng = np.random.default_rng(4)
    B = 12
    old = [(rng.random((B, n)) > 0.5).astype(np.float64) for n in sizes[1:-1]]
    new = []
    for m in old:
        flip = rng.random(m.shape) < np.where(np.arange(B) < 8, 0.05, 0.5)[:, None]
        new.append(np.where(flip, 1.0 - m, m))

    def build(masks):
        return polish_module.single_precision_map(W32, masks, np, n_samples=masks[0].shape[0],
                                                  pre_masks=True)

    A, U = build(old)
    rows = np.arange(B)
    A2, U2 = updated_maps(A.copy(), [u.copy() for u in U], rows, old, new, W32, np, build)
    A_ref, U_ref = build(new)
    scale = np.abs(A_ref).max()
    np.testing.assert_allclose(A2, A_ref, rtol=0, atol=1e-5 * scale)
    for u, v in zip(U2, U_ref):
        np.testing.assert_allclose(u, v, rtol=0, atol=1e-5 * np.abs(v).max())
    assert not np.array_equal(A2[:8], A_ref[:8])  # the few-flip rows took the update
    # Row 3 updated alone: the same bits.
    one = [m[3:4] for m in old], [m[3:4] for m in new]
    A1, _ = updated_maps(A[3:4].copy(), [u[3:4].copy() for u in U], np.arange(1), *one, W32, np,
                         build)
    np.testing.assert_array_equal(A1[0], A2[3])


def test_given_tol_stops_the_mixed_polish_there():
    # tol=None: below sqrt(eps) a mixed-precision row steps on while its
    # steps contract (noiseless codes exact); a given tol stops it at that
    # step size (the hybrid with noise_std uses 1e-6): fewer steps, the same
    # code to about tol.
    _, W, b, act, Z, Y, obs = _setting(B=9, noise=1e-2)
    Z0 = Z + 0.05 * np.random.default_rng(8).standard_normal(Z.shape)
    Zr, lr, ir, fr = polish_batch(Z0, Y, obs, W, b, act, np)
    Zt, lt, it, ft = polish_batch(Z0, Y, obs, W, b, act, np, tol=1e-6)
    assert it.sum() < ir.sum() and np.all(it <= ir)
    np.testing.assert_allclose(Zt, Zr, rtol=0, atol=1e-5 * np.abs(Zr).max())
    np.testing.assert_allclose(lt, lr, rtol=1e-9)


def test_noisy_hybrid_polishes_to_the_noisy_tol():
    from skinvert import HybridInverter
    from skinvert.inverters._hybrid import NOISY_POLISH_TOL

    G, *_ = _setting(B=2)
    assert HybridInverter(G, noise_std=1e-2)._polish_tol() == NOISY_POLISH_TOL
    assert HybridInverter(G, noise_std=1e-2, tol=1e-9)._polish_tol() == 1e-9
    assert HybridInverter(G)._polish_tol() is None
