"""Latent-Pursuit's start: the polish from the linearized network (or a fitted decoder).

Two cases cost Latent-Pursuit far more than the Oracle:

- an image layer wider than the signal (``n_{L-1} > n``: the paper's
  Figure 4 past ``n_1 = n``; through a measurement, fewer measurements than
  the last hidden layer's units), where eq. 8 is a non-negative least
  squares with more unknowns than equations. Lawson-Hanson solves it
  exactly, but slowly (Figure 4's ``[100, 850, 625]``, 64 signals: 5.4 of
  Latent-Pursuit's 5.7 s, the Oracle 0.43 s), and from ``n_1 = 1000`` on
  its solution is not the true ``x_{L-1}`` (not unique): the support
  refresh then recovers the code from the wrong supports;
- noisy signals, whose noise rule weighs every row's image layer
  separately (a 392 x 392 weighted Gram matrix per row of ``fashion-mnist-fc``)
  and retries the rows it does not fit: 35x the Oracle at sigma = 1e-2.

There, rows first take the fixed-support polish
(:func:`~skinvert.algorithms.polish.polish_batch`: Algorithm 1 on the
supports of the current code, alternated with their refresh) from the least
squares of the *statistically linearized* network: under the generator's
prior ``z ~ N(0, I)`` each pre-activation ``a = W_i x_i + b_i`` of the
linearized layers below is Gaussian with mean ``mu`` and standard deviation
``sigma``, and ``ReLU(a)`` is replaced by its best linear fit, slope
``Phi(mu / sigma)`` and mean ``E[ReLU(a)] = mu Phi(mu / sigma) + sigma
phi(mu / sigma)``. Its least squares is one shared pseudo-inverse, a GEMM
over the batch. A clean row is decided there when the polish stops at a
support fixed point whose least squares is well posed
(:func:`well_posed_fixed_points`) and fits the signal to rounding
(:func:`~skinvert.algorithms._batch.fits_to_rounding`): the code that
Algorithm 1 on its own supports gives back, i.e. what the pursuit and its
refresh return for a recovered row (clean rows qualify when fully
observed). A noisy row (any row) is decided when its loss is consistent
with the noise level (the test that sends a row of the pass to the noise
retries), at a well-posed fixed point or, fully observed, on a boundary
between support regions; a row that is not gets ten Adam steps from the
start and a second polish first (the hybrid's ``decoder_descent``), then
the hybrid's rounds of shared gradient-descent starts and basin hopping
(:func:`_descent_rounds`, marked ``"descent starts"``). A noisy row is kept
only within :data:`NOISY_ACCEPT_SD` standard deviations (the pass's retry
test allows 10); a row with missing entries on a boundary where its least
squares is well posed. The other rows run Algorithm 5 as before.

A caller may bring its own start (``start(Y, obs) -> Z0``):
:class:`~skinvert.LatentPursuitInverter` fits, with ``noise_std``, the
hybrid's linear decoder (a ridge regression of the codes on ``[y,
phi^-1(y)]`` of 8000 noisy samples of the generator) and its noisy rows
start there (marked ``"linear start"``). On a saturating generator the
statistical linearization ignores the noise, which ``phi^-1`` amplifies
without bound near saturation; the regression weighs it. 512 signals of
the saturating tanh generator at sigma = 1e-2 (draw 1): the linearized
start decided 474 rows (the 38 others cost 12 s in the pass, 8-11x the
Oracle in all), the decoder all 512 in 1.8 s (1.1-1.2x), RMS error 1.024x
against 1.07x the Oracle's; three draws x sigma 1e-2, 1e-3: 508-512 rows
by the decoder, the 0-4 others decided by the descent rounds, 1.1-2.1x the
Oracle's time, RMS 0.995-1.040x (the linearized start and the pass:
9-13x, and draw 2 at 1e-2 left a row at 33x the Oracle's error, RMS
6.8x, which the descent rounds fit).

Measured (one thread): Figure 4's ``[100, n1, 625]`` (tanh, 64 signals):
the start leaves 128-188 support entries wrong per row (with ReLU as half
its input), and the polish fits every row exactly in 8 steps, about the
Oracle's time (0.95-1.00x for n1 = 850, 1250), against 13x-30x for the
pass. ReLU as half its input fitted only 49 / 50 / 60 of 64 rows of
``[200, n1, 625]`` (n1 = 700, 850, 1250), the statistical linearization
every row (Latent-Pursuit 3.9-5.6 s -> 2.6-2.9 s), and of the deeper
``[20, 60, 250, 200]`` (two draws) 59 / 56 rows against 51 / 31. Noisy
signals, 256 per case: the saturating tanh generator at sigma = 1e-2 / 1e-3
236 / 234 rows by the start, Latent-Pursuit 9.3x / 10.9x the Oracle (was
about 30x), RMS error 1.006x / 1.000x the Oracle's; ``fashion-mnist-fc``
254 / 255 rows, 2.1x / 2.6x (was 13x / 19x), RMS 1.002x / 1.000x. Without
the ten Adam steps the saturating case kept 188 rows (14.4x); accepting
only rows at a support fixed point (a noisy optimum often lies on a
boundary between support regions) kept 213 of 256 ``fashion-mnist-fc`` rows
(5.2x). With 45 % of the entries missing (``fashion-mnist-fc``, 1e-2, 256
signals) 217 rows by the start, 6.2x against 21x, RMS 1.007x against
1.033x; accepting boundary rows there too took 254 rows (2.5x, RMS 1.001x),
not kept then (see :func:`_accepted`).

Since the decoder start (256 signals, sigma 1e-2, 45 % missing): rows with
missing entries that stop on a boundary are kept where their least squares
at the stopping point is well posed (:func:`_jacobian_gram`), and the start
keeps a row only within :data:`NOISY_ACCEPT_SD` = 3 standard deviations of
the loss's mean. ``fashion-mnist-fc``: every row by the start, 6.2x ->
1.9-2.1x the Oracle, RMS 1.026x (1.032x without these two changes, 1.007x
from the linearized start: one row in a neighbouring support region at 2.9x
the Oracle's error); the saturating generator (a
failure case of every estimator here, the hybrid's RMS 5.9x): 72 s -> 64 s,
RMS 2.25x -> 2.01x. With the boundary rows but the pass's 10 deviations:
39 s, but RMS 3.50x (a row in a wrong support region at 1.5x the true
code's loss, 6.4x the Oracle's error, was kept).
"""

import numpy as np
from scipy.special import ndtr

from .._array_api import as_namespace, device, to_numpy
from .._linalg import (
    compress_rows,
    forward_preactivations,
    gram_inverse,
    scatter_rows,
    supported_lstsq,
)
from ._batch import PursuitResult, fits_to_rounding
from .gradient_descent import adam_descent
from .hybrid import HybridStarts, hybrid_batch
from .noise import noise_bound
from .polish import NOISY_TOL, _even_rows, forward_loss, jacobian, polish_batch

__all__ = ["linearized_start", "polish_start", "polish_start_rows", "well_posed_fixed_points"]

#: Largest 1-norm condition number of ``J^T J`` at a polish's fixed point for
#: its code to be kept (``cond(J)`` up to 1e5; in single precision
#: ``1e-2 / eps``).
POLISH_MAX_COND = 1e10
#: Adam steps from the start before each further polish of the noisy rows
#: the previous ones leave above the noise level.
NOISY_DESCENT = (10,)
#: The shared gradient-descent starts and basin-hopping directions of the
#: rows the noisy start leaves (:func:`_descent_rounds`), and the Adam
#: iterations of each (the hybrid's defaults on dense layers).
NOISY_STARTS, NOISY_HOPS, NOISY_ROUND_ITER = 8, 16, 100
#: A noisy row is decided by the start where its loss is within this many
#: chi-square standard deviations of its mean (at most the pass's
#: ``retry_sd``; the hybrid's ``noise_retry_sd``). At the pass's 10 a code in
#: a wrong support region passed at 1.4-1.5x the true code's loss (a
#: saturating generator with 45 % of the pixels missing: rows at 6-7x the
#: Oracle's error); a correct row exceeds 3 with probability about 0.2 %.
NOISY_ACCEPT_SD = 3.0


def accept_sd(noise):
    """The standard deviations of the start's noise bound (:data:`NOISY_ACCEPT_SD`)."""
    return min(noise.retry_sd, NOISY_ACCEPT_SD)


def well_posed_fixed_points(fixed, gram, loss, xp, dtype):
    """Rows of a polish that stopped at a support fixed point with a
    well-posed least squares: ``J`` of full column rank, ``cond_1(J^T J)``
    below :data:`POLISH_MAX_COND` (``1e-2 / eps`` in single precision, which
    cannot resolve 1e10), and a finite loss.

    On a rank-deficient row the polish's steps could grow along the nearly
    flat directions (a ``[20, 40, 15]`` tanh net: ``|z| = 1.8e14``), where
    Algorithm 1's least squares takes the minimum-norm code.
    """
    finite = xp.all(xp.isfinite(gram), axis=(1, 2))
    max_cond = min(POLISH_MAX_COND, 1e-2 / float(xp.finfo(dtype).eps))
    _, posed = gram_inverse(
        xp.where(finite[:, None, None], gram, xp.zeros_like(gram)), xp, max_cond=max_cond
    )
    return fixed & finite & posed & xp.isfinite(loss)


def _linearized_map(weights, biases, xp):
    """``M`` (n, n_0) and ``c`` (n,): the output pre-activation of the
    statistically linearized network (see the module notes), computed on
    the host (its Gaussian CDF and density are not in the array API)."""
    dt = weights[0].dtype
    dev = device(weights[0])
    Ws = [np.asarray(to_numpy(W), dtype=np.float64) for W in weights]
    bs = [np.asarray(to_numpy(b), dtype=np.float64) for b in biases]
    n0 = Ws[0].shape[1]
    M, c = np.eye(n0), np.zeros(n0)  # x_i ~ M z + c
    for W, b in zip(Ws[:-1], bs[:-1], strict=True):
        A, mu = W @ M, W @ c + b  # pre-activation a ~ A z + mu
        sd = np.sqrt(np.sum(A * A, axis=1))
        t = mu / np.where(sd > 0, sd, 1.0)
        slope = np.where(sd > 0, ndtr(t), (mu > 0).astype(np.float64))
        mean = np.where(sd > 0, mu * ndtr(t) + sd * np.exp(-0.5 * t * t) / np.sqrt(2 * np.pi),
                        np.maximum(mu, 0.0))
        M, c = slope[:, None] * A, mean
    M, c = Ws[-1] @ M, Ws[-1] @ c + bs[-1]
    return tuple(xp.astype(xp.asarray(a, device=dev), dt) for a in (M, c))


def linearized_start(batch):
    """Each row's least squares of the linearized network (see the module
    notes) on its usable entries of ``phi^-1(y)``: one shared pseudo-inverse
    where every entry is usable, per-row normal equations on the usable
    ones otherwise (:func:`~skinvert._linalg.supported_lstsq`).
    Through a measurement (piecewise-linear phi): on the measurements
    ``y ~ A (M z + c)``, phi taken as its unit-slope piece."""
    xp = batch.xp
    M, c = _linearized_map(batch.weights, batch.biases, xp)
    meas = batch.measurement
    if meas is None:
        U, w = batch.inverse_target()
    else:
        U, w = batch.Y, batch.obs
        M, c = meas.fold(M), meas.forward(c[None, :])[0, :]
    if bool(xp.all(w > 0)):
        Pinv = xp.linalg.pinv(M)  # (n_0, n)
        return _even_rows(lambda t: t @ xp.matrix_transpose(Pinv), (U - c,), xp)
    return supported_lstsq(M, U - c, xp, row_weight=w)


def polish_start_rows(batch, *, noisy=False):
    """The rows (bool (B,)) the start applies to: clean signals, rows with
    every entry observed and fewer usable entries of ``phi^-1(y)`` (through
    a measurement with a piecewise-linear phi: fewer measurements) than the
    image layer's width (its eq. 8 then has more unknowns than equations),
    or, every entry usable, whose image layer has fewer active units than
    the layer below it has units (:func:`_next_layer_wide`: that layer's
    eq. 9 has more unknowns than equations); with a noise level (``noisy``)
    every row."""
    xp = batch.xp
    B = batch.Y.shape[0]
    meas = batch.measurement
    if batch.n_layers == 0 or (meas is not None and not batch.activation.piecewise_linear):
        return xp.zeros((B,), dtype=xp.bool, device=device(batch.Y))
    if noisy:
        return xp.ones((B,), dtype=xp.bool, device=device(batch.Y))
    observed = xp.all(batch.obs > 0, axis=1)
    w = batch.obs if meas is not None else batch.inverse_target()[1]
    k = batch.weights[-1].shape[1]
    usable = xp.sum(xp.astype(w > 0, batch.dtype), axis=1)
    rows = observed & (usable < k)
    if meas is None:
        rows = rows | _next_layer_wide(batch, w, xp)
    return rows


#: :func:`_next_layer_wide` sends its rows to the start only where a batch
#: has at least this many: the start costs about 0.09 s for one row (the
#: polish's steps), Lawson-Hanson about 8-20 ms per wide row (512 clean
#: signals of the saturating tanh generator: 1 such row, 0.97 -> 1.05 s
#: with the start; the random ``[30, 200, 400, 600]`` net: 217 rows,
#: 4.1 -> 2.1 s). Both paths give the exact code (the start keeps a row
#: only where it fits the signal to rounding), so a row's path may depend
#: on its batch, its code only to rounding.
NEXT_LAYER_WIDE_MIN_ROWS = 16


def _next_layer_wide(batch, w, xp):
    """Rows (bool (B,)) with every entry of ``phi^-1(y)`` usable whose image
    layer's unknown ``x_L`` has fewer active units than ``x_{L-1}`` has
    units: the pass would solve that layer's eq. 9 with more unknowns than
    equations, by Lawson-Hanson (exact, but about 30x a tall row's cost).
    ``x_L`` is read off the image layer's least squares, one shared
    factorization of a tall ``W_L`` (for a clean signal it is the exact
    ``x_L``, whose zeros come out at rounding level: entries above
    ``sqrt(eps)`` of the row's largest are counted). Measured on a random
    ``[30, 200, 400, 600]`` tanh net (512 clean signals, ``x_2`` with
    187-214 active units of 400 against ``x_1``'s 200): the pass alone
    3.4-4.1 s, 3.7x the Oracle, 1.8 s of it Lawson-Hanson. None where the
    batch has fewer than :data:`NEXT_LAYER_WIDE_MIN_ROWS` such rows."""
    W, b = batch.weights, batch.biases
    B = batch.Y.shape[0]
    none = xp.zeros((B,), dtype=xp.bool, device=device(batch.Y))
    if b is None or len(W) < 3 or W[-1].shape[0] < W[-1].shape[1]:
        return none  # no middle layer below the image layer's (z's is signed), or a wide W_L
    full = xp.all(w > 0, axis=1)
    if not bool(xp.any(full)):
        return none
    T = batch.inverse_target()[0]
    Kinv = xp.linalg.inv(batch.image_gram())  # (W_L^T W_L)^-1, shared
    x = _even_rows(lambda t: (t @ W[-1]) @ Kinv, (T - b[-1],), xp)
    top = xp.max(x, axis=1, keepdims=True)
    eps = float(xp.finfo(x.dtype).eps)
    active = xp.sum(xp.astype(x > eps**0.5 * top, xp.int32), axis=1)
    wide = full & (active < W[-2].shape[1])
    if int(xp.sum(xp.astype(wide, xp.int32))) < NEXT_LAYER_WIDE_MIN_ROWS:
        return none
    return wide


def polish_start(batch, rows, *, max_iter, noise=None, start=None):
    """The polish from the linearized start on the rows ``rows`` of ``batch``.

    ``noise`` (a :class:`~skinvert.algorithms.noise.NoiseModel`): the polish
    stops at steps below 1e-6 (the noise limits the accuracy far above
    rounding), and a row is decided where its loss is consistent with the
    noise level (:func:`~skinvert.algorithms.noise.noise_bound`, ``retry_sd``
    standard deviations: the test that sends a row of the pass to the
    noise retries), instead of fitting to rounding.

    Returns
    -------
    res : PursuitResult
        On every row of the batch: ``z``, the supports and hidden layers of
        ``G(z)``, the loss; its ``decided["linearized start"]`` and ``n_refresh``
        (the polish's steps) on the rows it fitted.
    fitted : bool array (B,)
        The rows decided (a subset of ``rows``).
    """
    xp = batch.xp
    B, n0 = batch.Y.shape[0], batch.weights[0].shape[1]
    dt = batch.dtype
    dev = device(batch.Y)
    sub = compress_rows(rows, xp)
    part = batch.take(sub)

    def polish(z_init, p):
        """The polish of the rows of ``p`` from ``z_init``, and the rows it decides."""
        zs, ls, n_iter, fixed, gram = polish_batch(
            z_init, p.Y, p.obs, batch.weights, batch.biases, batch.activation, xp,
            measurement=batch.measurement, max_iter=max_iter, return_gram=True,
            tol=None if noise is None else NOISY_TOL,
        )
        return zs, ls, n_iter, _accepted(zs, ls, fixed, gram, noise, p)

    z0 = linearized_start(part) if start is None else start(part.Y, part.obs)
    zs, ls, n_iter, ok = polish(z0, part)
    by_rounds = xp.zeros_like(ok)

    def retry(bad, z_new):
        """Rows ``bad`` (of ``part``) take the polish from ``z_new`` where it
        decides them; returns those rows (bool over ``part``)."""
        nonlocal zs, ls, n_iter, ok
        bsub = compress_rows(bad, xp)
        zb, lb, nb, okb = polish(z_new, part.take(bsub))
        zs = scatter_rows(zs, xp.where(okb[:, None], zb, xp.take(zs, bsub, axis=0)), bad, xp)
        ls = scatter_rows(ls, xp.where(okb, lb, xp.take(ls, bsub, axis=0)), bad, xp)
        n_iter = scatter_rows(n_iter, xp.where(okb, nb, xp.take(n_iter, bsub, axis=0)), bad, xp)
        ok = scatter_rows(ok, okb, bad, xp)
        return scatter_rows(xp.zeros_like(ok), okb, bad, xp)

    for n_steps in NOISY_DESCENT if noise is not None else ():
        if bool(xp.all(ok)):
            break
        # A few gradient-descent steps from the start move it out of the
        # basin that trapped its polish (as the hybrid's decoder_descent).
        bsub = compress_rows(~ok, xp)
        bpart = part.take(bsub)
        za, _, _, _ = adam_descent(
            xp.take(z0, bsub, axis=0), bpart.Y, bpart.obs, batch.weights,
            batch.biases, batch.activation, xp, learning_rate=0.05, max_iter=n_steps,
            measurement=batch.measurement,
        )
        retry(~ok, za)
    if noise is not None and not bool(xp.all(ok)):
        by_rounds = retry(~ok, _descent_rounds(part.take(compress_rows(~ok, xp)), noise,
                                               max_iter))
    fitted = scatter_rows(xp.zeros((B,), dtype=xp.bool, device=dev), ok, rows, xp)
    res = PursuitResult()
    res.z = scatter_rows(xp.zeros((B, n0), dtype=dt, device=dev), zs, rows, xp)
    pre, _ = forward_preactivations(res.z, batch.weights, batch.biases, xp)
    res.supports = [u > 0 for u in pre]
    res.hidden = [xp.clip(u, min=0.0) for u in pre]
    res.set_loss(scatter_rows(xp.zeros((B,), dtype=dt, device=dev), ls, rows, xp))
    steps = xp.where(ok, xp.astype(n_iter, xp.int64), xp.zeros_like(n_iter, dtype=xp.int64))
    res.n_refresh = scatter_rows(xp.zeros((B,), dtype=xp.int64, device=dev), steps, rows, xp)
    res.mark("linearized start" if start is None else "linear start", fitted)
    if noise is not None:
        res.mark("descent starts", scatter_rows(xp.zeros((B,), dtype=xp.bool, device=dev),
                                                by_rounds, rows, xp))
    return res, fitted


def _descent_rounds(part, noise, max_iter):
    """The hybrid's rounds for the noisy rows of ``part`` that the start and
    its Adam steps leave above the noise level: gradient descent from
    :data:`NOISY_STARTS` shared codes, then basin hopping around each row's
    best code (:data:`NOISY_HOPS` shared directions of size 1/2), each in
    one round, every start polished in the order of its descent's loss
    until the row's loss is consistent with the noise
    (:func:`~skinvert.algorithms.hybrid.hybrid_batch`, without its pursuit:
    the pass comes after). The codes are drawn from a fixed seed, the same
    for every row (a row's result does not depend on its batch).
    Double-precision rows descend in single precision (dense layers).

    Two starts per round (the hybrid's default) were measured first: on
    five saturating cases with 1-4 rows left (512 signals, sigma 1e-3 and
    1e-2) they fitted 10 of 12 rows in 0.26-1.14 s, the two others (rows
    whose best loss three polished starts had confirmed, so they stopped
    before the hop that fits them) ran the pass (about 0.4 s for one row);
    one round of every start fitted all 12 in 0.16-0.47 s, with the same
    RMS errors. On 38 rows (the linearized start's leftovers) one round
    took 1.82 s against 1.47 s."""
    xp, dt = part.xp, part.dtype
    dev = device(part.Y)
    n0 = part.weights[0].shape[1]
    rng = np.random.default_rng(0)
    codes, hops = (as_namespace(rng.standard_normal((k, n0)), xp, dtype=dt, device=dev)
                   for k in (NOISY_STARTS, NOISY_HOPS))
    low = None
    if dt == xp.float64 and part.biases is not None:
        low = tuple([xp.astype(a, xp.float32) for a in arrays]
                    for arrays in (part.weights, part.biases))
    # Every start in one round: with two per round a row whose best loss
    # three polished starts had confirmed stopped before the hops that fit
    # it (measured below).
    starts = HybridStarts(codes, max_iter=NOISY_ROUND_ITER, per_round=None, perturb_codes=hops,
                          low_precision=low)
    Z, _ = hybrid_batch(
        part.Y, part.obs, part.weights, part.biases, part.activation, xp, starts,
        measurement=part.measurement, noise_std=noise.noise_std, noise_sd=accept_sd(noise),
        polish_max_iter=max_iter, tol=NOISY_TOL,
    )
    return Z


def _jacobian_gram(Z, part):
    """``J^T J`` of each row of ``part`` at its code ``Z``: the Jacobian of its
    observed outputs on the supports of ``G(z)``
    (:func:`~skinvert.algorithms.polish.jacobian`)."""
    xp = part.xp
    _, U, masks = forward_loss(Z, part.Y, part.obs, part.weights, part.biases,
                               part.activation, xp, measurement=part.measurement)
    J = jacobian(U, masks, part.weights, part.biases, part.activation, xp,
                 measurement=part.measurement, obs=part.obs)
    return xp.matmul(xp.matrix_transpose(J), J)


def _accepted(Z, loss, fixed, gram, noise, part):
    """The rows of a polish of ``part`` (codes ``Z``, losses, ``fixed`` and
    ``gram`` from :func:`~skinvert.algorithms.polish.polish_batch`) that the
    start decides.

    Clean: the loss fits to rounding at a well-posed support fixed point.
    With a noise level the loss must be within :func:`accept_sd` standard
    deviations of its mean, at a well-posed fixed point or on a boundary
    between support regions (no fixed point: the optimum of the noisy fit
    lies on it); a boundary row with missing entries only where its least
    squares at the stopping point is well posed (:func:`_jacobian_gram`,
    dense layers): where the missing entries leave the code nearly
    undetermined its steps could drift along the flat directions at a loss
    that still fits."""
    xp, dtype = part.xp, part.dtype
    posed = well_posed_fixed_points(fixed, gram, loss, xp, dtype)
    if noise is None:
        return posed & fits_to_rounding(loss, part.Y, part.obs, xp)
    fits = loss <= noise_bound(part, noise.noise_std, accept_sd(noise))
    observed = xp.all(part.obs > 0, axis=1)
    ok = (posed | (~fixed & observed & xp.isfinite(loss))) & fits
    boundary = ~ok & ~fixed & fits & ~observed
    if part.biases is not None and bool(xp.any(boundary)):
        sub = compress_rows(boundary, xp)
        well = well_posed_fixed_points(
            xp.ones((sub.shape[0],), dtype=xp.bool, device=device(Z)),
            _jacobian_gram(xp.take(Z, sub, axis=0), part.take(sub)),
            xp.take(loss, sub, axis=0), xp, dtype,
        )
        ok = ok | scatter_rows(xp.zeros_like(ok), well, boundary, xp)
    return ok


def merge_rest(res, rest, rows, xp):
    """``res`` (a :class:`PursuitResult` of the whole batch) with the rows
    ``rows`` replaced by ``rest`` (the result of those rows alone)."""
    known, rest_loss = res.known_loss(), rest.known_loss()
    res.z = scatter_rows(res.z, rest.z, rows, xp)  # a new z: the recorded loss lapses
    res.supports = [
        scatter_rows(s, xp.astype(r, s.dtype), rows, xp)
        for s, r in zip(res.supports, rest.supports, strict=True)
    ]
    res.hidden = [scatter_rows(h, r, rows, xp) for h, r in zip(res.hidden, rest.hidden,
                                                                  strict=True)]
    for stage, n_bad in rest.not_converged.items():
        if stage in rest.rows:
            zero = xp.zeros(rows.shape, dtype=xp.bool, device=device(rows))
            res.flag(stage, scatter_rows(zero, rest.rows[stage], rows, xp), xp)
        else:
            res.count(stage, n_bad)
    for stage, part in rest.decided.items():
        zero = xp.zeros(rows.shape, dtype=xp.bool, device=device(rows))
        res.mark(stage, scatter_rows(zero, part, rows, xp))
    if rest.n_refresh is not None:
        res.n_refresh = scatter_rows(res.n_refresh, xp.astype(rest.n_refresh, xp.int64), rows,
                                     xp)
    else:
        res.n_refresh = xp.where(rows, xp.zeros_like(res.n_refresh), res.n_refresh)
    if known is not None and rest_loss is not None:
        res.set_loss(scatter_rows(known, rest_loss, rows, xp))
    return res
