"""latent_pursuit (Algorithm 5) and layered_basis_pursuit (Algorithm 2), with their twins."""

from sklearn.utils._param_validation import validate_params

from ..algorithms._refine import Refinement
from ..algorithms.latent_pursuit import pursuit
from ..algorithms.layered_bp import EpsilonRule, layered_bp
from ..algorithms.noise import NoiseModel, NoiseRule, SupportRule, noise_gains
from ..solvers import resolve_solver
from ._common import _COMMON, _POS, _RETRIES, _batch_of, _output, _warn, per_layer

__all__ = ["_latent_pursuit", "_layered_basis_pursuit", "latent_pursuit", "layered_basis_pursuit"]


def _refinement(debias, debias_max_iter, refresh_max_iter, fallback_max_iter, fallback_tol):
    return Refinement(
        debias=bool(debias),
        debias_max_iter=debias_max_iter,
        refresh_max_iter=refresh_max_iter,
        fallback_max_iter=fallback_max_iter,
        fallback_tol=float(fallback_tol),
    )


def _rule(
    batch,
    lam,
    support_tol,
    nonneg,
    noise_std,
    noise_gains,
    noise_c,
    noise_retries,
    noise_retry_sd,
    epsilon=None,
):
    lams = per_layer(lam, max(batch.n_layers, 1), "lam")
    if epsilon is not None:
        return EpsilonRule(float(epsilon), support_tol, nonneg), None
    if noise_std is None:
        return SupportRule(lams, support_tol, nonneg), None
    model = NoiseModel(
        float(noise_std),
        None if noise_gains is None else tuple(noise_gains),
        float(noise_c),
        tuple(float(s) for s in noise_retries),
        float(noise_retry_sd),
    )
    return NoiseRule(lams, support_tol, nonneg, model), model


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
):
    """:func:`latent_pursuit` on a :class:`Batch`, without validation; returns a PursuitResult."""
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
        debias, debias_max_iter, refresh_max_iter, fallback_max_iter, fallback_tol
    )
    return pursuit(
        batch,
        plan,
        rule,
        nonneg=True,
        constraints=True,
        gamma=float(gamma),
        refinement=refinement,
        noise=model,
    )


def _layered_basis_pursuit(
    batch,
    *,
    lam=0.0,
    epsilon=None,
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
    noise_gains=None,
    noise_c=1.0,
    noise_retries=_RETRIES,
    noise_retry_sd=10.0,
):
    """:func:`layered_basis_pursuit` on a :class:`Batch`, without validation."""
    if epsilon is not None and noise_std is not None:
        raise ValueError(
            "Give at most one of epsilon (a bound on ||e||_2, Algorithm 2's schedule) "
            f"and noise_std (iid Gaussian noise), got epsilon={epsilon!r} and "
            f"noise_std={noise_std!r}."
        )
    plan = resolve_solver(
        solver, nonneg=False, max_iter=max_iter, tol=tol, refine_max_iter=refine_max_iter
    )
    rule, model = _rule(
        batch,
        lam,
        support_tol,
        False,
        noise_std,
        noise_gains,
        noise_c,
        noise_retries,
        noise_retry_sd,
        epsilon=epsilon,
    )
    refinement = _refinement(
        debias, debias_max_iter, refresh_max_iter, fallback_max_iter, fallback_tol
    )
    return layered_bp(batch, plan, rule, refinement=refinement, noise=model)


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
    the debiasing (Algorithm 1 on the estimated supports). The parameters
    are those of :class:`~skinvert.LatentPursuitInverter` (``max_iter`` is
    its ``transform_max_iter``), plus the knobs below that the estimator
    keeps at their defaults.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Signals (with a ``measurement``: their measurements); NaN marks a
        missing entry.
    generator : ReLUGenerator
    measurement, lam, rho, gamma, solver, support_tol, max_iter, tol, \
refine_max_iter, debias, debias_max_iter, refresh_max_iter, fallback_max_iter, noise_std
        As in :class:`~skinvert.LatentPursuitInverter`.
    fallback_tol : float, default=1e-6
        Relative residual below which a row never falls back to gradient
        descent (with ``fallback_max_iter > 0``).
    noise_c : float, default=1.0
        With ``noise_std``: the support threshold in error standard
        deviations (:class:`~skinvert.algorithms.noise.NoiseRule`).
    noise_retries : array-like of float, default=(3.0, 0.5, 6.0, 2.0, 10.0)
        With ``noise_std``: scalings of ``noise_c`` tried on rows whose fit
        is inconsistent with the noise level (empty: no retries).
    noise_retry_sd : float, default=10.0
        "Inconsistent": a loss this many chi^2 standard deviations above
        its mean.
    return_supports : bool, default=False
        Also return the estimated supports of ``x_1..x_L``.

    Returns
    -------
    Z : array of shape (n_samples, n_latent)
        In X's namespace and float dtype.
    supports : list of bool arrays of shape (n_samples, n_i)
        Only with ``return_supports=True``.
    """
    batch = _batch_of(X, generator, measurement, "latent_pursuit")
    gains = None if noise_std is None else noise_gains(generator.weights)
    res = _latent_pursuit(
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


@validate_params({**_COMMON, "epsilon": [_POS, None]}, prefer_skip_nested_validation=True)
def layered_basis_pursuit(
    X,
    generator,
    *,
    measurement=None,
    lam=0.0,
    epsilon=None,
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
    """Layered Basis-Pursuit (Algorithm 2): recover the latent codes of signals X.

    A lasso per layer from the image back, z by least squares, then the
    optional debiasing. Parameters as in :class:`~skinvert.LayeredBPInverter`
    and :func:`latent_pursuit`.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    generator : ReLUGenerator
    measurement, lam, epsilon, solver, support_tol, max_iter, tol, refine_max_iter, \
debias, debias_max_iter, refresh_max_iter, fallback_max_iter, noise_std
        As in :class:`~skinvert.LayeredBPInverter`.
    fallback_tol, noise_c, noise_retries, noise_retry_sd, return_supports
        As in :func:`latent_pursuit`.

    Returns
    -------
    Z : array of shape (n_samples, n_latent)
    supports : list of bool arrays of shape (n_samples, n_i)
        Only with ``return_supports=True``.
    """
    batch = _batch_of(X, generator, measurement, "layered_basis_pursuit")
    gains = None if noise_std is None else noise_gains(generator.weights)
    res = _layered_basis_pursuit(
        batch,
        lam=lam,
        epsilon=epsilon,
        solver=solver,
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
    _warn(res.not_converged, "layered_basis_pursuit")
    return _output(res, return_supports)
