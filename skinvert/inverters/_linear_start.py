"""The linear start of the noisy polishes: a decoder fitted on the generator's samples.

Shared by :class:`~skinvert.HybridInverter` (its first start with
``noise_std``) and :class:`~skinvert.LatentPursuitInverter` (the start of
its polish before the pass, with ``noise_std``): ``fit`` regresses the
codes on the features of noisy samples of the generator
(:func:`~skinvert.algorithms.hybrid.linear_decoder`), ``transform`` maps
each signal to its start in one GEMM.
"""

import numpy as np

from .._array_api import as_namespace, namespace_of
from ..algorithms.hybrid import decoder_features, linear_decoder

__all__ = ["LINEAR_START_MAX_FEATURES", "fit_linear_start", "linear_start_decoder"]

#: The decoder is fitted up to this many features by default (its (p, p)
#: covariance: 128 MiB in float64); ``[y, phi^-1(y)]`` while twice the
#: signal's features stay within it, ``y`` alone beyond.
LINEAR_START_MAX_FEATURES = 4096


def fit_linear_start(estimator, X, rng):
    """``(mean, coef, offset)`` of the linear start of a fitted ``estimator``
    (its ``generator_``, ``measurement_``, ``noise_std``, ``n_components_``
    and ``n_features_in_``), in X's namespace, device and dtype.

    The regression is on ``[y, phi^-1(y)]`` (:func:`~skinvert.algorithms.
    hybrid.decoder_features`) where there is no measurement and the
    ``2 m`` features stay within :data:`LINEAR_START_MAX_FEATURES`, on the
    ``m`` signal (or measurement) entries otherwise; the samples carry
    Gaussian noise of ``noise_std``.
    """
    G = estimator.generator_
    m = estimator.n_features_in_
    meas = estimator._measurement(np, np.float64, None)

    def forward(Z):
        Y = G.forward(Z)
        return Y if meas is None else meas.forward(Y)

    features = None
    if meas is None and 2 * m <= LINEAR_START_MAX_FEATURES:
        features = decoder_features(G.activation, np)
    fitted = linear_decoder(
        forward, estimator.n_components_, rng, noise_std=estimator.noise_std, features=features
    )
    xp, dev = namespace_of(X)
    return tuple(as_namespace(a, xp, dtype=X.dtype, device=dev) for a in fitted)


def linear_start_decoder(estimator, xp, dtype, dev):
    """``decode(Y, obs) -> Z0``: the linear start of a batch from the fitted
    ``start_mean_``, ``start_coef_`` and ``start_offset_`` of ``estimator``
    (None where it has none). A missing entry takes the features' mean."""
    if getattr(estimator, "start_coef_", None) is None:
        return None
    mean, coef, offset = (
        as_namespace(a, xp, dtype=dtype, device=dev)
        for a in (estimator.start_mean_, estimator.start_coef_, estimator.start_offset_)
    )
    # Fitted on [y, phi^-1(y)] where start_mean_ has twice the features.
    features = None
    if mean.shape[0] == 2 * estimator.n_features_in_:
        features = decoder_features(estimator.generator_.activation, xp)

    def decode(Y, obs):
        if features is None:
            return (obs * (Y - mean)) @ coef + offset
        return (xp.concat([obs, obs], axis=1) * (features(Y) - mean)) @ coef + offset

    return decode
