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

- every row keeps ``M = (G_PP)^-1`` in a compact
  :class:`~skinvert.solvers._passive_set.PassiveSet` (one slot per passive
  column, not a (k, k) array): adding a block ``J`` of columns is a
  rank-``|J|`` Schur-complement update, dropping columns a rank-``|D|``
  downdate: matrix products on ``c x c`` blocks (``c`` the largest passive
  set, at most ``rank(G)`` plus the block), no per-row factorisations and
  no loop over rows; rows that stop leave the working set;
- each outer step adds up to ``q`` columns with the largest positive
  gradient (``q`` shrinks as ``P`` fills the available rank; a row that makes
  no progress with a block falls back to the classical single column), then
  the inner loop of Lawson-Hanson moves back to the feasible segment and
  drops the columns that reach zero (its first move is decided from the
  Schur blocks before the update, so columns of the block that would leave
  at once are never added);
- rows that satisfy the KKT conditions stop; at the end the least squares on
  the final ``P`` is solved afresh (no accumulated update error) and the KKT
  conditions are checked on that solution.
"""

from .._array_api import device, single_threaded_blas
from .._linalg import compress_rows, concat_blocks, host_block_rows, row_blocks, scatter_rows
from ._lam import as_lam, lam_col, slice_lam
from ._passive_set import PassiveSet
from ._quadratic import gram_matvec, masked_gram_solve, objective

__all__ = ["nnls_lawson_hanson"]


def _ls_on_passive(S, G, r, xp, *, refine=False):
    """``x_P = (G_PP)^-1 r_P`` from the maintained inverse (zero off ``P``),
    optionally with one step of iterative refinement."""
    x = S.solve(r, xp)
    if refine:
        x = x + S.solve(r - gram_matvec(G, x, xp), xp)
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
    # Blocks of rows on NumPy (rows are independent): every step allocates
    # (rows, c, c) inverses, c up to the rank plus a block (host_block_rows).
    m = k if rank is None or not isinstance(rank, (int, float)) else min(int(rank), k)
    c = min(k, m + max(int(block * m), 1))
    blocks = row_blocks(B, host_block_rows(xp, dt, c * c, minimum=4))
    if len(blocks) > 1:
        parts = [
            nnls_lawson_hanson(
                G if G.ndim == 2 else G[sl, ...],
                r[sl, ...],
                slice_lam(lam, sl),
                xp,
                rank=rank if rank is None or isinstance(rank, (int, float)) else rank[sl, ...],
                max_iter=max_iter,
                kkt_tol=kkt_tol,
                block=block,
            )
            for sl in blocks
        ]
        return concat_blocks(parts, xp)
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
    # The working set: the rows still growing their passive sets (a row that
    # stops leaves it with its x and P; its inverse is no longer needed).
    live = xp.ones((B,), dtype=xp.bool, device=dev)
    S = PassiveSet.empty(B, k, dt, dev, xp)
    w = _Rows(G, rp, tau, cap, x, xp)
    single = xp.zeros((B,), dtype=xp.bool, device=dev)  # rows back to one column per step
    stop = xp.zeros((B,), dtype=xp.bool, device=dev)
    with single_threaded_blas(xp):
        for _ in range(max_iter):
            S = S.compact(xp, slack=S.c // 8)
            Pw = S.mask(xp)
            g = w.rp - gram_matvec(w.G, w.x, xp)  # negative gradient
            cand = ~Pw & (g > w.tau[:, None])
            n_p = xp.sum(xp.astype(Pw, dt), axis=1)
            fin = stop | ~xp.any(cand, axis=1) | (n_p >= w.cap)
            if bool(xp.any(fin)):
                x = scatter_rows(x, w.x, live, xp)
                P = scatter_rows(P, Pw, live, xp)
                keep = ~fin
                live = scatter_rows(live, keep, live, xp)
                if not bool(xp.any(keep)):
                    break
                sub = compress_rows(keep, xp)
                w = w.take(sub, xp)
                S = S.take_rows(sub, xp)
                single, g, cand, n_p = (xp.take(a, sub, axis=0) for a in (single, g, cand, n_p))
            n_c = xp.sum(xp.astype(cand, dt), axis=1)
            free = w.cap - n_p
            q_row = xp.where(single, xp.ones_like(free), xp.floor(block * free))
            q_row = xp.clip(xp.minimum(q_row, n_c), min=1.0)
            q = int(xp.max(q_row))
            order = xp.argsort(xp.where(cand, -g, xp.full_like(g, xp.inf)), axis=1, stable=True)
            J = order[:, :q]
            valid = xp.astype(xp.arange(q, device=dev)[None, :], dt) < q_row[:, None]
            S_new, pending = S.add(w.G, J, valid, xp, r=w.rp, x=w.x, aggressive=~single)
            f_old = objective(w.G, w.rp, 0.0, w.x, xp, nonneg=True)
            x_new, S_new = _feasible_ls(S_new, w.G, w.rp, w.x, xp, ~single, pending)
            # A step that did not lower the objective is undone, and the row
            # takes the classical one-column step next (a descent in exact
            # arithmetic); after a successful one it returns to blocks.
            f_new = objective(w.G, w.rp, 0.0, x_new, xp, nonneg=True)
            progress = f_new < f_old - eps * xp.abs(f_old)
            stop = single & ~progress  # no progress even with one column: stop
            single = ~progress
            if bool(xp.all(progress)):
                S, w.x = S_new, x_new
            else:
                S = S_new.select(progress, S, xp)
                w.x = xp.where(progress[:, None], x_new, w.x)
        else:
            x = scatter_rows(x, w.x, live, xp)
            P = scatter_rows(P, S.mask(xp), live, xp)
        # Exact least squares on the final passive sets, then the KKT check.
        x_ls = masked_gram_solve(G, rp, xp.astype(P, dt), xp)
        x = xp.clip(xp.where(xp.all(x_ls >= 0, axis=1)[:, None], x_ls, x), min=0.0)
        g = rp - gram_matvec(G, x, xp)
        ok = xp.where(P, xp.abs(g) <= tau[:, None], g <= tau[:, None]) & (x >= 0)
    return x, xp.all(ok, axis=1)


class _Rows:
    """The per-row data of the working set (G when per row, r, tau, cap, x)."""

    def __init__(self, G, rp, tau, cap, x, xp):
        self.G, self.rp, self.tau, self.cap, self.x = G, rp, tau, cap, x

    def take(self, sub, xp):
        G = self.G if self.G.ndim == 2 else xp.take(self.G, sub, axis=0)
        t = (xp.take(a, sub, axis=0) for a in (self.rp, self.tau, self.cap, self.x))
        return _Rows(G, *t, xp)


def _feasible_ls(S, G, r, x, xp, aggressive, pending=None, max_inner=None):
    """Lawson-Hanson's inner loop: least squares on ``P``; while it has
    non-positive entries, step from the feasible ``x`` towards it as far as
    feasibility allows and drop the columns that reach zero. Rows marked
    ``aggressive`` instead drop every non-positive column at once (a block
    step, checked for descent by the caller). ``S`` is the rows'
    :class:`~skinvert.solvers._passive_set.PassiveSet`; ``pending`` the first
    move already decided by :meth:`PassiveSet.add` (columns to drop, rows
    that dropped any)."""
    B, k = x.shape
    dt = x.dtype
    if max_inner is None:
        max_inner = k
    skip = None
    if pending is not None:
        drop0, skip = pending
        S = S.drop(drop0, xp)
    z = _ls_on_passive(S, G, r, xp)
    for _ in range(max_inner):
        P = S.mask(xp)
        bad = P & (z <= 0)
        rows = xp.any(bad, axis=1)
        if skip is not None:
            # First pass with the drops of ``pending`` done: the rows that
            # dropped columns start over from their new least squares.
            rows = rows & ~skip
            bad = bad & rows[:, None]
            skip = None
            if not bool(xp.any(rows)):
                continue
        else:
            if not bool(xp.any(rows)):
                break
            # Columns just added (still at zero in x) whose least-squares value
            # is not positive leave again at once: a step towards them has
            # length 0.
            fresh = bad & ((x <= 0) | aggressive[:, None])
            has_fresh = xp.any(fresh, axis=1)
            if bool(xp.any(has_fresh)):
                S = S.drop(fresh, xp)
                z_new = _ls_on_passive(S, G, r, xp)
                z = xp.where(has_fresh[:, None], z_new, z)
                # Rows with only old columns going negative take the usual step.
                rows = rows & ~has_fresh
                bad = bad & rows[:, None]
                if not bool(xp.any(rows)):
                    continue
                P = S.mask(xp)
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
        S = S.drop(drop, xp)
        z = _ls_on_passive(S, G, r, xp)
    return _ls_on_passive(S, G, r, xp, refine=True), S
