"""Levenberg-Marquardt damping: a penalty on the step, not on the new point.

Algorithm 1's Gauss-Newton steps (the Oracle, the pursuits' debias and
refresh) are damped after a rejected step: the damping must shorten the step
from the current z (towards a gradient step), not pull the trial point
towards z = 0 as a ridge on ``z + dz`` with the damping's weight does. The
hybrid's polish deliberately takes that ridge path instead (measured in its
notes), and its test checks the system it documents.
"""

import numpy as np
import pytest

from skinvert import make_random_generator
from skinvert._linalg import batched_lstsq, lstsq_factors, lstsq_solve
from skinvert.algorithms import polish as polish_module
from skinvert.algorithms.polish import polish_batch


def _problem(seed=0, B=6, m=40, k=5):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((B, m, k)), rng.standard_normal((B, m)),
            rng.standard_normal((B, k)))


@pytest.mark.parametrize("gamma", [0.0, 0.4])
def test_damped_step_solves_the_levenberg_marquardt_system(gamma):
    A, b, z = _problem()
    mu = np.array([0.0, 1e-3, 0.1, 1.0, 10.0, 1e3])
    x = batched_lstsq(A, b, np, ridge=gamma, z=z, damping=mu)
    k = A.shape[2]
    for i in range(A.shape[0]):
        lhs = A[i].T @ A[i] + (gamma + mu[i]) * np.eye(k)
        rhs = A[i].T @ b[i] - gamma * z[i]
        np.testing.assert_allclose(x[i], np.linalg.solve(lhs, rhs), rtol=1e-10, atol=1e-12)


def test_damping_shortens_the_step_towards_zero():
    A, b, z = _problem(1)
    steps = [batched_lstsq(A, b, np, ridge=0.0, z=z, damping=mu) for mu in (0.0, 1.0, 1e2, 1e8)]
    norms = np.array([np.linalg.norm(s, axis=1) for s in steps])
    assert np.all(np.diff(norms, axis=0) < 0)
    assert np.all(norms[-1] < 1e-6 * norms[0])
    # Scalar and per-row damping agree; the factors are reusable.
    f = lstsq_factors(A, b, np)
    np.testing.assert_allclose(lstsq_solve(f, np, damping=1.0),
                               lstsq_solve(f, np, damping=np.ones(A.shape[0])), rtol=1e-14)


def _normal_equations(factors):
    """``(J^T J, J^T r)`` of the factors lstsq_solve takes: the SVD's four
    arrays, or the mixed-precision polish's seven (normal equations on the
    rows ``by_gram``, the SVD's on the others)."""
    gram = Jtr = by_gram = None
    if len(factors) == 7:
        gram, Jtr, *factors, by_gram = factors
    S, Vt, Utb, _ = factors
    svd_gram = np.einsum("bki,bk,bkj->bij", Vt, S * S, Vt)
    svd_Jtr = np.einsum("bki,bk->bi", Vt, S * Utb)
    if by_gram is None:
        return svd_gram, svd_Jtr
    return (np.where(by_gram[:, None, None], gram, svd_gram),
            np.where(by_gram[:, None], Jtr, svd_Jtr))


def _noisy_tanh_rows(B, offset):
    """``(G, W, bias, Y, Z0)``: B noisy signals (1e-2) of a small tanh net and
    starts ``offset`` (N(0, I) scaled) away from their codes."""
    G = make_random_generator([5, 30, 60, 120], output_activation="tanh", random_state=3)
    rng = np.random.default_rng(3)
    Z = rng.standard_normal((B, 5))
    Y = G.forward(Z) + 1e-2 * rng.standard_normal((B, 120))
    W, bias = G.as_arrays(np, dtype=np.float64)
    return G, W, bias, Y, Z + offset * rng.standard_normal(Z.shape)


def test_polish_steps_follow_the_ridge_path_of_its_notes(monkeypatch):
    # Record every step the polish solves and check it against the system in
    # its notes: (J^T J + (gamma + mu) I) dz = J^T r - (gamma + mu) z.
    G, W, bias, Y, Z0 = _noisy_tanh_rows(12, 1.5)
    calls = []
    solve = polish_module.lstsq_solve

    def record(factors, xp, **kw):
        dz = solve(factors, xp, **kw)
        calls.append((factors, kw, dz))
        return dz

    monkeypatch.setattr(polish_module, "lstsq_solve", record)
    gamma = 0.05
    polish_batch(Z0, Y, np.ones_like(Y), W, bias, G.activation, np, gamma=gamma, max_iter=30)
    after_rejection = 0
    for factors, kw, dz in calls:
        lam = np.broadcast_to(kw["ridge"], (dz.shape[0],))
        assert np.all(lam >= gamma)
        after_rejection += int(np.sum(lam > gamma))
        JtJ, Jtr = _normal_equations(factors)
        lhs = JtJ + lam[:, None, None] * np.eye(dz.shape[1])
        rhs = Jtr - lam[:, None] * kw["z"]
        np.testing.assert_allclose(np.einsum("bij,bj->bi", lhs, dz), rhs, rtol=1e-8,
                                   atol=1e-12)
    assert after_rejection > 0  # the case does take steps after a rejection


def test_oracle_steps_are_damped_not_pulled_to_the_origin(monkeypatch):
    # Algorithm 1 on noisy signals of the shipped PLU generator takes rejected
    # steps (phi's kinks); after one, the step is damped and the ridge stays
    # gamma (it was gamma + mu on z + dz).
    from skinvert import OracleInverter
    from skinvert.algorithms import oracle as oracle_module

    G, Z, X = _noisy_plu()
    calls = []
    solve = oracle_module.lstsq_solve  # the steps (from their factors)

    def record(factors, xp, **kw):
        calls.append(kw)
        return solve(factors, xp, **kw)

    monkeypatch.setattr(oracle_module, "lstsq_solve", record)
    OracleInverter(G, gamma=0.01).fit(X).transform(X, supports=G.supports(Z))
    assert calls
    assert any(np.any(np.asarray(kw.get("damping", 0.0)) > 0) for kw in calls)
    for kw in calls:
        assert np.all(np.asarray(kw.get("ridge", 0.0)) == 0.01)


def _noisy_plu(B=16):
    from skinvert.datasets import load_pretrained_generator

    G = load_pretrained_generator("fashion-mnist-fc")
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((B, G.n_latent))
    X = G.forward(Z) + 1e-2 * rng.standard_normal((B, G.n_output))
    return G, Z, X


def test_oracle_refactors_only_rows_whose_code_moved(monkeypatch):
    # A rejected step changes only the damping: the row's next step reuses
    # its factors, so fewer rows are factored than steps are solved.
    from skinvert import OracleInverter
    from skinvert.algorithms import oracle as oracle_module

    G, Z, X = _noisy_plu()
    factored, solved = [], []
    factor, solve = polish_module.lstsq_factors, oracle_module.lstsq_solve

    def count_factors(A, b, xp, **kw):
        factored.append(A.shape[0])
        return factor(A, b, xp, **kw)

    def count_solves(factors, xp, **kw):
        solved.append(factors[0].shape[0])
        return solve(factors, xp, **kw)

    monkeypatch.setattr(polish_module, "lstsq_factors", count_factors)  # step_factors
    monkeypatch.setattr(oracle_module, "lstsq_solve", count_solves)
    OracleInverter(G).fit(X).transform(X, supports=G.supports(Z))
    assert sum(factored) < sum(solved)


def test_oracle_gram_steps_reach_the_svd_steps_answer(monkeypatch):
    # The steps from the normal equations' factors end where SVD steps do
    # (each step recomputes its residual).
    from skinvert import OracleInverter

    G, Z, X = _noisy_plu()
    S = G.supports(Z)
    Zg = OracleInverter(G).fit(X).transform(X, supports=S)
    factor = polish_module.lstsq_factors  # called by step_factors
    monkeypatch.setattr(polish_module, "lstsq_factors",
                        lambda A, b, xp, **kw: factor(A, b, xp, **{**kw, "gram": False}))
    Zs = OracleInverter(G).fit(X).transform(X, supports=S)
    np.testing.assert_allclose(Zg, Zs, rtol=0, atol=1e-10)
    assert np.sqrt(np.mean((Zg - Z) ** 2)) < 0.1  # a noisy answer, not a trivial one


@pytest.mark.parametrize("ridge", [0.0, 0.3])
def test_refined_lstsq_gives_the_svd_answer(ridge):
    # Algorithm 1's first least squares: normal equations plus two steps of
    # iterative refinement reach the SVD's answer to rounding where the
    # normal equations alone lose cond^2 eps (cond 3e3 here); ill-conditioned
    # rows (cond 1e6) take the SVD; float32 takes the SVD.
    from skinvert._linalg import refined_lstsq

    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((12, 80, 6)))
    V, _ = np.linalg.qr(rng.standard_normal((12, 6, 6)))
    s = np.geomspace(1.0, 1 / 3e3, 6)
    A = (U * s[None, None, :]) @ V
    A[:3] = rng.standard_normal((3, 80, 6))
    A[:3, :, 0] *= 1e-6
    b = rng.standard_normal((12, 80))
    ref = batched_lstsq(A, b, np, ridge=ridge)
    got = refined_lstsq(A, b, np, ridge=ridge)
    scale = np.abs(ref).max(axis=1, keepdims=True)
    # "To rounding": within eps times the least squares' condition number
    # kappa = cond + cond^2 ||r|| / (sigma_1 ||x||) (Golub & Van Loan, Thm.
    # 5.3.1), the accuracy of the SVD answer itself. A fixed 1e-12 was not:
    # on an AMD EPYC's OpenBLAS one row differed by 1.1e-12 of its scale
    # (2 % of this bound), the SVD answer being 3.6e-13 from the exact one.
    sv = np.sqrt(np.linalg.svd(A, compute_uv=False) ** 2 + ridge)
    cond = sv[:, 0] / sv[:, -1]
    res = np.linalg.norm(b - np.einsum("bij,bj->bi", A, ref), axis=1)
    norm = np.linalg.norm(ref, axis=1)
    kappa = cond + cond**2 * res / (sv[:, 0] * norm)
    err = np.max(np.abs(got - ref), axis=1) / norm
    assert np.all(err <= np.finfo(float).eps * kappa)
    plain = lstsq_solve(lstsq_factors(A, b, np, gram=True), np, ridge=ridge)
    if ridge == 0:  # without refinement the normal equations are visibly off
        assert np.max(np.abs(plain - ref)[3:] / scale[3:]) > 1e-11
    A32, b32 = A.astype(np.float32), b.astype(np.float32)
    got32 = refined_lstsq(A32, b32, np, ridge=ridge)
    assert got32.dtype == np.float32
    np.testing.assert_array_equal(got32, batched_lstsq(A32, b32, np, ridge=ridge))


def test_a_row_whose_ridge_trials_are_all_rejected_stops_at_max_ridge(monkeypatch):
    # Row 0's every trial point is made infinitely bad: its steps are all
    # rejected. The first (on a single-precision gradient, COARSE_STEP) is
    # retried with the double-precision one, then the ridge trials mu = 0,
    # 1e-6, ..., 1 (times the scale of J^T J, MAX_RIDGE): 9 iterations
    # before it stops, stuck (not a fixed point), at its start. (Until the
    # eleventh session the trials ran to mu = 1e10 times the scale: 18.)
    G, W, bias, Y, Z0 = _noisy_tanh_rows(6, 0.3)
    real = polish_module.forward_loss
    calls = []

    def spoil_row_0(Zc, *args, **kw):
        loss, U, masks = real(Zc, *args, **kw)
        calls.append(Zc.shape[0])
        if len(calls) > 1:  # a trial (the first call is the start's loss)
            loss = np.where(np.arange(loss.shape[0]) == 0, np.inf, loss)
        return loss, U, masks

    monkeypatch.setattr(polish_module, "forward_loss", spoil_row_0)
    assert polish_module.MAX_RIDGE == 1.0
    Zp, loss, n_iter, fixed = polish_batch(Z0, Y, np.ones_like(Y), W, bias, G.activation, np,
                                           max_iter=50)
    assert n_iter[0] == 9
    assert not fixed[0]
    np.testing.assert_array_equal(Zp[0], Z0[0])
    assert np.all(n_iter[1:] < 50)
