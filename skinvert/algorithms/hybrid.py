"""The hybrid inversion of section 6.1: starts, exact polish, selection by loss.

The paper closes its random-weights study (section 6.1) noting that the
layer-wise pursuits fail where a layer's own equations do not determine its
support, while gradient descent, solving a problem in only ``n_0``
unknowns, still succeeds there, and that "a hybrid approach, utilizing both
gradient descent and the layered approach, might be of interest". This
module is that hybrid:

1. **starts**: the layer-wise pursuit's estimate (Algorithm 5) where its
   problems are posed, a linear decoder's estimate (:func:`linear_decoder`,
   fitted on the generator's own samples: a cheap first start for noisy
   signals), and multi-start gradient descent on eq. 1 (all signals x
   restarts in one batch);
2. **exact polish**: Algorithm 1 on the supports of the current estimate,
   alternated with support refresh until the supports are a fixed point
   (:func:`~skinvert.algorithms.polish.polish_batch`);
3. **selection** by the loss of eq. 1; a row stops trying further starts
   once its loss is consistent with the noise level (``noise_std``), or
   with rounding for noiseless signals;
4. **basin hopping** (rows still above that loss after every start):
   further rounds of gradient descent from the row's best code plus a
   scaled shared direction, so each round searches around the best local
   minimum found so far rather than from scratch (with noise, a row whose
   best loss further polished starts keep landing on stops:
   :data:`CONFIRMATIONS`) (measured on the
   convolutional ``fashion-mnist-dcgan``: about 7 times as many exact fits
   per start as fresh N(0, I) starts on the rows the first starts miss);
5. with noise (``HybridStarts.pursuit_first=False``): the pursuit for the
   rows every start leaves far above the noise level, then a search of the
   neighbouring support regions across the hidden units the noise leaves
   in doubt (:mod:`~skinvert.algorithms.neighbours`).
"""

import math

import numpy as np

from .._array_api import device
from .gradient_descent import adam_descent, momentum_descent
from .neighbours import search_neighbours
from .polish import _compress_rows, _scatter_rows, forward_loss, polish_batch

__all__ = [
    "HybridStarts",
    "consistent_loss_bound",
    "decoder_features",
    "hybrid_batch",
    "linear_decoder",
]


class HybridStarts:
    """How the hybrid draws its starts (see :func:`hybrid_batch`).

    Parameters
    ----------
    init_codes : array of shape (R, n_0) or None
        Gradient-descent starting points shared by every row (drawn once, so a
        row's result does not depend on its batch); None: no gradient descent.
    solver : {"adam", "momentum"}
        The gradient-descent solver of the starts.
    learning_rate : float
        Its step (Adam: in z units; momentum: an absolute step, e.g. 1 / L).
    max_iter : int
        Gradient-descent iterations per start.
    pursuit : callable or None
        ``pursuit(Y, obs) -> Z``: the layer-wise pursuit's estimate of a
        batch, or None where its problems are not posed.
    pursuit_first : bool
        The pursuit is the first start of every row (True), or a fallback
        for the rows that every gradient-descent and basin-hopping start
        leaves far above the bound (False: where the pursuit costs far more
        than the starts, e.g. noisy signals).
    per_round : int or None
        Starts run per round (None: all at once); the rows a round fits
        exactly (or to the noise level) skip the later rounds.
    perturb_codes : array of shape (K, n_0) or None
        Shared directions of the basin-hopping starts: a row that no start
        of ``init_codes`` fits restarts from ``z_best + perturb_scale * d_k``
        (``per_round`` of them per round, ``z_best`` its best code so far).
        None: no basin hopping.
    perturb_scale : float
        The step of those starts, in z units.
    low_precision : tuple or None
        ``(weights, biases)`` of the generator in single precision (dense
        arrays, or bound layers and None): double-precision signals then
        descend in single precision (see :func:`_descend`).
    boundary_sd : float
        With ``noise_std``: the last stage tries the neighbouring support
        regions across the hidden units within ``boundary_sd`` noise
        standard deviations of their boundary
        (:func:`~skinvert.algorithms.neighbours.search_neighbours`; dense
        layers). 0: none.
    decoder : callable or None
        ``decoder(Y, obs) -> Z``: a start for every row, polished before the
        gradient-descent rounds (after the pursuit when that comes first),
        e.g. :func:`linear_decoder`'s. None: none.
    decoder_descent : int
        For the rows the polish of the decoder's estimate leaves above the
        bound: gradient-descent iterations (``solver``, ``learning_rate``,
        in single precision with ``low_precision``) from that estimate, then
        its polish, before the rounds of starts. A few move a linear start
        out of the basin that trapped its polish: 10 Adam iterations before
        the polish of every row of 512 noisy signals of a saturating tanh
        generator raised the rows it fits from 95.5-95.9 % to 98.8-99.2 %.
        Run on every row, though, they also led rows the plain polish fitted
        to other noise-consistent minima (one row 1.4x -> 3.4x the Oracle's
        error, RMS 1.08x -> 1.52x at noise 1e-2, draw 3): only the rows left
        take them. 0: none.
    """

    def __init__(self, init_codes, *, solver="adam", learning_rate=0.05, max_iter=300,
                 pursuit=None, per_round=None, perturb_codes=None, perturb_scale=0.5,
                 pursuit_first=True, boundary_sd=0.0, low_precision=None, decoder=None,
                 decoder_descent=0):
        self.decoder = decoder
        self.decoder_descent = decoder_descent
        self.low_precision = low_precision
        self.boundary_sd = boundary_sd
        self.pursuit_first = pursuit_first
        self.per_round = per_round
        self.perturb_codes = perturb_codes
        self.perturb_scale = perturb_scale
        self.init_codes = init_codes
        self.solver = solver
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.pursuit = pursuit


def consistent_loss_bound(Y, obs, xp, *, noise_std=None, n_sd=10.0):
    """The loss of eq. 1 below which a row's fit needs no further start.

    With iid noise of std ``sigma`` on the ``n_obs`` observed entries, the loss
    at the true z is ``sigma^2 / 2`` times a chi-square variable with
    ``n_obs`` degrees of freedom; the bound is its mean plus ``n_sd`` standard
    deviations, ``sigma^2 / 2 (n_obs + n_sd sqrt(2 n_obs))`` (the rule of the
    pursuits' noise retries). Without noise it is rounding:
    ``1/2 (sqrt(eps) ||obs * y||)^2``.
    """
    if noise_std is not None and noise_std > 0:
        n_obs = xp.sum(obs, axis=1)
        return 0.5 * noise_std**2 * (n_obs + n_sd * xp.sqrt(2.0 * n_obs))
    eps = float(xp.finfo(Y.dtype).eps)
    Yo = obs * Y
    return 0.5 * eps * xp.sum(Yo * Yo, axis=1)


def _descend(Z0, Y, obs, weights, biases, activation, xp, starts, gamma, measurement,
             max_iter=None):
    """Gradient descent from the starts ``Z0``; returns ``(Z, loss)``.

    Double-precision input descends in single precision
    (``starts.low_precision``; a measurement is bound in single precision
    too): a start only has to reach the basin of the polish, which runs in
    the input's precision, and the descent's matrix products cost about
    twice as much in double (on 512 noisy signals of a saturating tanh
    generator the starts were 40 % of the hybrid's time; through m = 100
    Gaussian measurements of a tanh net, 80 %). The loss returned is
    recomputed in the input's precision. ``max_iter``: the iterations
    (default ``starts.max_iter``).
    """
    run = adam_descent if starts.solver == "adam" else momentum_descent
    if max_iter is None:
        max_iter = starts.max_iter
    low = starts.low_precision
    if low is not None and Z0.dtype == xp.float64:
        f32 = xp.float32
        meas32 = None
        if measurement is not None:
            meas32 = measurement.to_namespace(xp, dtype=f32, device=device(Z0))
        Z, _, _, _ = run(
            xp.astype(Z0, f32), xp.astype(Y, f32), xp.astype(obs, f32), low[0], low[1],
            activation, xp, learning_rate=starts.learning_rate, alpha=gamma,
            max_iter=max_iter, measurement=meas32,
        )
        Z = xp.astype(Z, Z0.dtype)
        loss, _, _ = forward_loss(Z, Y, obs, weights, biases, activation, xp, gamma=gamma,
                                  measurement=measurement)
        return Z, loss
    Z, loss, _, _ = run(
        Z0, Y, obs, weights, biases, activation, xp, learning_rate=starts.learning_rate,
        alpha=gamma, max_iter=max_iter, measurement=measurement,
    )
    return Z, loss


def hybrid_batch(
    Y, obs, weights, biases, activation, xp, starts, *, measurement=None, gamma=0.0,
    noise_std=None, noise_sd=10.0, polish_max_iter=50, tol=None,
):
    """Invert a batch by the hybrid of section 6.1 (starts, polish, selection).

    Parameters
    ----------
    Y, obs, weights, biases, activation, xp, measurement, gamma
        As in :func:`~skinvert.algorithms.polish.polish_batch`.
    starts : HybridStarts
    noise_std : float or None
        Sets the loss a row must reach to stop trying starts
        (:func:`consistent_loss_bound`).
    noise_sd : float, default=10.0
        That bound's chi-square standard deviations above the mean.
    polish_max_iter, tol
        Of the polish.

    Returns
    -------
    Z : array of shape (B, n_0)
    info : dict of arrays of shape (B,)
        ``"loss"`` (eq. 1 at Z), ``"start"`` (-1: the pursuit's estimate, -3:
        the decoder's, r >= 0: the gradient-descent start from
        ``init_codes[r]``; ``R + k`` with ``R = len(init_codes)``: the
        basin-hopping start along ``perturb_codes[k]``), ``"fixed_point"``
        (the winning polish reached a support fixed point), ``"n_iter"``
        (Gauss-Newton steps of the winning polish) and ``"fits"`` (the loss
        without the ridge is within :func:`consistent_loss_bound`: the noise
        level with ``noise_std``, rounding without).

    Notes
    -----
    Every row first polishes the pursuit's estimate (when there is one, and
    it comes first), then the decoder's (when there is one); the rows whose
    loss is not yet below the bound run gradient descent from
    ``starts.per_round`` starts at once (rows x restarts in one batch), then
    polish these in the order of their gradient-descent loss, one at a time,
    until the bound is met (by the data term of the loss, without the
    ridge); rows still above it take the next round of starts, until the
    starts run out. Rows still above it then hop: each round restarts them
    from their best code so far plus ``perturb_scale`` times the next
    ``per_round`` directions of ``perturb_codes`` (section 6.1's hybrid
    with a basin-hopping outer loop), polished the same way. With
    ``noise_std``, a row within the far bound (below) whose best loss
    :data:`CONFIRMATIONS` further polished starts have landed on takes no
    more starts. With
    ``starts.pursuit_first=False`` the pursuit (and its polish) comes last,
    for the rows whose loss is still more than 10 (or ``noise_sd``)
    chi-square standard deviations above the mean; then, with
    ``noise_std`` and ``starts.boundary_sd``, the boundary search. A row
    returns the lowest loss among every start it ran and every polish of
    one, so its loss is never above that of its best start. Every decision
    is per row: a row's result does not depend on the batch it is in.
    """
    B, n0 = Y.shape[0], weights[0].shape[1]
    dev = device(Y)
    kw = {"measurement": measurement, "gamma": gamma}
    bound = consistent_loss_bound(Y, obs, xp, noise_std=noise_std, n_sd=noise_sd)
    Z = xp.zeros((B, n0), dtype=Y.dtype, device=dev)
    loss = xp.full((B,), float("inf"), dtype=Y.dtype, device=dev)
    start = xp.full((B,), -2, dtype=xp.int32, device=dev)
    fixed = xp.zeros((B,), dtype=xp.bool, device=dev)
    n_iter = xp.zeros((B,), dtype=xp.int32, device=dev)
    # Polished starts that landed on the row's best loss again (to 1e-9,
    # relative) since it was last lowered: see CONFIRMATIONS.
    seen = xp.zeros((B,), dtype=xp.int32, device=dev)
    # The boundary search's covariance: J^T J of each row's polished code
    # (polish_batch's return_gram; NaN where the code is not a polish's
    # fixed point, and the search builds it).
    search = starts.boundary_sd > 0 and bool(noise_std) and biases is not None
    gram = xp.full((B, n0, n0), float("nan"), dtype=Y.dtype, device=dev) if search else None

    def keep(rows, Zc, lc, sc, fc, ic, polished=True, gc=None):
        # Rows `rows` (a mask) take the candidate where it lowers their loss
        # (a polished candidate also where it ties: it carries the diagnostics
        # and its J^T J `gc`).
        nonlocal Z, loss, start, fixed, n_iter, seen, gram
        sub = _compress_rows(rows, xp)

        def take(a):
            return xp.take(a, sub, axis=0)

        old = take(loss)
        better = ((lc <= old) if polished else (lc < old)) & xp.isfinite(lc)
        if polished:
            again = xp.isfinite(lc) & (xp.abs(lc - old) <= 1e-9 * old)
            count = take(seen)
            count = xp.where(again, count + 1, xp.where(better, xp.zeros_like(count), count))
            seen = _scatter_rows(seen, count, rows, xp)
        Z = _scatter_rows(Z, xp.where(better[:, None], Zc, take(Z)), rows, xp)
        loss = _scatter_rows(loss, xp.where(better, lc, take(loss)), rows, xp)
        start = _scatter_rows(start, xp.where(better, sc, take(start)), rows, xp)
        fixed = _scatter_rows(fixed, xp.where(better, fc, take(fixed)), rows, xp)
        n_iter = _scatter_rows(n_iter, xp.where(better, ic, take(n_iter)), rows, xp)
        if gram is not None:
            if gc is None:
                gc = xp.full((sub.shape[0], n0, n0), float("nan"), dtype=Y.dtype, device=dev)
            gram = _scatter_rows(gram, xp.where(better[:, None, None], gc, take(gram)), rows, xp)

    keep.state = lambda: (Z, loss, start, fixed, n_iter)
    keep.want_gram = gram is not None

    def data_term(Zc, lc):
        # The loss without the ridge: what the bounds are on.
        return lc - 0.5 * gamma * xp.sum(Zc * Zc, axis=1)

    def fits(Zc, lc):
        return data_term(Zc, lc) <= bound

    def polished_start(rows, estimate=None, code=-1, descent=0):
        # The estimate (default: the pursuit's) of the rows `rows` (a mask),
        # `descent` gradient-descent iterations from it, and its polish,
        # numbered `code` in info["start"].
        n_rows = int(xp.sum(xp.astype(rows, xp.int32)))
        if n_rows == 0:
            return
        sub = _compress_rows(rows, xp)
        Ys, Os = xp.take(Y, sub, axis=0), xp.take(obs, sub, axis=0)
        Zp = (estimate or starts.pursuit)(Ys, Os)
        if descent:
            Zp, lp = _descend(Zp, Ys, Os, weights, biases, activation, xp, starts, gamma,
                              measurement, max_iter=descent)
        else:
            lp, _, _ = forward_loss(Zp, Ys, Os, weights, biases, activation, xp, **kw)
        mark = xp.full((n_rows,), code, dtype=xp.int32, device=dev)
        no = xp.zeros((n_rows,), dtype=xp.bool, device=dev)
        keep(rows, Zp, lp, mark, no, xp.zeros((n_rows,), dtype=xp.int32, device=dev), False)
        Zq, lq, iq, fq, *gq = polish_batch(Zp, Ys, Os, weights, biases, activation, xp, **kw,
                                           max_iter=polish_max_iter, tol=tol,
                                           return_gram=search)
        keep(rows, Zq, lq, mark, fq, iq, gc=gq[0] if gq else None)

    late = starts.pursuit is not None and not starts.pursuit_first
    # The pursuit as a fallback takes the rows every start leaves far from
    # the noise level (the pursuits' own retry bound, 10 standard
    # deviations): its per-row cost is far above a start's (measured: run
    # before basin hopping it took 22 % of the time on 512 noisy saturating
    # tanh signals, mostly on rows the hopping fixes), and rows just above
    # the bound are either in the chi-square tail or next to the right
    # region (the boundary search).
    far = consistent_loss_bound(Y, obs, xp, noise_std=noise_std, n_sd=max(noise_sd, 10.0))

    def far_off():
        return data_term(*keep.state()[:2]) > far

    def settled():
        # With noise: rows whose best loss, within the far bound, further
        # polished starts keep landing on (CONFIRMATIONS times).
        if not noise_std:
            return xp.zeros((B,), dtype=xp.bool, device=dev)
        return (seen >= CONFIRMATIONS) & ~far_off()

    if starts.pursuit is not None and starts.pursuit_first:
        polished_start(xp.ones((B,), dtype=xp.bool, device=dev))
    if starts.decoder is not None:
        polished_start(~fits(*keep.state()[:2]), starts.decoder, DECODER_START)
        if starts.decoder_descent:  # the rows its polish left: a few descent steps first
            polished_start(~fits(*keep.state()[:2]), starts.decoder, DECODER_START,
                           starts.decoder_descent)
    R = 0 if starts.init_codes is None else starts.init_codes.shape[0]
    K = 0 if starts.perturb_codes is None else starts.perturb_codes.shape[0]
    ahead = None  # the descents of later shared starts, run ahead (SHARED_AHEAD_ROWS)
    for first, last in _rounds(R, K, starts.per_round):
        todo = ~fits(*keep.state()[:2]) & ~settled()
        n_todo = int(xp.sum(xp.astype(todo, xp.int32)))
        if n_todo == 0:
            break
        descended = None
        if last <= R:  # starts from init_codes[first:last], shared by every row
            if ahead is None and last < R and n_todo * (R - first) <= SHARED_AHEAD_ROWS:
                # Few rows left: the descents from every remaining shared
                # start in one batch (a round's cost is then mostly per
                # iteration, not per row); the rounds still use them in turn.
                ahead = (todo, first) + _descend_starts(
                    todo, n_todo, range(first, R), Y, obs, weights, biases, activation, xp,
                    starts, kw)
            if ahead is not None:
                a_todo, a_first, a_Z, a_l = ahead
                pos = _compress_rows(xp.take(todo, _compress_rows(a_todo, xp), axis=0), xp)
                descended = tuple(xp.take(a[first - a_first : last - a_first, ...], pos, axis=1)
                                  for a in (a_Z, a_l))
            Z0 = _shared_codes(starts, range(first, last), n_todo, xp)
        else:  # basin hopping around each row's best code
            Zb = xp.take(keep.state()[0], _compress_rows(todo, xp), axis=0)
            Z0 = xp.concat([Zb + starts.perturb_scale * starts.perturb_codes[r - R : r - R + 1, :]
                            for r in range(first, last)])
        _round(todo, n_todo, Z0, range(first, last), keep, fits, Y, obs,
               weights, biases, activation, xp, starts, kw, polish_max_iter, tol, descended)
    if late:
        polished_start(far_off())
    if search:
        Z, loss, start, fixed, n_iter = keep.state()
        Zn, ln, _ = search_neighbours(Z, loss, Y, obs, weights, biases, activation, xp,
                                      noise_std=noise_std, c=starts.boundary_sd, **kw,
                                      polish_max_iter=polish_max_iter, tol=tol, gram=gram)
        keep(xp.ones((B,), dtype=xp.bool, device=dev), Zn, ln, start, fixed, n_iter, False)
    Z, loss, start, fixed, n_iter = keep.state()
    info = _info(loss, start, fixed, n_iter)
    info["fits"] = fits(Z, loss)
    return Z, info


#: ``info["start"]`` of a row whose code came from the decoder's start.
DECODER_START = -3

#: With noise, a row stops taking gradient-descent and basin-hopping starts
#: once this many further polished starts have landed on its best loss (to
#: 1e-9, relative) and that loss is within the far bound (10 chi-square
#: standard deviations, where the pursuit fallback takes over): a row
#: legitimately above the noise bound (the chi-square tail, about 0.13 % of
#: rows at 3 standard deviations) otherwise ran every start, each returning
#: to the minimum it had (measured: 12 rounds of starts, 0.3-0.45 s, for one
#: such row in 512 signals of ``fashion-mnist-fc`` or a saturating tanh
#: generator at noise 1e-2).
CONFIRMATIONS = 3


def linear_decoder(forward, n_0, rng, *, noise_std=None, n_samples=8000, ridge=1e-3,
                   chunk=1000, features=None):
    """A linear map from signals to codes, fitted on the generator's own samples.

    Draws ``z ~ N(0, I)``, computes ``y = forward(z)`` (the generator, or
    the generator seen through the measurement) plus Gaussian noise of
    ``noise_std``, and fits the ridge regression ``z ~ (y - mean) C``. As a
    start of the hybrid it replaces most gradient-descent starts on noisy
    signals: 512 signals at noise 1e-2 of a saturating tanh generator
    (20-128-392-784, 32 % of pixels beyond 0.999), polished from this start
    alone, 90 % fit the noise level (relative error of the start itself:
    0.53, median). Not in the paper: a cheap deterministic start, fitted
    once per generator in ``fit``.

    Parameters
    ----------
    forward : callable
        ``forward(Z) -> Y`` on NumPy arrays (rows).
    n_0 : int
        The latent dimension.
    rng : numpy.random.Generator
    noise_std : float or None
        Noise added to the samples (the regime of the signals to invert).
    n_samples : int
        Samples drawn (in chunks of ``chunk`` rows).
    ridge : float
        Ridge, relative to the mean variance of the outputs.
    features : callable or None
        ``features(Y) -> F`` (NumPy, rows), applied to the noisy outputs:
        the regression is on ``F`` (e.g. :func:`decoder_features`). None:
        ``F = Y``.

    Returns
    -------
    mean : ndarray of shape (p,)
        The features' mean (missing entries of a signal take it).
    coef : ndarray of shape (p, n_0)
    offset : ndarray of shape (n_0,)
        ``z0 = (f(y) - mean) @ coef + offset`` (the codes' sample mean).
    """
    sums = gram = cross = zsum = 0.0  # accumulated over the chunks
    for lo in range(0, n_samples, chunk):
        Zc = rng.standard_normal((min(chunk, n_samples - lo), n_0))
        Yc = np.asarray(forward(Zc), dtype=np.float64)
        if noise_std:
            Yc = Yc + noise_std * rng.standard_normal(Yc.shape)
        if features is not None:
            Yc = features(Yc)
        sums = sums + Yc.sum(axis=0)
        zsum = zsum + Zc.sum(axis=0)
        gram = gram + Yc.T @ Yc
        cross = cross + Yc.T @ Zc
    mean, zmean = sums / n_samples, zsum / n_samples
    cov = gram - n_samples * np.outer(mean, mean)
    cxz = cross - n_samples * np.outer(mean, zmean)
    lam = ridge * max(float(np.trace(cov)) / cov.shape[0], np.finfo(np.float64).tiny)
    coef = np.linalg.solve(cov + lam * np.eye(cov.shape[0]), cxz)
    return mean, coef, zmean


#: The inverse features of :func:`decoder_features` clip a bounded phi's
#: outputs where ``phi'`` falls to 2 % of its peak (tanh: ``|y| <= 0.99``).
INVERSE_FEATURE_SLOPE = 0.0199


def decoder_features(activation, xp):
    """``f(Y) = [Y, phi^-1(Y)]`` for :func:`linear_decoder`, or None.

    A linear start in these features reaches further than one in ``Y``
    alone: ``phi^-1(y)`` is the last layer's pre-activation, piecewise
    linear in z, where ``y`` saturates. For a bounded phi (tanh, sigmoid)
    ``y`` is first clipped where ``phi'`` falls to
    :data:`INVERSE_FEATURE_SLOPE` of its peak (``|y| <= 0.99`` for tanh),
    as noise there would be amplified without bound. Measured on 512
    noisy signals of a saturating tanh generator (1e-3, 1e-2, two draws):
    relative error of the start 0.50-0.56 -> 0.38-0.46 (median), rows the
    polish of the start fits 89-90 % -> 96 %, that polish 10-20 % faster;
    ``fashion-mnist-fc`` (PLU): 0.37 -> 0.28-0.30, polish 5-8 % faster.
    None for the identity (``phi^-1(y) = y``).
    """
    name = activation.name
    if name == "identity":
        return None
    lo = hi = None
    if name in ("tanh", "sigmoid"):
        t = math.sqrt(1.0 - INVERSE_FEATURE_SLOPE)  # tanh(u_max) (tanh(u_max / 2) for sigmoid)
        lo, hi = (-t, t) if name == "tanh" else (0.5 * (1.0 - t), 0.5 * (1.0 + t))

    def features(Y):
        Yc = Y if lo is None else xp.clip(Y, min=lo, max=hi)
        return xp.concat([Y, activation.inverse(Yc, xp)], axis=1)

    return features


def _rounds(R, K, per_round):
    """``(first, last)`` start numbers of each round: the ``R`` shared starts,
    then the ``K`` basin-hopping ones (never mixed in one round)."""
    out = []
    for lo, n in ((0, R), (R, K)):
        step = max(1, min(n, per_round or n))
        out += [(a, min(lo + n, a + step)) for a in range(lo, lo + n, step)]
    return out


#: With at most this many (row, start) pairs left among the shared starts,
#: the descents of every remaining shared start run at once, ahead of their
#: rounds (which still polish them in turn, and stop a row as before): a
#: round of descents on a few rows costs about as much as on many (300
#: iterations of per-call overhead). Measured on 512 noisy signals of a
#: saturating tanh generator (1e-2), where two rows took the rounds: their
#: descents 0.136 -> 0.069 s, the rounds 0.22 -> 0.10 s.
SHARED_AHEAD_ROWS = 64


def _shared_codes(starts, restarts, n_todo, xp):
    """The shared starts ``init_codes[restarts]`` for ``n_todo`` rows,
    restart-major: (len(restarts) * n_todo, n_0)."""
    n0 = starts.init_codes.shape[1]
    return xp.concat([xp.broadcast_to(starts.init_codes[r : r + 1, :], (n_todo, n0))
                      for r in restarts])


def _descend_starts(todo, n_todo, restarts, Y, obs, weights, biases, activation, xp, starts,
                    kw):
    """Gradient descent from the shared starts ``init_codes[restarts]`` for
    the rows ``todo``: ``(Z, loss)`` of shapes (R, n_todo, n_0), (R, n_todo)."""
    return _descend_rows(todo, n_todo, _shared_codes(starts, restarts, n_todo, xp),
                         len(restarts), Y, obs, weights, biases, activation, xp, starts, kw)


def _descend_rows(todo, n_todo, Z0, R, Y, obs, weights, biases, activation, xp, starts, kw):
    """Gradient descent from ``Z0`` (restart-major, ``R * n_todo`` rows) for the
    rows ``todo``: ``(Z, loss)`` of shapes (R, n_todo, n_0), (R, n_todo)."""
    rows = _compress_rows(todo, xp)
    Yt, Ot = xp.take(Y, rows, axis=0), xp.take(obs, rows, axis=0)
    Yr, Or = xp.concat([Yt] * R), xp.concat([Ot] * R)
    Zg, lg = _descend(Z0, Yr, Or, weights, biases, activation, xp, starts, kw["gamma"],
                      kw["measurement"])
    return xp.reshape(Zg, (R, n_todo, Z0.shape[1])), xp.reshape(lg, (R, n_todo))


def _round(todo, n_todo, Z0, restarts, keep, fits, Y, obs, weights, biases, activation, xp,
           starts, kw, polish_max_iter, tol, descended=None):
    """One round: gradient descent from the starts ``Z0`` (restart-major,
    ``len(restarts) * n_todo`` rows, numbered ``restarts``) for the rows
    ``todo`` (or their results ``descended``, run ahead), then their polish
    in the order of the gradient-descent loss until each row meets the
    bound."""
    dev = device(Y)
    n0 = Z0.shape[1]
    R = len(restarts)
    if descended is None:
        descended = _descend_rows(todo, n_todo, Z0, R, Y, obs, weights, biases, activation,
                                  xp, starts, kw)
    Zg, lg = descended
    # (The rows' signals for their polish: taken after the descent, whose
    # repeated copies are freed by then.)
    rows = _compress_rows(todo, xp)
    Yt, Ot = xp.take(Y, rows, axis=0), xp.take(obs, rows, axis=0)
    no = xp.zeros((n_todo,), dtype=xp.bool, device=dev)
    zero_it = xp.zeros((n_todo,), dtype=xp.int32, device=dev)
    for k, r in enumerate(restarts):
        keep(todo, Zg[k, ...], lg[k, ...], xp.full((n_todo,), r, dtype=xp.int32, device=dev),
             no, zero_it, False)
    # Polish the starts of each remaining row in the order of their loss.
    order = xp.argsort(lg, axis=0, stable=True)  # (R, n_todo): k-th best start per row
    for k in range(R):
        sub_todo = xp.take(~fits(*keep.state()[:2]), rows, axis=0)  # rows still to fit
        if not bool(xp.any(sub_todo)):
            break
        pending = _scatter_rows(todo, sub_todo, todo, xp) & todo
        idx = _compress_rows(sub_todo, xp)
        rk = xp.take(order[k, ...], idx, axis=0)
        Zk = xp.take(xp.reshape(Zg, (R * n_todo, n0)), rk * n_todo + idx, axis=0)
        Zq, lq, iq, fq, *gq = polish_batch(
            Zk, xp.take(Yt, idx, axis=0), xp.take(Ot, idx, axis=0), weights, biases,
            activation, xp, **kw, max_iter=polish_max_iter, tol=tol,
            return_gram=keep.want_gram,
        )
        keep(pending, Zq, lq, xp.astype(rk, xp.int32) + restarts[0], fq, iq,
             gc=gq[0] if gq else None)


def _info(loss, start, fixed, n_iter):
    return {"loss": loss, "start": start, "fixed_point": fixed, "n_iter": n_iter}
