"""Shared helpers of the functional API: parameter constraints, per-layer
parameters, the batch of a validated X, convergence warnings."""

from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array

from .._array_api import get_namespace, namespace_of, single_threaded_blas
from .._warnings import warn_user
from ..algorithms._batch import Batch, lipschitz_constants
from ..algorithms._refine import Refinement
from ..algorithms.layered_bp import EpsilonRule
from ..algorithms.noise import NoiseModel, NoiseRule, SupportRule
from ..generator import ReLUGenerator
from ..operators import Measurement, check_measurement
from ..solvers import BaseLayerSolver

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


def _batch_of(X, generator, measurement, name):
    """Validate X (NaN = missing) and build the Batch of all its rows."""
    xp, _ = get_namespace(X)
    X = check_array(X, dtype=[xp.float64, xp.float32], ensure_all_finite="allow-nan")
    xp, dev = namespace_of(X)
    meas = None
    if measurement is not None:
        meas = Measurement(check_measurement(measurement, X, generator.n_output), xp, X.dtype, dev)
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
    return Batch(
        Y,
        obs,
        weights,
        biases,
        generator.activation,
        xp,
        measurement=meas,
        lipschitz=lipschitz_constants(generator.weights),
    )


def _single_threaded(fn, batch, *args, **kwargs):
    """``fn(batch, *args, **kwargs)`` with NumPy's BLAS on one thread, as the
    estimators compute every batch: the functions then return the
    estimators' codes bit for bit (a threaded GEMM rounds differently)."""
    with single_threaded_blas(batch.xp):
        return fn(batch, *args, **kwargs)


def _warn(counts, name):
    bad = {k: v for k, v in counts.items() if v}
    if bad:
        parts = ", ".join(f"{v} row(s) in {k}" for k, v in bad.items())
        warn_user(
            f"{name} did not converge for {parts}; increase the iteration limits "
            "or loosen the tolerances.",
            ConvergenceWarning,
        )


def _output(res, return_supports):
    return (res.z, list(res.supports)) if return_supports else res.z


def _refinement(
    debias, debias_max_iter, refresh_max_iter, fallback_max_iter, fallback_tol, *, noiseless=False
):
    """The :class:`Refinement` of a pursuit; ``noiseless``: signals declared
    clean (no noise level or epsilon, ``lam = 0``, ``gamma = 0``), whose
    refresh is the fixed-support polish (``Refinement.refresh_by_polish``)."""
    return Refinement(
        debias=bool(debias),
        debias_max_iter=debias_max_iter,
        refresh_max_iter=refresh_max_iter,
        fallback_max_iter=fallback_max_iter,
        fallback_tol=float(fallback_tol),
        refresh_by_polish=bool(noiseless),
    )


def _declared_noiseless(lam, noise_std, *, gamma=0.0, epsilon=None):
    """Whether a pursuit's parameters declare clean signals."""
    return noise_std is None and epsilon is None and not gamma and not np.any(np.asarray(lam))


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
