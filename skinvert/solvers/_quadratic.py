"""Batched kernels of the per-layer quadratic problems (P) of the pursuits.

Every layer of the pursuits (Algorithms 2-5) reduces to a quadratic problem in
Gram form, one per sample (row):

    min_x  1/2 x^T G x - r^T x + lam * pen(x)          (P)

with ``pen(x) = 1^T x`` and ``x >= 0`` (the non-negative lasso of eq. 8 / 9,
``nonneg=True``) or ``pen(x) = ||x||_1`` (the lasso of Algorithm 2,
``nonneg=False``). ``G`` is either shared by the batch, shape (k, k), or one per
sample, shape (B, k, k); ``r`` and ``lam`` are per sample.

Two solvers:

- :func:`fista` -- FISTA (Beck & Teboulle 2009; the paper's Algorithm 3 in Gram
  form), a first-order method that gets close to the solution;
- :func:`active_set_refine` -- a primal-dual active-set (semismooth Newton)
  iteration (Hintermueller, Ito & Kunisch 2002): from a current point it
  guesses the support and the signs, solves the equality-constrained least
  squares on that support exactly, and repeats until the guess reproduces
  itself. A fixed point satisfies the KKT conditions of (P) exactly, so the
  support is decided by an exact solve, not by the tolerance of an iterative
  method: the cure for the tiny spurious entries that ruin the next layer.

Rows that have converged stop: each refinement step solves only the rows still
changing (gathered with ``xp.take`` and scattered back with a masked select).
"""

from .._array_api import device, single_threaded_blas
from .._linalg import (
    compress_rows,
    gathered_block,
    matvec,
    padded_indices,
    plus_diagonal,
    rmatvec,
    scatter_columns,
    scatter_rows,
)
from ._lam import as_lam, lam_col, take_lam
from ._passive_set import _rows

__all__ = [
    "active_set_refine",
    "fista",
    "gram_jitter",
    "gram_matvec",
    "masked_gram_solve",
    "objective",
]


def gram_matvec(G, x, xp):
    """``G x`` for every row: G (k, k) shared (symmetric) or (B, k, k)."""
    return matvec(G, x, xp)


def objective(G, r, lam, x, xp, *, nonneg):
    """Value of (P) for every row."""
    pen = xp.sum(x if nonneg else xp.abs(x), axis=1)
    return (
        0.5 * xp.sum(x * gram_matvec(G, x, xp), axis=1) - xp.sum(r * x, axis=1) + as_lam(lam) * pen
    )


def _soft(v, t, xp, nonneg):
    if nonneg:
        return xp.clip(v - t, min=0.0)
    return xp.sign(v) * xp.clip(xp.abs(v) - t, min=0.0)


def fista(G, r, lam, x0, xp, *, nonneg, lipschitz, max_iter=200, tol=1e-10):
    """FISTA on (P): ``x <- prox(y - (G y - r) / L)`` with Nesterov momentum.

    Parameters
    ----------
    G : array (k, k) or (B, k, k)
    r : array (B, k)
    lam : float or array (B,)
    x0 : array (B, k)
        Starting point.
    nonneg : bool
    lipschitz : float
        An upper bound of ``lambda_max(G)`` for every row (step ``1 / L``).
    max_iter : int
    tol : float
        A row stops when its step ``||x_{k+1} - x_k||`` is below
        ``tol * (1 + ||x_k||)``.

    Returns
    -------
    x : array (B, k)
    n_iter : int
    converged : bool array (B,)

    Notes
    -----
    This is Algorithm 3 of the paper written for a quadratic data term; the
    image layer of eq. 8 takes this form after the change of variable
    ``u = phi^-1(y)`` (see :class:`~skinvert.solvers.ActiveSet`).
    """
    x = x0
    y = x0
    t = 1.0
    lam = as_lam(lam)
    lam_c = lam_col(lam)
    step = 1.0 / lipschitz
    B = x0.shape[0]
    converged = xp.zeros((B,), dtype=xp.bool, device=device(x0))
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (returned)
        g = gram_matvec(G, y, xp) - r
        x_new = _soft(y - step * g, step * lam_c, xp, nonneg)
        x_new = xp.where(converged[:, None], x, x_new)
        t_new = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
        y = x_new + ((t - 1.0) / t_new) * (x_new - x)
        dx = xp.sqrt(xp.sum((x_new - x) ** 2, axis=1))
        nx = xp.sqrt(xp.sum(x * x, axis=1))
        converged = converged | (dx <= tol * (1.0 + nx))
        x = x_new
        t = t_new
        if bool(xp.all(converged)):
            break
    return x, n_iter, converged


def gram_jitter(G, xp):
    """The relative jitter ``k * eps * max diag(G)`` of each Gram matrix
    (``1`` in place of a zero diagonal): a scalar for a shared (k, k) ``G``,
    (B,) for a stack."""
    k = G.shape[-1]
    scale = xp.max(xp.linalg.diagonal(G), axis=-1)
    return k * float(xp.finfo(G.dtype).eps) * xp.where(scale > 0, scale, xp.ones_like(scale))


def masked_gram_solve(G, rhs, mask, xp):
    """Solve ``G_AA x_A = rhs_A``, ``x = 0`` off A, for every row (A = mask > 0).

    ``G`` is (k, k) shared or (B, k, k); ``rhs`` and ``mask`` are (B, k). When
    ``G`` is shared and every row has the full support, one solve serves the
    whole batch. A relative jitter ``k * eps * max diag(G)`` keeps singular
    supports (more unknowns than equations) solvable. When no support holds
    more than 3/4 of the entries, the systems are gathered on the supports
    (padded to the largest) instead of embedded in k x k ones.
    """
    B, k = rhs.shape
    dt = rhs.dtype
    eye = xp.eye(k, dtype=dt, device=device(rhs))
    jitter = gram_jitter(G, xp)
    full = bool(xp.all(mask > 0))
    if G.ndim == 2 and full:
        x = xp.linalg.solve(G + jitter * eye, rhs.T).T
        return x
    if full:  # every row on its whole support: no masking of the systems
        with single_threaded_blas(xp):
            return xp.linalg.solve(plus_diagonal(G, jitter, xp), rhs[:, :, None])[:, :, 0]
    J, valid = padded_indices(mask > 0, xp)
    q = J.shape[1]
    if q <= (3 * k) // 4:
        return _compact_solve(G, rhs, J, valid, jitter, xp)
    Gb = G[None, :, :] if G.ndim == 2 else G
    jit = jitter if G.ndim == 2 else jitter[:, None, None]
    H = mask[:, :, None] * Gb * mask[:, None, :] + (1.0 - mask)[:, :, None] * eye + jit * eye
    with single_threaded_blas(xp):
        x = xp.linalg.solve(H, (mask * rhs)[:, :, None])[:, :, 0]
    return mask * x


def _compact_solve(G, rhs, J, valid, jitter, xp):
    """:func:`masked_gram_solve` on the gathered supports ``J`` (B, q), padded
    with identity blocks: ``O(q^3)`` per row instead of ``O(k^3)``. ``J``
    holds distinct columns per row (:func:`~skinvert._linalg.padded_indices`);
    ``G[J, J]`` is one flat gather (:func:`~skinvert._linalg.gathered_block`)
    and the answer goes back by :func:`~skinvert._linalg.scatter_columns`
    (where row-then-column gathers and a one-hot product took about 3x the
    solve itself: 512 rows of a 128-unit layer, about 70 passive columns)."""
    k = rhs.shape[1]
    q = J.shape[1]
    dt = rhs.dtype
    GJJ = gathered_block(G, J, xp)
    jit = jitter if G.ndim == 2 else jitter[:, None, None]
    eye = xp.eye(q, dtype=dt, device=device(rhs))
    both = valid[:, :, None] & valid[:, None, :]
    H = xp.where(both, GJJ, eye) + jit * eye
    zero = xp.zeros_like(rhs[:, :1])
    rJ = xp.where(valid, xp.take_along_axis(rhs, J, axis=1), zero)
    with single_threaded_blas(xp):
        xJ = xp.linalg.solve(H, rJ[:, :, None])[:, :, 0]
    return scatter_columns(xp.where(valid, xJ, zero), J, k, xp)


#: Per-row problems with at least this many unknowns that are still
#: iterating after ``INVERSE_AFTER`` exact steps guess their active sets from
#: one inverse per row (:func:`_inverse_guesses`): most rows of a noiseless
#: layer stop after one or two steps, where an inverse (twice a solve's
#: cost) would not pay.
INVERSE_MIN_UNITS = 128
INVERSE_AFTER = 2


def _inverse_guesses(G, r, lam, A, s, converged, c, tau, guess, xp, max_iter):
    """Active-set iterations of :func:`active_set_refine` solved from ``G^-1``.

    Each row not ``converged`` inverts its (jittered) ``G`` once; the
    equality-constrained least squares of an active set ``A`` (inactive set
    ``I``, x = 0 on it) is then ``x = y - H_{:I} (H_II)^-1 y_I`` with ``H =
    G^-1`` and ``y = H (rhs on A)``: a system of the size of the inactive
    set instead of ``k`` (the image layer of a noisy saturating tanh
    generator: 392 units, about 100 inactive at the end, about 10
    iterations of 392 x 392 solves per row before). A row takes the guess
    its iterations reproduce (within ``max_iter``), other rows (and every
    row where the inverse fails) keep their own ``(A, s)``; the exact
    iteration then decides convergence, so rounding in ``H`` can cost
    iterations, never exactness.
    """
    B, k = A.shape
    dt = A.dtype
    rows = ~converged
    sub = compress_rows(rows, xp)
    Gs, rs, As, ss = (xp.take(a, sub, axis=0) for a in (G, r, A, s))
    cs = c if c.shape[0] == 1 else xp.take(c, sub, axis=0)
    ts = xp.take(tau, sub, axis=0)
    lam_s = take_lam(lam, sub, xp)
    n = Gs.shape[0]
    eye = xp.eye(k, dtype=dt, device=device(rs))
    jitter = gram_jitter(Gs, xp)
    A0, s0 = As, ss
    live = xp.ones((n,), dtype=xp.bool, device=device(rs))
    try:
        with single_threaded_blas(xp):
            H = xp.linalg.inv(Gs + jitter[:, None, None] * eye)
        H = 0.5 * (H + xp.matrix_transpose(H))  # symmetric: its rows are its columns
        for _ in range(max_iter):
            if not bool(xp.any(live)):
                break
            x = _solve_from_inverse(H, rs - lam_col(lam_s) * ss, As, xp)
            A2, s2 = guess(Gs, rs, lam_s, x, cs, ts)
            same = xp.all((A2 == As) & (s2 == ss), axis=1) & xp.all(xp.isfinite(x), axis=1)
            keep = (~live)[:, None]
            As = xp.where(keep, As, A2)
            ss = xp.where(keep, ss, s2)
            live = live & ~same
    except (ValueError, RuntimeError):  # a singular system (LinAlgError): no guesses
        return A, s
    # Rows whose guess did not reproduce itself keep their own active sets.
    lc = live[:, None]
    As, ss = xp.where(lc, A0, As), xp.where(lc, s0, ss)
    return scatter_rows(A, As, rows, xp), scatter_rows(s, ss, rows, xp)


def _solve_from_inverse(H, rhs, mask, xp):
    """``x`` with ``G_AA x_A = rhs_A``, ``x = 0`` off ``A`` (``mask``), from
    the symmetric ``H = G^-1``: ``x = y - H_{:I} (H_II)^-1 y_I``, ``y = H
    rhs_A``. ``H_{:I}`` is gathered as the rows ``H_{I:}`` (whole rows, by
    one flat gather)."""
    dt = rhs.dtype
    y = matvec(H, mask * rhs, xp)
    J, valid = padded_indices(mask == 0, xp)
    q = J.shape[1]
    vf = xp.astype(valid, dt)
    HI = _rows(H, J, xp) * vf[:, :, None]  # rows I of H (zero on the padding slots)
    eye = xp.eye(q, dtype=dt, device=device(rhs))
    HII = vf[:, None, :] * gathered_block(H, J, xp) + (1.0 - vf)[:, :, None] * eye
    yI = xp.take_along_axis(y, J, axis=1) * vf
    with single_threaded_blas(xp):
        lamI = xp.linalg.solve(HII, yI[:, :, None])[:, :, 0]
    return mask * (y - rmatvec(HI, lamI, xp))


def active_set_refine(G, r, lam, x0, xp, *, nonneg, max_iter=20, kkt_tol=None, rows=None):
    """Primal-dual active-set refinement of (P) from ``x0``; exact on convergence.

    Iteration: with ``g0 = G x - r`` and the diagonal scaling ``c = 1 /
    diag(G)``, the active set is ``A = {j : |x_j - c_j g0_j| > c_j lam}`` (for
    ``nonneg``: ``x_j - c_j g0_j > c_j lam``) with signs
    ``s = sign(x - c g0)``; then ``G_AA x_A = r_A - lam s_A`` and ``x = 0``
    off ``A``. A row whose active set and signs reproduce themselves has
    reached the exact minimiser of (P): ``g_j = -lam s_j`` on the support,
    ``|g_j| <= lam`` (``g_j >= -lam``) off it.

    ``rows`` (bool (B,), None: all) limits the refinement to those rows; the
    others keep ``x0`` and are not converged (a stack of Gram matrices is
    not copied to leave a few rows out: 512 rows of a 128-unit layer are
    67 MB).

    Returns
    -------
    x : array (B, k)
    converged : bool array (B,)
        Rows at an exact fixed point. Other rows keep whichever of ``x0`` and
        the last iterate has the lower objective.
    """
    B, k = x0.shape
    dt = x0.dtype
    lam = as_lam(lam)
    if kkt_tol is None:
        kkt_tol = float(xp.finfo(dt).eps) ** 0.5
    diag = xp.linalg.diagonal(G)
    c = 1.0 / xp.where(diag > 0, diag, xp.ones_like(diag))
    if c.ndim == 1:
        c = c[None, :]

    eps = float(xp.finfo(dt).eps)
    # Optimality is decided up to ``kkt_tol`` relative to the data: without
    # it, the exactly-zero gradients of a noiseless problem (lam = 0) would
    # let rounding noise flip off-support entries in and out of the guess.
    tau = kkt_tol * (xp.max(xp.abs(r), axis=1) + eps)

    def guess(G_, r_, lam_, x_, c_, tau_, g0=None):
        if g0 is None:
            g0 = gram_matvec(G_, x_, xp) - r_
        lc = lam_col(lam_)
        tc = tau_[:, None]
        if nonneg:
            # On the support: keep j while x_j - c_j g_j > 0 (g = g0 + lam);
            # off it: enter when the descent direction beats the tolerance.
            A = xp.where(x_ > 0, x_ - c_ * (g0 + lc) > 0, -(g0 + lc) > tc)
            s = xp.ones_like(x_)
        else:
            v = x_ - c_ * g0
            A = xp.where(x_ != 0, xp.abs(v) > c_ * lc, xp.abs(g0) > lc + tc)
            s = xp.sign(v)
        return xp.astype(A, dt), s * xp.astype(A, dt)

    def kkt_ok(g0, lam_, x_, tau_):
        """Rows where ``x_`` (gradient ``g0 = G x_ - r``) satisfies the KKT
        conditions of (P) up to tau."""
        lc = lam_col(lam_)
        tc = tau_[:, None]
        if nonneg:
            g = g0 + lc
            ok = xp.where(x_ > 0, xp.abs(g) <= tc, g >= -tc) & (x_ >= 0)
        else:
            ok = xp.where(x_ != 0, xp.abs(g0 + lc * xp.sign(x_)) <= tc, xp.abs(g0) <= lc + tc)
        return xp.all(ok, axis=1)

    x_in = x0
    if nonneg:
        # Entries within sqrt(eps) of the row's largest start inactive, as
        # the negative ones: a start from a target with a small error (a
        # layer below solved to 1e-12..1e-10) scatters the zeros of the
        # exact solution on both sides of 0, and each one left active on the
        # positive side cost an exact step to drop. Only the path changes:
        # the exact iteration below decides.
        top = xp.max(x0, axis=1, keepdims=True)
        x0 = xp.where(x0 > kkt_tol * xp.clip(top, min=0.0), x0, xp.zeros_like(x0))
    x = x0
    g0 = gram_matvec(G, x, xp) - r  # one pass over the Gram stack for both tests
    A, s = guess(G, r, lam, x, c, tau, g0)
    # Rows whose start already satisfies KKT to rounding accuracy (the exact
    # least-squares solution of a noiseless, overdetermined layer) need no
    # solve at all; a first-order start never passes this test.
    converged = kkt_ok(g0, lam, x, 1e4 * eps * (xp.max(xp.abs(r), axis=1) + eps))
    if rows is not None:
        converged = converged | ~rows
    idx = xp.arange(B, device=device(x0))
    for it in range(max_iter):
        live = ~converged
        n_live = int(xp.sum(xp.astype(live, xp.int32)))
        if n_live == 0:
            break
        if it == INVERSE_AFTER and G.ndim == 3 and k >= INVERSE_MIN_UNITS:
            # Rows still iterating: guess their active sets with cheap
            # solves from each row's inverse; the exact iterations go on
            # from those guesses (and decide).
            A, s = _inverse_guesses(G, r, lam, A, s, converged, c, tau, guess, xp,
                                    max_iter - it)
        sub = idx if n_live == B else compress_rows(live, xp)
        Gs = G if G.ndim == 2 else xp.take(G, sub, axis=0)
        rs, As, ss = (xp.take(a, sub, axis=0) for a in (r, A, s))
        lam_s = take_lam(lam, sub, xp)
        cs = c if c.shape[0] == 1 else xp.take(c, sub, axis=0)
        rhs = rs - lam_col(lam_s) * ss
        xs = masked_gram_solve(Gs, rhs, As, xp)
        A2, s2 = guess(Gs, rs, lam_s, xs, cs, xp.take(tau, sub, axis=0))
        same = xp.all((A2 == As) & (s2 == ss), axis=1)
        x = scatter_rows(x, xs, live, xp)
        A = scatter_rows(A, A2, live, xp)
        s = scatter_rows(s, s2, live, xp)
        converged = converged | scatter_rows(converged, same, live, xp)
    if rows is not None:
        converged = converged & rows
        x = xp.where(rows[:, None], x, x_in)  # rows left out: their start as given
    # Rows that did not reach a fixed point keep the better of x0 and x.
    rest = ~converged if rows is None else rows & ~converged
    if not bool(xp.any(rest)):
        return x, converged
    sub = compress_rows(rest, xp)
    Gs = G if G.ndim == 2 else xp.take(G, sub, axis=0)
    rs, x0s, xs = (xp.take(a, sub, axis=0) for a in (r, x0, x))
    ls = take_lam(lam, sub, xp)
    worse = objective(Gs, rs, ls, xs, xp, nonneg=nonneg) > objective(Gs, rs, ls, x0s, xp,
                                                                      nonneg=nonneg)
    back = scatter_rows(xp.zeros_like(rest), worse, rest, xp)
    return xp.where(back[:, None], x0, x), converged
