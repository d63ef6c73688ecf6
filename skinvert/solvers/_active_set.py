"""The exact per-layer solver: active set and Lawson-Hanson (``solver="active_set"``).

Every layer problem (eqs. 8, 9, 16; Algorithm 2's lassos) is written in Gram
form ``min 1/2 x^T G x - r^T x + lam pen(x)`` with ``G = W^T diag(w) W`` and
solved exactly:

- rows with at least as many equations as unknowns ("tall") start from the
  unconstrained least squares and are refined by the primal-dual active-set
  iteration (:func:`~skinvert.solvers._quadratic.active_set_refine`);
- the other rows of a non-negative problem, and the tall rows the refinement
  did not settle, go to the batched Lawson-Hanson method
  (:func:`~skinvert.solvers._lawson_hanson.nnls_lawson_hanson`), exact and
  finite where ``G`` is singular; the other rows of a signed lasso start
  from FISTA (Algorithm 3 in Gram form), then the active-set iteration;
- eq. 9 / eq. 16's inequalities ``W_j x + b_j <= 0`` off the support: a
  violated one is added as the equation ``W_j x + b_j = 0`` and the layer
  solved again (an active-set step on the constraints);
- eq. 16's ridge ``gamma ||z||^2`` enters as ``k`` extra equations
  ``sqrt(gamma) z = 0``.

The image layer of eq. 8 is solved in the pre-activation domain
``u = phi^-1(y)`` (missing and saturated entries dropped): for a signal in
phi's range without noise it has the same minimiser as eq. 8, and the
debiasing of Algorithm 5 then minimises the loss through phi itself.
"""

from .._array_api import device, single_threaded_blas, to_numpy
from .._linalg import (
    HOST_BLOCK_BYTES,
    ROW_PRODUCT_TABLE_MAX,
    compress_rows,
    concat_blocks,
    downdated_solve,
    host_block_rows,
    matvec,
    rmatvec,
    row_blocks,
    row_weighted_gram,
    scatter_rows,
)
from ._base import BaseLayerSolver, n_false
from ._lam import lam_col, slice_lam, take_lam
from ._lawson_hanson import nnls_lawson_hanson
from ._quadratic import active_set_refine, fista, masked_gram_solve, objective

__all__ = ["ActiveSet"]


class ActiveSet(BaseLayerSolver):
    """Exact solver of every layer problem: active set, then Lawson-Hanson.

    Parameters
    ----------
    max_iter : int, default=30
        Primal-dual active-set refinement steps per layer (0 disables the
        refinement and the Lawson-Hanson stage).
    lawson_hanson_max_iter : int or None, default=None
        Block steps of the Lawson-Hanson stage (None: ``10 * max_iter``).
    constraint_max_iter : int, default=5
        Rounds that add violated inequalities of eq. 9 / eq. 16 as equations.
    fista_max_iter : int, default=1000
        FISTA iterations that start the wide rows of a signed lasso.
    fista_tol : float, default=1e-10
        Relative step at which those FISTA iterations stop.

    Notes
    -----
    Supports are those of the exact solution (its KKT conditions hold to
    rounding), not of an iterate stopped by a tolerance: the cure for the
    tiny spurious entries that ruin the next layer.
    """

    exact = True

    def __init__(
        self,
        max_iter=30,
        *,
        lawson_hanson_max_iter=None,
        constraint_max_iter=5,
        fista_max_iter=1000,
        fista_tol=1e-10,
    ):
        self.max_iter = max_iter
        self.lawson_hanson_max_iter = lawson_hanson_max_iter
        self.constraint_max_iter = constraint_max_iter
        self.fista_max_iter = fista_max_iter
        self.fista_tol = fista_tol

    def _solve(self, p):
        xp = p.xp
        if p.ridge:
            # Eq. 16: gamma ||z||^2 as k extra equations sqrt(gamma) z = 0.
            k = p.W.shape[1]
            B = p.target.shape[0]
            dev = device(p.target)
            W = xp.concat([p.W, (p.ridge**0.5) * xp.eye(k, dtype=p.W.dtype, device=device(p.W))])
            b = xp.concat([p.b, xp.zeros((k,), dtype=p.b.dtype, device=device(p.b))])
            t = xp.concat([p.target, xp.zeros((B, k), dtype=p.target.dtype, device=dev)], axis=1)
            rows = xp.concat([p.rows, xp.ones((B, k), dtype=p.target.dtype, device=dev)], axis=1)
            return self._constrained(
                W, b, t, rows, p.lam, p.nonneg, p.constraints, p.lipschitz + p.ridge, xp
            )
        out = {} if p.keep_gram else None
        res = self._constrained(
            p.W, p.b, p.target, p.rows, p.lam, p.nonneg, p.constraints, p.lipschitz, xp, out=out
        )
        p.gram = None if out is None else out.get("gram")
        return res

    def _constrained(self, W, b, target, rows, lam, nonneg, constraints, lipschitz, xp, out=None):
        """Eq. 9 / eq. 16: equations on ``rows``, inequalities off them."""
        w = rows
        x, n_bad = self.solve_gram(W, target - b, w, lam, nonneg, xp, lipschitz=lipschitz, out=out)
        if not constraints:
            return x, n_bad
        for _ in range(self.constraint_max_iter):
            viol = _violations(W, b, x, w, xp)
            bad = xp.any(viol, axis=1)
            if not bool(xp.any(bad)):
                break
            w = xp.where(viol, xp.ones_like(w), w)
            sub = compress_rows(bad, xp)
            x_bad, n = self.solve_gram(
                W,
                xp.take(target, sub, axis=0) - b,
                xp.take(w, sub, axis=0),
                take_lam(lam, sub, xp),
                nonneg,
                xp,
                lipschitz=lipschitz,
            )
            n_bad += n
            x = scatter_rows(x, x_bad, bad, xp)
        return x, n_bad

    def solve_gram(self, W, t, w, lam, nonneg, xp, *, lipschitz, out=None):
        """Solve ``min 1/2 ||sqrt(w) (W x - t)||^2 + lam pen(x)`` exactly.

        ``w`` (B, m) are row weights (None: all rows). Returns
        ``(x, n_not_converged)``; ``out["gram"]`` receives the per-row Gram
        matrices when every row formed its own. Non-negative rows that drop only a few of
        the rows of a tall ``W`` are tried first from one shared
        factorization (:func:`_shared_factor_rows`); the others form their
        own Gram matrix.
        """
        if nonneg and w is not None:
            done, x_done = _shared_factor_rows(W, t, w, lam, xp)
            if done is not None and bool(xp.any(done)):
                if bool(xp.all(done)):
                    return x_done, 0
                sub = compress_rows(~done, xp)
                x_rest, n_bad = self._solve_gram_rows(
                    W,
                    xp.take(t, sub, axis=0),
                    xp.take(w, sub, axis=0),
                    take_lam(lam, sub, xp),
                    nonneg,
                    xp,
                    lipschitz=lipschitz,
                )
                return scatter_rows(x_done, x_rest, ~done, xp), n_bad
        return self._solve_gram_rows(W, t, w, lam, nonneg, xp, lipschitz=lipschitz, out=out)

    def _solve_gram_rows(self, W, t, w, lam, nonneg, xp, *, lipschitz, out=None):
        """:meth:`solve_gram` with every row's own Gram matrix (kept in
        ``out["gram"]`` when ``out`` is a dict).

        With row weights, where their (B, k, k) stack passes the C
        allocator's mmap threshold (4 blocks of :data:`HOST_BLOCK_BYTES`),
        the systems are solved for blocks of rows (:func:`host_block_rows`;
        rows are independent)."""
        B, k = t.shape[0], W.shape[1]
        block = None if w is None else host_block_rows(xp, t.dtype, 4 * k * k, minimum=8)
        if block is None or B * 4 * k * k * t.dtype.itemsize <= 4 * HOST_BLOCK_BYTES:
            return self._solve_gram_block(W, t, w, lam, nonneg, xp, lipschitz=lipschitz, out=out)
        # A Gram table small enough for one GEMM (row_weighted_gram) is built
        # once for the batch, its rows solved in blocks; otherwise each block
        # downdates (or gathers) from W^T W.
        if W.shape[0] * k * k <= ROW_PRODUCT_TABLE_MAX:
            return self._solve_gram_block(
                W, t, w, lam, nonneg, xp, lipschitz=lipschitz, out=out,
                G=row_weighted_gram(W, w, xp), solve_rows=block,
            )
        K = W.T @ W
        xs, grams, n_bad = [], [], 0
        for sl in row_blocks(B, block):
            o = {} if out is not None else None
            x, n = self._solve_gram_block(
                W, t[sl, ...], w[sl, ...], slice_lam(lam, sl), nonneg, xp,
                lipschitz=lipschitz, out=o, K=K,
            )
            xs.append(x)
            n_bad += n
            if o is not None:
                grams.append(o["gram"])
        if out is not None:
            out["gram"] = xp.concat(grams)
        return xp.concat(xs), n_bad

    def _solve_gram_block(self, W, t, w, lam, nonneg, xp, *, lipschitz, out=None, G=None,
                          K=None, solve_rows=None):
        """:meth:`_solve_gram_rows` on one block of rows (``G``: their Gram
        matrices, when already built; ``K``: ``W^T W``, when already built;
        ``solve_rows``: rows per block of the unconstrained solves, None:
        one)."""
        B = t.shape[0]
        k = W.shape[1]
        dt = t.dtype
        r = (t if w is None else w * t) @ W
        if G is None:
            G = W.T @ W if w is None else row_weighted_gram(W, w, xp, shared=K)
        if out is not None and w is not None:
            out["gram"] = G
        if w is None:
            tall = xp.full((B,), W.shape[0] >= k, dtype=xp.bool, device=device(t))
        else:
            tall = xp.sum(xp.astype(w > 0, dt), axis=1) >= k
        x = xp.zeros((B, k), dtype=dt, device=device(t))
        if nonneg:
            # The tall rows' unconstrained solves and active-set steps in
            # blocks of ``solve_rows`` (their temporaries bounded), the
            # Lawson-Hanson stage once for the rows left.
            parts = [
                self._tall_rows(G if G.ndim == 2 else G[sl, ...], r[sl, ...],
                                slice_lam(lam, sl), tall[sl], xp)
                for sl in row_blocks(B, solve_rows)
            ]
            x, conv = concat_blocks(parts, xp)
            if not bool(xp.all(conv)):
                # Wide rows and tall rows the active-set iteration did not
                # settle (G singular or badly conditioned): Lawson-Hanson.
                x, conv = self._lawson_hanson_rows(G, r, lam, w, W.shape[0], x, conv, xp)
            return x, n_false(conv, xp)
        if bool(xp.any(tall)):
            x = xp.where(tall[:, None], _blockwise_solve(G, r, solve_rows, xp), x)
        if not bool(xp.all(tall)):
            sub = compress_rows(~tall, xp)
            Gs = G if G.ndim == 2 else xp.take(G, sub, axis=0)
            rs = xp.take(r, sub, axis=0)
            xf, _, _ = fista(
                Gs,
                rs,
                take_lam(lam, sub, xp),
                xp.zeros_like(rs),
                xp,
                nonneg=False,
                lipschitz=lipschitz,
                max_iter=self.fista_max_iter,
                tol=self.fista_tol,
            )
            x = scatter_rows(x, xf, ~tall, xp)
        x, conv = active_set_refine(G, r, lam, x, xp, nonneg=False, max_iter=self.max_iter)
        return x, n_false(conv, xp)

    def _tall_rows(self, G, r, lam, tall, xp):
        """``(x, converged)`` of a non-negative problem's ``tall`` rows: the
        unconstrained least squares, then the active-set refinement (x = 0
        and not converged off ``tall``)."""
        B, k = r.shape
        x = xp.zeros((B, k), dtype=r.dtype, device=device(r))
        if not bool(xp.any(tall)):
            return x, xp.zeros((B,), dtype=xp.bool, device=device(r))
        x = xp.where(
            tall[:, None], masked_gram_solve(G, r - lam_col(lam), xp.ones_like(r), xp), x
        )
        return active_set_refine(
            G, r, lam, x, xp, nonneg=True, max_iter=self.max_iter,
            rows=None if bool(xp.all(tall)) else tall,
        )

    def _lawson_hanson_rows(self, G, r, lam, w, m, x, conv, xp):
        """Re-solve the rows not ``conv`` by :func:`nnls_lawson_hanson`; a row
        keeps the new solution when it converged or lowered the objective."""
        max_iter = self.lawson_hanson_max_iter
        if max_iter is None:
            max_iter = 10 * self.max_iter
        bad = ~conv
        sub = compress_rows(bad, xp)
        Gs = G if G.ndim == 2 else xp.take(G, sub, axis=0)
        rs = xp.take(r, sub, axis=0)
        lam_s = take_lam(lam, sub, xp)
        rank = m if w is None else xp.take(xp.sum(xp.astype(w > 0, r.dtype), axis=1), sub, axis=0)
        x_lh, conv_lh = nnls_lawson_hanson(Gs, rs, lam_s, xp, rank=rank, max_iter=max_iter)
        x_old = xp.take(x, sub, axis=0)
        f_old = objective(Gs, rs, lam_s, x_old, xp, nonneg=True)
        f_new = objective(Gs, rs, lam_s, x_lh, xp, nonneg=True)
        if not bool(xp.all(conv_lh)) and max_iter > 0:
            # lam > 0 with a rank-deficient G (see nnls_lawson_hanson): finish
            # from the Lawson-Hanson point with the active-set refinement.
            x_ref, conv_ref = active_set_refine(
                Gs, rs, lam_s, x_lh, xp, nonneg=True, max_iter=max_iter
            )
            f_ref = objective(Gs, rs, lam_s, x_ref, xp, nonneg=True)
            use = ~conv_lh & (conv_ref | (f_ref < f_new))
            x_lh = xp.where(use[:, None], x_ref, x_lh)
            f_new = xp.where(use, f_ref, f_new)
            conv_lh = conv_lh | (use & conv_ref)
        take = conv_lh | (f_new < f_old)
        x_s = xp.where(take[:, None], x_lh, x_old)
        return scatter_rows(x, x_s, bad, xp), scatter_rows(conv, conv_lh, bad, xp)


def _blockwise_solve(G, rhs, rows, xp):
    """``G x = rhs`` for every row of a (B, k, k) or shared ``G``, in blocks
    of ``rows`` (None: one) of a per-row stack."""
    ones = xp.ones_like(rhs)
    if G.ndim == 2:
        return masked_gram_solve(G, rhs, ones, xp)
    parts = [
        (masked_gram_solve(G[sl, ...], rhs[sl, ...], ones[sl, ...], xp),)
        for sl in row_blocks(rhs.shape[0], rows)
    ]
    return concat_blocks(parts, xp)[0]


def _shared_factor_rows(W, t, w, lam, xp):
    """Rows of a non-negative layer problem solved from the shared ``W^T W``.

    For a tall ``W`` (``m >= k``) and 0/1 row weights that drop at most
    ``k / 4`` rows of a row, or ``k / 2`` where ``3 k / 2`` rows remain (the
    saturated or missing pixels of the image layer of eq. 8: the kept rows
    then condition the row's system about as well as all of them), the
    unconstrained minimiser of the row's problem
    comes from one shared factorization and a Woodbury correction per row
    (:func:`~skinvert._linalg.downdated_solve`). Where it is non-negative and
    satisfies the KKT conditions of the problem up to the tolerance of
    :func:`~skinvert.solvers._quadratic.active_set_refine` (every noiseless
    row with ``lam = 0``: a non-negative point with zero residual is optimal),
    it is the solution; the other rows are left to the active-set path.

    Returns
    -------
    done : bool array (B,) or None
        Rows solved here (None: no row qualifies).
    x : array (B, k) or None
    """
    m, k = W.shape
    B = t.shape[0]
    if m < k or not bool(xp.all((w == 0) | (w == 1))):
        return None, None
    drop = w == 0
    n_drop = xp.sum(xp.astype(drop, xp.int32), axis=1)
    # Woodbury's q x q system beats the row's own Gram matrix (m k^2 + k^3 /
    # 3) up to q = k / 2; beyond k / 4 only where 3 k / 2 rows remain.
    ok = n_drop <= max(min(k // 2, m - (3 * k) // 2), k // 4, 1)
    if not bool(xp.any(ok)):
        return None, None
    # The rows by their number of dropped rows: each block pads its systems
    # to its own largest (host_block_rows), not the batch's.
    sub = compress_rows(ok, xp)
    sub = xp.take(sub, xp.argsort(xp.take(n_drop, sub, axis=0), stable=True), axis=0)
    ts, ws, ds = (xp.take(a, sub, axis=0) for a in (t, w, drop))
    lam_s = take_lam(lam, sub, xp)
    dt = t.dtype
    G = W.T @ W
    diag = xp.linalg.diagonal(G)
    jitter = k * float(xp.finfo(dt).eps) * float(xp.max(diag)) if k else 0.0
    if not jitter > 0:
        return None, None
    Gj = G + jitter * xp.eye(k, dtype=dt, device=device(t))
    with single_threaded_blas(xp):
        H = xp.linalg.solve(Gj, W.T).T  # W (W^T W)^-1
    r = (ws * ts) @ W
    rp = r - lam_col(lam_s)
    # (W^T W)^-1 (r - lam 1) = H^T (w t) - lam (W^T W)^-1 1
    x0 = (ws * ts) @ H
    if not (isinstance(lam_s, float) and lam_s == 0.0):
        ones = xp.ones((k, 1), dtype=dt, device=device(t))
        with single_threaded_blas(xp):
            g1 = xp.linalg.solve(Gj, ones)[:, 0]
        x0 = x0 - lam_col(lam_s) * g1[None, :]
    # The tolerance of the active-set iteration's own support decisions
    # (its ``kkt_tol``): phi^-1 amplifies the rounding of nearly saturated
    # pixels, so a noiseless target is consistent only to about that level.
    eps = float(xp.finfo(dt).eps)
    tau = (eps**0.5 * (xp.max(xp.abs(r), axis=1) + eps))[:, None]
    # Blocks of rows with as many dropped rows (sorted above), each padded to
    # its own largest count: (q, k) dropped rows of W and of H per row
    # within HOST_BLOCK_BYTES; rows dropping none are their x0.
    counts = to_numpy(xp.take(n_drop, sub, axis=0), xp).tolist()  # one transfer
    parts = []
    for sl in _count_blocks(counts, lambda q: 2 * q * k, xp, dt):
        x = x0[sl, ...]
        if counts[sl.stop - 1] > 0:
            x, WD = downdated_solve(W, H, x, ds[sl, ...], xp)
            x = xp.clip(x, min=0.0)
            g = x @ G - rp[sl, ...] - rmatvec(WD, matvec(WD, x, xp), xp)
        else:
            x = xp.clip(x, min=0.0)
            g = x @ G - rp[sl, ...]
        t_ = tau[sl, ...]
        parts.append((x, xp.all(xp.where(x > 0, xp.abs(g) <= t_, g >= -t_), axis=1)))
    x, good = concat_blocks(parts, xp)
    # Back to the batch's order: the solved rows by increasing index.
    inv = xp.argsort(sub)
    done = xp.zeros((B,), dtype=xp.bool, device=device(t))
    xf = xp.zeros((B, k), dtype=dt, device=device(t))
    return (
        scatter_rows(done, xp.take(good, inv, axis=0), ok, xp),
        scatter_rows(xf, xp.take(x, inv, axis=0), ok, xp),
    )


def _count_blocks(counts, row_elements, xp, dtype):
    """Slices of consecutive rows (``counts`` non-decreasing) whose stacks of
    ``row_elements(count)`` entries, at the block's largest count, stay
    within one host block (:func:`~skinvert._linalg.host_block_rows`, at
    least 4 rows; no limit off NumPy); a new block starts where the count
    grows from 0."""
    n = len(counts)
    rows_at = {}
    out, start = [], 0
    for i in range(1, n + 1):
        if i < n and (counts[start] == 0) == (counts[i] == 0):
            if counts[i] not in rows_at:
                rows_at[counts[i]] = host_block_rows(
                    xp, dtype, max(row_elements(counts[i]), 1), minimum=4
                )
            rows = rows_at[counts[i]]
            if rows is None or i - start < rows:
                continue
        out.append(slice(start, i))
        start = i
    return out


def _violations(W, b, x, rows, xp):
    """Entries ``j`` off ``rows`` where ``W_j x + b_j > 0`` beyond rounding."""
    u = x @ W.T + b
    scale = xp.max(xp.abs(u), axis=1, keepdims=True) + 1.0
    eps = float(xp.finfo(x.dtype).eps)
    return (u > 1e3 * eps * scale) & (rows == 0)
