"""Batched Lawson-Hanson active-set solver of the non-negative layer problems.

The image layer of eq. 8 and the middle layers of eq. 9 are, per sample (row),

    min_x  1/2 x^T G x - r^T x + lam 1^T x   s.t.  x >= 0,           (P+)

with ``G = W^T diag(w) W``. When the layer is wider than the number of
equations (``k > m``: the paper's Figure 4 beyond ``n_1 > n``), ``G`` is
singular and the problem is a non-negative least squares with more unknowns
than equations. Its solution is still unique when the signal's support is
small enough (the sub-spark conditions of section 4), but the semismooth
Newton iteration of :func:`~skinvert.solvers._quadratic.active_set_refine`
cycles and first-order methods (FISTA, ADMM) crawl. The Lawson-Hanson method
(Lawson & Hanson 1974, ch. 23) does not: it grows a passive set ``P`` whose
columns stay linearly independent, always solving the least squares on ``P``
exactly, and stops at a point that satisfies the KKT conditions of (P+).

Batched form used here:

- every row keeps ``M = (G_PP)^-1`` embedded in a (k, k) array (zero off
  ``P``); adding a block ``J`` of columns is a rank-``|J|`` Schur-complement
  update, dropping a column a rank-one downdate: matrix products only, no
  per-row factorisations and no loop over rows;
- each outer step adds up to ``q`` columns with the largest positive
  gradient (``q`` shrinks as ``P`` fills the available rank; a row that makes
  no progress with a block falls back to the classical single column), then
  the inner loop of Lawson-Hanson moves back to the feasible segment and
  drops the columns that reach zero;
- rows that satisfy the KKT conditions stop; at the end the least squares on
  the final ``P`` is solved afresh (no accumulated update error) and the KKT
  conditions are checked on that solution.
"""

from .._array_api import device, single_threaded_blas
from .._linalg import compress_rows, matvec, scatter_rows
from ._lam import as_lam, lam_col
from ._quadratic import gram_matvec, masked_gram_solve, objective

__all__ = ["nnls_lawson_hanson"]


def _one_hot(J, valid, k, dt, xp):
    """(B, k, q) selection matrices: column t picks index ``J[:, t]`` where valid."""
    ar = xp.arange(k, device=device(J))
    E = (ar[None, :, None] == J[:, None, :]) & valid[:, None, :]
    return xp.astype(E, dt)


def _bmm(G, E, xp):
    """``G @ E`` for G (k, k) shared or (B, k, k), E (B, k, q)."""
    return G @ E if G.ndim == 3 else xp.matmul(G[None, :, :], E)


def _add_block(M, G, P, J, valid, xp):
    """Add the columns ``J`` (where ``valid``) to every row's passive set.

    Schur complement: with ``V = M G_{:,J}`` and ``S = G_JJ - G_{J,:} V``,
    ``M <- M + (V - E) S^-1 (V - E)^T``. Columns whose Schur complement is
    not clearly positive (dependent on ``P`` to rounding) are not added.
    Returns ``M, P, added`` (added: (B, q) bool).
    """
    B, k = P.shape
    dt = M.dtype
    eps = float(xp.finfo(dt).eps)
    q = J.shape[1]
    Pf = xp.astype(P, dt)
    M = Pf[:, :, None] * M * Pf[:, None, :]  # clear the rounding left by drops
    E = _one_hot(J, valid, k, dt, xp)
    GE = _bmm(G, E, xp)  # (B, k, q): the columns G_{:,J}
    V = M @ GE
    Et = xp.permute_dims(E, (0, 2, 1))
    GEt = xp.permute_dims(GE, (0, 2, 1))
    S = Et @ GE - GEt @ V  # (B, q, q)
    d_S = xp.linalg.diagonal(S)
    d_G = xp.linalg.diagonal(Et @ GE)
    ok = valid & (d_S > 1e3 * eps * k * xp.where(d_G > 0, d_G, xp.ones_like(d_G)))
    if not bool(xp.all(ok == valid)):
        E = _one_hot(J, ok, k, dt, xp)
        GE = _bmm(G, E, xp)
        V = M @ GE
        Et = xp.permute_dims(E, (0, 2, 1))
        GEt = xp.permute_dims(GE, (0, 2, 1))
        S = Et @ GE - GEt @ V
    okf = xp.astype(ok, dt)
    eye = xp.eye(q, dtype=dt, device=device(M))
    # Unused slots: S = I there, and their column of (V - E) is zero.
    S = okf[:, :, None] * S * okf[:, None, :] + (1.0 - okf)[:, :, None] * eye
    U = (V - E) * okf[:, None, :]
    Sinv_Ut = xp.linalg.solve(S, xp.permute_dims(U, (0, 2, 1)))
    M = M + U @ Sinv_Ut
    added = xp.sum(E, axis=2) > 0
    return M, P | added, ok


def _select(mask, xp):
    """Padded indices of the True entries of every row: ``J`` (B, q) and
    ``valid`` (B, q), q the largest count (at least 1)."""
    dt_i = xp.int32
    count = xp.sum(xp.astype(mask, dt_i), axis=1)
    q = max(int(xp.max(count)), 1)
    order = xp.argsort(xp.astype(~mask, dt_i), axis=1, stable=True)
    J = order[:, :q]
    valid = xp.arange(q, device=device(mask))[None, :] < count[:, None]
    return J, valid


def _drop(M, P, drop, xp):
    """Remove the columns ``drop`` from the passive sets: the block downdate
    ``M <- M - M_{:,D} (M_DD)^-1 M_{D,:}`` (the inverse of ``G`` on the
    remaining columns), then zero the rows and columns ``D``."""
    B, k = P.shape
    dt = M.dtype
    J, valid = _select(drop, xp)
    E = _one_hot(J, valid, k, dt, xp)
    C = M @ E  # (B, k, q): the columns M_{:,D}
    vf = xp.astype(valid, dt)
    q = J.shape[1]
    eye = xp.eye(q, dtype=dt, device=device(M))
    Et = xp.permute_dims(E, (0, 2, 1))
    D = vf[:, :, None] * (Et @ C) * vf[:, None, :] + (1.0 - vf)[:, :, None] * eye
    M = M - C @ xp.linalg.solve(D, xp.permute_dims(C, (0, 2, 1)))
    # Rows and columns D of M are now zero up to rounding; they are zeroed
    # exactly before any column is added again (:func:`_add_block`).
    return M, P & ~drop


def _ls_on_passive(M, G, r, P, xp, *, refine=False):
    """``x_P = (G_PP)^-1 r_P`` from the maintained inverse (zero off ``P``),
    optionally with one step of iterative refinement."""
    Pf = xp.astype(P, r.dtype)
    x = Pf * matvec(M, Pf * r, xp)
    if refine:
        x = x + Pf * matvec(M, Pf * (r - gram_matvec(G, x, xp)), xp)
    return x


def nnls_lawson_hanson(G, r, lam, xp, *, rank=None, max_iter=None, kkt_tol=None, block=0.25):
    """Solve (P+) for every row by a batched, block Lawson-Hanson method.

    Parameters
    ----------
    G : array (k, k) or (B, k, k)
        Gram matrices ``W^T diag(w) W`` (shared or per row).
    r : array (B, k)
        ``W^T diag(w) t`` per row.
    lam : float or array (B,)
        Weight of ``1^T x`` (0: non-negative least squares).
    rank : int or array (B,), optional
        Upper bound of ``rank(G)`` per row (the number of equations ``m``);
        caps the passive set. Default ``k``.
    max_iter : int, optional
        Outer iterations (column additions). Default ``3 k``.
    kkt_tol : float, optional
        A column enters when its negative gradient exceeds ``kkt_tol`` times
        the row's ``max |r|``. Default ``sqrt(eps)``.
    block : float
        Fraction of the free rank ``rank - |P|`` added per outer step
        (at least one column); 0 gives the classical one-at-a-time method.

    Returns
    -------
    x : array (B, k)
    converged : bool array (B,)
        Rows whose final least-squares solution on ``P`` is non-negative and
        satisfies the KKT conditions of (P+) up to the tolerance.

    Notes
    -----
    With ``lam = 0`` the passive columns stay linearly independent (Lawson &
    Hanson, Lemma 23.17), so a singular ``G`` is no obstacle. With ``lam > 0``
    and a passive set that already spans the rank of ``G``, the next column
    would be dependent: the method then stops, reports the row as not
    converged, and the caller finishes it with the active-set refinement.
    """
    B, k = r.shape
    dt = r.dtype
    dev = device(r)
    eps = float(xp.finfo(dt).eps)
    if kkt_tol is None:
        kkt_tol = eps**0.5
    if max_iter is None:
        max_iter = 3 * k
    lam_c = lam_col(as_lam(lam))
    rp = r - lam_c
    tau = kkt_tol * (xp.max(xp.abs(r), axis=1) + eps)
    if rank is None:
        cap = xp.full((B,), float(k), dtype=dt, device=dev)
    elif isinstance(rank, (int, float)):
        cap = xp.full((B,), float(min(rank, k)), dtype=dt, device=dev)
    else:
        cap = xp.clip(xp.astype(rank, dt), max=float(k))
    x = xp.zeros((B, k), dtype=dt, device=dev)
    P = xp.zeros((B, k), dtype=xp.bool, device=dev)
    M = xp.zeros((B, k, k), dtype=dt, device=dev)
    single = xp.zeros((B,), dtype=xp.bool, device=dev)  # rows back to one column per step
    done = xp.zeros((B,), dtype=xp.bool, device=dev)
    with single_threaded_blas(xp):
        for _ in range(max_iter):
            g = rp - gram_matvec(G, x, xp)  # negative gradient
            cand = ~P & (g > tau[:, None])
            n_p = xp.sum(xp.astype(P, dt), axis=1)
            done = done | ~xp.any(cand, axis=1) | (n_p >= cap)
            live = ~done
            n_live = int(xp.sum(xp.astype(live, xp.int32)))
            if n_live == 0:
                break
            sub = compress_rows(live, xp) if n_live < B else None
            pick = _picker(sub, xp)
            Gs = G if G.ndim == 2 else pick(G)
            Ms, Ps, xs, gs, cs, rs = pick(M), pick(P), pick(x), pick(g), pick(cand), pick(rp)
            n_c = xp.sum(xp.astype(cs, dt), axis=1)
            free = pick(cap) - pick(n_p)
            q_row = xp.where(pick(single), xp.ones_like(free), xp.floor(block * free))
            q_row = xp.clip(xp.minimum(q_row, n_c), min=1.0)
            q = int(xp.max(q_row))
            order = xp.argsort(xp.where(cs, -gs, xp.full_like(gs, xp.inf)), axis=1, stable=True)
            J = order[:, :q]
            valid = xp.astype(xp.arange(q, device=dev)[None, :], dt) < q_row[:, None]
            M_new, Ps_new, _ = _add_block(Ms, Gs, Ps, J, valid, xp)
            f_old = objective(Gs, rs, 0.0, xs, xp, nonneg=True)
            x_new, M_new, Ps_new = _feasible_ls(M_new, Gs, rs, xs, Ps_new, xp, ~pick(single))
            # A step that did not lower the objective is undone, and the row
            # takes the classical one-column step next (a descent in exact
            # arithmetic); after a successful one it returns to blocks.
            f_new = objective(Gs, rs, 0.0, x_new, xp, nonneg=True)
            progress = f_new < f_old - eps * xp.abs(f_old)
            Ms = xp.where(progress[:, None, None], M_new, Ms)
            Ps_new = xp.where(progress[:, None], Ps_new, Ps)
            x_new = xp.where(progress[:, None], x_new, xs)
            s_new = ~progress
            done_s = pick(single) & ~progress  # no progress even with one column: stop
            if sub is None:
                M, P, x, single = Ms, Ps_new, x_new, s_new
                done = done | done_s
            else:
                M = scatter_rows(M, Ms, live, xp)
                P = scatter_rows(P, Ps_new, live, xp)
                x = scatter_rows(x, x_new, live, xp)
                single = scatter_rows(single, s_new, live, xp)
                done = done | scatter_rows(xp.zeros_like(done), done_s, live, xp)
        # Exact least squares on the final passive sets, then the KKT check.
        x_ls = masked_gram_solve(G, rp, xp.astype(P, dt), xp)
        x = xp.clip(xp.where(xp.all(x_ls >= 0, axis=1)[:, None], x_ls, x), min=0.0)
        g = rp - gram_matvec(G, x, xp)
        ok = xp.where(P, xp.abs(g) <= tau[:, None], g <= tau[:, None]) & (x >= 0)
    return x, xp.all(ok, axis=1)


def _picker(sub, xp):
    """``a -> a[sub]`` (rows), or the identity when ``sub`` is None."""
    if sub is None:
        return lambda a: a
    return lambda a: xp.take(a, sub, axis=0)


def _feasible_ls(M, G, r, x, P, xp, aggressive, max_inner=None):
    """Lawson-Hanson's inner loop: least squares on ``P``; while it has
    non-positive entries, step from the feasible ``x`` towards it as far as
    feasibility allows and drop the columns that reach zero. Rows marked
    ``aggressive`` instead drop every non-positive column at once (a block
    step, checked for descent by the caller)."""
    B, k = x.shape
    dt = x.dtype
    if max_inner is None:
        max_inner = k
    z = _ls_on_passive(M, G, r, P, xp)
    for _ in range(max_inner):
        bad = P & (z <= 0)
        rows = xp.any(bad, axis=1)
        if not bool(xp.any(rows)):
            break
        # Columns just added (still at zero in x) whose least-squares value is
        # not positive leave again at once: a step towards them has length 0.
        fresh = bad & ((x <= 0) | aggressive[:, None])
        has_fresh = xp.any(fresh, axis=1)
        if bool(xp.any(has_fresh)):
            M, P = _drop(M, P, fresh, xp)
            z_new = _ls_on_passive(M, G, r, P, xp)
            z = xp.where(has_fresh[:, None], z_new, z)
            # Rows with only old columns going negative take the usual step.
            rows = rows & ~has_fresh
            bad = bad & rows[:, None]
            if not bool(xp.any(rows)):
                continue
        # alpha = min over bad j of x_j / (x_j - z_j)  (x_j >= 0 > = z_j)
        den = xp.where(bad, x - z, xp.ones_like(x))
        ratio = xp.where(
            bad, x / xp.where(den > 0, den, xp.ones_like(den)), xp.full_like(x, xp.inf)
        )
        alpha = xp.clip(xp.min(ratio, axis=1), min=0.0, max=1.0)
        alpha = xp.where(rows, alpha, xp.ones_like(alpha))
        x = xp.where(rows[:, None], x + alpha[:, None] * (z - x), x)
        # Drop the passive columns that reached (or went below) zero.
        tiny = 10.0 * float(xp.finfo(dt).eps) * (xp.max(xp.abs(x), axis=1, keepdims=True) + 1e-300)
        drop = rows[:, None] & P & (x <= tiny)
        x = xp.where(drop, xp.zeros_like(x), x)
        M, P = _drop(M, P, drop, xp)
        z = _ls_on_passive(M, G, r, P, xp)
    return _ls_on_passive(M, G, r, P, xp, refine=True), M, P
