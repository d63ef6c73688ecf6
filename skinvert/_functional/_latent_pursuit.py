"""latent_pursuit (Algorithm 5) and its private twin _latent_pursuit."""

from dataclasses import replace

import numpy as np
from sklearn.utils._param_validation import validate_params

from ..algorithms.latent_pursuit import pursuit
from ..algorithms.noise import noise_gains
from ..solvers import resolve_solver
from ._common import (
    _COMMON,
    _POS,
    _RETRIES,
    _batch_of,
    _declared_noiseless,
    _output,
    _refinement,
    _rule,
    _single_threaded,
    _warn,
    per_layer,
)

__all__ = ["_latent_pursuit", "latent_pursuit"]


def _latent_pursuit(
    batch,
    *,
    lam=0.0,
    gamma=0.0,
    solver="active_set",
    rho=1e-2,
    support_tol=1e-6,
    max_iter=1000,
    tol=1e-10,
    refine_max_iter=30,
    debias=True,
    debias_max_iter=30,
    refresh_max_iter=10,
    fallback_max_iter=0,
    fallback_tol=1e-6,
    noise_std=None,
    noise_gains=None,
    noise_c=1.0,
    noise_retries=_RETRIES,
    noise_retry_sd=10.0,
    noise_model_changes=None,
    start=None,
):
    """:func:`latent_pursuit` on a :class:`Batch`, without validation; returns a PursuitResult.

    ``noise_model_changes`` (a dict, None: none) replaces fields of the
    :class:`~skinvert.algorithms.noise.NoiseModel` that settles the rows
    whose fit is inconsistent with the noise (its retries and polish
    rounds): a caller that continues those rows itself
    (:class:`~skinvert.HybridInverter`'s pursuit start) asks for less.
    ``start`` (``start(Y, obs) -> Z0``, None: the linearized network's least
    squares) starts the polish before the pass
    (:func:`~skinvert.algorithms._polish_start.polish_start`).
    """
    rhos = per_layer(rho, max(batch.n_layers, 1), "rho")
    plan = resolve_solver(
        solver, nonneg=True, max_iter=max_iter, tol=tol, refine_max_iter=refine_max_iter, rho=rhos
    )
    rule, model = _rule(
        batch,
        lam,
        support_tol,
        True,
        noise_std,
        noise_gains,
        noise_c,
        noise_retries,
        noise_retry_sd,
    )
    refinement = _refinement(
        debias, debias_max_iter, refresh_max_iter, fallback_max_iter, fallback_tol,
        noiseless=_declared_noiseless(lam, noise_std, gamma=gamma),
    )
    if (polish_start_applies(lam, gamma, refinement.debias, refinement.refresh_max_iter)
            and noise_model_changes is None):
        # The polish from the linearized network first, on clean rows of a
        # wide image layer and on every noisy row
        # (skinvert.algorithms._polish_start); not for the hybrid's own
        # pursuit start under noise (noise_model_changes).
        refinement = replace(refinement, polish_start=True)
    if model is not None and noise_model_changes:
        model = replace(model, **noise_model_changes)
    return pursuit(
        batch,
        plan,
        rule,
        nonneg=True,
        constraints=True,
        gamma=float(gamma),
        refinement=refinement,
        noise=model,
        start=start,
    )


def polish_start_applies(lam, gamma, debias, refresh_max_iter):
    """Whether Latent-Pursuit polishes from a start before its pass: the
    refresh and the debiasing on, ``lam = 0``, ``gamma = 0`` (the image
    solver must also be exact: checked by the pursuit)."""
    return bool(refresh_max_iter > 0 and debias and not gamma and not np.any(np.asarray(lam)))


@validate_params(
    {**_COMMON, "gamma": [_POS], "rho": [_POS, "array-like"]}, prefer_skip_nested_validation=True
)
def latent_pursuit(
    X,
    generator,
    *,
    measurement=None,
    lam=0.0,
    rho=1e-2,
    gamma=0.0,
    solver="active_set",
    support_tol=1e-6,
    max_iter=1000,
    tol=1e-10,
    refine_max_iter=30,
    debias=True,
    debias_max_iter=30,
    refresh_max_iter=10,
    fallback_max_iter=0,
    fallback_tol=1e-6,
    noise_std=None,
    noise_c=1.0,
    noise_retries=_RETRIES,
    noise_retry_sd=10.0,
    return_supports=False,
):
    """Latent-Pursuit (Algorithm 5): recover the latent codes of signals X.

    The image layer by eq. 8, the middle layers by eq. 9, z by eq. 16, then
    the debiasing (Algorithm 1 on the estimated supports). The estimator
    :class:`~skinvert.LatentPursuitInverter` calls the same kernel.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Signals (with a ``measurement``: their m measurements); NaN marks a
        missing entry.
    generator : ReLUGenerator
        The generator to invert.
    measurement : array-like, sparse matrix or LinearOperator of shape (m, n), default=None
        Linear measurements ``y = A G(z) + e`` (identity output: folded into
        the last layer; piecewise-linear output: Latent-Pursuit with the
        exact solver only).
    lam : float or array-like of shape (n_layers,), default=0.0
        The weight lambda_i of the l1 term of every hidden layer ``x_1..x_L``, or one
        for all.
    rho : float or array-like of shape (n_layers,), default=1e-2
        The penalty rho of the linearized ADMM (Algorithm 4) of ``solver="paper"``.
    gamma : float, default=0.0
        Ridge weight on z (eq. 16).
    solver : {"active_set", "paper"}, BaseLayerSolver or dict, default="active_set"
        The per-layer solver (:mod:`skinvert.solvers`): a string alias, one
        solver object for every layer, or a dict by role
        (``"image"``, ``"hidden"``, ``"latent"``).
    support_tol : float, default=1e-6
        An entry is in a layer's support above ``support_tol`` times the
        row's largest entry.
    max_iter : int, default=1000
        Iteration cap of the first-order solvers of the aliases (FISTA,
        linearized ADMM; the FISTA start of ``"active_set"``).
    tol : float, default=1e-10
        Relative step at which those iterations stop.
    refine_max_iter : int, default=30
        Active-set refinement steps of ``"active_set"`` (Lawson-Hanson:
        ten times as many).
    debias : bool, default=True
        Finish with Algorithm 1 on the estimated supports.
    debias_max_iter : int, default=30
        Gauss-Newton iterations of each Algorithm 1 solve.
    refresh_max_iter : int, default=10
        Support refreshes after the debiasing (0: none); on signals declared
        clean, the fixed-support polish first (see
        :class:`~skinvert.LatentPursuitInverter`).
    fallback_max_iter : int, default=0
        Gradient-descent steps on eq. 1 for rows the layers did not
        determine (0: none).
    fallback_tol : float, default=1e-6
        Relative residual below which a row never falls back.
    noise_std : float or None, default=None
        Standard deviation of iid Gaussian noise on the observed entries:
        sets the support thresholds of
        :class:`~skinvert.algorithms.noise.NoiseRule` (Theorem 3, eq. 21).
    noise_c : float, default=1.0
        With ``noise_std``: the support threshold in error standard
        deviations.
    noise_retries : array-like of float, default=(3.0, 0.5, 6.0, 2.0, 10.0)
        With ``noise_std``: scalings of ``noise_c`` tried on rows whose fit
        is inconsistent with the noise level (empty: no retries).
    noise_retry_sd : float, default=10.0
        "Inconsistent": a loss this many chi^2 standard deviations above its
        mean.
    return_supports : bool, default=False
        Also return the estimated supports of ``x_1..x_L``.

    Returns
    -------
    Z : array of shape (n_samples, n_latent)
        The latent codes, in X's namespace and float dtype.
    supports : list of bool arrays of shape (n_samples, n_i)
        The estimated supports of ``x_1..x_L``; only with
        ``return_supports=True``.

    See Also
    --------
    skinvert.LatentPursuitInverter : The estimator.
    layered_basis_pursuit : Algorithm 2.

    Examples
    --------
    >>> import numpy as np
    >>> from skinvert import latent_pursuit, make_random_generator
    >>> G = make_random_generator([5, 30, 80, 160], random_state=0)
    >>> Z = np.random.default_rng(0).standard_normal((4, 5))
    >>> bool(np.allclose(latent_pursuit(G.forward(Z), G), Z))
    True
    """
    batch = _batch_of(X, generator, measurement, "latent_pursuit")
    gains = None if noise_std is None else noise_gains(generator.weights)
    res = _single_threaded(
        _latent_pursuit,
        batch,
        lam=lam,
        gamma=gamma,
        solver=solver,
        rho=rho,
        support_tol=support_tol,
        max_iter=max_iter,
        tol=tol,
        refine_max_iter=refine_max_iter,
        debias=debias,
        debias_max_iter=debias_max_iter,
        refresh_max_iter=refresh_max_iter,
        fallback_max_iter=fallback_max_iter,
        fallback_tol=fallback_tol,
        noise_std=noise_std,
        noise_gains=gains,
        noise_c=noise_c,
        noise_retries=noise_retries,
        noise_retry_sd=noise_retry_sd,
    )
    _warn(res.not_converged, "latent_pursuit")
    return _output(res, return_supports)
