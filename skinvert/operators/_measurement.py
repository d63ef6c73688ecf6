"""Linear measurements ``y = A G(z) + e``: validation and the batched operator.

Rows are signals, so a measurement matrix ``A`` of shape (m, n) acts on a batch
``X`` (B, n) as ``X @ A.T`` (B, m) and its adjoint on residuals ``R`` (B, m) as
``R @ A`` (B, n): :class:`Measurement` follows the layer contract of
:class:`~skinvert.operators.Layer` (``matmat`` / ``rmatmat``, no bias). Two
kinds of ``A`` are accepted:

- a dense matrix in any array API namespace (NumPy, array-api-strict, torch,
  ...), converted to the data's namespace, device and float dtype per batch;
- a SciPy sparse matrix, a :class:`scipy.sparse.linalg.LinearOperator`, any
  object :func:`scipy.sparse.linalg.aslinearoperator` accepts (``shape`` and
  ``matvec``, plus ``rmatvec`` for the adjoint), or any object with ``shape``,
  ``@`` and ``.T``: NumPy data only.
"""

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator
from sklearn.externals.array_api_compat import is_array_api_obj

from .._array_api import _is_numpy, as_namespace, namespace_of, to_numpy
from .._linalg import shared_left_matmul
from ._base import Layer

__all__ = ["Measurement", "check_measurement", "measurement_shape"]


#: Largest ``m * n`` that :meth:`Measurement.to_dense` builds from an operator.
MAX_DENSE_ENTRIES = 2**26


def _is_dense(A):
    return isinstance(A, (np.ndarray, list, tuple)) or is_array_api_obj(A)


def _as_operator(A):
    """``A`` as a SciPy LinearOperator, or None when it is a dense array."""
    if isinstance(A, LinearOperator):
        return A
    if sp.issparse(A) or (hasattr(A, "shape") and hasattr(A, "matvec")):
        return aslinearoperator(A)
    if _is_dense(A):
        return None
    shape = getattr(A, "shape", None)
    if shape is not None and hasattr(A, "__matmul__") and hasattr(A, "T"):
        return LinearOperator(
            shape=tuple(shape),
            matvec=lambda v: A @ v,
            rmatvec=lambda v: A.T @ v,
            matmat=lambda M: A @ M,
            rmatmat=lambda M: A.T @ M,
            dtype=np.dtype(getattr(A, "dtype", np.float64)),
        )
    raise TypeError(
        "measurement must be a 2-D array of shape (n_measurements, n_signal), a SciPy "
        "sparse matrix or LinearOperator, or an object with .shape, @ and .T; got "
        f"{type(A).__name__}."
    )


def measurement_shape(A):
    """``(m, n)`` of a measurement given as a parameter (before validation).

    Parameters
    ----------
    A : array-like, sparse matrix or linear operator
        The ``measurement`` parameter.

    Returns
    -------
    shape : tuple of int
        ``(n_measurements, n_signal)``.
    """
    op = _as_operator(A)
    if op is not None:
        shape = tuple(op.shape)
    else:
        shape = tuple(getattr(A, "shape", np.shape(A)))
    if len(shape) != 2:
        raise ValueError(
            f"measurement must be 2-D, of shape (n_measurements, n_signal); got shape {shape}."
        )
    return int(shape[0]), int(shape[1])


def check_measurement(A, X, n_signal):
    """Validate a ``measurement`` parameter in ``fit`` against X and the generator.

    Parameters
    ----------
    A : array-like, sparse matrix or linear operator of shape (m, n_signal)
        The ``measurement`` parameter.
    X : array of shape (n_samples, m)
        The validated fit data (its namespace and device receive a dense A).
    n_signal : int
        The generator's output size ``n``.

    Returns
    -------
    A_checked : array or LinearOperator
        An array in X's namespace and on its device (float64, or float32 if
        A is float32), or a LinearOperator.

    Raises
    ------
    ValueError
        Wrong shape (naming both sizes), non-finite entries.
    TypeError
        An operator with non-NumPy data, an operator without an adjoint,
        a non-real dtype.
    """
    m, n = measurement_shape(A)
    if n != n_signal:
        raise ValueError(
            f"measurement has shape ({m}, {n}): it must act on the generator's signals of "
            f"size {n_signal} (generator.n_output), i.e. have {n_signal} columns."
        )
    if X.shape[1] != m:
        raise ValueError(
            f"X has {X.shape[1]} features, but the measurement produces {m} measurements "
            f"(measurement.shape[0] = {m}); with a measurement, X holds y = A G(z)."
        )
    xp, dev = namespace_of(X)
    op = _as_operator(A)
    if op is not None:
        if not _is_numpy(xp):
            raise TypeError(
                "A sparse or LinearOperator measurement needs NumPy data; convert the "
                f"measurement to a dense {xp.__name__} array to use that namespace."
            )
        if np.issubdtype(op.dtype, np.complexfloating):
            raise TypeError(f"measurement must be real, got dtype {op.dtype}.")
        try:
            op.rmatvec(np.zeros(m))
        except NotImplementedError as exc:
            raise TypeError(
                "measurement needs an adjoint (rmatvec, or .T) for the gradient and the "
                "least-squares steps."
            ) from exc
        if sp.issparse(A) and not np.all(np.isfinite(A.data)):
            raise ValueError("measurement contains NaN or infinity.")
        return op
    same = False
    if not _is_numpy(xp) and not isinstance(A, (list, tuple, np.ndarray)):
        xp_a, _ = namespace_of(A)
        same = xp_a.__name__ == xp.__name__
    if same:
        if not xp.isdtype(A.dtype, "real floating"):
            if not xp.isdtype(A.dtype, ("integral", "bool")):
                raise TypeError(f"measurement must hold real numbers, got dtype {A.dtype}.")
            A = xp.astype(A, xp.float64)
        A = as_namespace(A, xp, device=dev)
    else:
        A = np.asarray(A) if _is_numpy(xp) or isinstance(A, (list, tuple)) else to_numpy(A)
        if A.dtype.kind in "biu":
            A = A.astype(np.float64)
        if A.dtype.kind != "f":
            raise TypeError(f"measurement must hold real numbers, got dtype {A.dtype}.")
        A = as_namespace(A, xp, device=dev)
    if not bool(xp.all(xp.isfinite(A))):
        raise ValueError("measurement contains NaN or infinity.")
    return A


class Measurement(Layer):
    """A measurement ``y = A x`` as a layer without bias (``shape == (m, n)``).

    Parameters
    ----------
    A : array of shape (m, n) (NumPy or ``xp``), or a LinearOperator (NumPy only)
        As returned by :func:`check_measurement`.
    xp : namespace, default=None
        If given, the measurement is bound to ``xp`` at once (as
        ``Measurement(A).to_namespace(xp, dtype=dtype, device=device)``).
    dtype : float dtype of the batch, default=None
        The dtype the bound measurement computes in.
    device : device, default=None
        The device of the bound arrays.

    Notes
    -----
    ``matmat(X) = X @ A.T`` and ``rmatmat(R) = R @ A`` (rows are signals);
    ``forward`` and ``adjoint`` are the same two maps, ``fold(W) = A @ W``
    and ``columns(J)[b] = A @ J[b]`` serve the measured last layer.
    """

    def __init__(self, A, xp=None, dtype=None, device=None):
        if hasattr(A, "matvec") and not _is_dense(A):
            self.op, self._A_host = A, None
            host_dtype = np.dtype(A.dtype) if np.dtype(A.dtype).kind == "f" else np.float64
        else:
            self.op, self._A_host = None, A
            host_dtype = np.float32 if str(A.dtype).endswith("float32") else np.float64
        m, n = (int(s) for s in A.shape)
        self._set_common((n,), (m,), None, host_dtype)
        self.A = None
        if xp is not None:
            self._rebind(xp, dtype, device)

    def _rebind(self, xp, dtype, device):
        self.xp, self.device, self.compute_dtype = xp, device, dtype
        self._bias_bound = None
        self._bind(xp, dtype, device)

    def _bind(self, xp, dtype, device):
        if self.op is None:
            self.A = as_namespace(self._A_host, xp, dtype=dtype, device=device)

    def parameters(self):
        if self.op is not None:
            return {"operator": self.to_dense()}
        return {"A": to_numpy(self._A_host)}

    def to_dense(self):
        """The host (NumPy) matrix ``A`` (an operator is applied to the identity)."""
        if self.op is None:
            return np.array(to_numpy(self._A_host), copy=True)
        m, n = self.shape
        if m * n > MAX_DENSE_ENTRIES:
            raise ValueError(
                f"measurement of shape ({m}, {n}) is too large to build densely "
                f"(more than {MAX_DENSE_ENTRIES} entries)."
            )
        return np.asarray(self.op.matmat(np.eye(n, dtype=self.dtype)))

    def _cast(self, M):
        M = np.asarray(M)
        dtype = self.compute_dtype
        return M if M.dtype == dtype else M.astype(dtype)

    def matmat(self, X):
        """``A x`` for every row: (B, n) -> (B, m)."""
        self._require_bound()
        if self.A is not None:
            return X @ self.A.T
        return self._cast(self.op.matmat(X.T).T)

    def rmatmat(self, R):
        """``A^T r`` for every row: (B, m) -> (B, n)."""
        self._require_bound()
        if self.A is not None:
            return R @ self.A
        return self._cast(self.op.rmatmat(R.T).T)

    forward = matmat
    adjoint = rmatmat

    def fold(self, W):
        """``A @ W``: (n, k) -> (m, k), e.g. the last layer seen through A."""
        self._require_bound()
        if self.A is not None:
            return self.A @ W
        return self._cast(self.op.matmat(W))

    def columns(self, J):
        """``A @ J[b]`` for every b: (B, n, p) -> (B, m, p)."""
        self._require_bound()
        if self.A is not None:
            return shared_left_matmul(self.A, J, self.xp)
        xp = self.xp
        B, n, p = J.shape
        flat = xp.reshape(xp.permute_dims(J, (1, 0, 2)), (n, B * p))
        out = xp.reshape(self._cast(self.op.matmat(flat)), (self.shape[0], B, p))
        return xp.permute_dims(out, (1, 0, 2))

    def __repr__(self):
        kind = "operator" if self.op is not None else "dense"
        return f"Measurement(shape={self.shape}, {kind})"
