"""The scikit-learn glue shared by every inverter, written once."""

from numbers import Integral

from joblib import effective_n_jobs
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state, gen_batches, metadata_routing
from sklearn.utils._param_validation import Interval
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from .._array_api import _is_numpy, get_namespace, namespace_of
from ..operators import Measurement, check_measurement
from ._batching import _run_batch, _slice_all
from ._checks import clip_to_range, range_warning, resolve_generator, scan_rows
from ._diagnostics import Report, progress

__all__ = ["BaseInverter"]

#: Working memory one batch may use when ``batch_size=None`` (bytes).
WORKING_MEMORY = 512 * 2**20


class BaseInverter(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Base class of the inverters: validation, batching, inverse_transform, score.

    Parameters shared by every inverter are declared and validated here once.

    Parameters
    ----------
    generator : ReLUGenerator, str or torch.nn.Module
        Required: a :class:`~skinvert.ReLUGenerator`, a pretrained name, a
        ``.npz``/``.safetensors`` file or a PyTorch module, converted in ``fit``.
    measurement : array-like, sparse matrix or LinearOperator, default=None
        Linear measurements ``y = A G(z)``, see
        :func:`~skinvert.operators.check_measurement`.
    batch_size : int or None, default=None
        Rows per batch (None: sized for the working memory).
    n_jobs : int or None, default=None
        Joblib workers the batches are spread over (NumPy input).
    verbose : int, default=0
        Progress bar over rows when >= 1.
    random_state : int, RandomState instance or None, default=None
        Seed of whatever the inverter draws in ``fit``.

    Notes
    -----

    Subclasses implement ``_transform_batch(Y, obs, xp, **kwargs)`` returning
    the latent codes of a batch, where ``Y`` holds the signals with missing
    entries set to 0 and ``obs`` is 1.0 on observed entries, 0.0 elsewhere;
    and ``_bytes_per_sample(generator, itemsize, host=False)`` to size automatic
    batches (``host``: NumPy input, where the kernels that build a stack of
    per-row matrices work on blocks of rows of a fixed size,
    :func:`~skinvert._linalg.host_block_rows`, so those stacks are not a
    per-sample cost there).
    They report per-row diagnostics through ``state`` (a :class:`_TransformState`):
    ``state.flag(stage, rows)`` for the rows that hit a stage's iteration cap,
    ``state.count(stage, n)`` where only a count is known, ``state.record.n_iter``
    and ``state.record.stage``; ``_stage_param(stage)`` names the parameter to
    raise in the ConvergenceWarning.
    """

    # ``return_info`` is an option of the call, not metadata to route.
    __metadata_request__transform = {"return_info": metadata_routing.UNUSED}

    #: Whether the inverter works on phi^-1(X) (rows with every entry saturated
    #: are then an error, and saturated entries are reported).
    _needs_inverse = False

    _parameter_constraints: dict = {
        "generator": "no_validation",  # resolved in fit (resolve_generator)
        "measurement": "no_validation",  # checked in fit (shape, dtype, finite)
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __init__(
        self, generator, *, measurement=None, batch_size=None, n_jobs=None, verbose=0,
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
            Signals (m measurements each with a ``measurement``); NaN marks a
            missing entry.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted inverter.
        """
        self._validate_params()
        X = self._validate_X(X, reset=True)
        measurement = getattr(self, "measurement", None)
        gen = self._resolve_generator(X)
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

    def _resolve_generator(self, X):
        """The generator ``fit`` inverts (``generator=`` resolved; X is validated)."""
        return resolve_generator(self.generator, type(self).__name__)

    def _fit_extra(self, X, rng):
        """Hook for subclasses: fitted state beyond the generator."""

    def _check_measurement_supported(self, generator):
        """Hook for subclasses: raise where a measurement is not supported."""

    def _stage_param(self, stage):
        """The parameter to raise when rows hit ``stage``'s cap (None: unknown)."""
        return None

    def _measurement(self, xp, dtype, device):
        """The fitted measurement in a batch's namespace and dtype (None without one)."""
        A = getattr(self, "measurement_", None)
        return None if A is None else Measurement(A, xp, dtype, device)

    @property
    def _n_features_out(self):
        return self.n_components_

    # -- transform --------------------------------------------------------------
    def _batches(self, n_samples, itemsize, n_workers=1, host=False):
        if self.batch_size is not None:
            size = self.batch_size
        else:
            size = self._auto_batch_rows(itemsize, n_workers, host=host)
            if n_workers > 1:  # at least one batch per worker
                size = min(size, max(1, -(-n_samples // n_workers)))
            if self.verbose:  # about 20 batches, so that the progress bar moves
                size = min(size, max(8, -(-n_samples // 20)))
        return list(gen_batches(n_samples, size))

    def _memory_setting(self, xp, dtype):
        """``(itemsize, n_workers, host)`` that size the batches of data of
        ``dtype`` in ``xp`` (``host``: NumPy, whose batches go to ``n_jobs``
        workers)."""
        host = _is_numpy(xp)
        itemsize = 4 if dtype == xp.float32 else 8
        return itemsize, (effective_n_jobs(self.n_jobs) if host else 1), host

    def _auto_batch_rows(self, itemsize, n_workers=1, host=False):
        """Rows whose estimated working memory (``_bytes_per_sample``) fits
        :data:`WORKING_MEMORY`, shared by ``n_workers`` concurrent batches."""
        per = max(1, self._bytes_per_sample(self.generator_, itemsize, host=host))
        return max(1, WORKING_MEMORY // (per * n_workers))

    def _bytes_per_sample(self, generator, itemsize, host=False):
        return itemsize * 8 * sum(generator.layer_sizes)

    def transform(self, X, return_info=False):
        """Recover the latent codes of the signals X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Signals; NaN marks a missing entry.
        return_info : bool, default=False
            Also return per-row diagnostics (the estimator is not modified).

        Returns
        -------
        Z : array of shape (n_samples, n_components)
            In X's namespace, device and float dtype.
        info : Bunch
            Only with ``return_info=True``; host NumPy arrays of shape
            (n_samples,) unless stated:

            - ``loss``: the final ``1/2 ||obs * (G(z) - x)||^2`` (``A G(z)``
              with a measurement; clipped X where X left phi's range);
            - ``recovered``: the row's residual is at rounding level
              (``||r|| <= sqrt(eps) ||x||``);
            - ``converged``: False where an iterative stage stopped at its
              cap on a row that was not recovered;
            - ``n_iter``: the iterations of the inverter's main loop for the
              row (gradient descent: steps; Latent-Pursuit and Layered BP: support
              refreshes), -1 where not counted per row;
            - ``stage``: which stage or start decided the row (e.g.
              ``"pursuit"``, ``"refresh"``, ``"fallback"``, ``"start 2"``;
              gradient descent adds ``", still descending"`` or
              ``", stalled"`` to the start of a row that did not converge);
            - ``n_saturated``, ``n_out_of_range``: saturated entries and
              entries outside a bounded phi's range (clipped);
            - ``not_converged``: ``{stage: rows}``, as in the warning;
            - ``n_not_converged``: int, the rows with ``converged`` False.
        """
        return self._transform(X, return_info=return_info)

    def _transform(self, X, *, validated=False, return_info=False, **kwargs):
        Z, report = self._transform_report(X, validated=validated, **kwargs)
        self._warn(report)
        return (Z, report.info()) if return_info else Z

    def _warn(self, report, name=None):
        """The warnings of one call: X's range, then convergence (one each)."""
        name = name or type(self).__name__
        if report.scan is not None:
            range_warning(
                report.scan, self.generator_.activation, bounded=self._bounded(),
                needs_inverse=self._needs_inverse, owner=name, recovered=report.recovered,
            )
        report.warn(name, self._stage_param)
        if self._exact_fit_expected():
            report.warn_inexact(name)

    def _exact_fit_expected(self):
        """Hook: True where every row should be fit to rounding level (clean
        signals declared: no noise level, no lambda), so a row that is not
        gets a warning."""
        return False

    def _bounded(self):
        return getattr(self, "measurement_", None) is None

    def _transform_report(self, X, *, validated=False, **kwargs):
        """``(Z, Report)``: the codes and the diagnostics of the call, no warning."""
        if not validated:
            check_is_fitted(self)
            X = self._validate_X(X, reset=False)
        xp, dev = namespace_of(X)
        n = X.shape[0]
        itemsize, n_workers, host = self._memory_setting(xp, X.dtype)
        batches = self._batches(n, itemsize, n_workers, host=host)
        # Missing entries are split off per batch (in _run_batch), so the
        # working memory is bounded by batch_size, not by the size of X.
        scan = scan_rows(
            X, batches, self.generator_.activation, bounded=self._bounded(),
            needs_inverse=self._needs_inverse, owner=type(self).__name__,
        )
        bar = progress(n, type(self).__name__, self.verbose and n)
        jobs = (
            (sl, _slice_all(kwargs, sl)) for sl in batches
        )
        if n_workers > 1 and len(batches) > 1:
            # Rows are independent problems: batches on joblib workers give the
            # same result as n_jobs=1 (NumPy only; other namespaces run in turn).
            results = Parallel(n_jobs=self.n_jobs, return_as="generator")(
                delayed(_run_batch)(self, X[sl, ...], kw) for sl, kw in jobs
            )
        else:
            results = (_run_batch(self, X[sl, ...], kw) for sl, kw in jobs)
        out, records = [], []
        try:
            for Z, record in results:
                out.append(Z)
                records.append(record)
                if bar is not None:
                    bar.update(Z.shape[0])
        finally:
            if bar is not None:
                bar.close()
        report = Report(records, n, scan)
        if not out:
            return xp.zeros((0, self.n_components_), dtype=X.dtype, device=dev), report
        Z = out[0] if len(out) == 1 else xp.concat(out, axis=0)
        return Z, report

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
            The signals ``G(Z)``.
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
        domain. X is taken as ``transform`` takes it: the rows holding values
        far beyond a bounded phi's range clipped to it (see
        :class:`~skinvert.inverters.DataRangeWarning`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Signals (measurements with a ``measurement``); NaN marks a missing entry.
        y : None
            Ignored.

        Returns
        -------
        score : float
            Minus the mean squared error on the observed entries.
        """
        X = self._validate_X(X, reset=False, method="score")
        xp, _ = get_namespace(X)
        Xhat = self.inverse_transform(self.transform(X))
        meas = self._measurement(xp, X.dtype, namespace_of(X)[1])
        if meas is not None:
            Xhat = meas.forward(Xhat)
        else:
            X = clip_to_range(X, self.generator_.activation, xp)
        missing = xp.isnan(X)
        err = xp.where(missing, xp.zeros_like(X), X - Xhat)
        n_obs = X.shape[0] * X.shape[1] - int(xp.sum(xp.astype(missing, xp.int64)))
        return -float(xp.sum(err * err)) / max(n_obs, 1)
