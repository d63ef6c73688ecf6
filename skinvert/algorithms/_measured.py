"""The image layer of eq. 8 seen through linear measurements ``y = A G(z) + e``.

- :func:`fold_measurement`: an identity phi folds ``A`` into the last layer
  (``W_L <- A W_L``, ``b_L <- A b_L``), and every algorithm runs unchanged;
- :func:`measured_image_layer`: for a piecewise-linear phi, eq. 8 through
  ``A`` by an active set on phi's linear pieces (:func:`phi_regions`).
"""

from .._linalg import compress_rows, scatter_rows
from ..solvers._base import n_false
from ..solvers._lam import lam_col, take_lam
from ._batch import lipschitz_of
from ._measured_kernels import nnls_warm, piece_matrices

__all__ = ["WIDE_PIECE_STEPS", "fold_measurement", "measured_image_layer", "phi_regions"]

#: Gauss-Newton steps on phi's pieces for rows whose per-piece problem is
#: wide (fewer observed measurements than units); see measured_image_layer.
WIDE_PIECE_STEPS = 1


def _folded_last_layer(batch):
    """``(A W_L, A b_L (1, m), lambda_max((A W_L)^T A W_L))`` of a batch."""
    meas = batch.measurement
    P = meas.fold(batch.weights[-1])
    q = meas.forward(batch.biases[-1][None, :])
    return P, q, lipschitz_of(P, batch.xp)


def fold_measurement(batch):
    """An identity-output generator seen through A: ``W_L <- A W_L``, ``b_L <- A b_L``.

    ``A phi(W_L x + b_L) = (A W_L) x + A b_L`` when phi is the identity, so
    eqs. 8, 9 and 16 and the debiasing keep their form with the folded last
    layer (``lambda_max`` of the folded matrix replaces the stored one).
    Returns the folded batch, without a measurement.
    """
    P, q, lip = _folded_last_layer(batch)
    return batch.replace(
        weights=batch.weights[:-1] + [P],
        biases=batch.biases[:-1] + [q[0, :]],
        lipschitz=batch.lipschitz[:-1] + (lip,),
        measurement=None,
    )


def phi_regions(activation, U, xp):
    """The linear piece of a piecewise-linear phi at every entry of ``U``.

    Returns ``(code, D, d)`` with ``phi(u) = D u + d`` on the piece of ``u``:
    ``code`` is 0 on the unit-slope piece, -1 below it and +1 above it (PLU),
    ``D`` the slope and ``d`` the offset.
    """
    zero = xp.zeros_like(U)
    one = xp.ones_like(U)
    if activation.name == "identity":
        return zero, one, zero
    a = activation.slope
    if activation.name == "leaky_relu":
        lo = U < 0
        return xp.where(lo, -one, zero), xp.where(lo, a * one, one), zero
    c = activation.c
    hi = U > c
    lo = U < -c
    code = xp.where(hi, one, xp.where(lo, -one, zero))
    D = xp.where(hi | lo, a * one, one)
    d = xp.where(hi, (c * (1.0 - a)) * one, xp.where(lo, (-c * (1.0 - a)) * one, zero))
    return code, D, d


def measured_image_layer(batch, solver, lam, nonneg, res, stage):
    """Eq. 8 through linear measurements, for a piecewise-linear phi.

    ``min_x f(x) = 1/2 ||obs * (A phi(W x + b) - y)||^2 + lam ||x||_1``
    (``x >= 0`` when ``nonneg``). On a fixed piece of phi,
    ``phi(u) = D u + d`` (:func:`phi_regions`) and f is the lasso of eq. 8
    with the per-sample matrix ``A D W`` and target ``y - A (D b + d)``: f is
    piecewise quadratic. A Gauss-Newton iteration on the pieces (exact on
    each piece, since phi is linear there), with the exact ``solver``
    (:class:`~skinvert.solvers.ActiveSet`, whose ``max_iter`` caps every
    loop here):

    1. start with every entry on phi's unit-slope piece: the folded problem
       ``A W``, shared by the batch, solved exactly;
    2. fix ``D``, ``d`` at the pieces of ``u = W x + b`` and solve that
       per-sample problem exactly (active-set refinement warm-started at x):
       ``x_new``;
    3. if ``x_new`` lies on the pieces it was solved for, it is a stationary
       point of f: the row stops. Otherwise ``x_new - x`` is a descent
       direction of f (the model equals f around x), and the row moves to
       the first of ``x + t (x_new - x)``, ``t = 1, 1/2, ..., 2^-10``, that
       lowers f, then repeats 2, up to ``max_iter`` times (rows with fewer
       observed measurements than units: ``WIDE_PIECE_STEPS`` times).

    f decreases monotonically; rows that neither reach a fixed point nor find
    a lower f are counted in the ConvergenceWarning. Every per-piece problem
    is solved by :func:`~._measured_kernels.nnls_warm` (Lawson-Hanson, exact,
    warm-started at the last solution's passive set) on the matrices of
    :func:`~._measured_kernels.piece_matrices`.

    Notes
    -----
    With fewer measurements than units (``m < n_L``: 300 through A against
    392 units of ``fashion-mnist-fc``) the per-piece problem is a wide
    non-negative least squares whose solutions sit near the rank ``m``
    rather than on the signal's support, and the iteration creeps (f
    falls by about a tenth of a decade per step over the 30 steps of
    ``max_iter``) while every step costs tens of factorizations of size
    ``m``. The estimate is then decided by the later stages (the debiasing
    and the support refresh in z, ``n_0 << m`` unknowns), and the rows take
    ``WIDE_PIECE_STEPS`` steps only. Measured on ``fashion-mnist-fc`` at
    m = 300 (``benchmarks/README.md``, measurements section): about 15x
    faster than 30 steps of the earlier inner solver, with the fraction of
    signals recovered to >= 60 dB within a few rows of it (0.930 against
    0.938 on 128 signals, 0.875 against 0.938 on 32; 0.920 on 512). Which rows the
    later stages recover depends on the image-layer estimate in this
    regime; rows with at least as many measurements as units iterate up to
    ``max_iter`` as before.
    """
    xp, Y, obs, meas, activation = (
        batch.xp,
        batch.Y,
        batch.obs,
        batch.measurement,
        batch.activation,
    )
    W, b = batch.weights[-1], batch.biases[-1]
    max_iter = solver.max_iter
    dt = Y.dtype
    all_obs = bool(xp.all(obs > 0))
    P, q, lip = _folded_last_layer(batch)
    if activation.name == "identity" or not nonneg:
        x, n_bad = solver.solve_gram(
            P, Y - q, None if all_obs else obs, lam, nonneg, xp, lipschitz=lip
        )
        res.count(stage, n_bad)
        return x
    lh_iter = solver.lawson_hanson_max_iter
    lh_iter = 10 * max_iter if lh_iter is None else lh_iter
    eps = float(xp.finfo(dt).eps)
    cap_all = xp.clip(xp.sum(xp.astype(obs > 0, dt), axis=1), max=float(P.shape[1]))

    def nnls(G_, r_, lam_, x0_, cap_, F0_=None):
        tau = eps**0.5 * (xp.max(xp.abs(r_), axis=1) + eps)
        return nnls_warm(
            G_, r_ - lam_col(lam_), x0_, xp, tau=tau, cap=cap_, max_iter=lh_iter, F0=F0_
        )

    # Step 1: every entry on phi's unit-slope piece, the folded problem A W.
    # Started at the least-squares (minimum-norm) solution clipped at 0.
    if all_obs:
        G0 = P.T @ P
        x0 = xp.clip((Y - q) @ xp.linalg.pinv(P).T, min=0.0)
    else:
        G0 = P.T @ (obs[:, :, None] * P)
        x0 = xp.zeros((Y.shape[0], P.shape[1]), dtype=dt)
    x, conv = nnls(G0, (obs * (Y - q)) @ P, lam, x0, cap_all)
    res.count(stage, n_false(conv, xp))

    def objective(x_, Y_, O_, lam_):
        R = O_ * (meas.forward(activation(x_ @ W.T + b, xp)) - Y_)
        pen = xp.sum(x_ if nonneg else xp.abs(x_), axis=1)
        return 0.5 * xp.sum(R * R, axis=1) + lam_ * pen

    f = objective(x, Y, obs, lam)
    # Passive sets of the last exact solve: the warm start of the next one
    # (the line search below blends supports beyond the rank).
    Fp = x > 0
    code, _, _ = phi_regions(activation, x @ W.T + b, xp)
    live = xp.any(code != 0, axis=1)  # step 1 assumed the unit-slope piece everywhere
    stalled = xp.zeros_like(live)
    # Rows whose per-piece problem has fewer equations than unknowns take at
    # most WIDE_PIECE_STEPS steps (see the Notes).
    wide = cap_all < P.shape[1]
    for it in range(max_iter):
        run = live & ~wide if it >= WIDE_PIECE_STEPS else live
        if not bool(xp.any(run)):
            break
        sub = compress_rows(run, xp)
        xs, Ys, Os, cs, fs, Fs = (xp.take(a, sub, axis=0) for a in (x, Y, obs, code, f, Fp))
        lam_s = take_lam(lam, sub, xp)
        _, D, d = phi_regions(activation, xs @ W.T + b, xp)
        M = piece_matrices(meas, W, P, D, activation.slope, xp)  # (b, m, k): A D W
        t = Ys - meas.forward(D * b + d)
        G = xp.permute_dims(M, (0, 2, 1)) @ (M if all_obs else Os[:, :, None] * M)
        r = ((Os * t)[:, None, :] @ M)[:, 0, :]
        xn, solved = nnls(G, r, lam_s, xs, xp.take(cap_all, sub, axis=0), Fs)
        Fs = xn > 0
        cn, _, _ = phi_regions(activation, xn @ W.T + b, xp)
        fixed = xp.all(cn == cs, axis=1) & solved
        fn = objective(xn, Ys, Os, lam_s)
        # Backtracking along x_new - x for the rows whose pieces moved.
        ok = fixed | (fn < fs)
        step = 1.0
        for _ in range(10):
            if bool(xp.all(ok)):
                break
            step *= 0.5
            xt = xs + step * (xn - xs)
            ft = objective(xt, Ys, Os, lam_s)
            take = ~ok & (ft < fs)
            xn = xp.where(take[:, None], xt, xn)
            fn = xp.where(take, ft, fn)
            ok = ok | take
        xn = xp.where(ok[:, None], xn, xs)
        fn = xp.where(ok, fn, fs)
        cn, _, _ = phi_regions(activation, xn @ W.T + b, xp)
        x = scatter_rows(x, xn, run, xp)
        f = scatter_rows(f, fn, run, xp)
        code = scatter_rows(code, cn, run, xp)
        Fp = scatter_rows(Fp, Fs, run, xp)
        stalled = scatter_rows(stalled, ~ok, run, xp)
        live = scatter_rows(live, ok & ~fixed, run, xp)
    res.flag(f"{stage} (pieces of phi)", live | stalled, xp)
    return xp.astype(x, dt)
