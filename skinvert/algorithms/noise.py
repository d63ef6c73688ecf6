"""Support rules of the pursuits: lambda and the support of every layer.

- :class:`SupportRule` -- fixed ``lambda_i`` and the support
  ``S_i = {k : x_i[k] > support_tol max_k x_i[k]}`` (``|x_i|`` for the signed
  lassos of Algorithm 2);
- :class:`NoiseRule` -- thresholds from the noise level ``noise_std``
  (Theorem 3, eq. 21; gains from :func:`noise_gains`), with the
  noise-consistency retries of :func:`retry_thresholds`;
- Algorithm 2's epsilon rule lives with its driver
  (:class:`~skinvert.algorithms.layered_bp.EpsilonRule`).

A rule is configured once (per call) and started per batch (``start``), which
returns a fresh object holding the batch's state.
"""

from dataclasses import dataclass, replace

import numpy as np

from .._array_api import device, single_threaded_blas, to_numpy
from .._linalg import compress_rows, host_block_rows, row_blocks, row_weighted_gram, scatter_rows

__all__ = [
    "NoiseModel",
    "NoiseRule",
    "SupportRule",
    "noise_bound",
    "noise_gain",
    "noise_gains",
    "retry_thresholds",
    "settle_noisy_rows",
    "support_mask",
]


def support_mask(x, tol, xp, nonneg, floor=None):
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


class SupportRule:
    """Fixed ``lambda_i`` per hidden layer and the relative support threshold.

    Parameters
    ----------
    lam : tuple
        ``lambda_i`` of ``x_1..x_L`` (index ``i - 1``), floats or (B,) arrays.
    support_tol : float
    nonneg : bool
        Latent-Pursuit (supports of ``x``) or Layered BP (of ``|x|``).
    """

    def __init__(self, lam, support_tol, nonneg):
        self._lams = tuple(lam)
        self.support_tol = support_tol
        self.nonneg = nonneg

    def start(self, batch, U, w):
        """The rule's state for one batch (``U, w``: the image-layer target)."""
        return self

    def lam(self, i):
        """``lambda_i`` of the hidden layer ``x_i`` (i = 1..L)."""
        return self._lams[min(i - 1, len(self._lams) - 1)]

    def uses_image_gram(self):
        """Whether :meth:`support` reads the image layer's per-row Gram
        matrices (``gram``), so the solver should keep them."""
        return False

    def support(self, x, i, W, rows, xp, gram=None):
        """``S_i`` of the estimate ``x`` of ``x_i`` (``W = W_i``, ``rows`` its
        equations, ``gram`` their per-row Gram matrices when a solver formed
        them)."""
        return support_mask(x, self.support_tol, xp, self.nonneg)

    def image_rows(self, U, w, activation, xp):
        """Row weights of the image layer's least squares on ``U = phi^-1(y)``:
        the usable entries ``w`` (0/1) without a noise model."""
        return w


def noise_gains(weights):
    """Per-layer noise gains ``g_i`` of :class:`NoiseRule`, i = 0..L.

    ``g_i = sqrt(mean_j 1 / lambda_j)`` over the ``k = min(n_i, ceil(n_{i+1}/2))``
    largest eigenvalues of ``W_i^T W_i / 2``: the root-mean-square error gain of
    the least squares of ``x_i`` from a target with unit iid noise on the
    rows of a support holding about half of the ``n_{i+1}`` entries (Theorem 3,
    eq. 21, with ``trace((Wbar^T Wbar)^-1) / s`` in place of its bounds; half
    the rows halve the Gram matrix). Computed once per generator.
    """
    gains = []
    for W in weights:
        W = np.asarray(to_numpy(W), dtype=np.float64)
        gains.append(noise_gain(np.linalg.eigvalsh(W.T @ W)[::-1], W.shape[0]))
    return tuple(gains)


def noise_gain(eigenvalues, n_rows):
    """``g_i`` of :func:`noise_gains` from the eigenvalues of ``W_i^T W_i``
    (float64, in descending order) and ``n_{i+1}``, the rows of ``W_i``."""
    k = max(1, min(eigenvalues.shape[0], -(-n_rows // 2)))
    top = np.clip(eigenvalues[:k] / 2.0, np.finfo(np.float64).tiny, None)
    return float(np.sqrt(np.mean(1.0 / top)))


@dataclass(frozen=True)
class NoiseModel:
    """The noise level of ``y`` and the knobs of :class:`NoiseRule`.

    Attributes
    ----------
    noise_std : float
        Standard deviation of the iid Gaussian noise on the observed entries.
    gains : tuple of float or None
        ``g_i`` of :func:`noise_gains` (None: computed from the batch's weights).
    c : float, default=1.0
        Support threshold in error standard deviations.
    retries : tuple of float, default=(3.0, 0.5, 6.0, 2.0, 10.0)
        Scalings of ``c`` tried, in turn, on rows that fit badly
        (:func:`retry_thresholds`; empty: no retries).
    retry_sd : float, default=10.0
        "Badly": a loss this many chi^2 standard deviations above its mean.
    image : {"entrywise", "average", "unweighted"}, default="entrywise"
        The image layer's noise model for a smooth phi (:class:`NoiseRule`):
        weighted least squares with per-entry thresholds from the weighted
        Gram matrix, weighted with one threshold per layer from the average
        weight, or unit weights with the median-gain threshold (the model
        of a piecewise-linear phi).
    image_retries : tuple of str, default=("average", "unweighted")
        The other image models tried first on rows that fit badly (a row
        whose image layer is nearly undetermined, e.g. most pixels
        saturated, can go wrong under any one model).
    polish_rounds : int, default=3
        Rounds of the polish stage on the rows still inconsistent
        (:func:`settle_noisy_rows`).
    polish_sd : float, default=4.0
        The polish takes the rows whose loss exceeds its mean by this many
        chi^2 standard deviations (a stricter test than ``retry_sd``: the
        polish only keeps a lower loss, and a wrong unit near a region
        boundary raises the loss by a few standard deviations only).
    """

    noise_std: float
    gains: tuple = None
    c: float = 1.0
    retries: tuple = (3.0, 0.5, 6.0, 2.0, 10.0)
    retry_sd: float = 10.0
    image: str = "entrywise"
    image_retries: tuple = ("average", "unweighted")
    polish_rounds: int = 3
    polish_sd: float = 4.0


class NoiseRule(SupportRule):
    """Support thresholds from the noise level ``noise_std`` of ``y``.

    ``y = G(z) + e`` with ``e ~ N(0, noise_std^2 I)`` on the observed entries.
    The image-layer target ``u = phi^-1(y)`` then carries noise of standard
    deviation ``noise_std / phi'(u_k)`` on entry ``k``, of per-sample RMS
    ``delta_{L+1} = noise_std * sqrt(median_k phi'(u_k)^-2)`` (``ell`` of
    eq. 7 in RMS rather than worst case). Each layer estimate multiplies the
    error by its gain (:func:`noise_gains`): ``delta_i = g_i delta_{i+1}``,
    the RMS error of ``x_i`` on its support expected from Theorem 3
    (eq. 21). The support of ``x_i`` is then
    ``S_i = {k : x_i[k] > c * delta_i}``: an entry within the error level of
    0 is not trusted as an equation for the layer below. It becomes one of
    eq. 9's ReLU inequalities instead, which is right for a spurious entry
    (its true pre-activation is negative, often far below 0, so the
    equation ``W_k x + b_k = x_hat_k ~ 0`` would pull the layer below far
    off) and costs about the threshold for a small true one, which the
    support refresh of the debiasing then recovers.
    """

    def __init__(self, lam, support_tol, nonneg, model):
        super().__init__(lam, support_tol, nonneg)
        self.model = model
        self.delta = None

    def with_model(self, model):
        """The same rule with another :class:`NoiseModel` (e.g. another ``c``)."""
        return NoiseRule(self._lams, self.support_tol, self.nonneg, model)

    def image_rows(self, U, w, activation, xp):
        if activation.piecewise_linear or self.model.image == "unweighted":
            return w
        d = activation.derivative(U, xp) / _peak_derivative(activation, U, xp)
        return w * d * d

    def start(self, batch, U, w):
        xp = batch.xp
        rule = self.with_model(self.model)
        gains = self.model.gains
        rule.gains = noise_gains(batch.weights) if gains is None else gains
        act = batch.activation
        weighted = not act.piecewise_linear and self.model.image != "unweighted"
        rule.weighted = weighted and self.model.image == "entrywise"
        rule.n_layers = batch.n_layers
        if weighted and not rule.weighted:
            # Weighted image layer, one threshold: an unweighted least squares
            # with the noise of the average weight.
            rows = self.image_rows(U, w, act, xp)
            tiny = float(xp.finfo(U.dtype).smallest_normal)
            sd = self.model.noise_std / _peak_derivative(act, U, xp)
            rule.delta = sd / xp.sqrt(xp.clip(xp.mean(rows, axis=1), min=tiny))
            return rule
        if rule.weighted:
            # Weighted image layer (see image_rows): the noise of the
            # weighted equations, in the units of u = phi^-1(y) where phi'
            # is largest; the image layer's thresholds come from its
            # weighted Gram matrix (see support).
            sd = self.model.noise_std / _peak_derivative(act, U, xp)
            rule.delta = xp.full((U.shape[0],), sd, dtype=U.dtype, device=device(U))
            return rule
        d = act.derivative(U, xp)
        ok = w > 0
        inv2 = xp.where(ok, 1.0 / xp.where(d > 0, d * d, xp.ones_like(d)), xp.zeros_like(d))
        # Median over the usable entries (missing ones sort last): robust to
        # the few nearly saturated entries of tanh / sigmoid.
        n_ok = xp.sum(xp.astype(ok, xp.int64), axis=1)
        srt = xp.sort(xp.where(ok, inv2, xp.full_like(inv2, float("inf"))), axis=1)
        mid = xp.take_along_axis(srt, xp.clip(n_ok // 2, max=U.shape[1] - 1)[:, None], axis=1)[
            :, 0
        ]
        rule.delta = self.model.noise_std * xp.sqrt(mid)  # delta_{L+1}, (B,)
        return rule

    def uses_image_gram(self):
        return bool(getattr(self, "weighted", False))

    def support(self, x, i, W, rows, xp, gram=None):
        if getattr(self, "weighted", False) and i == self.n_layers:
            # Weighted image layer: the error of x_L[j] has standard
            # deviation delta_{L+1} sqrt((W^T diag(w) W)^-1_jj) (Theorem 3's
            # covariance with the weighted Gram matrix; rows with many
            # saturated pixels determine x_L far less well than the average
            # gain says). Entry j is in the support above c times its own.
            var = _inverse_diagonal(gram, W, rows, x.shape[0], xp)
            std = self.delta[:, None] * xp.sqrt(xp.clip(var, min=0.0))
            S = support_mask(x, self.support_tol, xp, self.nonneg) & (x > self.model.c * std)
            # delta_L: the RMS error of x_L, for the layers below.
            self.delta = xp.sqrt(xp.mean(std * std, axis=1))
            return S
        # Advance to x_i's error level: its threshold is c delta_i.
        self.delta = self.gains[i] * self.delta
        return support_mask(x, self.support_tol, xp, self.nonneg, self.model.c * self.delta)


def _inverse_diagonal(gram, W, rows, B, xp):
    """``diag((W^T diag(w_b) W)^-1)`` per row (B, k), from ``gram`` when given,
    in blocks of rows (:func:`~skinvert._linalg.host_block_rows`)."""
    k = W.shape[1]
    if gram is None and rows is None:
        with single_threaded_blas(xp):
            d = xp.linalg.diagonal(xp.linalg.inv(_jittered(W.T @ W, xp)))
        return xp.broadcast_to(d[None, :], (B, k))
    parts = []
    for sl in row_blocks(B, host_block_rows(xp, W.dtype, 3 * k * k, minimum=8)):
        G = gram[sl, ...] if gram is not None else row_weighted_gram(W, rows[sl, ...], xp)
        with single_threaded_blas(xp):
            parts.append(xp.linalg.diagonal(xp.linalg.inv(_jittered(G, xp))))
    return parts[0] if len(parts) == 1 else xp.concat(parts)


def _jittered(G, xp):
    """``G + k eps max diag(G) I`` (the jitter of the solvers' Gram systems)."""
    k = G.shape[-1]
    diag = xp.linalg.diagonal(G)
    scale = xp.max(diag, axis=-1)
    jit = k * float(xp.finfo(G.dtype).eps) * xp.where(scale > 0, scale, xp.ones_like(scale))
    eye = xp.eye(k, dtype=G.dtype, device=device(G))
    return G + (jit[..., None, None] if G.ndim == 3 else jit) * eye


def _peak_derivative(activation, U, xp):
    """``phi'(0)``, the largest slope of tanh / sigmoid (1 and 1/4)."""
    return float(activation.derivative(xp.zeros((1,), dtype=U.dtype), xp)[0])


def noise_bound(batch, noise_std, n_sd):
    """Largest loss of eq. 1 consistent with the noise, per row.

    At the true ``z`` the loss is ``1/2 noise_std^2`` times a chi-square
    variable with ``n_obs`` degrees of freedom (mean ``n_obs``, standard
    deviation ``sqrt(2 n_obs)``); the bound is its mean plus ``n_sd``
    standard deviations.
    """
    xp = batch.xp
    n_obs = xp.sum(batch.obs, axis=1)
    return 0.5 * noise_std**2 * (n_obs + n_sd * xp.sqrt(2.0 * n_obs))


def _keep_better(res, loss, bad, part, z_new, gamma, xp, stage):
    """Rows ``bad`` of ``res.z`` take ``z_new`` where it lowers the loss beyond
    rounding (marked as decided by ``stage``); returns the updated loss."""
    sub = compress_rows(bad, xp)
    lt = part.loss(z_new, gamma)
    old = xp.take(loss, sub, axis=0)
    eps = float(xp.finfo(old.dtype).eps)
    better = xp.isfinite(lt) & (lt < old * (1.0 - 1e3 * eps))
    zs = xp.where(better[:, None], z_new, xp.take(res.z, sub, axis=0))
    res.z = scatter_rows(res.z, zs, bad, xp)
    res.mark(stage, scatter_rows(xp.zeros_like(bad), better, bad, xp))
    return scatter_rows(loss, xp.where(better, lt, old), bad, xp)


def settle_noisy_rows(res, batch, run, model, gamma, *, polish=None):
    """Rows whose fit is inconsistent with the noise level: retried, polished, reported.

    With ``y = G(z) + e``, ``e ~ N(0, noise_std^2 I)``, a row whose final loss
    exceeds :func:`noise_bound` with ``model.retry_sd`` standard deviations
    has a wrong support estimate that the debiasing and the refresh did not
    repair (measured on 1-3 % of the rows of the shipped generator at
    sigma = 1e-3, and on saturating tanh generators). Such rows, and only
    they:

    1. are solved again under the other image models
       ``model.image_retries`` (smooth phi), then with the threshold ``c``
       scaled by each of ``model.retries`` in turn (a larger one drops
       spurious entries, a smaller one keeps small true ones;
       ``run(sub_batch, model)`` runs the pursuit on the rows of
       ``sub_batch``);
    2. the rows above the stricter bound of ``model.polish_sd`` go to
       ``polish(sub_batch, z0, gamma, attempt=a)``,
       ``a = 0 .. model.polish_rounds - 1`` (a stage that
       continues from the estimate on eq. 1 itself, e.g. gradient descent
       across the boundaries of the linear regions, trying harder with
       ``attempt``; None: none), while any row stays inconsistent;
    3. the rows still inconsistent are counted in ``res`` as not converged
       ("the noise-consistency check"), so the estimator warns instead of
       returning them silently.

    A row keeps the estimate with the lowest loss and stops once its loss is
    consistent with the noise. Only ``z`` is updated.
    """
    xp = batch.xp
    bound = noise_bound(batch, model.noise_std, model.retry_sd)
    loss = batch.loss(res.z, gamma)
    smooth = not batch.activation.piecewise_linear
    trials = [replace(model, image=m) for m in model.image_retries if smooth]
    trials += [replace(model, c=model.c * scale) for scale in model.retries]
    for trial_model in trials:
        bad = ~(loss <= bound)
        if not bool(xp.any(bad)):
            break
        part = batch.take(compress_rows(bad, xp))
        trial = run(part, trial_model)
        loss = _keep_better(res, loss, bad, part, trial.z, gamma, xp, "noise retry")
    polish_bound = noise_bound(batch, model.noise_std, model.polish_sd)
    bad = ~(loss <= polish_bound)
    for attempt in range(model.polish_rounds if polish is not None else 0):
        if not bool(xp.any(bad)):
            break
        sub = compress_rows(bad, xp)
        part = batch.take(sub)
        z_new = polish(part, xp.take(res.z, sub, axis=0), gamma, attempt=attempt)
        loss = _keep_better(res, loss, bad, part, z_new, gamma, xp, "noise polish")
        bad = ~(loss <= polish_bound)
    bad = ~(loss <= bound)
    res.flag("the noise-consistency check (loss above the noise level)", bad, xp)


def retry_thresholds(res, batch, run, model, gamma):
    """:func:`settle_noisy_rows` without a polish stage (kept for callers of the
    earlier name)."""
    settle_noisy_rows(res, batch, run, model, gamma)
