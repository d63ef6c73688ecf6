"""Kernel-level tests of the per-layer solvers against dense SciPy references.

Each solver (skinvert.solvers) gets tiny layer problems (a few rows, a few
unknowns) whose minimiser SciPy finds to tight tolerance: scipy.optimize.nnls
for non-negative least squares, L-BFGS-B with bounds for the non-negative and
(split-variable) signed lassos, SLSQP for eq. 9's inequality constraints.
"""

import numpy as np
import pytest
from scipy.optimize import minimize, nnls

from skinvert.solvers import FISTA, ActiveSet, LayerProblem, LinearizedADMM, resolve_solver

from ._helpers import record_rows

DTYPES = [np.float64, np.float32]
RTOL = {np.float64: 1e-6, np.float32: 2e-3}


def _objective(W, b, t, w, lam, x, nonneg, ridge=0.0):
    r = np.sqrt(w) * (W @ x + b - t)
    pen = np.sum(x) if nonneg else np.sum(np.abs(x))
    return 0.5 * r @ r + lam * pen + 0.5 * ridge * x @ x


def _reference(W, b, t, w, lam, nonneg, ridge=0.0):
    """The minimiser of one row's problem (no inequality constraints)."""
    m, k = W.shape
    if nonneg and lam == 0 and ridge == 0:
        x, _ = nnls(np.sqrt(w)[:, None] * W, np.sqrt(w) * (t - b), maxiter=100 * k)
        return x
    Wd = np.sqrt(w)[:, None] * W
    td = np.sqrt(w) * (t - b)
    if nonneg:

        def f(x):
            r = Wd @ x - td
            return 0.5 * r @ r + lam * x.sum() + 0.5 * ridge * x @ x, Wd.T @ r + lam + ridge * x

        res = minimize(
            f,
            np.zeros(k),
            jac=True,
            method="L-BFGS-B",
            bounds=[(0, None)] * k,
            options={"ftol": 1e-15, "gtol": 1e-13, "maxiter": 10000},
        )
        return res.x

    def g(v):  # x = p - n, p, n >= 0
        x = v[:k] - v[k:]
        r = Wd @ x - td
        gx = Wd.T @ r + ridge * x
        return 0.5 * r @ r + lam * v.sum() + 0.5 * ridge * x @ x, np.concatenate(
            [gx + lam, -gx + lam]
        )

    res = minimize(
        g,
        np.zeros(2 * k),
        jac=True,
        method="L-BFGS-B",
        bounds=[(0, None)] * (2 * k),
        options={"ftol": 1e-15, "gtol": 1e-13, "maxiter": 10000},
    )
    return res.x[:k] - res.x[k:]


def _problem(m, k, B, seed, dtype, *, all_rows=True, kind="hidden", layer=1):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, k))
    b = 0.1 * rng.standard_normal(m)
    t = rng.standard_normal((B, m))
    w = np.ones((B, m)) if all_rows else (rng.random((B, m)) < 0.8).astype(float)
    return W, b, t, w


def _solve(
    solver,
    W,
    b,
    t,
    w,
    lam,
    nonneg,
    dtype,
    *,
    kind="hidden",
    rows_none=False,
    constraints=False,
    ridge=0.0,
):
    lip = float(np.linalg.eigvalsh(W.T @ W)[-1])
    p = LayerProblem(
        kind,
        0 if kind == "latent" else 1,
        W.astype(dtype),
        b.astype(dtype),
        t.astype(dtype),
        None if rows_none else w.astype(dtype),
        lam,
        nonneg,
        constraints,
        lip,
        np,
        ridge=ridge,
    )
    x, n_bad = solver.solve(p)
    assert x.dtype == dtype and x.shape == (t.shape[0], W.shape[1])
    return x, n_bad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, k", [(12, 5), (6, 10)])
@pytest.mark.parametrize("lam", [0.0, 0.3])
@pytest.mark.parametrize("all_rows", [True, False])
def test_active_set_nonneg_matches_scipy(dtype, m, k, lam, all_rows):
    """Eq. 8 / 9 without constraints: the exact solver reaches SciPy's
    minimum (nnls for lam = 0, bounded L-BFGS-B otherwise), tall and wide."""
    W, b, t, w = _problem(m, k, 4, 0, dtype, all_rows=all_rows)
    x, n_bad = _solve(ActiveSet(), W, b, t, w, lam, True, dtype, rows_none=all_rows)
    assert n_bad == 0
    assert np.all(x >= 0)
    for i in range(t.shape[0]):
        # (lam > 0 with k > m: the minimiser need not be unique; the minimum is.)
        ref = _reference(W, b, t[i], w[i], lam, True)
        f_ref = _objective(W, b, t[i], w[i], lam, ref, True)
        f = _objective(W, b, t[i], w[i], lam, x[i].astype(float), True)
        assert f <= f_ref + RTOL[dtype] * (1 + abs(f_ref))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("solver", [ActiveSet(), FISTA(20000, tol=1e-14)], ids=repr)
@pytest.mark.parametrize("lam", [0.05, 0.5])
def test_signed_lasso_matches_scipy(dtype, solver, lam):
    """Algorithm 2's lasso: exact and FISTA solvers reach SciPy's minimiser."""
    W, b, t, w = _problem(15, 6, 3, 1, dtype, all_rows=False)
    x, _ = _solve(solver, W, b, t, w, lam, False, dtype)
    for i in range(t.shape[0]):
        ref = _reference(W, b, t[i], w[i], lam, False)
        tol = RTOL[dtype] if solver.exact else max(RTOL[dtype], 1e-5)
        np.testing.assert_allclose(x[i], ref, rtol=0, atol=tol * (1 + np.abs(ref).max()))


@pytest.mark.parametrize("dtype", DTYPES)
def test_fista_image_layer_through_phi(dtype):
    """Algorithm 3 on eq. 8 with phi = identity equals the non-negative lasso."""
    W, b, t, w = _problem(14, 5, 3, 2, dtype)
    lip = float(np.linalg.eigvalsh(W.T @ W)[-1])

    class Identity:
        name = "identity"

        def __call__(self, u, xp):
            return u

        def derivative(self, u, xp):
            return np.ones_like(u)

    p = LayerProblem(
        "image",
        1,
        W.astype(dtype),
        b.astype(dtype),
        t.astype(dtype),
        None,
        0.1,
        True,
        False,
        lip,
        np,
        Y=t.astype(dtype),
        obs=np.ones_like(t, dtype=dtype),
        activation=Identity(),
    )
    x, n_bad = FISTA(20000, tol=1e-14).solve(p)
    assert n_bad == 0 and x.dtype == dtype
    for i in range(t.shape[0]):
        ref = _reference(W, b, t[i], w[i], 0.1, True)
        np.testing.assert_allclose(x[i], ref, atol=10 * RTOL[dtype] * (1 + ref.max()))


def _planted_eq9(seed, dtype, m=20, k=6):
    """Eq. 9 with a planted non-negative x: rows S (x_{i+1} > 0) are equations,
    the others ReLU inequalities that x satisfies."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, k))
    x = np.abs(rng.standard_normal((3, k))) * (rng.random((3, k)) < 0.7)
    b = 0.1 * rng.standard_normal(m)
    u = x @ W.T + b
    rows = (u > 0).astype(float)
    return W, b, np.maximum(u, 0) * rows, rows, x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "solver", [ActiveSet(), LinearizedADMM(1.0, max_iter=50000, tol=1e-15)], ids=repr
)
def test_eq9_constraints_match_slsqp(dtype, solver):
    """Eq. 9 with its inequality constraints: the solution is feasible and
    reaches SLSQP's constrained minimum (the planted x here)."""
    W, b, t, rows, x_true = _planted_eq9(3, dtype)
    x, _ = _solve(solver, W, b, t, rows, 0.0, True, dtype, constraints=True)
    for i in range(t.shape[0]):
        off = rows[i] == 0
        cons = [{"type": "ineq", "fun": lambda z, o=off: -(W[o] @ z + b[o])}]
        ref = minimize(
            lambda z, i=i: _objective(W, b, t[i], rows[i], 0.0, z, True),
            np.zeros(W.shape[1]),
            method="SLSQP",
            bounds=[(0, None)] * W.shape[1],
            constraints=cons,
            options={"ftol": 1e-14, "maxiter": 1000},
        ).x
        np.testing.assert_allclose(ref, x_true[i], atol=1e-5)
        scale = 1 + np.abs(ref).max()
        tol = RTOL[dtype] if solver.exact else max(RTOL[dtype], 1e-4)
        np.testing.assert_allclose(x[i], ref, atol=tol * scale)
        assert np.all(W[off] @ x[i].astype(float) + b[off] <= tol * scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "solver",
    [ActiveSet(), LinearizedADMM(max_iter=50000, tol=1e-15), FISTA(20000, tol=1e-14)],
    ids=repr,
)
def test_z_step_with_ridge_matches_scipy(dtype, solver):
    """Eq. 16 / eq. 18 without inequality constraints: the ridge least squares."""
    W, b, t, w = _problem(10, 4, 3, 4, dtype, all_rows=False)
    gamma = 0.5
    x, _ = _solve(solver, W, b, t, w, 0.0, False, dtype, kind="latent", ridge=gamma)
    for i in range(t.shape[0]):
        Wd = np.sqrt(w[i])[:, None] * W
        ref = np.linalg.solve(Wd.T @ Wd + gamma * np.eye(4), Wd.T @ (np.sqrt(w[i]) * (t[i] - b)))
        tol = RTOL[dtype] if solver.exact else max(RTOL[dtype], 1e-6)
        np.testing.assert_allclose(x[i], ref, atol=tol * (1 + np.abs(ref).max()))


def test_solvers_state_what_they_handle():
    """solve = checks + _solve: a problem a solver does not handle is refused."""
    W, b, t, rows, _ = _planted_eq9(0, np.float64)
    with pytest.raises(ValueError, match="inequality"):
        _solve(FISTA(), W, b, t, rows, 0.0, True, np.float64, constraints=True)
    with pytest.raises(ValueError, match="image"):
        _solve(LinearizedADMM(), W, b, t, rows, 0.0, True, np.float64, kind="image")
    with pytest.raises(ValueError, match="signed lasso"):
        _solve(LinearizedADMM(), W, b, t, rows, 0.1, False, np.float64)


def test_resolve_solver_aliases():
    plan = resolve_solver("paper", nonneg=True, max_iter=7, tol=1e-3, rho=(0.5,))
    assert isinstance(plan.image, FISTA) and isinstance(plan.hidden, LinearizedADMM)
    assert plan.hidden.max_iter == 7 and plan.hidden.rho == (0.5,)
    plan = resolve_solver("paper", nonneg=False)
    assert all(isinstance(s, FISTA) for s in (plan.image, plan.hidden, plan.latent))
    plan = resolve_solver("active_set", nonneg=True, refine_max_iter=3)
    assert plan.exact and plan.image.max_iter == 3
    plan = resolve_solver({"hidden": LinearizedADMM()}, nonneg=True)
    assert isinstance(plan.image, ActiveSet) and isinstance(plan.hidden, LinearizedADMM)
    with pytest.raises(ValueError, match="solver"):
        resolve_solver("nope", nonneg=True)


@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_shared_factor_rows_match_own_gram(lam):
    """Rows dropping a few rows of a tall W (saturated pixels) are solved from the
    shared W^T W (Woodbury); the answer is that of each row's own Gram matrix, and
    rows whose unconstrained minimiser is infeasible still reach the exact NNLS."""
    from skinvert._linalg import downdated_solve
    from skinvert.solvers._active_set import _shared_factor_rows

    rng = np.random.default_rng(3)
    m, k, B = 60, 16, 12
    W = rng.standard_normal((m, k))
    X = np.abs(rng.standard_normal((B, k))) * (rng.random((B, k)) < 0.7)
    T = X @ W.T
    T[-3:] += 0.5 * rng.standard_normal((3, m))  # inconsistent rows: x >= 0 binds
    w = np.ones((B, m))
    for i in range(2, B):
        w[i, rng.choice(m, 1 + i % 4, replace=False)] = 0.0
    w[1, : k // 2 + 1] = 0.0  # too many dropped rows: own Gram matrix
    w[0, -(k // 2 - 1) :] = 0.0  # more than k / 4, with 3 k / 2 rows left: Woodbury
    H = np.linalg.solve(W.T @ W, W.T).T
    x0 = (w * T) @ H
    xw, _ = downdated_solve(W, H, x0, w == 0, np)
    for i in range(B):
        Wi = W[w[i] > 0]
        np.testing.assert_allclose(xw[i], np.linalg.lstsq(Wi, T[i][w[i] > 0])[0], atol=1e-10)
    done, _ = _shared_factor_rows(W, T, w, lam, np)
    if lam == 0.0:
        assert done[:-3].sum() == B - 4 and not done[1] and not done[-3:].any()
    x, n_bad = ActiveSet().solve_gram(W, T, w, lam, True, np, lipschitz=1.0)
    assert n_bad == 0
    for i in range(B):
        Wi, ti = W[w[i] > 0], T[i][w[i] > 0]
        if lam == 0.0:
            ref = nnls(Wi, ti)[0]
        else:
            ref = minimize(
                lambda v, Wi=Wi, ti=ti: 0.5 * np.sum((Wi @ v - ti) ** 2) + lam * v.sum(),
                np.zeros(k),
                jac=lambda v, Wi=Wi, ti=ti: Wi.T @ (Wi @ v - ti) + lam,
                bounds=[(0, None)] * k,
                method="L-BFGS-B",
                options={"ftol": 1e-15, "gtol": 1e-12},
            ).x
        np.testing.assert_allclose(x[i], ref, atol=1e-6 if lam else 1e-9)


def test_shared_factor_rows_in_blocks_match_one_block(monkeypatch):
    """The Woodbury rows run in blocks of rows on NumPy (host_block_rows); the
    blocks give the one-block answer and decisions."""
    from skinvert.solvers import _active_set

    rng = np.random.default_rng(5)
    m, k, B = 60, 16, 37
    W = rng.standard_normal((m, k))
    T = (np.abs(rng.standard_normal((B, k))) * (rng.random((B, k)) < 0.7)) @ W.T
    T[::5] += 0.5 * rng.standard_normal((len(T[::5]), m))
    w = np.ones((B, m))
    for i in range(B):
        w[i, rng.choice(m, 1 + i % 4, replace=False)] = 0.0
    monkeypatch.setattr(_active_set, "host_block_rows", lambda xp, dtype, n, minimum=16: 10**9)
    done1, x1 = _active_set._shared_factor_rows(W, T, w, 0.0, np)
    sizes = []

    def small(xp, dtype, row_elements, minimum=16):
        sizes.append(np.dtype(dtype).itemsize * row_elements)
        return 4

    monkeypatch.setattr(_active_set, "host_block_rows", small)
    done4, x4 = _active_set._shared_factor_rows(W, T, w, 0.0, np)
    # (q, k) rows of W and of H per row, q = 1..4 dropped rows: the rows
    # sorted by q, each block padded to its own largest q.
    assert sorted(set(sizes)) == [2 * q * k * 8 for q in range(1, 5)]
    assert done1.any() and not done1.all()
    np.testing.assert_array_equal(done4, done1)
    np.testing.assert_allclose(x4, x1, rtol=1e-13, atol=1e-13)


def test_per_row_gram_rows_in_blocks_match_one_block(monkeypatch):
    """Per-row Gram systems (noise weights) are built by one GEMM (a small
    table of row products), their unconstrained systems solved in blocks of
    rows on NumPy and the active-set steps taken once over the batch; the
    blocks give the one-block answers and Gram matrices."""
    from skinvert.solvers import _active_set

    rng = np.random.default_rng(7)
    m, k, B = 50, 12, 21
    W = rng.standard_normal((m, k))
    T = (np.abs(rng.standard_normal((B, k))) * (rng.random((B, k)) < 0.6)) @ W.T
    T += 0.05 * rng.standard_normal((B, m))
    w = rng.uniform(0.2, 1.0, (B, m))  # not 0/1: every row forms its own Gram matrix
    lam = rng.uniform(0.0, 0.1, B)
    one, blocks = {}, {}
    monkeypatch.setattr(_active_set, "host_block_rows", lambda xp, dtype, n, minimum=16: 10**9)
    x1, n1 = ActiveSet().solve_gram(W, T, w, lam, True, np, lipschitz=1.0, out=one)
    monkeypatch.setattr(_active_set, "host_block_rows", lambda xp, dtype, n, minimum=16: 8)
    monkeypatch.setattr(_active_set, "HOST_BLOCK_BYTES", 0)  # block even a small stack
    calls = record_rows(monkeypatch, _active_set, "masked_gram_solve", arg=1)
    x8, n8 = ActiveSet().solve_gram(W, T, w, lam, True, np, lipschitz=1.0, out=blocks)
    assert calls == [8, 8, 5]
    assert n1 == n8 == 0
    np.testing.assert_allclose(x8, x1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(blocks["gram"], one["gram"], rtol=1e-14)
    np.testing.assert_allclose(one["gram"][3], W.T @ (w[3][:, None] * W), rtol=1e-12)


def test_noise_rule_inverse_diagonal_in_blocks(monkeypatch):
    from skinvert.algorithms import noise

    rng = np.random.default_rng(8)
    W = rng.standard_normal((40, 9))
    rows = rng.uniform(0.1, 1.0, (19, 40))
    ref = np.stack([np.diag(np.linalg.inv(W.T @ (r[:, None] * W))) for r in rows])
    monkeypatch.setattr(noise, "host_block_rows", lambda xp, dtype, n, minimum=16: 8)
    np.testing.assert_allclose(noise._inverse_diagonal(None, W, rows, 19, np), ref, rtol=1e-10)
    gram = np.stack([W.T @ (r[:, None] * W) for r in rows])
    np.testing.assert_allclose(noise._inverse_diagonal(gram, W, None, 19, np), ref, rtol=1e-10)
    shared = np.diag(np.linalg.inv(W.T @ W))
    d = noise._inverse_diagonal(None, W, None, 19, np)
    np.testing.assert_allclose(d[5], shared, rtol=1e-10)


@pytest.mark.parametrize("namespace", ["numpy", "array_api_strict"])
@pytest.mark.parametrize(
    "weights", ["few_dropped", "many_dropped", "sparse_weights", "dense_weights"]
)
def test_row_weighted_gram_over_the_fewest_rows(namespace, weights):
    # Beyond the table (m k^2 > 2^24): 0/1 weights that drop fewer rows than
    # they keep downdate the shared W^T W (given by the caller or not),
    # others gather the weighted rows; weights on most rows take the full
    # product. Each against the definition.
    from skinvert._linalg import row_weighted_gram

    xp = np if namespace == "numpy" else pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(1)
    m, k = 700, 160
    W = rng.standard_normal((m, k))
    u = rng.random((6, m))
    w = {
        "few_dropped": (u > 0.3).astype(float),
        "many_dropped": (u > 0.8).astype(float),
        "sparse_weights": rng.random((6, m)) * (u > 0.5),
        "dense_weights": rng.random((6, m)),
    }[weights]
    ref = np.einsum("bm,mi,mj->bij", w, W, W)
    Wx, wx = xp.asarray(W), xp.asarray(w)
    for shared in (None, Wx.T @ Wx):
        G = np.asarray(row_weighted_gram(Wx, wx, xp, shared=shared))
        np.testing.assert_allclose(G, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("namespace", ["numpy", "array_api_strict"])
@pytest.mark.parametrize("shape", [(392, 128), (30, 7), (40, 1), (300, 300)])
def test_row_weighted_gram_matches_its_definition(namespace, shape):
    # The table path (m k^2 <= 2^24: upper-triangular products, mirrored)
    # and the batched one (300 x 300) give W^T diag(w_b) W; the table's
    # matrices are exactly symmetric (one product per pair i <= j).
    from skinvert._linalg import row_weighted_gram

    xp = np if namespace == "numpy" else pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(0)
    W, w = rng.standard_normal(shape), rng.random((5, shape[0]))
    G = np.asarray(row_weighted_gram(xp.asarray(W), xp.asarray(w), xp))
    ref = np.einsum("bm,mi,mj->bij", w, W, W)
    assert G.shape == (5, shape[1], shape[1])
    np.testing.assert_allclose(G, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    if shape[0] * shape[1] ** 2 <= 2**24:
        assert np.array_equal(G, np.swapaxes(G, 1, 2))


def _per_row_nonneg(B=6, m=300, k=160, seed=3):
    """Per-row Gram problems of the image layer's kind: weighted rows, a
    non-negative solution with a large support, noisy targets (so the
    primal-dual active set takes several steps)."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, k))
    w = rng.random((B, m)) * (rng.random((B, m)) < 0.8)
    X = np.clip(rng.standard_normal((B, k)) + 0.3, 0, None)
    T = X @ W.T + 2.0 * rng.standard_normal((B, m))
    G = np.einsum("mi,bm,mj->bij", W, w, W)
    r = np.einsum("bm,bm,mk->bk", w, T, W)
    return G, r


def test_solve_from_inverse_equals_the_masked_solve():
    from skinvert.solvers._quadratic import _solve_from_inverse, masked_gram_solve

    G, r = _per_row_nonneg()
    mask = (np.random.default_rng(0).random(r.shape) < 0.7).astype(float)
    H = np.linalg.inv(G)
    H = 0.5 * (H + np.swapaxes(H, 1, 2))
    x = _solve_from_inverse(H, r, mask, np)
    ref = masked_gram_solve(G, r, mask, np)
    assert np.all(x[mask == 0] == 0)
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-9 * np.max(np.abs(ref)))


def test_inverse_guesses_keep_the_exact_answer_with_fewer_solves(monkeypatch):
    """Rows still iterating after INVERSE_AFTER exact steps guess their
    active sets from one inverse per row: the same exact KKT point, with
    fewer k x k solves."""
    from skinvert.solvers import _quadratic as Q

    G, r = _per_row_nonneg()
    x0 = np.stack([np.linalg.solve(g, v) for g, v in zip(G, r)])
    calls = record_rows(monkeypatch, Q, "masked_gram_solve")
    x_new, conv_new = Q.active_set_refine(G, r, 0.0, x0, np, nonneg=True, max_iter=30)
    n_new = len(calls)
    calls.clear()
    monkeypatch.setattr(Q, "INVERSE_MIN_UNITS", 10**9)
    x_old, conv_old = Q.active_set_refine(G, r, 0.0, x0, np, nonneg=True, max_iter=30)
    n_old = len(calls)
    assert conv_new.all() and conv_old.all()
    np.testing.assert_allclose(x_new, x_old, rtol=0, atol=1e-10 * np.max(np.abs(x_old)))
    # INVERSE_AFTER exact steps, then one exact step from the guesses.
    assert n_new == Q.INVERSE_AFTER + 1 < n_old
    # The exact KKT conditions of min 1/2 x'Gx - r'x, x >= 0.
    g = np.einsum("bij,bj->bi", G, x_new) - r
    tol = 1e-8 * np.max(np.abs(r))
    assert np.all(x_new >= 0)
    assert np.all(np.abs(g[x_new > 0]) <= tol) and np.all(g[x_new == 0] >= -tol)


def test_start_near_an_exact_solution_takes_one_solve(monkeypatch):
    """A layer below solved to 1e-10 leaves the zeros of the exact solution
    scattered on both sides of 0 in the unconstrained start: the start's
    entries within sqrt(eps) of 0 begin inactive (as the negative ones), so
    one exact solve on the true support settles every row, at the exact
    KKT point of the perturbed problem."""
    from skinvert.solvers import _quadratic as Q

    rng = np.random.default_rng(5)
    B, m, k = 24, 200, 60
    W = rng.standard_normal((m, k))
    w = (rng.random((B, m)) < 0.6).astype(float)  # each row's equations
    X = np.clip(rng.standard_normal((B, k)), 0, None)  # about half zeros
    T = X @ W.T * (1 + 1e-10 * rng.standard_normal((B, m)))
    G = np.einsum("mi,bm,mj->bij", W, w, W)
    r = np.einsum("bm,bm,mk->bk", w, T, W)
    x0 = np.linalg.solve(G, r[:, :, None])[:, :, 0]
    near_zero = (X == 0) & (x0 > 0)
    assert near_zero.any(axis=1).mean() > 0.5  # positive rounding on true zeros
    calls = record_rows(monkeypatch, Q, "masked_gram_solve")
    x, conv = Q.active_set_refine(G, r, 0.0, x0, np, nonneg=True, max_iter=30)
    assert conv.all()
    assert len(calls) == 1
    np.testing.assert_array_equal(x == 0, X == 0)
    np.testing.assert_allclose(x, X, rtol=0, atol=1e-9 * np.max(X))
    g = np.einsum("bij,bj->bi", G, x) - r
    tol = 1e-8 * np.max(np.abs(r))
    assert np.all(np.abs(g[x > 0]) <= tol) and np.all(g[x == 0] >= -tol)


@pytest.mark.parametrize("namespace", ["numpy", "array_api_strict"])
@pytest.mark.parametrize("shared", [False, True])
def test_compact_solve_equals_the_embedded_solve(namespace, shared):
    """The gathered-support solve (one flat gather of G[J, J], the answer
    scattered back by column) equals the k x k embedded masked solve, on a
    shared Gram matrix and on a stack, in NumPy and a strict namespace."""
    from skinvert.solvers._quadratic import masked_gram_solve

    xp = np if namespace == "numpy" else pytest.importorskip("array_api_strict")
    G, r = _per_row_nonneg()
    if shared:
        G = G[0]
    rng = np.random.default_rng(2)
    mask = (rng.random(r.shape) < 0.4).astype(float)  # at most 3/4: the compact path
    mask[0] = 0.0
    mask[0, :3] = 1.0  # rows of different support sizes (padded)
    Gb = np.broadcast_to(G, (r.shape[0],) + G.shape[-2:])
    ref = np.zeros_like(r)
    for b in range(r.shape[0]):
        a = mask[b] > 0
        ref[b, a] = np.linalg.solve(Gb[b][np.ix_(a, a)], r[b, a])
    x = np.asarray(masked_gram_solve(xp.asarray(G), xp.asarray(r), xp.asarray(mask), xp))
    assert np.all(x[mask == 0] == 0)
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-9 * np.max(np.abs(ref)))


@pytest.mark.parametrize("namespace", ["numpy", "array_api_strict"])
def test_block_gather_scatter_and_diagonal_helpers(namespace):
    from skinvert._linalg import gathered_block, plus_diagonal, scatter_columns

    xp = np if namespace == "numpy" else pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(4)
    B, k, q = 5, 9, 4
    G = rng.standard_normal((B, k, k))
    J = np.argsort(rng.random((B, k)), axis=1)[:, :q]  # distinct columns per row
    Gx, Jx = xp.asarray(G), xp.asarray(J)
    blocks = np.asarray(gathered_block(Gx, Jx, xp))
    shared = np.asarray(gathered_block(Gx[0, ...], Jx, xp))
    for b in range(B):
        np.testing.assert_array_equal(blocks[b], G[b][np.ix_(J[b], J[b])])
        np.testing.assert_array_equal(shared[b], G[0][np.ix_(J[b], J[b])])
    v = rng.standard_normal((B, q))
    out = np.asarray(scatter_columns(xp.asarray(v), Jx, k, xp))
    ref = np.zeros((B, k))
    np.put_along_axis(ref, J, v, axis=1)
    np.testing.assert_array_equal(out, ref)
    d = rng.random(B)
    H = np.asarray(plus_diagonal(Gx, xp.asarray(d), xp))
    np.testing.assert_array_equal(H, G + d[:, None, None] * np.eye(k))
    np.testing.assert_array_equal(np.asarray(Gx), G)  # the input is not modified


def test_active_set_refine_on_some_rows_leaves_the_others():
    """``rows``: the rows left out keep their start and are not converged;
    the refined rows are those of a refinement of those rows alone."""
    from skinvert.solvers._quadratic import active_set_refine

    G, r = _per_row_nonneg()
    x0 = np.stack([np.linalg.solve(g, v) for g, v in zip(G, r)])
    rows = np.array([True, False, True, True, False, True])
    x, conv = active_set_refine(G, r, 0.0, x0, np, nonneg=True, max_iter=30, rows=rows)
    xs, cs = active_set_refine(G[rows], r[rows], 0.0, x0[rows], np, nonneg=True, max_iter=30)
    np.testing.assert_array_equal(x[~rows], x0[~rows])
    assert not conv[~rows].any()
    np.testing.assert_array_equal(conv[rows], cs)
    np.testing.assert_allclose(x[rows], xs, rtol=0, atol=1e-12 * np.max(np.abs(xs)))
