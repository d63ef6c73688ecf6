"""HybridInverter on noisy signals: the polish's reused factors, the boundary
search, single-precision starts and the pursuit as a fallback (issues 15, 19)."""

import numpy as np
import pytest

from skinvert import HybridInverter, make_random_generator
from skinvert._linalg import batched_lstsq, lstsq_factors, lstsq_solve
from skinvert.algorithms import neighbours as neighbours_module
from skinvert.algorithms import polish as polish_module
from skinvert.algorithms.hybrid import HybridStarts, _descend
from skinvert.algorithms.neighbours import boundary_starts, search_neighbours
from skinvert.algorithms.polish import forward_loss, jacobian, polish_batch


def _noisy(seed, sigma=1e-2, B=12, sizes=(5, 30, 60, 120), act="tanh"):
    G = make_random_generator(list(sizes), output_activation=act, random_state=seed)
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((B, sizes[0]))
    Y = G.forward(Z) + sigma * rng.standard_normal((B, sizes[-1]))
    W, b = G.as_arrays(np, dtype=np.float64)
    return G, Z, Y, np.ones_like(Y), W, b


@pytest.mark.parametrize("ridge", [0.0, 0.3])
def test_gram_factors_solve_like_the_svd(ridge):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((16, 50, 6))
    A[:4, :, 0] *= 1e-6  # condition number about 1e6: these rows take the SVD
    b = rng.standard_normal((16, 50))
    z = rng.standard_normal((16, 6))
    ref = batched_lstsq(A, b, np, ridge=ridge, z=z)
    got = lstsq_solve(lstsq_factors(A, b, np, gram=True), np, ridge=ridge, z=z)
    np.testing.assert_allclose(got[:4], ref[:4], rtol=1e-13)  # the SVD path itself
    # Normal equations on cond ~ 10: a relative error of order cond^2 eps.
    np.testing.assert_allclose(got[4:], ref[4:], rtol=1e-12, atol=1e-13)
    # Single precision always takes the SVD.
    A32, b32 = A.astype(np.float32), b.astype(np.float32)
    f32 = lstsq_factors(A32, b32, np, gram=True)
    np.testing.assert_allclose(lstsq_solve(f32, np), batched_lstsq(A32, b32, np), rtol=1e-6)


def test_polish_reuses_factors_without_changing_its_steps(monkeypatch):
    # Reusing the SVD after a rejected step and A_S after a step that keeps
    # the supports gives the steps of recomputing everything every step.
    G, Z, Y, obs, W, b = _noisy(3)
    Z0 = Z + 0.5 * np.random.default_rng(1).standard_normal(Z.shape)
    cached = polish_batch(Z0, Y, obs, W, b, G.activation, np, max_iter=30)

    def recompute(self, moved, same_supports):
        self.f_ok = np.zeros_like(moved)
        self.A_ok = np.zeros_like(moved)

    monkeypatch.setattr(polish_module._StepCache, "moved", recompute)
    fresh = polish_batch(Z0, Y, obs, W, b, G.activation, np, max_iter=30)
    for got, ref in zip(cached, fresh):
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
    assert np.all(cached[1] <= forward_loss(Z0, Y, obs, W, b, G.activation, np)[0])


def test_boundary_starts_reflect_the_doubtful_units():
    G, Z, Y, obs, W, b = _noisy(4)
    sigma = 1e-2
    assert boundary_starts(Z, Y, obs, W, b, G.activation, np, noise_std=sigma, c=0.0) == []
    few = boundary_starts(Z, Y, obs, W, b, G.activation, np, noise_std=sigma, c=3.0)
    many = boundary_starts(Z, Y, obs, W, b, G.activation, np, noise_std=sigma, c=50.0)
    assert 0 < sum(int(r.sum()) for r, _ in few) < sum(int(r.sum()) for r, _ in many)
    # One hidden layer: every start is z reflected across one unit's
    # hyperplane, so that unit's pre-activation becomes minus itself.
    G, Z, Y, obs, W, b = _noisy(4, sizes=(5, 40, 120))
    u = Z @ W[0].T + b[0]
    starts = boundary_starts(Z, Y, obs, W, b, G.activation, np, noise_std=sigma, c=20.0)
    assert starts
    for rows, Zs in starts:
        us = Zs @ W[0].T + b[0]
        gap = np.min(np.abs(us + u[rows]), axis=1)
        assert np.all(gap < 1e-12 * (1 + np.max(np.abs(u), axis=1)[rows]))


def test_search_neighbours_only_lowers_the_loss():
    G, Z, Y, obs, W, b = _noisy(5, sigma=3e-2, B=24)
    Zp, lp, _, _ = polish_batch(Z, Y, obs, W, b, G.activation, np)
    Zn, ln, moved = search_neighbours(Zp, lp, Y, obs, W, b, G.activation, np,
                                      noise_std=3e-2, c=2.0)
    assert np.all(ln <= lp)
    assert moved.any()  # measured: 2 of 24 rows find a lower neighbouring minimum
    assert np.all(ln[moved] < lp[moved]) and np.array_equal(Zn[~moved], Zp[~moved])
    np.testing.assert_allclose(ln, forward_loss(Zn, Y, obs, W, b, G.activation, np)[0],
                               rtol=1e-12)


@pytest.mark.parametrize("act", ["tanh", "identity"])
def test_the_gram_of_a_start_one_unit_away_is_its_rows_updated(act):
    """``J'^T J'`` of a start that flips one hidden unit (of either layer)
    from its row's ``J^T J`` by the rank-one change of the map equals the
    one built from the start's own map (with the row's ``phi'``); starts
    that flip no unit or two are flagged."""
    G, Z, Y, obs, W, b = _noisy(7, B=16, act=act)
    net = (W, b, G.activation, np)
    _, U, masks = forward_loss(Z, Y, obs, W, b, G.activation, np)
    A, _ = polish_module.affine_map(W, b, masks, np, n_samples=Z.shape[0])
    d = G.activation.derivative(U, np) * obs
    gram = np.einsum("bij,bik->bjk", d[:, :, None] * A, d[:, :, None] * A)
    # Starts: each row's z with one unit flipped, by reflection across its
    # boundary (layer 0 for even rows, layer 1 for odd), plus z itself.
    pre = [Z @ W[0].T + b[0]]
    pre.append((masks[0] * pre[0]) @ W[1].T + b[1])
    Z0 = Z.copy()
    for r in range(Z.shape[0]):
        j = r % 2
        k = int(np.argmin(np.abs(pre[j][r])))
        if j == 0:
            a = W[0][k]
        else:
            a = (W[1][k] * masks[0][r]) @ W[0]
        Z0[r] = Z[r] - 2.0 * pre[j][r, k] / (a @ a) * a
    Z0 = np.concatenate([Z0, Z[:2]])
    Zr = np.concatenate([Z, Z[:2]])
    gr = np.concatenate([gram, gram[:2]])
    _, _, masks0 = forward_loss(Z0, np.concatenate([Y, Y[:2]]), np.ones((18, Y.shape[1])),
                                W, b, G.activation, np)
    M, ok = neighbours_module._flipped_unit_gram(Zr, Z0, masks0, np.ones((18, Y.shape[1])),
                                                 gr, net)
    n_flips = sum(np.sum(m0 != m, axis=1) for m0, m in
                  zip(masks0, [np.concatenate([m, m[:2]]) for m in masks]))
    np.testing.assert_array_equal(ok, n_flips == 1)
    assert ok[0:16:2].any() and ok[1:16:2].any() and not ok[16:].any()  # both layers
    A0, _ = polish_module.affine_map(W, b, masks0, np, n_samples=18)
    D = np.concatenate([d, d[:2]])
    ref = np.einsum("bij,bik->bjk", D[:, :, None] * A0, D[:, :, None] * A0)
    scale = np.abs(ref).max(axis=(1, 2))[:, None, None]
    np.testing.assert_allclose(M[ok] / scale[ok], ref[ok] / scale[ok], rtol=0, atol=1e-12)
    # Not the row's own Gram matrix: the flipped unit's term is in it.
    assert np.all(np.abs(gr[ok] - ref[ok]).max(axis=(1, 2)) > 1e-6 * scale[ok, 0, 0])


def test_the_search_screens_one_unit_starts_without_their_maps(monkeypatch):
    """The boundary search screens the starts one unit away by their updated
    Gram matrices (no map built for them) and moves the rows that screening
    every start by a polish step moves, to the same losses."""
    G, Z, Y, obs, W, b = _noisy(5, sigma=3e-2, B=24)
    Zp, lp, _, _, gram = polish_batch(Z, Y, obs, W, b, G.activation, np, return_gram=True)
    kw = dict(noise_std=3e-2, c=2.0, gram=gram)
    screened = []
    real_screen = neighbours_module._updated_screen
    monkeypatch.setattr(neighbours_module, "_updated_screen",
                        lambda *a: screened.append(real_screen(*a)) or screened[-1])
    fast = search_neighbours(Zp, lp, Y, obs, W, b, G.activation, np, **kw)
    assert screened and screened[0][2].sum() >= 10  # starts screened without a map
    # Every start screened by a polish step (no start taken by the update).
    monkeypatch.setattr(neighbours_module, "_updated_screen",
                        lambda Z, rows, Z0, *a: (Z0, np.zeros(len(Z0)),
                                                 np.zeros(len(Z0), dtype=bool)))
    slow = search_neighbours(Zp, lp, Y, obs, W, b, G.activation, np, **kw)
    assert fast[2].any()
    np.testing.assert_array_equal(fast[2], slow[2])
    # A screened point differs (its step's J^T J keeps the row's phi'), and
    # its polish may end in a neighbouring region of nearly the same loss
    # (row 13 here: 2.5e-6 relative); every other row ends where it did.
    np.testing.assert_allclose(fast[1], slow[1], rtol=1e-5)
    assert np.sum(np.abs(fast[1] - slow[1]) > 1e-12 * slow[1]) <= 1
    assert np.all(fast[1] <= lp)


def test_starts_descend_in_single_precision_returning_double():
    G, Z, Y, obs, W, b = _noisy(6)
    low = ([w.astype(np.float32) for w in W], [v.astype(np.float32) for v in b])
    starts = HybridStarts(None, max_iter=20, low_precision=low)
    Z0 = Z + 0.3 * np.random.default_rng(0).standard_normal(Z.shape)
    Zg, lg = _descend(Z0, Y, obs, W, b, G.activation, np, starts, 0.0, None)
    assert Zg.dtype == np.float64 and lg.dtype == np.float64
    np.testing.assert_array_equal(lg, forward_loss(Zg, Y, obs, W, b, G.activation, np)[0])
    np.testing.assert_array_equal(Zg, Zg.astype(np.float32).astype(np.float64))
    assert np.all(lg < forward_loss(Z0, Y, obs, W, b, G.activation, np)[0])
    # Without single-precision weights the descent runs in the input's precision.
    Z64, _ = _descend(Z0, Y, obs, W, b, G.activation, np,
                      HybridStarts(None, max_iter=20), 0.0, None)
    assert not np.array_equal(Z64, Z64.astype(np.float32).astype(np.float64))
    # Through a measurement too (bound in single precision for the descent);
    # the loss returned is the measured one, in double precision.
    from skinvert.operators import Measurement

    A = np.random.default_rng(1).standard_normal((30, Y.shape[1])) / np.sqrt(30)
    meas = Measurement(A, np, np.float64)
    Ym = G.forward(Z) @ A.T
    om = np.ones_like(Ym)
    Zm, lm = _descend(Z0, Ym, om, W, b, G.activation, np, starts, 0.0, meas)
    assert Zm.dtype == np.float64 and lm.dtype == np.float64
    np.testing.assert_array_equal(Zm, Zm.astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(
        lm, forward_loss(Zm, Ym, om, W, b, G.activation, np, measurement=meas)[0])
    assert np.all(lm < forward_loss(Z0, Ym, om, W, b, G.activation, np, measurement=meas)[0])


def test_noisy_default_uses_the_pursuit_as_fallback():
    G, Z, Y, obs, W, b = _noisy(7, sizes=(5, 40, 80, 160))
    est = HybridInverter(G, noise_std=1e-2, random_state=0).fit(Y)
    assert est._pursuit_first() is False and est.pursuit_ is not None
    Zh, info = est.transform(Y, return_info=True)
    # Every row fit by the linear or the gradient-descent starts: no pursuit.
    assert np.all(info["start"] != -1)
    Zh, info = est.set_params(linear_start=False).fit(Y).transform(Y, return_info=True)
    assert np.all(info["start"] >= 0)  # every row fit by its gradient-descent starts
    assert HybridInverter(G, random_state=0).fit(Y)._pursuit_first() is True
    assert HybridInverter(G, noise_std=0.01, use_pursuit=True).fit(Y)._pursuit_first() is True


@pytest.mark.parametrize("param", ["noise_retry_sd", "boundary_sd"])
def test_noise_parameters_validated(param):
    G, Z, Y, obs, W, b = _noisy(8)
    with pytest.raises(ValueError, match=param):
        HybridInverter(G, noise_std=1e-2, **{param: -1.0}).fit(Y)
    with pytest.raises(ValueError, match="use_pursuit"):
        HybridInverter(G, use_pursuit="sometimes").fit(Y)


def test_boundary_starts_bounded_when_noise_std_is_far_too_large():
    # noise_std 100x the real noise: every unit is in doubt; at most
    # max_per_layer starts per row and layer, the closest to 0 first.
    G, Z, Y, obs, W, b = _noisy(9)
    starts = boundary_starts(Z, Y, obs, W, b, G.activation, np, noise_std=1.0, c=0.5,
                             max_per_layer=3)
    per_row = sum(r.astype(int) for r, _ in starts)
    assert per_row.max() <= 3 * (len(W) - 1) and len(starts) == 3 * (len(W) - 1)
    # Layer 1's first start reflects the unit closest to 0 in standard
    # deviations, sigma^2 w_k^T (J^T J)^-1 w_k (Theorem 3's covariance).
    u = Z @ W[0].T + b[0]
    _, U, M = forward_loss(Z, Y, obs, W, b, G.activation, np)
    J = jacobian(U, M, W, b, G.activation, np, obs=obs)
    cov = np.linalg.inv(np.transpose(J, (0, 2, 1)) @ J)
    sd = np.sqrt(np.einsum("kj,bjl,kl->bk", W[0], cov, W[0]))
    us = starts[0][1] @ W[0].T + b[0]
    k = np.argmin(np.abs(us + u), axis=1)  # the unit whose sign the start flipped
    np.testing.assert_array_equal(k, np.argmin(np.abs(u) / sd, axis=1))
    Zh = HybridInverter(G, noise_std=1.0, n_restarts=2, n_perturbations=0,
                        random_state=0).fit(Y).transform(Y)
    assert np.all(np.isfinite(Zh))


def test_linear_decoder_inverts_a_linear_generator():
    """On a generator without hidden layers (y = W z + b) the ridge
    regression of z on y is the generator's inverse, up to the ridge."""
    from skinvert.algorithms.hybrid import linear_decoder

    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((40, 6)), rng.standard_normal(40)
    mean, coef, offset = linear_decoder(
        lambda Z: Z @ W.T + b, 6, np.random.default_rng(1), n_samples=3000, ridge=1e-9
    )
    Z = rng.standard_normal((5, 6))
    np.testing.assert_allclose((Z @ W.T + b - mean) @ coef + offset, Z, atol=1e-6)


@pytest.mark.parametrize("phi", ["tanh", "sigmoid"])
def test_inverse_features_invert_a_bounded_generator_without_hidden_layers(phi):
    """y = phi(W z + b): in the features [y, phi^-1(y)] (decoder_features)
    the decoder is exact where no entry is clipped, while the regression on
    y alone is not."""
    from skinvert.activations import get_activation
    from skinvert.algorithms.hybrid import decoder_features, linear_decoder

    act = get_activation(phi)
    rng = np.random.default_rng(0)
    W, b = 0.3 * rng.standard_normal((40, 6)), 0.1 * rng.standard_normal(40)

    def forward(Z):
        return act(Z @ W.T + b, np)

    f = decoder_features(act, np)
    Y = forward(0.5 * rng.standard_normal((5, 6)))
    F = f(Y)
    assert F.shape == (5, 80)
    np.testing.assert_allclose(F[:, 40:], act.inverse(Y, np))  # nothing clipped here
    lo, hi = (-0.99, 0.99) if phi == "tanh" else (0.005, 0.995)
    edge = f(np.array([[lo - 1e-3, hi + 1e-3]]))  # beyond: clipped first
    np.testing.assert_allclose(edge[0, 2:], act.inverse(np.array([lo, hi]), np), rtol=1e-6)
    Z = 0.5 * rng.standard_normal((5, 6))
    fit = [linear_decoder(forward, 6, np.random.default_rng(1), n_samples=3000, ridge=1e-9,
                          features=g) for g in (f, None)]
    (m1, c1, o1), (m0, c0, o0) = fit
    np.testing.assert_allclose((f(forward(Z)) - m1) @ c1 + o1, Z, atol=1e-6)
    assert np.abs((forward(Z) - m0) @ c0 + o0 - Z).max() > 1e-3
    assert decoder_features(get_activation("identity"), np) is None


def test_linear_start_first_with_noise_only():
    G, Z, Y, _, _, _ = _noisy(0)
    est = HybridInverter(G, noise_std=1e-2, random_state=0).fit(Y)
    # tanh output: the start regresses z on [y, atanh(y)] (decoder_features).
    assert est.start_coef_.shape == (240, 5) and est.start_mean_.shape == (240,)
    Zh, info = est.transform(Y, return_info=True)
    assert "linear start" in set(info.stage)
    assert np.all(info.stage[info["start"] == -3] == "linear start")
    off = HybridInverter(G, noise_std=1e-2, random_state=0, linear_start=False).fit(Y)
    assert off.start_coef_ is None
    assert "linear start" not in set(off.transform(Y, return_info=True)[1].stage)
    # Drawn last: the other draws of random_state are unchanged.
    np.testing.assert_array_equal(off.init_codes_, est.init_codes_)
    np.testing.assert_array_equal(off.perturb_codes_, est.perturb_codes_)
    # Noiseless signals: off unless asked for.
    clean = G.forward(Z)
    assert HybridInverter(G, random_state=0).fit(clean).start_coef_ is None
    on = HybridInverter(G, random_state=0, linear_start=True).fit(clean)
    assert on.start_coef_ is not None
    np.testing.assert_allclose(on.transform(clean), Z, atol=1e-8)


def test_linear_start_dtype_missing_entries_and_measurement():
    G, Z, Y, _, _, _ = _noisy(1)
    Y32 = Y.astype(np.float32)
    est = HybridInverter(G, noise_std=1e-2, random_state=0).fit(Y32)
    assert est.start_coef_.dtype == np.float32
    assert est.transform(Y32).dtype == np.float32
    Ym = Y.copy()
    Ym[:, :10] = np.nan  # missing entries take the outputs' mean in the start
    Zm = HybridInverter(G, noise_std=1e-2, random_state=0).fit(Ym).transform(Ym)
    assert np.all(np.isfinite(Zm))
    A = np.random.default_rng(2).standard_normal((80, 120)) / np.sqrt(80)
    est = HybridInverter(G, measurement=A, noise_std=1e-2, random_state=0).fit(Y @ A.T)
    assert est.start_coef_.shape == (80, 5)
    assert np.all(np.isfinite(est.transform(Y @ A.T)))


def test_rows_in_the_chi_square_tail_stop_once_their_minimum_is_confirmed(monkeypatch):
    # Noise 1.35x the stated noise_std puts every row about 4-6 chi-square
    # standard deviations above the stop bound (3) but within the far bound
    # (10): no start can fit them. Without CONFIRMATIONS they ran every
    # gradient-descent and basin-hopping start; with it a row stops once
    # three more polished starts landed on its best loss, which it keeps.
    from skinvert.algorithms import hybrid as hybrid_module

    G, Z, Y, obs, W, b = _noisy(3, sigma=1.35e-2, B=8)
    descended = []
    real = hybrid_module._descend

    def spy(Z0, *args, **kw):
        if "max_iter" not in kw:  # the rounds' starts (not the linear start's descent)
            descended.append(Z0.shape[0])
        return real(Z0, *args, **kw)

    monkeypatch.setattr(hybrid_module, "_descend", spy)
    est = HybridInverter(G, noise_std=1e-2, random_state=0, boundary_sd=0.0).fit(Y)
    Zc, info_c = est.transform(Y, return_info=True)
    with_rule = sum(descended)
    descended.clear()
    monkeypatch.setattr(hybrid_module, "CONFIRMATIONS", 10**9)
    Za, info_a = est.transform(Y, return_info=True)
    every_start = sum(descended)
    assert not info_a["recovered"].any()  # every row above the bound
    assert every_start == Y.shape[0] * (est.n_restarts + est.n_perturbations)
    assert with_rule < every_start / 2, (with_rule, every_start)
    np.testing.assert_allclose(info_c["loss"], info_a["loss"], rtol=1e-9)


def test_linear_start_descent_only_for_rows_its_polish_leaves(monkeypatch):
    # The ten descent iterations from the linear start run only on the rows
    # its polish leaves above the bound (run on every row they led fitted
    # rows to other noise-consistent minima).
    from skinvert.algorithms import hybrid as hybrid_module
    from skinvert.inverters._hybrid import LINEAR_START_DESCENT

    calls = []
    real = hybrid_module._descend

    def spy(Z0, *args, **kw):
        if "max_iter" in kw:
            calls.append((Z0.shape[0], kw["max_iter"]))
        return real(Z0, *args, **kw)

    monkeypatch.setattr(hybrid_module, "_descend", spy)
    # Every row fitted by the polish of the linear start itself: no descent.
    G, Z, Y, obs, W, b = _noisy(3, sigma=1e-2, B=16)
    _, info = HybridInverter(G, noise_std=1e-2, random_state=0).fit(Y).transform(
        Y, return_info=True)
    assert np.all(info["start"] == -3)
    assert calls == []
    # Noise 1.35x the stated level: no row fits, every row takes the descent.
    G, Z, Y, obs, W, b = _noisy(3, sigma=1.35e-2, B=8)
    HybridInverter(G, noise_std=1e-2, random_state=0, boundary_sd=0.0).fit(Y).transform(Y)
    assert calls == [(Y.shape[0], LINEAR_START_DESCENT)]


def test_shared_starts_run_ahead_for_few_rows_give_the_rounds_codes(monkeypatch):
    # Few rows left for the shared starts (SHARED_AHEAD_ROWS): their descents
    # run in one batch ahead of the rounds, which still polish them in turn
    # and stop a row as before: the same codes and starts as round by round,
    # in fewer descent calls.
    from skinvert.algorithms import hybrid as hybrid_module

    G = make_random_generator([6, 40, 80, 160], output_activation="tanh", random_state=7)
    rng = np.random.default_rng(7)
    # noise_std below the real noise: no row reaches the bound, every start runs.
    Y = G.forward(rng.standard_normal((5, 6))) + 3e-2 * rng.standard_normal((5, 160))
    real = hybrid_module._descend
    calls = []

    def count(Z0, *args, **kw):
        calls.append(Z0.shape[0])
        return real(Z0, *args, **kw)

    monkeypatch.setattr(hybrid_module, "_descend", count)

    def run():
        calls.clear()
        est = HybridInverter(G, noise_std=1e-3, random_state=0, linear_start=False,
                             n_restarts=8, restarts_per_round=2)
        Z, info = est.fit(Y).transform(Y, return_info=True)
        return Z, info, list(calls)

    assert 5 * 8 <= hybrid_module.SHARED_AHEAD_ROWS
    Z_ahead, info_ahead, ahead = run()
    monkeypatch.setattr(hybrid_module, "SHARED_AHEAD_ROWS", 0)
    Z_rounds, info_rounds, rounds = run()
    # (Several starts land on the same minimum here: which of them a row
    # credits, info["start"], turns on the last bits of their losses.)
    np.testing.assert_allclose(Z_ahead, Z_rounds, rtol=0, atol=1e-6)
    np.testing.assert_allclose(info_ahead["loss"], info_rounds["loss"], rtol=1e-9)
    assert len(rounds) > 1  # the rows took more than one round of shared starts
    assert ahead[0] > rounds[0]  # one batch of the remaining shared starts
    assert len(ahead) < len(rounds)


def test_noisy_hybrid_with_its_boundary_search_is_namespace_generic():
    """With ``noise_std`` (linear start, boundary search and its screen) the
    hybrid runs in a strict array API namespace, near NumPy's codes. Its
    chunks of starts used to slice past the end of the array (not defined
    by the standard: IndexError in array_api_strict)."""
    array_api_strict = pytest.importorskip("array_api_strict")
    from sklearn import config_context

    G = make_random_generator([5, 30, 60, 120], output_activation="tanh", random_state=0)
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((24, 5))
    X = G.forward(Z) + 3e-2 * rng.standard_normal((24, 120))
    ref = HybridInverter(G, noise_std=3e-2, random_state=0).fit(X).transform(X)
    with config_context(array_api_dispatch=True):
        Xa = array_api_strict.asarray(X)
        Zh = HybridInverter(G, noise_std=3e-2, random_state=0).fit(Xa).transform(Xa)
    assert type(Zh) is type(Xa)
    # The generic path rounds otherwise (one GEMM where NumPy takes per-row
    # products) and the noisy polish stops at steps below 1e-6 (1 + ||z||):
    # the codes agree to that (measured 2.9e-11 on one thread, 2e-8 on two).
    np.testing.assert_allclose(np.asarray(Zh), ref, rtol=0, atol=1e-5)
