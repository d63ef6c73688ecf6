"""Result objects and input checks shared by the analysis functions."""

import math

import numpy as np

__all__ = ["BoundedValue", "KINDS"]

#: The labels of :attr:`BoundedValue.kind`.
KINDS = ("exact", "lower_bound", "upper_bound", "estimate")


class BoundedValue:
    """A combinatorial quantity with a label saying how much of it is known.

    Spark, sub-spark, sub-rank and the sub-matrix coherence ``mu_s`` are
    minima or maxima over exponentially many column or row subsets. The
    functions that compute them search exhaustively when the search fits in
    their budget and fall back to rigorous bounds otherwise; this object
    carries the outcome.

    Parameters
    ----------
    value : float
        The reported number: the exact value when ``kind == "exact"``, else
        the bound or estimate named by ``kind``.
    kind : {"exact", "lower_bound", "upper_bound", "estimate"}
        What ``value`` is. ``"estimate"`` is a value that is not proved for
        this matrix (e.g. the value that holds with probability one for
        matrices with iid continuous entries); it always lies in
        ``[lower, upper]``.
    lower, upper : float
        Rigorous bounds, ``lower <= true value <= upper`` (up to the
        numerical rank tolerance). Equal when ``kind == "exact"``.
    method : str
        How the numbers were obtained, in words.
    generic : float or None, default=None
        The value for a matrix in general position (every square minor
        non-zero), which iid Gaussian matrices are with probability one.
        ``None`` where no closed form exists (``mu_s``).

    Notes
    -----
    ``float(result)`` and ``int(result)`` give ``value``, so a result can be
    used where a number is expected, but comparisons in code that must be
    rigorous should use ``lower`` and ``upper``.
    """

    __slots__ = ("value", "kind", "lower", "upper", "method", "generic")

    def __init__(self, value, kind, lower, upper, method, generic=None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
        self.value = _num(value)
        self.kind = kind
        self.lower = _num(lower)
        self.upper = _num(upper)
        self.method = method
        self.generic = None if generic is None else _num(generic)

    @property
    def is_exact(self):
        """True when the value is proved (``lower == upper``)."""
        return self.kind == "exact"

    def __float__(self):
        return float(self.value)

    def __int__(self):
        return int(self.value)

    def __repr__(self):
        return (
            f"BoundedValue(value={self.value!r}, kind={self.kind!r}, "
            f"lower={self.lower!r}, upper={self.upper!r})"
        )

    def __str__(self):
        if self.is_exact:
            return f"{self.value} (exact; {self.method})"
        return (
            f"{self.value} ({self.kind}; proved interval [{self.lower}, {self.upper}]; "
            f"{self.method})"
        )


def _num(x):
    """Python int for integral values, float otherwise (inf and nan stay float)."""
    x = float(x)
    if math.isfinite(x) and x == int(x):
        return int(x)
    return x


def _make_result(lower, upper, *, best, side, method, generic=None, assume_generic=False):
    """Build a :class:`BoundedValue` from rigorous bounds.

    ``best`` is the one-sided search result (``side`` is "upper" for minima,
    "lower" for maxima). With ``assume_generic`` the generic value, clipped
    to ``[lower, upper]``, is reported as an ``"estimate"``.
    """
    if lower > upper:  # rounding between two tolerances; never widen the truth
        lower = upper
    if lower == upper:
        return BoundedValue(lower, "exact", lower, upper, method, generic)
    if assume_generic and generic is not None:
        est = min(max(generic, lower), upper)
        return BoundedValue(est, "estimate", lower, upper, method, generic)
    kind = "upper_bound" if side == "upper" else "lower_bound"
    return BoundedValue(best, kind, lower, upper, method, generic)


def check_matrix(W, name="W"):
    """A finite 2-D float64 host copy of ``W``."""
    W = np.asarray(W)
    if W.dtype.kind not in "fiu" or W.dtype == np.bool_:
        raise TypeError(f"{name} must hold real numbers, got dtype {W.dtype}.")
    if W.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {W.shape}.")
    if 0 in W.shape:
        raise ValueError(f"{name} has an empty dimension: shape {W.shape}.")
    if not np.all(np.isfinite(W)):
        raise ValueError(f"{name} holds non-finite values (NaN or inf).")
    return np.asarray(W, dtype=np.float64)


def check_s(s, n_rows, name="s"):
    """An int ``1 <= s <= n_rows``."""
    if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {s!r}.")
    s = int(s)
    if not 1 <= s <= n_rows:
        raise ValueError(
            f"{name} must satisfy 1 <= {name} <= {n_rows} (the number of rows), got {s}.")
    return s


def check_budget(max_combinations):
    if isinstance(max_combinations, bool) or not isinstance(max_combinations, (int, np.integer)):
        raise TypeError(f"max_combinations must be an integer, got {max_combinations!r}.")
    if max_combinations < 0:
        raise ValueError(f"max_combinations must be >= 0, got {max_combinations}.")
    return int(max_combinations)


def rank_tol(sigma_max, shape):
    """NumPy's ``matrix_rank`` tolerance: ``sigma_max * max(shape) * eps``."""
    return float(sigma_max) * max(shape) * np.finfo(np.float64).eps
