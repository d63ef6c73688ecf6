"""Batched kernels of the image layer seen through a measurement (eq. 8 through A).

:func:`~skinvert.algorithms._measured.measured_image_layer` solves, for every
row (signal) and every set of linear pieces of phi, the non-negative problem

    min_x  1/2 ||sqrt(obs) (M x - t)||^2 + lam 1^T x   s.t.  x >= 0     (P+)

with ``M = A D W`` (``D`` the slopes of phi's pieces). With fewer
measurements than units (``m < k``: 300 of 784 pixels seen through A, 392
units) ``M^T M`` is singular and the problem is a wide non-negative least
squares. The kernels here:

- :func:`piece_matrices`: ``A D W`` for every row from the folded ``A W``
  and the columns of ``A`` of the pixels off (or on) the unit-slope piece
  only (``O(m s k)`` per row, ``s`` the smaller of the two sets);
- :func:`nnls_warm`: an exact, batched Lawson-Hanson method (Lawson &
  Hanson 1974, ch. 23) in Gram form, warm-started at a feasible point and
  adding blocks of columns: every least squares on a passive set is solved
  on the gathered (padded) set, ``O(q^3)`` per row with ``q`` its size, and
  only the rows not yet at a KKT point are iterated.
"""

import numpy as np

from .._array_api import _is_numpy, device, single_threaded_blas
from .._linalg import compress_rows, matvec, padded_indices, scatter_rows
from ..solvers._quadratic import gram_jitter

__all__ = ["GREEDY_STEPS", "nnls_warm", "passive_lstsq", "piece_matrices"]

#: Outer Lawson-Hanson steps of :func:`nnls_warm` that may drop columns greedily.
GREEDY_STEPS = 8


def piece_matrices(meas, W, P, D, slope, xp):
    """``M_b = A diag(D_b) W`` for every row ``b`` (B, m, k).

    ``P = A W`` (m, k) is the folded last layer and ``D`` (B, n) holds phi's
    slopes, 1 on the unit-slope piece and ``slope`` elsewhere. With a dense
    ``A``, ``M_b = P + A_S diag(D_S - 1) W_S`` over the pixels ``S`` off the
    unit piece, or ``M_b = slope P + (1 - slope) A_U W_U`` over the pixels
    ``U`` on it, whichever set is smaller (gathered, padded to the largest
    row); a matrix-free ``A`` is applied to ``D W`` itself.
    """
    A = getattr(meas, "A", None)
    if A is None:
        return meas.columns(D[:, :, None] * W[None, :, :])
    dt = P.dtype
    unit = D == 1
    n_unit = int(xp.max(xp.sum(xp.astype(unit, xp.int32), axis=1)))
    n_off = int(xp.max(xp.sum(xp.astype(~unit, xp.int32), axis=1)))
    if n_off == 0:
        B = D.shape[0]
        return xp.broadcast_to(P[None, :, :], (B,) + P.shape)
    use_unit = n_unit < n_off
    sel = unit if use_unit else ~unit
    J, valid = padded_indices(sel, xp)
    B, s = J.shape
    k = W.shape[1]
    m = A.shape[0]
    vf = xp.astype(valid, dt)
    flat = xp.reshape(J, (-1,))
    AS = xp.reshape(xp.take(A.T, flat, axis=0), (B, s, m))  # rows: the pixels' columns of A
    WS = xp.reshape(xp.take(W, flat, axis=0), (B, s, k))
    if use_unit:
        WS = ((1.0 - slope) * vf)[:, :, None] * WS
        return slope * P[None, :, :] + xp.permute_dims(AS, (0, 2, 1)) @ WS
    DS = xp.reshape(
        xp.take(xp.reshape(D, (-1,)), flat + _row_offsets(B, D.shape[1], s, xp)), (B, s)
    )
    WS = ((DS - 1.0) * vf)[:, :, None] * WS
    return P[None, :, :] + xp.permute_dims(AS, (0, 2, 1)) @ WS


def _row_offsets(B, n, s, xp):
    """Flat offsets ``b * n`` repeated ``s`` times per row (for a flat gather)."""
    off = xp.arange(B, dtype=xp.int64) * n
    return xp.reshape(xp.broadcast_to(off[:, None], (B, s)), (-1,))


def passive_lstsq(G, c, F, xp, sub=None):
    """``z_F = (G_FF)^-1 c_F``, ``z = 0`` off ``F``, for every row.

    ``G`` (k, k) shared or (B', k, k) SPD on the passive sets ``F`` (B, k)
    bool; ``sub`` (B,) picks the rows of a per-row ``G`` (default: all).
    The systems are gathered on ``F`` (padded to the largest set with
    identity blocks), with the relative jitter ``k eps max diag(G)`` of
    :func:`~skinvert.solvers._quadratic.masked_gram_solve`.
    """
    B, k = c.shape
    dt = c.dtype
    dev = device(c)
    jitter = gram_jitter(G, xp)
    if G.ndim == 3 and sub is not None:
        jitter = xp.take(jitter, sub, axis=0)
    jitter = jitter * xp.ones((B,), dtype=dt, device=dev)  # one per row
    if _is_numpy(xp) and B:
        return _passive_lstsq_numpy(G, c, F, jitter, sub)
    count = xp.sum(xp.astype(F, xp.int32), axis=1)
    q = max(int(xp.max(count)), 1) if B else 1
    order = xp.argsort(xp.astype(~F, xp.int32), axis=1, stable=True)
    J = order[:, :q]
    valid = xp.arange(q, device=dev)[None, :] < count[:, None]
    jit = xp.reshape(jitter, (B, 1, 1))
    # G_JJ by one flat gather: entry (b, i, j) is G[b, J[b, i], J[b, j]].
    flat = J[:, :, None] * k + J[:, None, :]
    if G.ndim == 3:
        rows = xp.arange(B, dtype=J.dtype, device=dev) if sub is None else xp.astype(sub, J.dtype)
        flat = flat + (rows * (k * k))[:, None, None]
    GJJ = xp.reshape(xp.take(xp.reshape(G, (-1,)), xp.reshape(flat, (-1,))), (B, q, q))
    eye = xp.eye(q, dtype=dt, device=dev)
    # Padding slots: identity rows and columns; the jitter on the diagonal.
    H = xp.where(valid[:, :, None] & valid[:, None, :], GJJ, eye) + jit * eye
    cJ = xp.where(valid, xp.take_along_axis(c, J, axis=1), xp.zeros_like(J, dtype=dt))
    zJ = xp.linalg.solve(H, cJ[:, :, None])[:, :, 0]
    zJ = xp.where(valid, zJ, xp.zeros_like(zJ))
    # Scatter back through the inverse permutation of ``order``.
    inv = xp.argsort(order, axis=1)
    if q < k:
        zJ = xp.concat([zJ, xp.zeros((B, k - q), dtype=dt, device=dev)], axis=1)
    return xp.take_along_axis(zJ, inv, axis=1)


def _passive_lstsq_numpy(G, c, F, jitter, sub):
    """:func:`passive_lstsq` on NumPy: the same systems (gathered on ``F``,
    identity padding, the row's ``jitter``), gathered by fancy indexing and
    padded in place, the solution scattered back by index instead of an
    inverse permutation (on 32 rows of 392 units at m = 300: the gathers
    and copies took longer than the batched solve)."""
    B, k = c.shape
    count = np.count_nonzero(F, axis=1)
    q = max(int(count.max()), 1)
    J = np.argsort(~F, axis=1, kind="stable")[:, :q]
    valid = np.arange(q)[None, :] < count[:, None]
    if G.ndim == 3:
        rows = np.arange(B) if sub is None else np.asarray(sub)
        H = G[rows[:, None, None], J[:, :, None], J[:, None, :]]
    else:
        H = G[J[:, :, None], J[:, None, :]]
    # Padding slots: identity rows and columns; the jitter on the diagonal.
    pad = ~valid
    H[pad[:, :, None] | pad[:, None, :]] = 0.0
    diag = np.einsum("bii->bi", H)
    diag += jitter[:, None] + pad
    cJ = np.where(valid, np.take_along_axis(c, J, axis=1), 0.0)
    zJ = np.linalg.solve(H, cJ[:, :, None])[:, :, 0]
    z = np.zeros((B, k), dtype=c.dtype)
    r, j = np.nonzero(valid)
    z[r, J[r, j]] = zJ[r, j]
    return z


def _lstsq_rows(G, c, F, rows, xp, gsub=None):
    """:func:`passive_lstsq` on the rows where ``rows`` holds only (compressed);
    ``gsub`` maps the rows of ``c`` to those of a per-row ``G``."""
    sub = compress_rows(rows, xp)
    gs = sub if gsub is None else xp.take(gsub, sub, axis=0)
    return passive_lstsq(G, xp.take(c, sub, axis=0), xp.take(F, sub, axis=0), xp, sub=gs)


def _feasible(G, c, x, F, xp, greedy=0, gsub=None):
    """Lawson-Hanson's inner loop from the feasible ``x`` (zero off ``F``).

    Solve the least squares on ``F``; while it has non-positive entries,
    drop the columns just added (still at zero in ``x``) whose value is not
    positive, or step from ``x`` towards the solution as far as
    feasibility allows and drop the columns that reach zero. Returns the
    final least squares ``x`` (positive on ``F``) and ``F``. The first
    ``greedy`` rounds drop every non-positive column at once instead (a warm
    start far from the solution: the result is feasible, and the outer
    iteration's KKT test is unchanged). ``gsub``: as in :func:`_lstsq_rows`.
    """
    B, k = x.shape
    dt = x.dtype
    eps = float(xp.finfo(dt).eps)
    z = passive_lstsq(G, c, F, xp, sub=gsub)
    for it in range(k + 1 + greedy):
        bad = F & (z <= 0)
        rows = xp.any(bad, axis=1)
        if not bool(xp.any(rows)):
            break
        if it < greedy:
            F = F & ~bad
            x = xp.where(F, z, xp.zeros_like(z))
            z = scatter_rows(z, _lstsq_rows(G, c, F, rows, xp, gsub), rows, xp)
            continue
        fresh = bad & (x <= 0)
        has_fresh = xp.any(fresh, axis=1)
        step = rows & ~has_fresh
        # alpha = min over bad j of x_j / (x_j - z_j) (x_j > 0 >= z_j there).
        bad_s = bad & step[:, None]
        den = xp.where(bad_s, x - z, xp.ones_like(x))
        ratio = xp.where(
            bad_s, x / xp.where(den > 0, den, xp.ones_like(den)), xp.full_like(x, 2.0)
        )
        alpha = xp.clip(xp.min(ratio, axis=1), min=0.0, max=1.0)
        x = xp.where(step[:, None], x + alpha[:, None] * (z - x), x)
        tiny = 10.0 * eps * (xp.max(xp.abs(x), axis=1, keepdims=True) + 1e-300)
        drop = fresh | (step[:, None] & F & (x <= tiny))
        x = xp.where(drop, xp.zeros_like(x), x)
        F = F & ~drop
        z = scatter_rows(z, _lstsq_rows(G, c, F, rows, xp, gsub), rows, xp)
    return xp.where(F, z, xp.zeros_like(z)), F


def nnls_warm(G, c, x0, xp, *, tau, cap, max_iter, F0=None, block=0.5, greedy=8):
    """Solve ``min 1/2 x^T G x - c^T x, x >= 0`` exactly for every row.

    Lawson-Hanson (Lawson & Hanson 1974, ch. 23) started at the feasible
    ``x0`` (its support is the first passive set). Each outer step solves
    the least squares on the passive set (:func:`_feasible`), stops the rows
    whose negative gradient ``c - G x`` is at most ``tau`` off the set (the
    KKT conditions of the problem), and adds to the others the columns of
    largest negative gradient: ``block`` times the free rank ``cap - |F|``
    of them, or one after a block step that made no progress (the classical
    step, a strict descent in exact arithmetic).

    Parameters
    ----------
    G : array (k, k) or (B, k, k)
    c : array (B, k)
        ``r - lam``.
    x0 : array (B, k)
        Start (clipped at 0).
    F0 : bool array (B, k), optional
        First passive set (default: the support of ``x0``), e.g. that of the
        solution of a nearby problem.
    tau : array (B,)
        KKT tolerance per row.
    cap : array (B,)
        Rank bound of ``G`` per row (the number of equations): the passive
        set never grows beyond it.
    max_iter : int
        Outer steps.
    block : float
        Fraction of the free rank added per outer step.
    greedy : int
        Rounds of the first least squares that drop all its non-positive
        columns at once (:func:`_feasible`); the next ``GREEDY_STEPS - 1``
        outer steps take two such rounds before the classical steps, the
        later ones none (so that the iteration stays finite). Convergence is
        decided by the KKT test on the final least squares.

    Returns
    -------
    x : array (B, k)
    converged : bool array (B,)
        Rows at a KKT point (to ``tau``).
    """
    B, k = c.shape
    dt = c.dtype
    dev = device(c)
    x = xp.clip(x0, min=0.0)
    F = x > 0 if F0 is None else F0
    x = xp.where(F, x, xp.zeros_like(x))
    conv = xp.zeros((B,), dtype=xp.bool, device=dev)
    done = xp.zeros_like(conv)
    single = xp.zeros_like(conv)
    F_before = xp.zeros_like(F)  # passive sets before the last additions
    added_any = xp.zeros_like(conv)
    with single_threaded_blas(xp):
        for it in range(max_iter + 1):
            live = ~done
            n_live = int(xp.sum(xp.astype(live, xp.int32)))
            if n_live == 0:
                break
            sub = None if n_live == B else compress_rows(live, xp)

            def pick(a, sub=sub):
                return a if sub is None else xp.take(a, sub, axis=0)

            cs, xs, Fs, ts, caps = pick(c), pick(x), pick(F), pick(tau), pick(cap)
            # Greedy rounds in the first outer steps only: the later ones are
            # classical Lawson-Hanson steps (monotone, hence finite).
            n_greedy = greedy if it == 0 else (2 if it < GREEDY_STEPS else 0)
            xs, Fs = _feasible(G, cs, xs, Fs, xp, greedy=n_greedy, gsub=sub)
            if G.ndim == 2 or sub is None:
                g = cs - matvec(G, xs, xp)
            else:  # G x on every row (no copy of the live rows' G)
                g = pick(c - matvec(G, scatter_rows(x, xs, live, xp), xp))
            cand = ~Fs & (g > ts[:, None])
            opt = ~xp.any(cand, axis=1)
            n_f = xp.sum(xp.astype(Fs, dt), axis=1)
            # No progress: every added column left again.
            stuck = pick(added_any) & xp.all(Fs == pick(F_before), axis=1)
            sgl = xp.where(stuck, xp.ones_like(stuck), xp.zeros_like(stuck))
            stop = opt | (n_f >= caps) | (stuck & pick(single))
            n_c = xp.sum(xp.astype(cand, dt), axis=1)
            p = xp.minimum(xp.ceil(block * n_c), caps - n_f)
            p = xp.where(sgl, xp.ones_like(n_f), p)
            p = xp.where(stop, xp.zeros_like(p), xp.clip(xp.minimum(p, n_c), min=1.0))
            q = int(xp.max(p)) if p.shape[0] else 0
            F_new = Fs
            if q > 0:
                order = xp.argsort(
                    xp.where(cand, -g, xp.full_like(g, xp.inf)), axis=1, stable=True
                )
                rank = xp.astype(xp.argsort(order, axis=1), dt)  # position of each column
                F_new = Fs | (cand & (rank < p[:, None]))
            if sub is None:
                x, F, conv, done = xs, F_new, opt, stop
                single, F_before, added_any = sgl, Fs, ~stop
            else:
                x = scatter_rows(x, xs, live, xp)
                F = scatter_rows(F, F_new, live, xp)
                conv = scatter_rows(conv, opt, live, xp)
                done = scatter_rows(done, stop, live, xp)
                single = scatter_rows(single, sgl, live, xp)
                F_before = scatter_rows(F_before, Fs, live, xp)
                added_any = scatter_rows(added_any, ~stop, live, xp)
    return x, conv
