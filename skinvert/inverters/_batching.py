"""One batch of a transform: the state an inverter's ``_transform_batch`` reads.

Split off :mod:`skinvert.inverters._base`: the per-batch state, how a
generator's arrays are bound for the algorithms, and the batch runner that
every inverter's ``transform`` maps over its batches.
"""

import numpy as np

from .._array_api import namespace_of, single_threaded_blas, to_numpy
from ..algorithms._batch import fits_to_rounding, lipschitz_constants
from ..algorithms.gradient_descent import loss_and_gradient
from ..algorithms.noise import noise_gain, noise_gains
from ._checks import clip_to_range
from ._diagnostics import BatchRecord

__all__ = ["check_layerwise", "generator_arrays", "spectral_constants"]


class _TransformState:
    """Per-batch state of a transform: the weights in the data's namespace,
    the measurement and the batch's diagnostics (:class:`BatchRecord`)."""

    def __init__(self, weights, biases, measurement=None, n_rows=0):
        self.weights = weights
        self.biases = biases
        self.measurement = measurement
        self.record = BatchRecord(n_rows)
        # The loss of the returned codes per row, where the inverter knows it.
        self.loss = None

    def count(self, stage, n_bad):
        """Record ``n_bad`` rows of the batch that hit ``stage``'s limit (rows unknown)."""
        self.record.count(stage, n_bad)

    def flag(self, stage, rows, xp):
        """Record the rows (bool array in ``xp``) that hit ``stage``'s limit."""
        self.record.flag(stage, _to_host(rows, xp))


def generator_arrays(generator, xp, dtype, device):
    """``(weights, biases)`` of a generator for the batched algorithms.

    A fully connected generator gives its dense matrices and biases (the
    paper's eq. 3, the historical code path); any other (convolutions,
    reshapes) gives its bound layers and ``None``, which the algorithms
    that support it (gradient descent, the Oracle, the polish, the hybrid)
    read through the layers' ``matmat`` / ``rmatmat``
    (:mod:`skinvert.algorithms._network`).
    """
    if generator.is_dense:
        return generator.as_arrays(xp, dtype=dtype, device=device)
    return generator.bound_layers(xp, dtype=dtype, device=device), None


def spectral_constants(weights):
    """``(lipschitz_, noise_gains_)`` of the pursuits, one eigendecomposition per layer.

    :func:`~skinvert.algorithms._batch.lipschitz_constants` (``lambda_max``
    of ``W_i^T W_i``, in the weights' own dtype) and
    :func:`~skinvert.algorithms.noise.noise_gains` (its largest eigenvalues,
    in float64) would each decompose every ``W_i^T W_i``. For float64
    weights the two decompositions are the same computation, so it is done
    once and both are read from it (bit for bit what the two functions
    return; about half of ``fit``'s time on wide generators). Other dtypes
    keep the two computations.
    """
    lipschitz, gains = [], []
    for W in weights:
        W = np.asarray(to_numpy(W))
        if W.dtype != np.float64:
            lipschitz.extend(lipschitz_constants([W]))
            gains.extend(noise_gains([W]))
            continue
        ev = np.linalg.eigvalsh(W.T @ W)[::-1]  # descending
        lipschitz.append(float(ev[0]))
        gains.append(noise_gain(ev, W.shape[0]))
    return lipschitz, tuple(gains)


def check_layerwise(estimator, generator):
    """Raise the ValueError of a layer-wise inverter on a generator it cannot invert.

    Only generators with non-dense layers are checked: fully connected ones
    keep the pursuits' own behaviour (they run, with their diagnostics, on
    contracting layers too).
    """
    reason = None if generator.is_dense else generator.layerwise_obstacle()
    if reason:
        raise ValueError(
            f"{type(estimator).__name__} cannot invert this generator: {reason}; use "
            "HybridInverter (or GradientDescentInverter / OracleInverter)."
        )


def _split_missing(X, xp):
    """(Y with NaN -> 0, observed mask: 1.0 on observed entries, 0.0 elsewhere)."""
    missing = xp.isnan(X)
    obs = xp.astype(~missing, X.dtype)
    Y = xp.where(missing, xp.zeros_like(X), X)
    return Y, obs


def _run_batch(estimator, X, kwargs):
    """Invert one batch of signals (NaN = missing); returns ``(Z, BatchRecord)``."""
    xp, dev = namespace_of(X)
    Y, obs = _split_missing(X, xp)
    gen = estimator.generator_
    meas = estimator._measurement(xp, Y.dtype, dev)
    if meas is None:  # values beyond a bounded phi's range become saturated ones
        Y = clip_to_range(Y, gen.activation, xp)
    weights, biases = generator_arrays(gen, xp, Y.dtype, dev)
    state = _TransformState(weights, biases, meas, Y.shape[0])
    with single_threaded_blas(xp):
        Z = estimator._transform_batch(Y, obs, xp, state, **kwargs)
        loss = state.loss
        if loss is None:
            # (A subclass may append columns after the codes: HybridInverter's info.)
            loss, _ = loss_and_gradient(
                Z[:, : gen.n_latent], Y, obs, weights, biases, gen.activation, xp,
                measurement=meas, gradient=False,
            )
    recovered = fits_to_rounding(loss, Y, obs, xp)
    record = state.record
    record.loss = np.asarray(_to_host(loss, xp), dtype=np.float64)
    record.recovered = np.asarray(_to_host(recovered, xp), dtype=bool)
    return Z, record


def _slice_all(kwargs, sl):
    return {key: _slice(value, sl) for key, value in kwargs.items()}


def _slice(value, sl):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [v[sl, ...] for v in value]
    return value[sl, ...]


def _to_host(x, xp):
    return to_numpy(x, xp)
