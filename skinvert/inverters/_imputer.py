"""GeneratorImputer: fill missing entries with G(z_hat) (inpainting)."""

from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin, clone
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import check_is_fitted

from .._array_api import get_namespace
from ._checks import resolve_generator


class GeneratorImputer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Fill the missing (NaN) entries of X with the generator's reconstruction.

    ``transform(X)`` inverts every row with ``inverter`` on its observed
    entries, then returns X with each NaN replaced by the same entry of
    ``G(z_hat)``; observed entries are returned as given. Usable in a
    Pipeline before any estimator that does not accept NaN (the paper's
    inpainting experiments, Figures 8-13).

    Parameters
    ----------
    inverter : inverter estimator
        Any skinvert inverter, with its generator (required), e.g.
        ``LatentPursuitInverter(G)``.

    Attributes
    ----------
    inverter_ : estimator
        The fitted clone of ``inverter``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X had feature names (a DataFrame); ``get_feature_names_out``
        returns them (one output per input feature, so
        ``set_output(transform="pandas")`` works).

    Examples
    --------
    >>> import numpy as np
    >>> from skinvert import GeneratorImputer, LatentPursuitInverter, make_random_generator
    >>> G = make_random_generator([10, 60, 150, 300], random_state=0)
    >>> X = G.forward(np.random.default_rng(0).standard_normal((4, 10)))
    >>> X_missing = X.copy(); X_missing[:, :100] = np.nan
    >>> X_filled = GeneratorImputer(LatentPursuitInverter(G)).fit(X_missing).transform(X_missing)
    >>> bool(np.allclose(X_filled, X))
    True
    """

    _parameter_constraints = {
        "inverter": [HasMethods(["fit", "transform", "inverse_transform"]), None]
    }

    def __init__(self, inverter):
        self.inverter = inverter

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def fit(self, X, y=None):
        """Fit the inverter on X (checks X against its generator).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NaN marks a missing entry.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted imputer.
        """
        self._validate_params()
        inv = self.inverter
        if inv is None:
            # resolve_generator's TypeError says what a generator may be.
            raise TypeError(
                "GeneratorImputer needs an inverter with its generator, e.g. "
                "GeneratorImputer(LatentPursuitInverter(G)); for G "
                + str(_generator_help())
            )
        if getattr(inv, "measurement", None) is not None:
            raise ValueError(
                "GeneratorImputer fills missing pixels of signals y = G(z); an inverter with "
                "a measurement sees A G(z), whose missing entries G(z_hat) cannot fill. "
                "Use an inverter without measurement."
            )
        self.inverter_ = clone(inv).fit(X)
        self.n_features_in_ = self.inverter_.n_features_in_
        if hasattr(self.inverter_, "feature_names_in_"):
            self.feature_names_in_ = self.inverter_.feature_names_in_
        return self

    def transform(self, X):
        """Return X with its missing entries replaced by ``G(z_hat)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Signals; NaN marks a missing entry.

        Returns
        -------
        X_filled : array of shape (n_samples, n_features)
            X with its NaN replaced by the entries of ``G(z_hat)``.
        """
        check_is_fitted(self)
        Xv = self.inverter_._validate_X(X, reset=False)
        xp, _ = get_namespace(Xv)
        # X as given (a DataFrame keeps its feature names for the inverter's check).
        X_hat = self.inverter_.inverse_transform(self.inverter_.transform(X))
        return xp.where(xp.isnan(Xv), X_hat, Xv)


def _generator_help():
    try:
        resolve_generator(None, "")
    except TypeError as exc:
        return str(exc).split(": ", 1)[1]
    return ""  # pragma: no cover
