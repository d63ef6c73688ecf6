"""Refinement stages after the layer-wise pass of Algorithm 5.

- :func:`debias`: Algorithm 5's last step, the Oracle (Algorithm 1) on the
  estimated supports;
- :func:`refresh`: the Oracle again on the supports of ``G(z_hat)`` itself,
  while they change and the loss of eq. 1 drops (for a smooth phi with
  short Levenberg-Marquardt runs per round, then :func:`finish_refresh`);
- :func:`fallback`: gradient descent on eq. 1 (the paper's section 6.1
  outlook) for the rows the layers did not determine.

:class:`Refinement` holds the knobs of all three; :func:`refine` runs them
in that order.
"""

from dataclasses import dataclass

import numpy as np

from .._array_api import device
from .._linalg import (
    compress_rows,
    concat_blocks,
    forward_preactivations,
    host_block_rows,
    matvec,
    rmatvec,
    row_blocks,
    scatter_rows,
    shared_left_matmul,
    supported_affine_maps,
)
from ._batch import fits_to_rounding
from ._polish_start import well_posed_fixed_points
from .gradient_descent import momentum_descent
from .oracle import inverse_target, oracle_end_to_end
from .polish import affine_map, mixed_refinement, polish_batch

__all__ = [
    "Refinement",
    "debias",
    "descent_polish",
    "fallback",
    "finish_refresh",
    "refine",
    "refresh",
]


@dataclass(frozen=True)
class Refinement:
    """Knobs of the stages after the layer-wise pass.

    Attributes
    ----------
    debias : bool, default=True
        Run Algorithm 1 on the estimated supports.
    debias_max_iter : int, default=30
        Gauss-Newton iterations of each Oracle solve (non-linear phi).
    refresh_max_iter : int, default=0
        Support refreshes after the debiasing (0: none).
    fallback_max_iter : int, default=0
        Gradient-descent steps for the rows the pursuit did not fit (0: none).
    fallback_tol : float, default=1e-6
        Relative residual ``||obs (G(z) - y)|| / ||obs y||`` below which a
        row never falls back.
    refresh_step_iter : int or None, default=6
        Levenberg-Marquardt iterations of each refresh round for a smooth
        phi (tanh, sigmoid), and for any phi seen through a measurement
        (where Algorithm 1 iterates: phi^-1 does not apply); the rows the
        refresh moved are then finished by :func:`finish_refresh` with
        ``debias_max_iter``. A round only has to lower the loss and land in
        the next support region: on a saturating tanh generator at noise
        1e-2 rows take 5-10 rounds, and the full ``debias_max_iter`` per
        round cost about 40 % of the pursuit's time; through m = 300
        measurements of ``fashion-mnist-fc`` (PLU, 512 signals) the short
        rounds took 0.096 s per signal against 0.109, with 94.1 % of the
        codes exact (>= 60 dB) against 92.0 %. None (and a piecewise-linear
        phi without a measurement, where Algorithm 1 is one least squares):
        every round runs ``debias_max_iter``.
    refresh_by_polish : bool, default=False
        Noiseless signals (no noise model, ``lam = 0``, ``gamma = 0``): the
        refresh is the fixed-support Gauss-Newton polish with support refresh
        (:func:`polish_refresh`) first, then rounds of Algorithm 1 for the
        rows it does not take. Measured where the refresh has work (rows the
        pass left on wrong supports): Figure 4's ``[100, 1000, 625]``, 64
        signals, Latent-Pursuit 13.0-13.4 -> 10.3 s, every code exact;
        ``m = 300`` measurements of ``fashion-mnist-fc``, 256 signals,
        0.079-0.082 -> 0.069 s per signal, 95.3 -> 97.7 % of the codes exact.
        Under noise the rounds alone (the polish was slower there: 21.2
        against 19.0 s on 256 noisy saturating signals).
    polish_start : bool, default=False
        Latent-Pursuit: before the pass, fully observed rows of a wide image
        layer (clean) or every fully observed row (noisy) take the polish
        from the statistically linearized network
        (:mod:`~skinvert.algorithms._polish_start`), with
        :attr:`polish_start_max_iter` steps; the rows it fits skip the pass.
    polish : "descent", callable or None, default="descent"
        The stage that continues the rows whose loss stays inconsistent with
        the noise level (:func:`~skinvert.algorithms.noise.settle_noisy_rows`):
        ``polish(batch, Z0, gamma, attempt=a) -> Z``. "descent" is
        :func:`descent_polish`.
    """

    def polish_stage(self):
        """The polish callable (None: no polish)."""
        return descent_polish if self.polish == "descent" else self.polish

    debias: bool = True
    debias_max_iter: int = 30
    refresh_max_iter: int = 0
    fallback_max_iter: int = 0
    fallback_tol: float = 1e-6
    refresh_step_iter: object = 6
    polish: object = "descent"
    refresh_by_polish: bool = False
    polish_start: bool = False

    @property
    def polish_start_max_iter(self):
        """Steps of the polish from the linearized start (``polish_start``)."""
        return POLISH_STEPS_PER_REFRESH * self.refresh_max_iter

    def refresh_round_iter(self, activation, measured=False):
        """LM iterations per refresh round for ``activation`` (``measured``:
        seen through a measurement, where Algorithm 1 iterates for any phi)."""
        if self.refresh_step_iter is None or (activation.piecewise_linear and not measured):
            return self.debias_max_iter
        return min(self.debias_max_iter, self.refresh_step_iter)


def refine(res, batch, *, gamma, refinement):
    """Run the enabled stages on ``res`` (in place) and return it."""
    if not refinement.debias:
        return res
    debias(res, batch, gamma=gamma, max_iter=refinement.debias_max_iter)
    if refinement.refresh_max_iter > 0:
        polished = pre = None
        if refinement.refresh_by_polish:
            polished, pre = polish_refresh(
                res, batch, max_iter=POLISH_STEPS_PER_REFRESH * refinement.refresh_max_iter
            )
        step_iter = refinement.refresh_round_iter(
            batch.activation, measured=batch.measurement is not None
        )
        # Rounds of Algorithm 1 for the rows the polish does not take (rows
        # with missing entries, noisy signals); a polished row at its fixed
        # point is not moved again.
        refresh(
            res,
            batch,
            gamma=gamma,
            max_iter=refinement.refresh_max_iter,
            debias_max_iter=step_iter,
            pre=pre,
        )
        if step_iter < refinement.debias_max_iter:
            finish_refresh(res, batch, gamma=gamma, max_iter=refinement.debias_max_iter)
        if polished is not None:
            res.n_refresh = res.n_refresh + polished
    if refinement.fallback_max_iter > 0:
        fallback(res, batch, max_iter=refinement.fallback_max_iter, tol=refinement.fallback_tol)
    return res


def debias(res, batch, *, gamma, max_iter):
    """Algorithm 5's last step: the Oracle (Algorithm 1) on the estimated supports.

    With a ``measurement`` (non-identity phi; an identity phi arrives folded)
    the Oracle's Gauss-Newton starts from the pursuit's own z. Rows whose
    estimate already fits ``y`` to about ``sqrt(eps)`` (noiseless signals
    the pursuit recovered: residuals of 1e-13 to 1e-10 relative) take one
    step of iterative refinement of Algorithm 1's least squares instead
    (:func:`_refine_near_exact`), which reaches the same code to rounding
    without its SVDs (those were about half of Latent-Pursuit's time on 512
    clean ``fashion-mnist-fc`` signals). For a smooth phi (tanh, sigmoid)
    that least squares on ``phi^-1(y)`` is not the answer (saturated entries
    carry little of z through ``phi^-1``), so such rows run Gauss-Newton
    steps on their supports from the pursuit's z: in double precision with
    dense layers, the mixed-precision refinement
    (:func:`~skinvert.algorithms.polish.mixed_refinement`, the Jacobian from
    the single-precision map: 0.29-0.32 -> 0.19-0.24 s on 512 clean signals
    of a saturating tanh generator, as accurate), otherwise (and on its
    ill-conditioned rows) Algorithm 1's steps from z
    (``least_squares_start=False``). Where every entry is observed, a
    piecewise-linear phi's refinement step takes its normal equations from
    the shared ``W_L^T W_L`` (:func:`_image_normal_equations`).
    """
    xp = batch.xp
    todo = None
    if gamma == 0 and batch.measurement is None:
        near, loss = _near_exact(res.z, batch, xp)
        if bool(xp.any(near)):
            if batch.activation.piecewise_linear:
                res.z, ok = _refine_near_exact(res, batch, near, loss, xp)
            else:
                rest = near & ~_mixed_near_exact(res, batch, near, loss, xp)
                if bool(xp.any(rest)):
                    _debias_rows(res, batch, rest, gamma=gamma, max_iter=max_iter, from_z=True)
                ok = near
            todo = ~ok
            if not bool(xp.any(todo)):
                return
            if bool(xp.all(todo)):
                todo = None
    _debias_rows(res, batch, todo, gamma=gamma, max_iter=max_iter)


def _debias_rows(res, batch, rows, *, gamma, max_iter, from_z=False):
    """Algorithm 1 on the estimated supports of the rows ``rows`` (None: all).

    ``from_z``: start from the pursuit's z alone (rows that fit y to
    rounding, smooth phi), without the least squares on ``phi^-1(y)``.
    """
    xp = batch.xp
    part, supports, z0 = batch, res.supports, res.z
    if rows is not None:
        sub = compress_rows(rows, xp)
        part = batch.take(sub)
        supports = [xp.take(S, sub, axis=0) for S in supports]
        z0 = xp.take(z0, sub, axis=0)
    masks = [xp.astype(S, batch.dtype) for S in supports]
    meas = batch.measurement
    z, _, conv = oracle_end_to_end(
        part.Y,
        part.obs,
        batch.weights,
        batch.biases,
        batch.activation,
        masks,
        xp,
        gamma=gamma,
        max_iter=max_iter,
        measurement=meas,
        z0=z0 if (meas is not None or from_z) else None,
        least_squares_start=not from_z,
    )
    ok = xp.all(xp.isfinite(z), axis=1)
    z = xp.where(ok[:, None], z, z0)
    bad = ~conv & ok
    if rows is not None:
        z = scatter_rows(res.z, z, rows, xp)
        bad = scatter_rows(xp.zeros_like(rows), bad, rows, xp)
    res.z = z
    if max_iter > 0 and batch.activation.name != "identity":
        res.flag("debiasing", bad, xp)


def _near_exact(Z, batch, xp):
    """``(rows, loss)``: the rows whose estimate fits y to rounding level
    (:func:`~._batch.fits_to_rounding`), and the loss of every row."""
    loss = batch.loss(Z)
    return fits_to_rounding(loss, batch.Y, batch.obs, xp), loss


def _refine_near_exact(res, batch, near, loss, xp):
    """One step of iterative refinement of Algorithm 1's least squares on
    ``phi^-1(y)`` (its start, and its answer for noiseless signals) from the
    pursuit's z, on the rows ``near``: ``z + (A_w^T A_w)^-1 A_w^T r_w`` with
    ``A_w`` the weighted end-to-end map of the supports (eq. 3 with the
    masks fixed) and ``r_w`` the weighted residual. The correction is of the
    size of the residual, so solving it by the normal equations costs it only
    ``cond^2 eps`` of its own size: the result is the least squares to
    rounding, as the SVD gives it. ``loss`` is that of the current z, per
    row of the batch. Returns ``(Z, ok)``: ``ok`` marks the rows
    refined and kept (their loss did not grow); the others keep their z and
    go to Algorithm 1 itself, as do all rows when a system is singular (a
    code that is not unique, where Algorithm 1 takes the minimum-norm one).
    """
    sub, part, masks, z0 = _near_rows(res, batch, near, xp)
    T, w = inverse_target(part.Y, part.obs, batch.activation, xp)
    W = batch.weights
    shared = _shared_image_gram(batch, w, xp)
    # Blocks of rows (host_block_rows): the per-row (n, n_0) maps.
    n = W[-1].shape[0] if shared is None else 2 * W[-1].shape[1]
    dz = []
    for sl in row_blocks(z0.shape[0], host_block_rows(xp, z0.dtype, n * z0.shape[1])):
        ms, zs = [m[sl, ...] for m in masks], z0[sl, ...]
        if shared is None:
            A, c = affine_map(W, batch.biases, ms, xp, n_samples=zs.shape[0])
            Aw = w[sl, :, None] * A
            r = w[sl, ...] * (T[sl, ...] - c - matvec(A, zs, xp))
            gram = xp.matmul(xp.matrix_transpose(Aw), Aw)
            rhs = rmatvec(Aw, r, xp)
        else:
            gram, rhs = _image_normal_equations(batch, shared, ms, zs, T[sl, ...], xp)
        try:
            dz.append(xp.linalg.solve(gram, rhs[:, :, None])[:, :, 0])
        except np.linalg.LinAlgError:
            return res.z, xp.zeros_like(near)
    z1 = z0 + (dz[0] if len(dz) == 1 else xp.concat(dz))
    res.z, kept, loss = _keep_refined(res, near, sub, part, loss, z0, z1, None, xp)
    res.set_loss(loss)
    return res.z, kept


def _mixed_near_exact(res, batch, near, loss, xp):
    """The debiasing of the rows ``near`` (smooth phi) by
    :func:`~skinvert.algorithms.polish.mixed_refinement` (double precision,
    dense layers), in blocks of rows; returns the rows whose refined code was
    kept (well conditioned, finite, its loss not above ``loss``); the others
    keep their z for Algorithm 1 itself."""
    if batch.dtype != xp.float64 or batch.biases is None:
        return xp.zeros_like(near)
    sub, part, masks, z0 = _near_rows(res, batch, near, xp)
    W, n0 = batch.weights, z0.shape[1]
    parts = [
        mixed_refinement(z0[sl, ...], part.Y[sl, ...], part.obs[sl, ...], W, batch.biases,
                         batch.activation, [m[sl, ...] for m in masks], xp)
        for sl in row_blocks(z0.shape[0], host_block_rows(xp, xp.float32, W[-1].shape[0] * n0))
    ]
    z1, ok = concat_blocks(parts, xp)
    res.z, kept, loss = _keep_refined(res, near, sub, part, loss, z0, z1, ok, xp)
    res.set_loss(loss)
    return kept


def _near_rows(res, batch, near, xp):
    """``(sub, part, masks, z0)``: the indices of the rows ``near``, their
    batch, supports (float 0/1) and codes."""
    sub = compress_rows(near, xp)
    masks = [xp.astype(xp.take(S, sub, axis=0), batch.dtype) for S in res.supports]
    return sub, batch.take(sub), masks, xp.take(res.z, sub, axis=0)


def _keep_refined(res, near, sub, part, loss, z0, z1, ok, xp):
    """``(Z, kept, loss)``: the codes with the refined ``z1`` of the rows
    ``near`` where it is finite, its loss not above ``loss`` (and ``ok``,
    when given); ``kept`` marks those rows, the others keep ``z0``; the loss
    of every row at ``Z``."""
    l0, l1 = xp.take(loss, sub, axis=0), part.loss(z1)
    keep = xp.all(xp.isfinite(z1), axis=1) & (l1 <= l0)
    if ok is not None:
        keep = ok & keep
    z1 = xp.where(keep[:, None], z1, z0)
    return (
        scatter_rows(res.z, z1, near, xp),
        scatter_rows(xp.zeros_like(near), keep, near, xp),
        scatter_rows(loss, xp.where(keep, l1, l0), near, xp),
    )


def _shared_image_gram(batch, w, xp):
    """``W_L^T W_L`` where every row of a batch keeps every equation
    (``w`` all 1: no missing entry, a piecewise-linear phi) of a dense
    generator whose image layer is taller than wide; else None."""
    W = batch.weights
    if batch.biases is None or len(W) < 2 or W[-1].shape[0] <= W[-1].shape[1]:
        return None
    if not bool(xp.all(w == 1)):
        return None
    return batch.image_gram()


def _image_normal_equations(batch, K, masks, Z, T, xp):
    """``(A_S^T A_S, A_S^T (T - A_S z - c_S))`` of the rows ``Z`` without
    ``A_S`` itself: with ``A_S = W_L P`` (``P`` the map of the last hidden
    layer on its support), ``A_S^T A_S = P^T K P`` from the shared ``K =
    W_L^T W_L``, an ``(n_L, n_L)`` product per row where ``A_S`` takes an
    ``(n, n_L)`` one (``fashion-mnist-fc``: 392 against 784), and the
    residual comes from the last hidden layer at ``Z``."""
    W, b = batch.weights, batch.biases
    A_h, c_h = supported_affine_maps(W[:-1], b[:-1], masks[:-1], xp, n_samples=Z.shape[0])[-1]
    D = masks[-1]
    P = D[:, :, None] * A_h
    x = D * (matvec(A_h, Z, xp) + c_h)  # the last hidden layer at Z, on its support
    r = T - (x @ xp.matrix_transpose(W[-1]) + b[-1])
    gram = xp.matmul(xp.matrix_transpose(P), shared_left_matmul(K, P, xp))
    return gram, rmatvec(P, r @ W[-1], xp)


def refresh(res, batch, *, gamma, max_iter, debias_max_iter, warm=False, pre=None):
    """Support refresh after the debiasing.

    Re-run Algorithm 1 on the supports of ``G(z_hat)`` itself, up to
    ``max_iter`` times, on the rows whose forward supports differ from those
    the last Oracle step used; a row keeps the new estimate only when it
    lowers the loss of eq. 1. A fixed point is a ``z`` whose own supports
    give it back: a stationary point of eq. 1 on that linear region, i.e. the
    Oracle's estimate (Theorem 3) once the supports are right. Noiseless rows
    the pursuit recovered are fixed points already. With ``warm`` (and with a
    measurement, where phi^-1 does not apply) each Oracle step may start
    from the current estimate instead of the least squares on ``phi^-1(y)``
    (whichever fits better): the polish of noisy rows of a saturating phi,
    whose least-squares start is poor. ``pre``: the hidden pre-activations
    at ``res.z`` when the caller has them.
    """
    xp = batch.xp
    meas = batch.measurement
    warm = warm or meas is not None
    masks = [xp.astype(S, batch.dtype) for S in res.supports]
    z = res.z
    loss = res.known_loss() if gamma == 0 else None
    active = xp.ones((z.shape[0],), dtype=xp.bool, device=device(z))
    rounds = xp.zeros((z.shape[0],), dtype=xp.int64, device=device(z))
    for _ in range(max_iter):
        if pre is None:  # (the caller's, for the first round: those of res.z)
            pre, _ = forward_preactivations(z, batch.weights, batch.biases, xp)
        new = [xp.astype(u > 0, z.dtype) for u in pre]
        changed = xp.zeros_like(active)
        for m, m_new in zip(masks, new, strict=True):
            changed = changed | xp.any(m != m_new, axis=1)
        changed = changed & active
        if not bool(xp.any(changed)):
            break
        sub = compress_rows(changed, xp)
        part = batch.take(sub)
        ms = [xp.take(m, sub, axis=0) for m in new]
        zs, _, _ = oracle_end_to_end(
            part.Y,
            part.obs,
            batch.weights,
            batch.biases,
            batch.activation,
            ms,
            xp,
            gamma=gamma,
            max_iter=debias_max_iter,
            measurement=meas,
            z0=xp.take(z, sub, axis=0) if warm else None,
        )
        ls = part.loss(zs, gamma)
        # The loss of the rows' current codes: known from the debiasing, or
        # computed where a support changed (most noiseless rows are fixed
        # points: no forward pass for them).
        z_sub = xp.take(z, sub, axis=0)
        old = part.loss(z_sub, gamma) if loss is None else xp.take(loss, sub, axis=0)
        better = xp.isfinite(ls) & (ls < old)
        z = scatter_rows(z, xp.where(better[:, None], zs, z_sub), changed, xp)
        if loss is not None:
            loss = scatter_rows(loss, xp.where(better, ls, old), changed, xp)
        masks = [xp.where(changed[:, None], m_new, m) for m, m_new in zip(masks, new, strict=True)]
        # Rows already at a fixed point, or that did not improve, stop.
        active = scatter_rows(xp.zeros_like(active), better, changed, xp)
        rounds = rounds + xp.astype(active, xp.int64)
        res.mark("refresh", active)
        pre = None
    if z is not res.z:
        res.z = z
        if loss is not None:
            res.set_loss(loss)
    res.n_refresh = rounds


#: Gauss-Newton steps of :func:`polish_refresh` per ``refresh_max_iter``
#: (10 refreshes: the polish's 50 steps).
POLISH_STEPS_PER_REFRESH = 5


def polish_refresh(res, batch, *, max_iter):
    """The support refresh of noiseless rows: the fixed-support polish.

    The rows whose forward supports (those of ``G(z_hat)``) differ from the
    ones the debiasing used continue with
    :func:`~skinvert.algorithms.polish.polish_batch` from ``z_hat``:
    Gauss-Newton / Levenberg-Marquardt steps on the current supports, each
    followed by the supports of the new code, in mixed precision where the
    rows are well conditioned, until a support fixed point or ``max_iter``
    steps; a row keeps the result where it lowers the loss of eq. 1. The
    fixed point is :func:`refresh`'s (a code whose own supports give it
    back, the Oracle's estimate there), without an Algorithm 1 run per
    support change. Only rows with every entry observed, and only the codes
    at a support fixed point whose least squares is well posed (below); the
    other rows are left to the rounds of Algorithm 1 that follow
    (:func:`refresh`). Returns the polish's steps of the rows it moved (B,),
    0 elsewhere (the caller adds them to ``res.n_refresh``), and the hidden
    pre-activations at the new ``res.z`` (for the rounds' first one).
    """
    xp = batch.xp
    z = res.z
    B = z.shape[0]
    steps_all = xp.zeros((B,), dtype=xp.int64, device=device(z))
    pre, _ = forward_preactivations(z, batch.weights, batch.biases, xp)
    changed = xp.zeros((B,), dtype=xp.bool, device=device(z))
    for S, u in zip(res.supports, pre, strict=True):
        changed = changed | xp.any(xp.astype(S, xp.bool) != (u > 0), axis=1)
    # Rows with missing entries keep the rounds of Algorithm 1: where they
    # leave the code under-determined, its least squares takes the
    # minimum-norm code, whereas the polish's steps could drift along the
    # flat directions (a fuzzed row with 90 % of its entries missing reached
    # |z| = 5e7).
    changed = changed & xp.all(batch.obs > 0, axis=1)
    if not bool(xp.any(changed)):
        return steps_all, pre
    sub = compress_rows(changed, xp)
    part = batch.take(sub)
    z0 = xp.take(z, sub, axis=0)
    known = res.known_loss()
    old = part.loss(z0) if known is None else xp.take(known, sub, axis=0)
    zs, ls, n_iter, fixed, gram = polish_batch(
        z0, part.Y, part.obs, batch.weights, batch.biases, batch.activation, xp,
        measurement=batch.measurement, max_iter=max_iter, return_gram=True,
    )
    # Its code is kept where the polish stopped at a support fixed point with
    # a well-posed least squares there; on the other rows the rounds of
    # Algorithm 1 that follow take the minimum-norm code.
    better = well_posed_fixed_points(fixed, gram, ls, xp, z.dtype) & (ls < old)
    res.z = scatter_rows(z, xp.where(better[:, None], zs, z0), changed, xp)
    if known is not None:
        res.set_loss(scatter_rows(known, xp.where(better, ls, old), changed, xp))
    moved = scatter_rows(xp.zeros_like(changed), better, changed, xp)
    steps = xp.astype(n_iter, xp.int64)
    # The moved rows' supports become their codes' own, so that the rounds
    # that follow (:func:`refresh`) see the rows at a fixed point as such;
    # the pre-activations change only on the rows the polish took.
    pre_sub, _ = forward_preactivations(xp.take(res.z, sub, axis=0), batch.weights,
                                        batch.biases, xp)
    pre_new = [scatter_rows(u, u_s, changed, xp) for u, u_s in zip(pre, pre_sub, strict=True)]
    res.supports = [
        xp.where(moved[:, None], xp.astype(u > 0, S.dtype), S)
        for S, u in zip(res.supports, pre_new, strict=True)
    ]
    res.mark("refresh", moved)
    steps = scatter_rows(steps_all, xp.where(better, steps, xp.zeros_like(steps)), changed, xp)
    return steps, pre_new


def finish_refresh(res, batch, *, gamma, max_iter):
    """Algorithm 1 to convergence on the rows the refresh moved.

    A refresh round with few Levenberg-Marquardt iterations (``Refinement.
    refresh_step_iter``) lowers the loss and reaches the next support region
    without converging in it; this step runs Algorithm 1 with ``max_iter``
    iterations on the supports of each moved row's own ``G(z_hat)``,
    starting from ``z_hat`` (or the least squares on ``phi^-1(y)`` where that
    fits better), and keeps it where it lowers the loss. Rows the refresh
    did not move keep the debiasing's estimate; on the moved rows the
    "debiasing" convergence flag is this step's.
    """
    xp = batch.xp
    moved = res.n_refresh > 0
    if not bool(xp.any(moved)):
        return
    sub = compress_rows(moved, xp)
    part = batch.take(sub)
    z0 = xp.take(res.z, sub, axis=0)
    pre, _ = forward_preactivations(z0, batch.weights, batch.biases, xp)
    zs, _, conv = oracle_end_to_end(
        part.Y,
        part.obs,
        batch.weights,
        batch.biases,
        batch.activation,
        [xp.astype(u > 0, z0.dtype) for u in pre],
        xp,
        gamma=gamma,
        max_iter=max_iter,
        measurement=batch.measurement,
        z0=z0,
    )
    ls = part.loss(zs, gamma)
    better = xp.isfinite(ls) & (ls < part.loss(z0, gamma))
    res.z = scatter_rows(res.z, xp.where(better[:, None], zs, z0), moved, xp)
    # The moved rows' estimates are this step's: its convergence, not the
    # debiasing's (on wrong supports), is what their flag reports.
    res.unflag("debiasing", moved, xp)
    res.flag("debiasing", scatter_rows(xp.zeros_like(moved), ~conv, moved, xp), xp)


def fallback(res, batch, *, max_iter, tol):
    """Gradient descent on eq. 1 for the rows the layers did not determine.

    A hybrid step (the paper's section 6.1 outlook): rows whose final
    estimate fits the signal much worse than their image-layer estimate does
    (loss above 10 times the image layer's, and above ``tol`` relative), e.g.
    a hidden layer wider than the signal, where eq. 8 alone has many
    non-negative solutions, continue with gradient descent on eq. 1 from the
    pursuit's estimate; a row keeps whichever estimate has the lower loss.
    """
    xp = batch.xp
    Y, obs, meas = batch.Y, batch.obs, batch.measurement
    loss = res.known_loss()
    if loss is None:
        loss = batch.loss(res.z)
    energy = 0.5 * xp.sum((obs * Y) ** 2, axis=1)
    floor = tol**2 * xp.where(energy > 0, energy, xp.ones_like(energy))
    if not bool(xp.any(loss > floor)):
        return  # every row fits to tol (the image layer's term only raises the floor)
    if res.hidden:
        # The image layer alone fits the signal this well; a final estimate
        # far worse than that means the layers below were not determined
        # (e.g. eq. 8 with many non-negative solutions). Noise alone does not
        # trigger the fallback: it limits both fits alike.
        out = batch.activation(res.hidden[-1] @ batch.weights[-1].T + batch.biases[-1], xp)
        R = obs * ((out if meas is None else meas.forward(out)) - Y)
        floor = floor + 10.0 * 0.5 * xp.sum(R * R, axis=1)
    bad = loss > floor
    if not bool(xp.any(bad)):
        return
    sub = compress_rows(bad, xp)
    Z0, Ys, Os = (xp.take(a, sub, axis=0) for a in (res.z, Y, obs))
    Zg, lg, _, conv = momentum_descent(
        Z0,
        Ys,
        Os,
        batch.weights,
        batch.biases,
        batch.activation,
        xp,
        max_iter=max_iter,
        measurement=meas,
    )
    better = lg < xp.take(loss, sub, axis=0)
    Zb = xp.where(better[:, None], Zg, Z0)
    res.z = scatter_rows(res.z, Zb, bad, xp)
    res.mark("fallback", scatter_rows(xp.zeros_like(bad), better, bad, xp))
    res.flag("the gradient-descent fallback", scatter_rows(xp.zeros_like(bad), ~conv, bad, xp), xp)


def descent_polish(batch, Z0, gamma=0.0, *, attempt=0, max_iter=300, n_starts=8, round_iter=6):
    """Continue rows from ``Z0`` on eq. 1 itself: multi-start gradient
    descent, each start finished by the exact polish.

    Gradient descent (:func:`~.gradient_descent.momentum_descent`) moves
    across the boundaries of the linear regions that the support-wise
    Oracle steps cannot cross; it starts from ``Z0`` and from ``n_starts``
    codes drawn from the prior ``N(0, I)`` (seeded by ``attempt``:
    deterministic, and the same for every row, so a row's result does not
    depend on its batch), since a row whose layer-wise estimate is far off
    is usually in another basin; attempt ``a`` runs ``3^a max_iter`` steps
    from new starts. Every start is finished twice, by the exact polish
    (:func:`~skinvert.algorithms.polish.polish_batch`: Algorithm 1's
    Gauss-Newton on the supports of its own iterate, refreshed each step)
    and by Algorithm 1 on the supports it reached followed by the warm
    :func:`refresh` (for a smooth phi ``round_iter`` Levenberg-Marquardt
    iterations per round, then :func:`finish_refresh`); a row keeps the
    lowest loss. Used on the
    few rows whose loss stays inconsistent with the noise
    (:func:`~skinvert.algorithms.noise.settle_noisy_rows`), so its
    ``(n_starts + 1)``-fold cost is paid on those rows only.
    """
    import numpy as np

    from .._array_api import as_namespace

    xp = batch.xp
    B, n0 = Z0.shape
    # The same n_starts draws for every row (a row's result must not depend
    # on its batch: one draw per row and start made row i's starts depend on
    # B and on its position).
    draws = np.random.default_rng(attempt).standard_normal((n_starts, n0))
    codes = as_namespace(draws, xp, dtype=Z0.dtype, device=device(Z0))
    starts = xp.concat([Z0] + [xp.broadcast_to(codes[k : k + 1, :], (B, n0))
                               for k in range(n_starts)], axis=0)
    big = batch.take(xp.concat([xp.arange(B, device=device(Z0))] * (n_starts + 1), axis=0))
    net = (batch.weights, batch.biases, batch.activation, xp)
    Zg, _, _, _ = momentum_descent(
        starts,
        big.Y,
        big.obs,
        *net,
        alpha=gamma,
        max_iter=max_iter * 3**attempt,
        measurement=batch.measurement,
    )
    Zp, lp, _, _ = polish_batch(
        Zg, big.Y, big.obs, *net, measurement=batch.measurement, gamma=gamma
    )
    # Also Algorithm 1 on the supports of the descent point, then the warm
    # refresh: it reaches regions the step-wise polish does not, and the
    # converse (measured on saturating tanh rows).
    from ._batch import PursuitResult

    res = PursuitResult()
    res.z = Zg
    pre, _ = forward_preactivations(Zg, batch.weights, batch.biases, xp)
    res.supports = [u > 0 for u in pre]
    debias(res, big, gamma=gamma, max_iter=30)
    if batch.activation.piecewise_linear:
        round_iter = 30  # (the rounds of a piecewise-linear phi are unchanged)
    refresh(res, big, gamma=gamma, max_iter=10, debias_max_iter=round_iter, warm=True)
    if round_iter < 30:
        finish_refresh(res, big, gamma=gamma, max_iter=30)
    Zp = xp.concat([Zp, res.z], axis=0)
    lp = xp.concat([lp, big.loss(res.z, gamma)], axis=0)
    lp = xp.where(xp.isfinite(lp), lp, xp.full_like(lp, float("inf")))
    best, best_l = Zp[:B, :], lp[:B]
    for k in range(1, 2 * (n_starts + 1)):
        lk, zk = lp[k * B : (k + 1) * B], Zp[k * B : (k + 1) * B, :]
        take = lk < best_l
        best = xp.where(take[:, None], zk, best)
        best_l = xp.where(take, lk, best_l)
    return best
