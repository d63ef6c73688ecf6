"""Recovery metrics: per-layer SNR and support errors (section 6 of the paper)."""

import numpy as np

from ._array_api import to_numpy

__all__ = ["layer_snr", "snr_db", "support_errors", "summarize"]


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
    for i, (h, hh) in enumerate(zip(H, Hh), start=1):
        out[f"x{i}"] = snr_db(h, hh)
    out["image"] = snr_db(X, Xh)
    return out


def support_errors(true_supports, estimated_supports):
    """Per-sample counts of support errors in every hidden layer.

    Returns
    -------
    errors : list of dict
        One per layer: ``missed`` (true support not found) and ``spurious``
        (found outside the true support), each an ndarray (n_samples,).
    """
    out = []
    for S, Sh in zip(true_supports, estimated_supports):
        S = np.asarray(to_numpy(S), dtype=bool)
        Sh = np.asarray(to_numpy(Sh), dtype=bool)
        out.append({"missed": np.sum(S & ~Sh, axis=1), "spurious": np.sum(~S & Sh, axis=1)})
    return out


def summarize(values, *, cap=300.0):
    """Median, 10th and 90th percentiles of an SNR array (inf capped at ``cap`` dB)."""
    v = np.minimum(np.asarray(values, dtype=np.float64), cap)
    return {
        "median": float(np.median(v)),
        "p10": float(np.percentile(v, 10)),
        "p90": float(np.percentile(v, 90)),
    }
