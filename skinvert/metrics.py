"""Recovery metrics: per-layer SNR and support errors (section 6 of the paper)."""

import numpy as np
from sklearn.utils import check_random_state

from ._array_api import to_numpy
from .operators import Measurement

__all__ = ["heldout_pixel_scorer", "layer_snr", "snr_db", "summarize", "support_errors"]


def snr_db(reference, estimate):
    """Per-row SNR in dB, ``10 log10(||ref||^2 / ||ref - est||^2)``.

    Parameters
    ----------
    reference, estimate : array-like of shape (n_samples, n_features)
        Compared on the entries where ``reference`` is not NaN.

    Returns
    -------
    snr : ndarray of shape (n_samples,)
        ``inf`` for an exact row.
    """
    ref = np.asarray(to_numpy(reference), dtype=np.float64)
    est = np.asarray(to_numpy(estimate), dtype=np.float64)
    ok = ~np.isnan(ref)
    ref = np.where(ok, ref, 0.0)
    est = np.where(ok, est, 0.0)
    num = np.sum(ref**2, axis=1)
    den = np.sum((ref - est) ** 2, axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * (np.log10(num) - np.log10(den))


def layer_snr(generator, Z_true, Z_hat):
    """SNR of every layer when the estimate ``Z_hat`` is fed back through G.

    As in the paper's Figures 4, 5, 8 and 11: invert, then run the generator
    on the estimate and compare every layer with the truth.

    Parameters
    ----------
    generator : ReLUGenerator
        The generator ``G``.
    Z_true : array-like of shape (n_samples, n_latent)
        The true latent codes.
    Z_hat : array-like of shape (n_samples, n_latent)
        Their estimates.

    Returns
    -------
    snr : dict
        ``{"z": ..., "x1": ..., ..., "xL": ..., "image": ...}``, each an
        ndarray of shape (n_samples,) in dB.
    """
    Z_true = np.asarray(to_numpy(Z_true), dtype=np.float64)
    Z_hat = np.asarray(to_numpy(Z_hat), dtype=np.float64)
    X, H = generator.forward(Z_true, return_hidden=True)
    Xh, Hh = generator.forward(Z_hat, return_hidden=True)
    out = {"z": snr_db(Z_true, Z_hat)}
    for i, (h, hh) in enumerate(zip(H, Hh, strict=True), start=1):
        out[f"x{i}"] = snr_db(h, hh)
    out["image"] = snr_db(X, Xh)
    return out


def support_errors(true_supports, estimated_supports):
    """Per-sample counts of support errors in every hidden layer.

    Parameters
    ----------
    true_supports : list of bool arrays of shape (n_samples, n_i)
        The true supports, e.g. ``generator.supports(Z)``.
    estimated_supports : list of bool arrays of shape (n_samples, n_i)
        The estimated ones, e.g. ``generator.supports(Z_hat)``.

    Returns
    -------
    errors : list of dict
        One per layer: ``missed`` (true support not found) and ``spurious``
        (found outside the true support), each an ndarray (n_samples,).
    """
    out = []
    for S, Sh in zip(true_supports, estimated_supports, strict=False):
        S = np.asarray(to_numpy(S), dtype=bool)
        Sh = np.asarray(to_numpy(Sh), dtype=bool)
        out.append({"missed": np.sum(S & ~Sh, axis=1), "spurious": np.sum(~S & Sh, axis=1)})
    return out


def summarize(values, *, cap=300.0):
    """Median, 10th and 90th percentiles of an SNR array (inf capped at ``cap`` dB).

    Parameters
    ----------
    values : array-like
        SNRs in dB (``inf`` for exact recoveries).
    cap : float, default=300.0
        Values above it count as ``cap``.

    Returns
    -------
    summary : dict
        ``{"median": ..., "p10": ..., "p90": ...}`` as floats.
    """
    v = np.minimum(np.asarray(values, dtype=np.float64), cap)
    return {
        "median": float(np.median(v)),
        "p10": float(np.percentile(v, 10)),
        "p90": float(np.percentile(v, 90)),
    }


class _HeldoutPixelScorer:
    """Callable ``scorer(estimator, X, y=None)``; see :func:`heldout_pixel_scorer`."""

    def __init__(self, fraction, random_state):
        self.fraction = fraction
        self.random_state = random_state

    def __call__(self, estimator, X, y=None):
        Xn = np.array(to_numpy(X), dtype=float, copy=True)
        observed = ~np.isnan(Xn)
        rng = check_random_state(self.random_state)
        hide = observed & (rng.random_sample(Xn.shape) < self.fraction)
        # Keep at least one observed entry per row, so that every row can be inverted.
        empty = ~np.any(observed & ~hide, axis=1)
        hide[empty] = False
        if not np.any(hide):
            raise ValueError(
                f"heldout_pixel_scorer(fraction={self.fraction}) hid no entry of X "
                f"({Xn.shape[0]} rows): raise fraction."
            )
        X_in = np.where(hide, np.nan, Xn).astype(np.asarray(to_numpy(X)).dtype, copy=False)
        Z_hat = estimator.transform(X_in)
        X_hat = estimator.inverse_transform(Z_hat)
        # With a measurement A, X holds y = A G(z): compare A G(z_hat) with y.
        meas = getattr(estimator, "measurement_", None)
        if meas is not None:
            X_hat = Measurement(meas, np, np.float64, None).forward(
                np.asarray(to_numpy(X_hat), dtype=np.float64)
            )
        X_hat = np.asarray(to_numpy(X_hat), dtype=float)
        if X_hat.shape != Xn.shape:
            raise ValueError(
                f"heldout_pixel_scorer: {type(estimator).__name__}.inverse_transform gives "
                f"{X_hat.shape[1]} features for X's {Xn.shape[1]} (a measurement the scorer "
                "does not see?)."
            )
        err = (X_hat - Xn)[hide]
        return -float(np.mean(err * err))

    def __repr__(self):
        return (
            f"heldout_pixel_scorer(fraction={self.fraction}, "
            f"random_state={self.random_state!r})"
        )


def heldout_pixel_scorer(fraction=0.1, random_state=0):
    """A scorer that hides pixels and scores their reconstruction.

    For ``GridSearchCV``/``cross_val_score`` (``scoring=``) with any skinvert
    inverter: in each call a random ``fraction`` of the *observed* entries of
    X is set to NaN (missing), X is inverted, and the score is minus the mean
    squared error of ``G(z_hat)`` on the hidden entries only (higher is
    better); with a ``measurement`` A (X holds ``y = A G(z)``), of
    ``A G(z_hat)``. Unlike ``estimator.score``, which measures the fit on the
    entries the inverter saw, this measures prediction on entries it did not
    see, so it penalises over-fitting noise (e.g. ``lam`` or ``noise_std``
    set too low) as well as over-smoothing.

    Parameters
    ----------
    fraction : float in (0, 1), default=0.1
        Share of the observed entries hidden in each call.
    random_state : int, RandomState instance or None, default=0
        Seed of the hidden entries; an int gives the same mask for the same
        X in every call, so that all candidates of a grid are scored on the
        same pixels.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y=None) -> float``, higher is better.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import GridSearchCV
    >>> from skinvert import LatentPursuitInverter, make_random_generator
    >>> from skinvert.metrics import heldout_pixel_scorer
    >>> G = make_random_generator([10, 60, 150, 300], random_state=0)
    >>> Z = np.random.default_rng(0).standard_normal((30, 10))
    >>> X = G.forward(Z) + 1e-2 * np.random.default_rng(1).standard_normal((30, 300))
    >>> search = GridSearchCV(LatentPursuitInverter(G), {"noise_std": [1e-3, 1e-2, 1e-1]},
    ...                       scoring=heldout_pixel_scorer(0.1), cv=3).fit(X)
    >>> search.best_params_["noise_std"] > 0
    True
    """
    if not (0.0 < float(fraction) < 1.0):
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}.")
    return _HeldoutPixelScorer(float(fraction), random_state)
