"""The functional API, as scikit-learn writes it (``sparse_encode`` -> ``_sparse_encode``).

Each public function validates its arguments (:func:`validate_params`), then
calls its private twin on a :class:`~skinvert.algorithms._batch.Batch`; the
estimators call the twins directly, with parameters validated in ``fit``.

- :func:`latent_pursuit` / :func:`_latent_pursuit` -- Algorithm 5;
- :func:`layered_basis_pursuit` / :func:`_layered_basis_pursuit` -- Algorithm 2;
- :func:`oracle_inversion` / :func:`_oracle_inversion` -- Algorithms 1 and 6.
"""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.validation import check_array

from ._array_api import get_namespace, namespace_of
from .algorithms._batch import Batch, lipschitz_constants
from .algorithms._refine import Refinement
from .algorithms.layered_bp import EpsilonRule, layered_bp
from .algorithms.latent_pursuit import pursuit
from .algorithms.measurement import Measurement, check_measurement
from .algorithms.noise import NoiseModel, NoiseRule, SupportRule, noise_gains
from .algorithms.oracle import oracle_end_to_end, oracle_layerwise
from .generator import ReLUGenerator
from .solvers import BaseLayerSolver, resolve_solver

__all__ = [
    "latent_pursuit",
    "layered_basis_pursuit",
    "oracle_inversion",
]

_POS = Interval(Real, 0, None, closed="left")
_NONNEG_INT = Interval(Integral, 0, None, closed="left")
_RETRIES = (3.0, 0.5, 6.0, 2.0, 10.0)

_COMMON = {
    "X": ["array-like"],
    "generator": [ReLUGenerator],
    "measurement": "no_validation",  # checked against X and the generator
    "lam": [_POS, "array-like"],
    "solver": [StrOptions({"active_set", "paper"}), BaseLayerSolver, dict],
    "support_tol": [Interval(Real, 0, 1, closed="left")],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [_POS],
    "refine_max_iter": [_NONNEG_INT],
    "debias": ["boolean"],
    "debias_max_iter": [_NONNEG_INT],
    "refresh_max_iter": [_NONNEG_INT],
    "fallback_max_iter": [_NONNEG_INT],
    "fallback_tol": [_POS],
    "noise_std": [_POS, None],
    "noise_c": [Interval(Real, 0, None, closed="neither")],
    "noise_retries": ["array-like"],
    "noise_retry_sd": [_POS],
    "return_supports": ["boolean"],
}


def per_layer(value, n, name):
    """A scalar or a sequence of ``n`` non-negative floats, as a tuple of floats."""
    if np.ndim(value) == 0:
        vals = (float(value),) * n
    else:
        vals = tuple(float(v) for v in np.asarray(value, dtype=float).ravel())
        if len(vals) != n:
            raise ValueError(
                f"{name} must be a scalar or hold {n} values (one per layer), got {len(vals)}."
            )
    if any(not np.isfinite(v) or v < 0 for v in vals):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}.")
    return vals


def _refinement(debias, debias_max_iter, refresh_max_iter, fallback_max_iter, fallback_tol):
    return Refinement(debias=bool(debias), debias_max_iter=debias_max_iter,
                      refresh_max_iter=refresh_max_iter, fallback_max_iter=fallback_max_iter,
                      fallback_tol=float(fallback_tol))


def _rule(batch, lam, support_tol, nonneg, noise_std, noise_gains, noise_c, noise_retries,
          noise_retry_sd, epsilon=None):
    lams = per_layer(lam, max(batch.n_layers, 1), "lam")
    if epsilon is not None:
        return EpsilonRule(float(epsilon), support_tol, nonneg), None
    if noise_std is None:
        return SupportRule(lams, support_tol, nonneg), None
    model = NoiseModel(float(noise_std), None if noise_gains is None else tuple(noise_gains),
                       float(noise_c), tuple(float(s) for s in noise_retries),
                       float(noise_retry_sd))
    return NoiseRule(lams, support_tol, nonneg, model), model


def _latent_pursuit(
    batch, *, lam=0.0, gamma=0.0, solver="active_set", rho=1e-2, support_tol=1e-6,
    max_iter=1000, tol=1e-10, refine_max_iter=30, debias=True, debias_max_iter=30,
    refresh_max_iter=10, fallback_max_iter=0, fallback_tol=1e-6, noise_std=None,
    noise_gains=None, noise_c=1.0, noise_retries=_RETRIES, noise_retry_sd=10.0,
):
    """:func:`latent_pursuit` on a :class:`Batch`, without validation; returns a PursuitResult."""
    rhos = per_layer(rho, max(batch.n_layers, 1), "rho")
    plan = resolve_solver(solver, nonneg=True, max_iter=max_iter, tol=tol,
                          refine_max_iter=refine_max_iter, rho=rhos)
    rule, model = _rule(batch, lam, support_tol, True, noise_std, noise_gains, noise_c,
                        noise_retries, noise_retry_sd)
    refinement = _refinement(debias, debias_max_iter, refresh_max_iter, fallback_max_iter,
                             fallback_tol)
    return pursuit(batch, plan, rule, nonneg=True, constraints=True, gamma=float(gamma),
                   refinement=refinement, noise=model)


def _layered_basis_pursuit(
    batch, *, lam=0.0, epsilon=None, solver="active_set", support_tol=1e-6, max_iter=1000,
    tol=1e-10, refine_max_iter=30, debias=True, debias_max_iter=30, refresh_max_iter=10,
    fallback_max_iter=0, fallback_tol=1e-6, noise_std=None, noise_gains=None, noise_c=1.0,
    noise_retries=_RETRIES, noise_retry_sd=10.0,
):
    """:func:`layered_basis_pursuit` on a :class:`Batch`, without validation."""
    if epsilon is not None and noise_std is not None:
        raise ValueError(
            "Give at most one of epsilon (a bound on ||e||_2, Algorithm 2's schedule) "
            f"and noise_std (iid Gaussian noise), got epsilon={epsilon!r} and "
            f"noise_std={noise_std!r}."
        )
    plan = resolve_solver(solver, nonneg=False, max_iter=max_iter, tol=tol,
                          refine_max_iter=refine_max_iter)
    rule, model = _rule(batch, lam, support_tol, False, noise_std, noise_gains, noise_c,
                        noise_retries, noise_retry_sd, epsilon=epsilon)
    refinement = _refinement(debias, debias_max_iter, refresh_max_iter, fallback_max_iter,
                             fallback_tol)
    return layered_bp(batch, plan, rule, refinement=refinement, noise=model)


def _oracle_inversion(batch, masks, *, method="end_to_end", gamma=0.0, max_iter=30, tol=None):
    """:func:`oracle_inversion` on a :class:`Batch` with float 0/1 ``masks``.

    Returns ``(Z, n_not_converged)``.
    """
    xp = batch.xp
    if method == "layerwise":
        Z, _ = oracle_layerwise(batch.Y, batch.obs, batch.weights, batch.biases,
                                batch.activation, masks, xp, gamma=gamma)
        return Z, 0
    Z, _, conv = oracle_end_to_end(
        batch.Y, batch.obs, batch.weights, batch.biases, batch.activation, masks, xp,
        gamma=gamma, max_iter=max_iter, tol=tol, measurement=batch.measurement,
    )
    n_bad = int(xp.sum(xp.astype(~conv, xp.int32))) if max_iter > 0 else 0
    return Z, n_bad


def _batch_of(X, generator, measurement, name):
    """Validate X (NaN = missing) and build the Batch of all its rows."""
    xp, _ = get_namespace(X)
    X = check_array(X, dtype=[xp.float64, xp.float32], ensure_all_finite="allow-nan")
    xp, dev = namespace_of(X)
    meas = None
    if measurement is not None:
        meas = Measurement(check_measurement(measurement, X, generator.n_output), xp, X.dtype,
                           dev)
    elif X.shape[1] != generator.n_output:
        raise ValueError(
            f"X has {X.shape[1]} features, but the generator produces signals of size "
            f"{generator.n_output} (generator.n_output)."
        )
    missing = xp.isnan(X)
    if bool(xp.any(xp.all(missing, axis=1))):
        raise ValueError(f"{name}: a row of X has no observed entry (all NaN).")
    obs = xp.astype(~missing, X.dtype)
    Y = xp.where(missing, xp.zeros_like(X), X)
    weights, biases = generator.as_arrays(xp, dtype=X.dtype, device=dev)
    return Batch(Y, obs, weights, biases, generator.activation, xp, measurement=meas,
                 lipschitz=lipschitz_constants(generator.weights))


def _warn(counts, name):
    bad = {k: v for k, v in counts.items() if v}
    if bad:
        parts = ", ".join(f"{v} row(s) in {k}" for k, v in bad.items())
        warnings.warn(f"{name} did not converge for {parts}; increase the iteration limits "
                      "or loosen the tolerances.", ConvergenceWarning, stacklevel=3)


def _output(res, return_supports):
    return (res.z, list(res.supports)) if return_supports else res.z


@validate_params(
    {**_COMMON, "gamma": [_POS], "rho": [_POS, "array-like"]}, prefer_skip_nested_validation=True
)
def latent_pursuit(
    X, generator, *, measurement=None, lam=0.0, rho=1e-2, gamma=0.0, solver="active_set",
    support_tol=1e-6, max_iter=1000, tol=1e-10, refine_max_iter=30, debias=True,
    debias_max_iter=30, refresh_max_iter=10, fallback_max_iter=0, fallback_tol=1e-6,
    noise_std=None, noise_c=1.0, noise_retries=_RETRIES, noise_retry_sd=10.0,
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
        batch, lam=lam, gamma=gamma, solver=solver, rho=rho, support_tol=support_tol,
        max_iter=max_iter, tol=tol, refine_max_iter=refine_max_iter, debias=debias,
        debias_max_iter=debias_max_iter, refresh_max_iter=refresh_max_iter,
        fallback_max_iter=fallback_max_iter, fallback_tol=fallback_tol, noise_std=noise_std,
        noise_gains=gains, noise_c=noise_c, noise_retries=noise_retries, noise_retry_sd=noise_retry_sd,
    )
    _warn(res.not_converged, "latent_pursuit")
    return _output(res, return_supports)


@validate_params({**_COMMON, "epsilon": [_POS, None]}, prefer_skip_nested_validation=True)
def layered_basis_pursuit(
    X, generator, *, measurement=None, lam=0.0, epsilon=None, solver="active_set",
    support_tol=1e-6, max_iter=1000, tol=1e-10, refine_max_iter=30, debias=True,
    debias_max_iter=30, refresh_max_iter=10, fallback_max_iter=0, fallback_tol=1e-6,
    noise_std=None, noise_c=1.0, noise_retries=_RETRIES, noise_retry_sd=10.0,
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
        batch, lam=lam, epsilon=epsilon, solver=solver, support_tol=support_tol,
        max_iter=max_iter, tol=tol, refine_max_iter=refine_max_iter, debias=debias,
        debias_max_iter=debias_max_iter, refresh_max_iter=refresh_max_iter,
        fallback_max_iter=fallback_max_iter, fallback_tol=fallback_tol, noise_std=noise_std,
        noise_gains=gains, noise_c=noise_c, noise_retries=noise_retries, noise_retry_sd=noise_retry_sd,
    )
    _warn(res.not_converged, "layered_basis_pursuit")
    return _output(res, return_supports)


@validate_params(
    {
        "X": ["array-like"],
        "generator": [ReLUGenerator],
        "supports": [list, tuple],
        "method": [StrOptions({"end_to_end", "layerwise"})],
        "gamma": [_POS],
        "max_iter": [_NONNEG_INT],
        "tol": [_POS, None],
        "measurement": "no_validation",
    },
    prefer_skip_nested_validation=True,
)
def oracle_inversion(X, generator, supports, *, method="end_to_end", gamma=0.0, max_iter=30,
                     tol=None, measurement=None):
    """The Oracle: latent codes from the true supports (Algorithm 1 or 6).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Signals (with a ``measurement``: their measurements); NaN = missing.
    generator : ReLUGenerator
    supports : list of arrays of shape (n_samples, n_i)
        Supports of the hidden layers 1..L (boolean or 0/1), e.g.
        ``generator.supports(Z)``.
    method, gamma, tol, measurement
        As in :class:`~skinvert.OracleInverter`.
    max_iter : int, default=30
        Levenberg-Marquardt iterations of Algorithm 1 (the estimator's
        ``transform_max_iter``).

    Returns
    -------
    Z : array of shape (n_samples, n_latent)
    """
    if method == "layerwise" and measurement is not None:
        raise ValueError("method='layerwise' does not support a measurement.")
    batch = _batch_of(X, generator, measurement, "oracle_inversion")
    xp = batch.xp
    sizes = generator.layer_sizes[1:-1]
    if len(supports) != len(sizes):
        raise ValueError(f"supports must hold {len(sizes)} arrays, got {len(supports)}.")
    masks = []
    for i, (S, s) in enumerate(zip(supports, sizes)):
        S = xp.asarray(S, device=namespace_of(batch.Y)[1])
        if tuple(S.shape) != (batch.Y.shape[0], s):
            raise ValueError(f"supports[{i}] must have shape ({batch.Y.shape[0]}, {s}), got "
                             f"{tuple(S.shape)}.")
        masks.append(xp.astype(S != 0 if S.dtype != xp.bool else S, batch.dtype))
    Z, n_bad = _oracle_inversion(batch, masks, method=method, gamma=gamma, max_iter=max_iter,
                                 tol=tol)
    _warn({"the Oracle's Gauss-Newton": n_bad}, "oracle_inversion")
    return Z
