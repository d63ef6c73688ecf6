"""The scikit-learn glue shared by every inverter, written once."""

import time
import warnings
from numbers import Integral

import numpy as np
from joblib import effective_n_jobs
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils._param_validation import Interval
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from .._array_api import _is_numpy, get_namespace, namespace_of, single_threaded_blas, to_numpy
from ..operators import Measurement, check_measurement, measurement_shape
from ..generator import ReLUGenerator, make_random_generator

__all__ = ["BaseInverter"]

#: Working memory one batch may use when ``batch_size=None`` (bytes).
WORKING_MEMORY = 512 * 2**20


def default_generator(n_features, random_state):
    """The generator ``fit`` builds when ``generator=None``.

    ``[max(1, n_features // 4), n_features, n_features]`` with an identity
    output (so any real-valued X is in its range) and iid Gaussian weights
    from :func:`~skinvert.make_random_generator`, seeded by ``random_state``
    (seed 0 when it is None, so that the default model is reproducible).
    """
    # s_1 ~ n_features / 2 lies between n_0 and n: the uniqueness window of
    # Corollary 1, so every inverter has a well-posed problem.
    sizes = [max(1, n_features // 4), n_features, n_features]
    seed = 0 if random_state is None else random_state
    return make_random_generator(sizes, output_activation="identity", random_state=seed)


class BaseInverter(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Base class of the inverters: validation, batching, inverse_transform, score.

    Parameters shared by every inverter (declared and validated here once):
    ``generator``, ``measurement`` (linear measurements ``y = A G(z)``, see
    :func:`~skinvert.operators.check_measurement`),
    ``batch_size``, ``n_jobs``, ``verbose`` and ``random_state``.

    Subclasses implement ``_transform_batch(Y, obs, xp, **kwargs)`` returning
    the latent codes of a batch, where ``Y`` holds the signals with missing
    entries set to 0 and ``obs`` is 1.0 on observed entries, 0.0 elsewhere;
    and ``_bytes_per_sample(generator, itemsize)`` to size automatic batches.
    """

    _parameter_constraints: dict = {
        "generator": [ReLUGenerator, None],
        "measurement": "no_validation",  # checked in fit (shape, dtype, finite)
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __init__(
        self, generator=None, *, measurement=None, batch_size=None, n_jobs=None, verbose=0,
        random_state=None,
    ):
        self.generator = generator
        self.measurement = measurement
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state

    # -- tags ---------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.array_api_support = True
        return tags

    # -- validation -----------------------------------------------------------
    def _check_same_namespace(self, X, method):
        """Refuse data from another namespace or device than ``fit``'s (array API).

        Fitted arrays (e.g. ``init_codes_``) live in the namespace and on the
        device of the fit data, as scikit-learn's array API convention asks.
        """
        fitted = getattr(self, "_fit_namespace", None)
        if fitted is None:
            return
        xp_x, dev_x = namespace_of(X)
        here = (xp_x.__name__, str(dev_x))
        if here != fitted:
            raise ValueError(
                f"Inputs passed to {type(self).__name__}.{method}() must use the same "
                f"namespace and the same device as those passed to fit(): got "
                f"{here[0]} on {here[1]}, fitted on {fitted[0]} on {fitted[1]}. Refit, or "
                "move the estimator with sklearn.utils._array_api.move_estimator_to."
            )

    def _validate_X(self, X, *, reset, method="transform"):
        xp, _ = get_namespace(X)
        if not reset:
            self._check_same_namespace(X, method)
        X = validate_data(
            self,
            X,
            reset=reset,
            dtype=[xp.float64, xp.float32],
            ensure_all_finite="allow-nan",
        )
        return X

    def fit(self, X, y=None):
        """Check X against the generator and set the fitted attributes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Signals; NaN marks a missing entry. With ``generator=None`` a
            random generator with ``n_features`` outputs is built (see
            :func:`default_generator`).
        y : None
            Ignored.

        Returns
        -------
        self : object
        """
        self._validate_params()
        X = self._validate_X(X, reset=True)
        measurement = getattr(self, "measurement", None)
        if measurement is not None:
            # X holds y = A G(z): the generator acts on A's columns.
            n_signal = measurement_shape(measurement)[1]
        else:
            n_signal = X.shape[1]
        if self.generator is None:
            gen = default_generator(n_signal, self.random_state)
        else:
            gen = self.generator
            if measurement is None and X.shape[1] != gen.n_output:
                raise ValueError(
                    f"X has {X.shape[1]} features, but the generator produces signals "
                    f"of size {gen.n_output} (generator.n_output)."
                )
        if hasattr(self, "measurement"):
            self.measurement_ = (
                None if measurement is None else check_measurement(measurement, X, gen.n_output)
            )
            if measurement is not None:
                self._check_measurement_supported(gen)
        self.generator_ = gen
        self.n_components_ = gen.n_latent
        xp_fit, dev_fit = namespace_of(X)
        self._fit_namespace = (xp_fit.__name__, str(dev_fit))
        self._fit_extra(X, check_random_state(self.random_state))
        return self

    def _fit_extra(self, X, rng):
        """Hook for subclasses: fitted state beyond the generator."""

    def _check_measurement_supported(self, generator):
        """Hook for subclasses: raise where a measurement is not supported."""

    def _measurement(self, xp, dtype, device):
        """The fitted measurement in a batch's namespace and dtype (None without one)."""
        A = getattr(self, "measurement_", None)
        return None if A is None else Measurement(A, xp, dtype, device)

    @property
    def _n_features_out(self):
        return self.n_components_

    # -- transform --------------------------------------------------------------
    def _batches(self, n_samples, itemsize, n_workers=1):
        if self.batch_size is not None:
            size = self.batch_size
        else:
            per = max(1, self._bytes_per_sample(self.generator_, itemsize))
            size = max(1, WORKING_MEMORY // (per * n_workers))
            if n_workers > 1:  # at least one batch per worker
                size = min(size, max(1, -(-n_samples // n_workers)))
        return list(gen_batches(n_samples, size))

    def _bytes_per_sample(self, generator, itemsize):
        return itemsize * 8 * sum(generator.layer_sizes)

    def _check_rows_observed(self, X, batches):
        """Reject rows with no observed entry (all NaN), one batch at a time."""
        xp, _ = get_namespace(X)
        rows = []
        for sl in batches:
            empty = xp.all(xp.isnan(X[sl, ...]), axis=1)
            if bool(xp.any(empty)):
                rows.extend(sl.start + np.flatnonzero(np.asarray(_to_host(empty, xp))))
        if rows:
            raise ValueError(
                f"{len(rows)} row(s) of X have no observed entry (all NaN), e.g. row "
                f"{int(rows[0])}: there is nothing to invert."
            )

    def transform(self, X):
        """Recover the latent codes of the signals X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Signals; NaN marks a missing entry.

        Returns
        -------
        Z : array of shape (n_samples, n_components)
            In X's namespace, device and float dtype.
        """
        return self._transform(X)

    def _transform(self, X, *, validated=False, **kwargs):
        if not validated:
            check_is_fitted(self)
            X = self._validate_X(X, reset=False)
        xp, dev = namespace_of(X)
        n = X.shape[0]
        itemsize = 4 if X.dtype == xp.float32 else 8
        n_workers = effective_n_jobs(self.n_jobs) if _is_numpy(xp) else 1
        batches = self._batches(n, itemsize, n_workers)
        # Missing entries are split off per batch (in _run_batch), so the
        # working memory is bounded by batch_size, not by the size of X.
        self._check_rows_observed(X, batches)
        t0 = time.perf_counter()
        if n_workers > 1 and len(batches) > 1:
            # Rows are independent problems: batches on joblib workers give the
            # same result as n_jobs=1 (NumPy only; other namespaces run in turn).
            results = Parallel(n_jobs=self.n_jobs, verbose=self.verbose)(
                delayed(_run_batch)(self, X[sl, ...], _slice_all(kwargs, sl))
                for sl in batches
            )
        else:
            results = []
            for k, sl in enumerate(batches):
                results.append(_run_batch(self, X[sl, ...], _slice_all(kwargs, sl)))
                if self.verbose:
                    print(
                        f"[{type(self).__name__}] batch {k + 1}/{len(batches)} "
                        f"({sl.stop} of {n} rows, {time.perf_counter() - t0:.2f} s)"
                    )
        out = [Z for Z, _ in results]
        state = _TransformState(None, None)
        for _, counts in results:
            for stage, n_bad in counts.items():
                state.count(stage, n_bad)
        if not out:
            return xp.zeros((0, self.n_components_), dtype=X.dtype, device=dev)
        Z = out[0] if len(out) == 1 else xp.concat(out, axis=0)
        state.warn(type(self).__name__)
        return Z

    def inverse_transform(self, X):
        """Map latent codes back to signals: ``G(Z)``.

        With a ``measurement`` this is still the signal ``G(Z)`` (n features,
        the generator's output), not its measurements ``A G(Z)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Latent codes.

        Returns
        -------
        X_signal : array of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        xp, _ = get_namespace(X)
        self._check_same_namespace(X, "inverse_transform")
        return self.generator_.forward(self._check_codes(X, xp))

    def _check_codes(self, Z, xp):
        Z = check_array(Z, dtype=[xp.float64, xp.float32])
        if Z.shape[1] != self.n_components_:
            raise ValueError(
                f"Z has {Z.shape[1]} features, but {type(self).__name__} expects "
                f"{self.n_components_} latent components."
            )
        return Z

    def score(self, X, y=None):
        """Negative mean squared reconstruction error on the observed entries.

        ``-mean((X - G(transform(X)))^2)`` over the non-NaN entries of X;
        higher is better, as GridSearchCV expects. With a ``measurement`` A,
        ``-mean((X - A G(transform(X)))^2)``: the fit in the measurement
        domain.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        X = self._validate_X(X, reset=False, method="score")
        xp, _ = get_namespace(X)
        Xhat = self.inverse_transform(self.transform(X))
        meas = self._measurement(xp, X.dtype, namespace_of(X)[1])
        if meas is not None:
            Xhat = meas.forward(Xhat)
        missing = xp.isnan(X)
        err = xp.where(missing, xp.zeros_like(X), X - Xhat)
        n_obs = X.shape[0] * X.shape[1] - int(xp.sum(xp.astype(missing, xp.int64)))
        return -float(xp.sum(err * err)) / max(n_obs, 1)


class _TransformState:
    """Per-call state of a transform: the weights in the data's namespace and
    the counts of rows that hit an iteration limit."""

    def __init__(self, weights, biases, measurement=None):
        self.weights = weights
        self.biases = biases
        self.measurement = measurement
        self.not_converged = {}

    def count(self, stage, n_bad):
        """Record ``n_bad`` rows of the current batch that hit ``stage``'s limit."""
        self.not_converged[stage] = self.not_converged.get(stage, 0) + int(n_bad)

    def warn(self, name):
        bad = {k: v for k, v in self.not_converged.items() if v}
        if bad:
            parts = ", ".join(f"{v} row(s) in {k}" for k, v in bad.items())
            warnings.warn(
                f"{name} did not converge for {parts}; increase the iteration limits "
                "or loosen the tolerances.",
                ConvergenceWarning,
                stacklevel=3,
            )


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
    """Invert one batch of signals (NaN = missing); returns (Z, {stage: rows that hit a limit})."""
    xp, dev = namespace_of(X)
    Y, obs = _split_missing(X, xp)
    weights, biases = generator_arrays(estimator.generator_, xp, Y.dtype, dev)
    state = _TransformState(weights, biases, estimator._measurement(xp, Y.dtype, dev))
    with single_threaded_blas(xp):
        Z = estimator._transform_batch(Y, obs, xp, state, **kwargs)
    return Z, state.not_converged


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
