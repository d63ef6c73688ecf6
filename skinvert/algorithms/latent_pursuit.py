"""Latent-Pursuit (Algorithm 5) and Layered Basis-Pursuit (Algorithm 2).

Both invert the generator layer by layer, from the image back to z:

- image layer ``x_L``: eq. 8 (Latent-Pursuit, non-negative) or the lasso of
  Algorithm 2's first step (Layered BP, signed);
- middle layers ``x_i``, ``i = L-1..1``: eq. 9 (rows ``S_{i+1}`` as equations,
  ``x >= 0`` and ``W_i^{S^c} x + b_i^{S^c} <= 0``) or Algorithm 2's lasso on the
  rows ``S_{i+1}``;
- latent ``z``: eq. 16 (ridge ``gamma``, inequality constraints) or
  Algorithm 2's final least squares;
- optional debiasing: Algorithm 1 (the Oracle) on the estimated supports.

Two solver families (``solver``):

``"active_set"`` (default, exact)
    Every layer problem is written in Gram form and solved by
    :func:`~skinvert.algorithms.sparse_coding.active_set_refine`, started from
    the unconstrained least squares (rows with at least as many equations as
    unknowns) or from FISTA (the others). Supports are those of the exact
    solution. The image layer of eq. 8 is solved in the pre-activation domain
    ``u = phi^-1(y)`` (missing and saturated entries dropped): for a signal in
    phi's range without noise this has the same minimiser as eq. 8, and the
    debiasing step then minimises the loss through phi itself. An inequality
    ``W_j x + b_j <= 0`` that the solution violates is added as the equation
    ``W_j x + b_j = 0`` and the layer solved again (an active-set step on the
    constraints), up to ``constraint_max_iter`` times.
``"paper"``
    The paper's first-order solvers as written: FISTA on eq. 8 through phi
    (Algorithm 3), linearized ADMM on eq. 9 (Algorithm 4, eqs. 13-15) and its
    z-step eq. 18; supports are then decided with ``support_tol``.
"""

from dataclasses import dataclass, replace

from .._array_api import device
from .._linalg import row_weighted_gram
from .oracle import inverse_target, oracle_end_to_end
from .nnls import nnls_lawson_hanson
from .sparse_coding import (
    active_set_refine,
    compress_rows,
    fista,
    masked_gram_solve,
    objective,
    scatter_rows,
)

__all__ = ["NoiseRule", "PursuitOptions", "noise_gains", "pursuit"]


@dataclass
class PursuitOptions:
    """Options of :func:`pursuit` (see the estimators for their meaning)."""

    nonneg: bool = True  # Latent-Pursuit (True) or Layered BP (False)
    constraints: bool = True  # the ReLU inequality constraints of eq. 9 / 16
    solver: str = "active_set"
    lam: tuple = (0.0,)  # one per hidden layer x_1..x_L (index i-1), floats or (B,) arrays
    rho: tuple = (1e-2,)  # one per constrained unknown: z (0), x_1..x_{L-1}
    gamma: float = 0.0
    support_tol: float = 1e-6
    max_iter: int = 1000
    tol: float = 1e-10
    refine_max_iter: int = 30
    constraint_max_iter: int = 5
    debias: bool = True
    debias_max_iter: int = 30
    epsilon: float = None  # noise bound ||e||_2 <= epsilon: Algorithm 2's lambda rule
    noise_std: float = None  # std of iid noise on y: NoiseRule's thresholds and lambdas
    noise_gain: tuple = None  # NoiseRule's per-layer gains g_i (noise_gains), i = 0..L
    noise_c: float = 1.0  # support threshold in error standard deviations
    noise_retries: tuple = (3.0, 0.5, 6.0, 2.0, 10.0)  # noise_c scalings tried on rows that fit badly
    noise_retry_sd: float = 10.0  # "badly": loss this many chi^2 deviations above its mean
    refresh_max_iter: int = 0  # support refreshes of the debiasing (supports of G(z_hat))
    lipschitz: tuple = None  # lambda_max(W_i^T W_i), i = 0..L (computed when None)
    fallback_max_iter: int = 0  # gradient-descent steps for rows the pursuit did not fit
    fallback_tol: float = 1e-6  # relative residual above which a row falls back


class PursuitResult:
    """Estimates of a batch: ``z``, hidden layers, supports and stage counts."""

    def __init__(self):
        self.z = None
        self.hidden = []
        self.supports = []
        self.not_converged = {}

    def count(self, stage, converged, xp):
        bad = int(xp.sum(xp.astype(~converged, xp.int32)))
        self.not_converged[stage] = self.not_converged.get(stage, 0) + bad


def _lipschitz(W, xp):
    """``lambda_max(W^T W)`` (the step bound shared by every row)."""
    return float(xp.max(xp.linalg.eigvalsh(W.T @ W)))


def _row_gram(W, w, xp):
    """Per-row Gram matrices ``W^T diag(w) W`` (B, k, k), or shared ``W^T W`` if
    every weight is one."""
    if w is None:
        return W.T @ W
    return row_weighted_gram(W, w, xp)


def _support(x, tol, xp, nonneg, floor=None):
    """Entries above ``tol`` times the row's largest entry (``tol`` is raised to
    ``10 sqrt(eps)`` in single precision, where rounding alone reaches 1e-6),
    and above ``floor`` (B,) when given (the noise rule's threshold)."""
    tol = max(tol, 10.0 * float(xp.finfo(x.dtype).eps) ** 0.5) if x.dtype == xp.float32 else tol
    mag = x if nonneg else xp.abs(x)
    top = xp.max(mag, axis=1, keepdims=True)
    S = mag > tol * xp.where(top > 0, top, xp.ones_like(top))
    if floor is not None:
        S = S & (mag > floor[:, None])
    return S


def _solve_layer(W, t, w, lam, opts, xp, res, stage, *, lipschitz):
    """Solve ``min 1/2 ||sqrt(w) (W x - t)||^2 + lam pen(x)`` exactly.

    ``w`` (B, m) are 0/1 row weights (None: all rows). Rows with at least as
    many equations as unknowns ("tall") start from the least-squares solution
    (one shared solve when the Gram matrix is shared) and are refined by the
    primal-dual active-set iteration. The other rows: for the non-negative
    problems of eqs. 8-9, the Lawson-Hanson method (exact and finite where
    ``G`` is singular), which also takes over the tall rows the active-set
    iteration did not settle; for the signed lasso of Algorithm 2, FISTA
    then the active-set iteration. Returns x (B, k).
    """
    B = t.shape[0]
    k = W.shape[1]
    dt = t.dtype
    r = (t if w is None else w * t) @ W
    G = _row_gram(W, w, xp)
    lam_c = lam if isinstance(lam, (int, float)) else lam[:, None]
    if w is None:
        tall = xp.full((B,), W.shape[0] >= k, dtype=xp.bool, device=device(t))
    else:
        tall = xp.sum(w, axis=1) >= k
    x = xp.zeros((B, k), dtype=dt, device=device(t))
    if bool(xp.any(tall)):
        shift = lam_c if opts.nonneg else 0.0
        ones = xp.ones((B, k), dtype=dt, device=device(t))
        x = xp.where(tall[:, None], masked_gram_solve(G, r - shift, ones, xp), x)
    if opts.nonneg:
        conv = xp.zeros((B,), dtype=xp.bool, device=device(t))
        if bool(xp.any(tall)):
            conv = _refine_rows(G, r, lam, x, tall, opts, xp)
            x = conv[1]
            conv = conv[0]
        if not bool(xp.all(conv)):
            # Wide rows and tall rows the active-set iteration did not settle
            # (G singular or badly conditioned): Lawson-Hanson.
            x, conv = _lawson_hanson_rows(
                G, r, lam, w, W.shape[0], x, conv, xp, max_iter=10 * opts.refine_max_iter
            )
        res.count(stage, conv, xp)
        return x
    if not bool(xp.all(tall)):
        sub = compress_rows(~tall, xp)
        Gs = G if G.ndim == 2 else xp.take(G, sub, axis=0)
        lam_s = lam if isinstance(lam, (int, float)) else xp.take(lam, sub, axis=0)
        rs = xp.take(r, sub, axis=0)
        xf, _, _ = fista(
            Gs, rs, lam_s, xp.zeros_like(rs), xp, nonneg=False, lipschitz=lipschitz,
            max_iter=opts.max_iter, tol=opts.tol,
        )
        x = scatter_rows(x, xf, ~tall, xp)
    x, conv = active_set_refine(G, r, lam, x, xp, nonneg=False, max_iter=opts.refine_max_iter)
    res.count(stage, conv, xp)
    return x


def _refine_rows(G, r, lam, x, rows, opts, xp):
    """Active-set refinement (non-negative) of the ``rows`` of ``x``; returns
    ``(converged, x)``, converged False off ``rows``."""
    if bool(xp.all(rows)):
        x_new, conv = active_set_refine(G, r, lam, x, xp, nonneg=True, max_iter=opts.refine_max_iter)
        return conv, x_new
    sub = compress_rows(rows, xp)
    Gs = G if G.ndim == 2 else xp.take(G, sub, axis=0)
    lam_s = lam if isinstance(lam, (int, float)) else xp.take(lam, sub, axis=0)
    xs, cs = active_set_refine(
        Gs, xp.take(r, sub, axis=0), lam_s, xp.take(x, sub, axis=0), xp, nonneg=True,
        max_iter=opts.refine_max_iter,
    )
    conv = scatter_rows(xp.zeros_like(rows), cs, rows, xp)
    return conv, scatter_rows(x, xs, rows, xp)


def _lawson_hanson_rows(G, r, lam, w, m, x, conv, xp, *, max_iter):
    """Re-solve the rows not ``conv`` by :func:`nnls_lawson_hanson`; a row
    keeps the new solution when it converged or lowered the objective."""
    bad = ~conv
    sub = compress_rows(bad, xp)
    Gs = G if G.ndim == 2 else xp.take(G, sub, axis=0)
    rs = xp.take(r, sub, axis=0)
    lam_s = lam if isinstance(lam, (int, float)) else xp.take(lam, sub, axis=0)
    rank = m if w is None else xp.take(xp.sum(w, axis=1), sub, axis=0)
    x_lh, conv_lh = nnls_lawson_hanson(Gs, rs, lam_s, xp, rank=rank, max_iter=max_iter)
    x_old = xp.take(x, sub, axis=0)
    f_old = objective(Gs, rs, lam_s, x_old, xp, nonneg=True)
    f_new = objective(Gs, rs, lam_s, x_lh, xp, nonneg=True)
    if not bool(xp.all(conv_lh)) and max_iter > 0:
        # lam > 0 with a rank-deficient G (see nnls_lawson_hanson): finish
        # from the Lawson-Hanson point with the active-set refinement.
        x_ref, conv_ref = active_set_refine(Gs, rs, lam_s, x_lh, xp, nonneg=True, max_iter=max_iter)
        f_ref = objective(Gs, rs, lam_s, x_ref, xp, nonneg=True)
        use = ~conv_lh & (conv_ref | (f_ref < f_new))
        x_lh = xp.where(use[:, None], x_ref, x_lh)
        f_new = xp.where(use, f_ref, f_new)
        conv_lh = conv_lh | (use & conv_ref)
    take = conv_lh | (f_new < f_old)
    x_s = xp.where(take[:, None], x_lh, x_old)
    return scatter_rows(x, x_s, bad, xp), scatter_rows(conv, conv_lh, bad, xp)


def _violations(W, b, x, rows, xp):
    """Entries ``j`` off ``rows`` where ``W_j x + b_j > 0`` beyond rounding."""
    u = x @ W.T + b
    scale = xp.max(xp.abs(u), axis=1, keepdims=True) + 1.0
    eps = float(xp.finfo(x.dtype).eps)
    return (u > 1e3 * eps * scale) & (rows == 0)


def _constrained_layer(W, b, target, rows, lam, opts, xp, res, stage, *, lipschitz, ridge=0.0):
    """Eq. 9 / eq. 16 by the exact path: equations on ``rows``, inequalities off them."""
    if ridge:
        # Eq. 16: gamma ||z||^2 as k extra equations sqrt(gamma) z = 0.
        k = W.shape[1]
        eye = xp.eye(k, dtype=W.dtype, device=device(W))
        W_aug = xp.concat([W, (ridge**0.5) * eye], axis=0)
        B = target.shape[0]
        zeros = xp.zeros((B, k), dtype=target.dtype, device=device(target))
        ones = xp.ones((B, k), dtype=target.dtype, device=device(target))
        b_aug = xp.concat([b, xp.zeros((k,), dtype=b.dtype, device=device(b))])
        t_aug = xp.concat([target, zeros], axis=1)
        r_aug = xp.concat([rows, ones], axis=1)
        return _constrained_layer(
            W_aug, b_aug, t_aug, r_aug, lam, opts, xp, res, stage, lipschitz=lipschitz + ridge
        )
    w = rows
    x = _solve_layer(W, target - b, w, lam, opts, xp, res, stage, lipschitz=lipschitz)
    if not opts.constraints:
        return x
    for _ in range(opts.constraint_max_iter):
        viol = _violations(W, b, x, w, xp)
        bad = xp.any(viol, axis=1)
        if not bool(xp.any(bad)):
            break
        w = xp.where(viol, xp.ones_like(w), w)
        sub = compress_rows(bad, xp)
        lam_s = lam if isinstance(lam, (int, float)) else xp.take(lam, sub, axis=0)
        x_bad = _solve_layer(
            W, xp.take(target, sub, axis=0) - b, xp.take(w, sub, axis=0), lam_s, opts, xp,
            res, stage, lipschitz=lipschitz,
        )
        x = scatter_rows(x, x_bad, bad, xp)
    return x


class EpsilonRule:
    """Algorithm 2's lambda schedule from a noise bound ``||e||_2 <= epsilon``.

    ``epsilon_{L+1} = ell * epsilon`` with ``ell`` the Lipschitz constant of
    phi^-1 over each sample's observed values; ``lambda_i = 2 epsilon_{i+1}``
    and, once ``x_i`` is estimated, ``epsilon_i = (3 + sqrt(1.5)) sqrt(s_i) /
    min_j ||w_{i,j}^{S_{i+1}}||_2 * epsilon_{i+1}`` (Theorem 2, eqs. 29-31),
    with ``s_i`` the size of the estimated support (per sample).
    """

    C = 3.0 + 1.5**0.5

    def __init__(self, epsilon, Y, obs, activation, xp):
        self.xp = xp
        U = activation.inverse(Y, xp)
        ok = (obs > 0) & ~xp.isnan(U)
        d = activation.derivative(xp.where(ok, U, xp.zeros_like(U)), xp)
        inv = xp.where(ok, 1.0 / xp.where(d > 0, d, xp.ones_like(d)), xp.zeros_like(d))
        ell = xp.max(inv, axis=1)
        self.eps = epsilon * ell  # (B,)

    def lam(self):
        return 2.0 * self.eps

    def update(self, W, rows, S):
        xp = self.xp
        W2 = W * W
        col_sq = xp.sum(W2, axis=0)[None, :] if rows is None else rows @ W2
        min_norm = xp.sqrt(xp.min(col_sq, axis=1))
        s = xp.sum(xp.astype(S, W.dtype), axis=1)
        tiny = xp.finfo(W.dtype).tiny
        self.eps = self.C * xp.sqrt(s) / xp.clip(min_norm, min=tiny) * self.eps


def noise_gains(weights):
    """Per-layer noise gains ``g_i`` of :class:`NoiseRule`, i = 0..L.

    ``g_i = sqrt(mean_j 1 / lambda_j)`` over the ``k = min(n_i, ceil(n_{i+1}/2))``
    largest eigenvalues of ``W_i^T W_i / 2``: the root-mean-square error gain of
    the least squares of ``x_i`` from a target with unit iid noise on the
    rows of a support holding about half of the ``n_{i+1}`` entries (Theorem 3,
    eq. 21, with ``trace((Wbar^T Wbar)^-1) / s`` in place of its bounds; half
    the rows halve the Gram matrix). Computed once per generator.
    """
    import numpy as np

    from .._array_api import to_numpy

    gains = []
    for W in weights:
        W = np.asarray(to_numpy(W), dtype=np.float64)
        ev = np.sort(np.linalg.eigvalsh(W.T @ W))[::-1]
        k = max(1, min(W.shape[1], -(-W.shape[0] // 2)))
        top = np.clip(ev[:k] / 2.0, np.finfo(np.float64).tiny, None)
        gains.append(float(np.sqrt(np.mean(1.0 / top))))
    return tuple(gains)


class NoiseRule:
    """Support thresholds from the noise level ``noise_std`` of ``y``.

    ``y = G(z) + e`` with ``e ~ N(0, noise_std^2 I)`` on the observed entries.
    The image-layer target ``u = phi^-1(y)`` then carries noise of standard
    deviation ``noise_std / phi'(u_k)`` on entry ``k``, of per-sample RMS
    ``delta_{L+1} = noise_std * sqrt(mean_k phi'(u_k)^-2)`` (``ell`` of
    eq. 7 in RMS rather than worst case). Each layer estimate multiplies the
    error by its gain (:func:`noise_gains`): ``delta_i = g_i delta_{i+1}``,
    the RMS error of ``x_i`` on its support expected from Theorem 3
    (eq. 21). The support of ``x_i`` is then
    ``S_i = {k : x_i[k] > noise_c * delta_i}``: an entry within the error
    level of 0 is not trusted as an equation for the layer below. It becomes
    one of eq. 9's ReLU inequalities instead, which is right for a spurious
    entry (its true pre-activation is negative, often far below 0, so the
    equation ``W_k x + b_k = x_hat_k ~ 0`` would pull the layer below far
    off) and costs about the threshold for a small true one, which the
    support refresh of the debiasing (:func:`_refresh`) then recovers.
    """

    def __init__(self, noise_std, U, w, activation, opts, xp):
        d = activation.derivative(U, xp)
        ok = w > 0
        inv2 = xp.where(ok, 1.0 / xp.where(d > 0, d * d, xp.ones_like(d)), xp.zeros_like(d))
        # Median over the usable entries (missing ones sort last): robust to
        # the few nearly saturated entries of tanh / sigmoid.
        n_ok = xp.sum(xp.astype(ok, xp.int64), axis=1)
        srt = xp.sort(xp.where(ok, inv2, xp.full_like(inv2, float("inf"))), axis=1)
        mid = xp.take_along_axis(srt, xp.clip(n_ok // 2, max=U.shape[1] - 1)[:, None], axis=1)[:, 0]
        self.delta = noise_std * xp.sqrt(mid)  # delta_{L+1}, (B,)
        self.gains = opts.noise_gain
        self.c = opts.noise_c

    def floor(self, i):
        """Advance to x_i's error level and return its support threshold (B,)."""
        self.delta = self.gains[i] * self.delta
        return self.c * self.delta


def _lam(opts, i):
    """lambda of the hidden layer x_{i+1}."""
    return opts.lam[min(i, len(opts.lam) - 1)]


def pursuit(Y, obs, weights, biases, activation, xp, opts, measurement=None):
    """Run Latent-Pursuit / Layered BP on a batch.

    Parameters
    ----------
    Y : array (B, n)
        Signals with missing entries set to 0 (with a ``measurement``: the
        measurements, (B, m)).
    obs : array (B, n)
        1.0 on observed entries.
    weights, biases : lists of arrays in ``xp``
    activation : Activation
    opts : PursuitOptions
    measurement : Measurement or None
        Linear measurements ``y = A G(z)``. With an identity phi, A is folded
        into the last layer (``W_L <- A W_L``, ``b_L <- A b_L``) and the
        pursuit runs unchanged on the folded generator. With a
        piecewise-linear phi the image layer is solved by
        :func:`_measured_image_layer` (an active set on phi's regions) and the
        debiasing minimises ``||obs * (y - A phi(.))||`` by Gauss-Newton.

    Returns
    -------
    PursuitResult
    """
    if measurement is not None and activation.name == "identity":
        weights, biases, opts = _fold_measurement(weights, biases, measurement, opts, xp)
        measurement = None
    if measurement is not None and not activation.piecewise_linear:
        raise ValueError(
            f"A measurement with a {activation.name} output is not supported by the "
            "pursuits (phi is not piecewise linear); use GradientDescentInverter."
        )
    if measurement is not None and opts.solver == "paper":
        raise ValueError(
            "solver='paper' supports a measurement with an identity output only; use "
            "solver='active_set'."
        )
    if opts.solver == "paper":
        from .first_order import paper_pursuit

        return paper_pursuit(Y, obs, weights, biases, activation, xp, opts)
    if measurement is not None and opts.noise_std is not None:
        raise ValueError(
            "noise_std (support thresholds from the noise level) is not supported with a "
            "measurement and a non-identity output; set lam instead."
        )
    res = _pursuit_once(Y, obs, weights, biases, activation, xp, opts, measurement)
    if opts.noise_std is not None and opts.debias and opts.noise_retries:
        _retry_thresholds(res, Y, obs, weights, biases, activation, xp, opts)
    return res


def _retry_thresholds(res, Y, obs, weights, biases, activation, xp, opts):
    """Rows whose fit is inconsistent with the noise level try other support
    thresholds.

    With ``y = G(z) + e``, ``e ~ N(0, noise_std^2 I)``, the loss of eq. 1 at
    the true ``z`` is ``1/2 noise_std^2`` times a chi-square variable with
    ``n_obs`` degrees of freedom. A row whose final loss exceeds its mean by
    more than ``noise_retry_sd`` standard deviations (a wrong support
    estimate that the debiasing and the refresh did not repair: measured on
    1-3 % of the rows of the shipped generator at sigma = 1e-3) is solved
    again with the threshold ``noise_c`` scaled by each of ``noise_retries``
    in turn (a larger one drops spurious entries, a smaller one keeps small
    true ones); a row keeps the estimate with the lowest loss and stops once
    its loss is consistent with the noise. Only ``z`` is updated.
    """
    from .gradient_descent import loss_and_gradient

    n_obs = xp.sum(obs, axis=1)
    # 1/2 noise_std^2 chi^2_{n_obs}: mean n_obs, standard deviation sqrt(2 n_obs).
    spread = n_obs + opts.noise_retry_sd * xp.sqrt(2.0 * n_obs)
    bound = 0.5 * opts.noise_std**2 * spread
    loss, _ = loss_and_gradient(res.z, Y, obs, weights, biases, activation, xp, alpha=opts.gamma)
    for scale in opts.noise_retries:
        bad = ~(loss <= bound)
        if not bool(xp.any(bad)):
            break
        sub = compress_rows(bad, xp)
        Ys, Os = xp.take(Y, sub, axis=0), xp.take(obs, sub, axis=0)
        trial = _pursuit_once(Ys, Os, weights, biases, activation, xp,
                              replace(opts, noise_c=opts.noise_c * scale))
        lt, _ = loss_and_gradient(trial.z, Ys, Os, weights, biases, activation, xp, alpha=opts.gamma)
        old = xp.take(loss, sub, axis=0)
        better = xp.isfinite(lt) & (lt < old)
        zs = xp.where(better[:, None], trial.z, xp.take(res.z, sub, axis=0))
        res.z = scatter_rows(res.z, zs, bad, xp)
        loss = scatter_rows(loss, xp.where(better, lt, old), bad, xp)


def _pursuit_once(Y, obs, weights, biases, activation, xp, opts, measurement=None):
    """One pass of the layer-wise pursuit (see :func:`pursuit`)."""
    res = PursuitResult()
    L = len(weights) - 1
    dt = Y.dtype
    lips = list(opts.lipschitz) if opts.lipschitz else [_lipschitz(W, xp) for W in weights]
    rule = noise = None
    if measurement is not None:
        # Image layer of eq. 8 seen through A: an active set on phi's regions.
        if opts.epsilon is not None:
            raise ValueError("epsilon (Algorithm 2's rule) is not supported with a measurement.")
        x = _measured_image_layer(
            Y, obs, weights[L], biases[L], activation, measurement,
            _lam(opts, L - 1) if L else 0.0, opts if L else _no_constraints(opts),
            xp, res, f"layer {L}" if L else "z",
        )
        if L == 0:
            res.z = x
            return _debias(res, Y, obs, weights, biases, activation, xp, opts, measurement)
    else:
        # Image layer: eq. 8 in the domain u = phi^-1(y) (see the module notes).
        U, w = inverse_target(Y, obs, activation, xp)
        valid = w > 0
        if L == 0:
            z = _constrained_layer(
                weights[0], biases[0], U, w, 0.0, _no_constraints(opts), xp, res, "z",
                lipschitz=lips[0], ridge=opts.gamma,
            )
            res.z = z
            return _debias(res, Y, obs, weights, biases, activation, xp, opts)
        all_rows = bool(xp.all(valid))
        if opts.epsilon is not None:
            rule = EpsilonRule(opts.epsilon, Y, obs, activation, xp)
        elif opts.noise_std is not None:
            if opts.noise_gain is None:
                opts = replace(opts, noise_gain=noise_gains(weights))
            noise = NoiseRule(opts.noise_std, U, w, activation, opts, xp)
        lam = rule.lam() if rule is not None else _lam(opts, L - 1)
        x = _solve_layer(
            weights[L], U - biases[L], None if all_rows else w, lam,
            opts, xp, res, f"layer {L}", lipschitz=lips[L],
        )
    hidden = [x]
    floor = noise.floor(L) if noise is not None else None
    S = _support(x, opts.support_tol, xp, opts.nonneg, floor)
    supports = [S]
    if rule is not None:
        rule.update(weights[L], None if all_rows else w, S)
    for i in range(L - 1, 0, -1):
        rows = xp.astype(S, dt)
        lam = rule.lam() if rule is not None else _lam(opts, i - 1)
        x = _constrained_layer(
            weights[i], biases[i], hidden[0] * rows, rows, lam, opts,
            xp, res, f"layer {i}", lipschitz=lips[i],
        )
        hidden.insert(0, x)
        floor = noise.floor(i) if noise is not None else None
        S = _support(x, opts.support_tol, xp, opts.nonneg, floor)
        supports.insert(0, S)
        if rule is not None:
            rule.update(weights[i], rows, S)
    rows = xp.astype(S, dt)
    z = _constrained_layer(
        weights[0], biases[0], hidden[0] * rows, rows, 0.0, _signed(opts), xp, res, "z",
        lipschitz=lips[0], ridge=opts.gamma,
    )
    res.z, res.hidden, res.supports = z, hidden, supports
    return _debias(res, Y, obs, weights, biases, activation, xp, opts, measurement)


def _signed(opts):
    """The z-step: z is not sparse and has no sign."""
    return replace(opts, nonneg=False)


def _no_constraints(opts):
    return replace(opts, nonneg=False, constraints=False)


def _debias(res, Y, obs, weights, biases, activation, xp, opts, measurement=None):
    """Algorithm 5's optional last step: the Oracle (Algorithm 1) on estimated supports.

    With a ``measurement`` (non-identity phi; an identity phi arrives folded)
    the Oracle's Gauss-Newton starts from the pursuit's own z.
    """
    if not opts.debias:
        return res
    masks = [xp.astype(S, Y.dtype) for S in res.supports]
    z, _, conv = oracle_end_to_end(
        Y, obs, weights, biases, activation, masks, xp,
        gamma=opts.gamma, max_iter=opts.debias_max_iter,
        measurement=measurement, z0=res.z if measurement is not None else None,
    )
    ok = xp.all(xp.isfinite(z), axis=1)
    res.z = xp.where(ok[:, None], z, res.z)
    if opts.debias_max_iter > 0 and activation.name != "identity":
        res.count("debiasing", conv, xp)
    if opts.refresh_max_iter > 0:
        _refresh(res, Y, obs, weights, biases, activation, xp, opts, measurement)
    if opts.fallback_max_iter > 0:
        _fallback(res, Y, obs, weights, biases, activation, xp, opts, measurement)
    return res


def _fallback(res, Y, obs, weights, biases, activation, xp, opts, measurement=None):
    """Hybrid step (the paper's section 6.1 outlook): rows whose final estimate
    fits the signal much worse than their image-layer estimate does (loss above
    10 times the image layer's, and above ``fallback_tol`` relative), e.g. a
    hidden layer wider than the signal, where eq. 8 alone has many
    non-negative solutions, continue with gradient descent on eq. 1 from the
    pursuit's estimate; a row keeps whichever estimate has the lower loss."""
    from .gradient_descent import loss_and_gradient, momentum_descent

    loss, _ = loss_and_gradient(
        res.z, Y, obs, weights, biases, activation, xp, measurement=measurement
    )
    energy = 0.5 * xp.sum((obs * Y) ** 2, axis=1)
    floor = opts.fallback_tol**2 * xp.where(energy > 0, energy, xp.ones_like(energy))
    if res.hidden:
        # The image layer alone fits the signal this well; a final estimate
        # far worse than that means the layers below were not determined
        # (e.g. eq. 8 with many non-negative solutions). Noise alone does not
        # trigger the fallback: it limits both fits alike.
        out = activation(res.hidden[-1] @ weights[-1].T + biases[-1], xp)
        R = obs * ((out if measurement is None else measurement.forward(out)) - Y)
        floor = floor + 10.0 * 0.5 * xp.sum(R * R, axis=1)
    bad = loss > floor
    if not bool(xp.any(bad)):
        return
    sub = compress_rows(bad, xp)
    Z0, Ys, Os = (xp.take(a, sub, axis=0) for a in (res.z, Y, obs))
    Zg, lg, _, conv = momentum_descent(
        Z0, Ys, Os, weights, biases, activation, xp, max_iter=opts.fallback_max_iter,
        measurement=measurement,
    )
    better = lg < xp.take(loss, sub, axis=0)
    Zb = xp.where(better[:, None], Zg, Z0)
    res.z = scatter_rows(res.z, Zb, bad, xp)
    res.count("the gradient-descent fallback", conv, xp)



def _forward_masks(Z, weights, biases, xp):
    """Supports ``1[W_i x_i + b_i > 0]`` of the hidden layers of ``G(Z)`` (float masks)."""
    masks = []
    x = Z
    for W, b in zip(weights[:-1], biases[:-1]):
        u = x @ W.T + b
        masks.append(xp.astype(u > 0, Z.dtype))
        x = xp.clip(u, min=0.0)
    return masks


def _refresh(res, Y, obs, weights, biases, activation, xp, opts, measurement=None):
    """Support refresh after the debiasing: re-run Algorithm 1 on the supports
    of ``G(z_hat)`` itself, up to ``refresh_max_iter`` times, on the rows whose
    forward supports differ from those the last Oracle step used; a row keeps
    the new estimate only when it lowers the loss of eq. 1. A fixed point is a
    ``z`` whose own supports give it back: a stationary point of eq. 1 on that
    linear region, i.e. the Oracle's estimate (Theorem 3) once the supports
    are right. Noiseless rows the pursuit recovered are fixed points already."""
    from .gradient_descent import loss_and_gradient

    masks = [xp.astype(S, Y.dtype) for S in res.supports]
    loss, _ = loss_and_gradient(
        res.z, Y, obs, weights, biases, activation, xp, alpha=opts.gamma, measurement=measurement
    )
    z = res.z
    active = xp.ones((z.shape[0],), dtype=xp.bool, device=device(z))
    for _ in range(opts.refresh_max_iter):
        new = _forward_masks(z, weights, biases, xp)
        changed = xp.zeros_like(active)
        for m, m_new in zip(masks, new):
            changed = changed | xp.any(m != m_new, axis=1)
        changed = changed & active
        if not bool(xp.any(changed)):
            break
        sub = compress_rows(changed, xp)
        Ys, Os = xp.take(Y, sub, axis=0), xp.take(obs, sub, axis=0)
        ms = [xp.take(m, sub, axis=0) for m in new]
        zs, _, _ = oracle_end_to_end(
            Ys, Os, weights, biases, activation, ms, xp,
            gamma=opts.gamma, max_iter=opts.debias_max_iter, measurement=measurement,
            z0=None if measurement is None else xp.take(z, sub, axis=0),
        )
        ls, _ = loss_and_gradient(
            zs, Ys, Os, weights, biases, activation, xp, alpha=opts.gamma, measurement=measurement
        )
        old = xp.take(loss, sub, axis=0)
        better = xp.isfinite(ls) & (ls < old)
        z = scatter_rows(z, xp.where(better[:, None], zs, xp.take(z, sub, axis=0)), changed, xp)
        loss = scatter_rows(loss, xp.where(better, ls, old), changed, xp)
        masks = [xp.where(changed[:, None], m_new, m) for m, m_new in zip(masks, new)]
        # Rows already at a fixed point, or that did not improve, stop.
        active = scatter_rows(xp.zeros_like(active), better, changed, xp)
    res.z = z


# -- linear measurements y = A G(z) + e ------------------------------------------


def _fold_measurement(weights, biases, measurement, opts, xp):
    """An identity-output generator seen through A: ``W_L <- A W_L``, ``b_L <- A b_L``.

    ``A phi(W_L x + b_L) = (A W_L) x + A b_L`` when phi is the identity, so
    eqs. 8, 9 and 16 and the debiasing keep their form with the folded last
    layer (``lambda_max`` of the folded matrix replaces the stored one).
    """
    P = measurement.fold(weights[-1])
    q = measurement.forward(biases[-1][None, :])[0, :]
    lips = list(opts.lipschitz) if opts.lipschitz else [_lipschitz(W, xp) for W in weights]
    lips[-1] = _lipschitz(P, xp)
    return (
        list(weights[:-1]) + [P],
        list(biases[:-1]) + [q],
        replace(opts, lipschitz=tuple(lips)),
    )


def _phi_regions(activation, U, xp):
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


def _measured_image_layer(Y, obs, W, b, activation, meas, lam, opts, xp, res, stage):
    """Eq. 8 through linear measurements, for a piecewise-linear phi.

    ``min_x f(x) = 1/2 ||obs * (A phi(W x + b) - y)||^2 + lam ||x||_1``
    (``x >= 0`` when ``opts.nonneg``). On a fixed piece of phi,
    ``phi(u) = D u + d`` (:func:`_phi_regions`) and f is the lasso of eq. 8
    with the per-sample matrix ``A D W`` and target ``y - A (D b + d)``: f is
    piecewise quadratic. A Gauss-Newton iteration on the pieces (exact on
    each piece, since phi is linear there):

    1. start with every entry on phi's unit-slope piece: the folded problem
       ``A W``, shared by the batch, solved by :func:`_solve_layer`;
    2. fix ``D``, ``d`` at the pieces of ``u = W x + b`` and solve that
       per-sample problem exactly (active-set refinement warm-started at x):
       ``x_new``;
    3. if ``x_new`` lies on the pieces it was solved for, it is a stationary
       point of f: the row stops. Otherwise ``x_new - x`` is a descent
       direction of f (the model equals f around x), and the row moves to
       the first of ``x + t (x_new - x)``, ``t = 1, 1/2, ..., 2^-10``, that
       lowers f, then repeats 2, up to ``opts.refine_max_iter`` times.

    f decreases monotonically; rows that neither reach a fixed point nor find
    a lower f are counted in the ConvergenceWarning.
    """
    dt = Y.dtype
    all_obs = bool(xp.all(obs > 0))
    P = meas.fold(W)
    q = meas.forward(b[None, :])
    x = _solve_layer(
        P, Y - q, None if all_obs else obs, lam, opts, xp, res, stage,
        lipschitz=_lipschitz(P, xp),
    )
    if activation.name == "identity":
        return x

    def objective(x_, Y_, O_, lam_):
        R = O_ * (meas.forward(activation(x_ @ W.T + b, xp)) - Y_)
        pen = xp.sum(x_ if opts.nonneg else xp.abs(x_), axis=1)
        return 0.5 * xp.sum(R * R, axis=1) + lam_ * pen

    f = objective(x, Y, obs, lam)
    code, _, _ = _phi_regions(activation, x @ W.T + b, xp)
    live = xp.any(code != 0, axis=1)  # step 1 assumed the unit-slope piece everywhere
    stalled = xp.zeros_like(live)
    for _ in range(opts.refine_max_iter):
        if not bool(xp.any(live)):
            break
        sub = compress_rows(live, xp)
        xs, Ys, Os, cs, fs = (xp.take(a, sub, axis=0) for a in (x, Y, obs, code, f))
        lam_s = lam if isinstance(lam, (int, float)) else xp.take(lam, sub, axis=0)
        _, D, d = _phi_regions(activation, xs @ W.T + b, xp)
        M = meas.columns(D[:, :, None] * W[None, :, :])  # (b, m, k): A D W
        t = Ys - meas.forward(D * b + d)
        G = xp.permute_dims(M, (0, 2, 1)) @ (Os[:, :, None] * M)
        r = ((Os * t)[:, None, :] @ M)[:, 0, :]
        xn, _ = active_set_refine(
            G, r, lam_s, xs, xp, nonneg=opts.nonneg, max_iter=opts.refine_max_iter
        )
        cn, _, _ = _phi_regions(activation, xn @ W.T + b, xp)
        fixed = xp.all(cn == cs, axis=1)
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
        cn, _, _ = _phi_regions(activation, xn @ W.T + b, xp)
        x = scatter_rows(x, xn, live, xp)
        f = scatter_rows(f, fn, live, xp)
        code = scatter_rows(code, cn, live, xp)
        stalled = scatter_rows(stalled, ~ok, live, xp)
        live = scatter_rows(live, ok & ~fixed, live, xp)
    res.count(f"{stage} (pieces of phi)", ~(live | stalled), xp)
    return xp.astype(x, dt)
