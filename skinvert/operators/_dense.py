"""The dense (fully connected) layer ``x -> W x + b`` of the paper's generator (eq. 3)."""

import numpy as np

from .._array_api import as_namespace
from ._base import Layer, _readonly

__all__ = ["Dense", "check_bias", "check_scale", "check_weight"]


def check_weight(W, name="W"):
    """Validate a weight matrix: real, 2-D, non-empty, finite, not all zeros.

    Returns a read-only float32 / float64 host copy (integers become float64).
    The message of every error names the array (``name``).
    """
    try:
        W = np.asarray(W)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} could not be converted to an array: {exc}") from exc
    if W.dtype.kind not in "fiu" or W.dtype == np.bool_:
        raise TypeError(
            f"{name} must hold real numbers (float32 or float64), got dtype {W.dtype}."
        )
    if W.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_out, n_in), got shape {W.shape}."
        )
    if 0 in W.shape:
        raise ValueError(f"{name} has an empty dimension: shape {W.shape}.")
    if W.dtype not in (np.float32, np.float64):
        W = W.astype(np.float64)
    if not np.all(np.isfinite(W)):
        raise ValueError(f"{name} holds non-finite values (NaN or inf).")
    if not np.any(W):
        raise ValueError(
            f"{name} is all zeros: every layer after it is constant, so the "
            "generator cannot be inverted."
        )
    return _readonly(W)


def check_scale(W, dtype, name="W"):
    """Refuse ``W`` when ``||W||_F^2`` over- or underflows ``dtype``.

    ``W^T W`` enters the step bounds and the normal equations of every
    inverter (Algorithms 1-6); if the sum of the squared entries is not a
    finite positive number of the dtype the inverters compute in, they would
    fail with a LinAlgError or return non-finite codes. Checked for the
    stored dtype at construction and again for the compute dtype when the
    weights are cast (e.g. float64 weights used on float32 data).
    """
    dtype = np.dtype(dtype)
    with np.errstate(over="ignore", under="ignore"):
        sq = float(np.sum(np.square(np.asarray(W, dtype=np.float64))))
        cast = dtype.type(sq)
    if not (0.0 < cast < np.inf):
        with np.errstate(over="ignore", under="ignore"):
            big = float(np.max(np.abs(W)))
        raise ValueError(
            f"{name} is badly scaled (largest |entry| {big:.3g}): the sum of its squared "
            f"entries overflows or underflows {dtype.name}, so the generator cannot be "
            f"inverted in {dtype.name} floating point. Rescale the weights."
        )


def check_bias(b, n_out, dtype, name="b"):
    """Validate a bias against its layer: real, shape ``(n_out,)``, finite in ``dtype``.

    Finiteness is checked after the cast to the stored dtype, so a float64
    bias beyond the float32 range is refused for float32 weights.
    """
    if b is None:
        return _readonly(np.zeros(n_out, dtype=dtype))
    b = np.asarray(b)
    if b.dtype.kind not in "fiu" or b.dtype == np.bool_:
        raise TypeError(f"{name} must hold real numbers, got dtype {b.dtype}.")
    if b.shape != (n_out,):
        raise ValueError(
            f"{name} must have shape ({n_out},) to match the layer's output size "
            f"{n_out}, got shape {b.shape}."
        )
    with np.errstate(over="ignore", invalid="ignore"):
        cast = b.astype(dtype)
    if not np.all(np.isfinite(cast)):
        where = "" if np.all(np.isfinite(b)) else " (NaN or inf)"
        extra = f" after the cast to {np.dtype(dtype).name}" if not where else where
        raise ValueError(f"{name} holds non-finite values{extra}.")
    return _readonly(cast)


class Dense(Layer):
    """A fully connected layer ``x -> W x + b`` (one step of the paper's eq. 3).

    Parameters
    ----------
    W : array-like of shape (n_out, n_in)
        The weight matrix ``W_i`` (the paper's shape); stored as a read-only
        float32 / float64 host copy.
    b : array-like of shape (n_out,), default=None
        The bias (zeros if None), cast to W's dtype.

    Attributes
    ----------
    weight : ndarray of shape (n_out, n_in)
        Host, read-only.
    bias : ndarray of shape (n_out,)
        Host, read-only.

    Notes
    -----
    Rows are samples: ``matmat(X) = X @ W.T`` and ``rmatmat(R) = R @ W``.

    Examples
    --------
    >>> import numpy as np
    >>> from skinvert.operators import Dense
    >>> layer = Dense(np.eye(3)[:2], b=[1.0, 2.0]).to_namespace(np, dtype=np.float64)
    >>> layer.forward(np.ones((1, 3)))
    array([[2., 3.]])
    """

    def __init__(self, W, b=None):
        W = check_weight(W, "W")
        check_scale(W, W.dtype, "W")
        self._init_checked(W, check_bias(b, W.shape[0], W.dtype, "b"))

    @classmethod
    def _from_checked(cls, W, b):
        """A Dense layer from arrays already validated by check_weight / check_bias."""
        layer = cls.__new__(cls)
        layer._init_checked(W, b)
        return layer

    def _init_checked(self, W, b):
        self.weight = W
        self._set_common((W.shape[1],), (W.shape[0],), b, W.dtype)

    def parameters(self):
        return {"weight": self.weight, "bias": self.bias}

    def _bind(self, xp, dtype, device):
        self._W = as_namespace(self.weight, xp, dtype=dtype, device=device)

    def matmat(self, X):
        self._require_bound()
        return X @ self._W.T

    def rmatmat(self, R):
        self._require_bound()
        return R @ self._W

    def to_dense(self):
        return self.weight

    def __repr__(self):
        return f"Dense(n_in={self.n_in}, n_out={self.n_out}, dtype={self.dtype.name})"

    # -- pickle / joblib / skops: restored state is validated as a new layer is --
    def __getstate__(self):
        return {"weight": self.weight, "bias": self.bias}

    def __setstate__(self, state):
        try:
            W, b = state["weight"], state["bias"]
        except (KeyError, TypeError) as exc:
            raise ValueError(
                "Cannot restore a Dense layer: the saved state needs 'weight' and 'bias', "
                f"got {type(state).__name__}."
            ) from exc
        self.__init__(W, b)
