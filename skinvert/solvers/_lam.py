"""The weight ``lam`` of a layer's l1 term, normalised once.

A layer problem's ``lam`` is either one real number for the whole batch or an
array of shape (B,), one per sample (Algorithm 2's epsilon rule, eqs. 29-31,
gives per-sample values). :func:`as_lam` turns every real scalar (Python,
NumPy, 0-d arrays of any namespace) into a Python float, so the kernels test
one type only.
"""

from numbers import Real

__all__ = ["as_lam", "lam_col", "take_lam"]


def as_lam(lam):
    """``lam`` as a Python float (any real scalar or 0-d array) or a (B,) array."""
    if isinstance(lam, Real):
        return float(lam)
    if getattr(lam, "ndim", None) == 0:
        return float(lam)
    return lam


def lam_col(lam):
    """``lam`` broadcastable against (B, k): a float, or the (B, 1) column."""
    return lam if isinstance(lam, float) else lam[:, None]


def take_lam(lam, idx, xp):
    """The rows ``idx`` of a per-sample ``lam`` (a float is shared)."""
    return lam if isinstance(lam, float) else xp.take(lam, idx, axis=0)


def slice_lam(lam, sl):
    """The rows ``sl`` (a slice) of a per-sample ``lam`` (a float is shared)."""
    lam = as_lam(lam)
    return lam if isinstance(lam, float) else lam[sl, ...]
