"""The layer contract: a linear map ``x -> A x + b`` on flattened samples.

A generator is a sequence of layers with ReLU between them and an output
activation phi (paper, eq. 3). Every layer is an affine map whose linear
part ``A`` is a matrix of shape ``(n_out, n_in)`` that need not be stored:
a dense layer keeps ``A = W``, a convolution keeps its kernel. Rows are
samples, so a batch ``X`` of shape ``(B, n_in)`` maps to ``X A^T + b``.

Host layers hold their parameters as read-only NumPy arrays; the kernels
work on a *bound* copy, :meth:`Layer.to_namespace`, whose arrays live in the
data's array API namespace, dtype and device.
"""

import math

import numpy as np

from .._array_api import as_namespace

__all__ = ["Layer"]


def _readonly(array):
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


class Layer:
    """Base class of the linear layers of a generator (one affine map each).

    Subclasses set ``in_shape``, ``out_shape``, ``bias`` and ``dtype`` in
    ``__init__`` (see :meth:`_set_common`) and implement :meth:`parameters`,
    :meth:`_bind`, :meth:`matmat`, :meth:`rmatmat` and :meth:`to_dense`; a
    layer restored by pickle or skops should be validated as a new one is
    (``__getstate__`` returning the host parameters, ``__setstate__`` calling
    ``__init__``, as :class:`~skinvert.operators.Dense` does). Adding a layer
    type touches only its class and :func:`skinvert.io.from_torch`: the
    generator, its files (``weights`` via :meth:`to_dense`), equality, pickling
    and the skops trusted types (every ``Layer`` subclass) are generic.

    Attributes
    ----------
    in_shape, out_shape : tuple of int
        Per-sample shapes, channel-first (e.g. ``(C, H, W)``); a batch is
        stored flattened in C order, one sample per row.
    shape : tuple of int
        ``(n_out, n_in)``, the flattened sizes.
    bias : ndarray of shape (n_out,)
        Host (NumPy), read-only; zeros for a layer without bias.
    dtype : numpy dtype
        float32 or float64, the host dtype of the parameters.
    xp, device, compute_dtype :
        The namespace, device and dtype of a bound layer (``None`` on a host
        layer).

    Notes
    -----
    The contract, checked for every layer by :func:`skinvert.operators.dottest`:
    ``matmat(X)`` is ``X A^T`` (the linear part only), ``rmatmat(R)`` is its
    adjoint ``R A`` and ``forward(X) = matmat(X) + bias``.
    """

    xp = None
    device = None
    compute_dtype = None

    def _set_common(self, in_shape, out_shape, bias, dtype):
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_shape = tuple(int(s) for s in out_shape)
        self.dtype = np.dtype(dtype)
        n_out = math.prod(self.out_shape)
        if bias is None:
            bias = np.zeros(n_out, dtype=self.dtype)
        bias = np.asarray(bias, dtype=self.dtype)
        if bias.shape != (n_out,):
            raise ValueError(f"bias must have shape ({n_out},), got {bias.shape}.")
        self.bias = bias if not bias.flags.writeable else _readonly(bias)

    # -- sizes ----------------------------------------------------------------
    @property
    def shape(self):
        """``(n_out, n_in)``: the flattened output and input sizes."""
        return (math.prod(self.out_shape), math.prod(self.in_shape))

    @property
    def n_in(self):
        return self.shape[1]

    @property
    def n_out(self):
        return self.shape[0]

    def parameters(self):
        """The host parameters, a dict of read-only NumPy arrays (bias included)."""
        raise NotImplementedError

    # -- binding to a namespace --------------------------------------------------
    def to_namespace(self, xp, *, dtype, device=None):
        """A copy of this layer whose arrays are ``xp`` arrays of ``dtype`` on ``device``.

        Parameters
        ----------
        xp : namespace
            An array API namespace (``numpy``, ``array_api_strict``, torch, ...).
        dtype : floating dtype of ``xp``
            The dtype of the bound arrays (``xp.float32`` or ``xp.float64``).
        device : device, default=None
            The device of the bound arrays.

        Returns
        -------
        layer : same class as self
            A bound layer: :meth:`matmat`, :meth:`rmatmat` and :meth:`forward`
            take and return ``xp`` arrays.
        """
        new = self.__copy__()
        new.xp, new.device, new.compute_dtype = xp, device, dtype
        new._bias_bound = as_namespace(self.bias, xp, dtype=dtype, device=device)
        new._bind(xp, dtype, device)
        return new

    def __copy__(self):
        # A shallow copy shares the (read-only, already validated) host arrays;
        # it must not go through __getstate__ / __setstate__, which validate.
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def _bind(self, xp, dtype, device):
        """Set the bound copies of the parameters on ``self`` (a fresh copy)."""
        raise NotImplementedError

    def _require_bound(self):
        if self.xp is None:
            raise RuntimeError(
                f"{type(self).__name__} is a host layer: call "
                "layer.to_namespace(xp, dtype=...) before matmat / rmatmat / forward."
            )

    # -- the operator -----------------------------------------------------------
    def matmat(self, X):
        """The linear part on a batch: ``X A^T``, (B, n_in) -> (B, n_out).

        Parameters
        ----------
        X : array of shape (n_samples, n_in)
            One flattened input per row, in the bound namespace.

        Returns
        -------
        Y : array of shape (n_samples, n_out)
            ``A x`` per row (no bias).
        """
        raise NotImplementedError

    def rmatmat(self, R):
        """The adjoint on a batch: ``R A``, (B, n_out) -> (B, n_in).

        Parameters
        ----------
        R : array of shape (n_samples, n_out)
            One flattened output-space vector per row, in the bound namespace.

        Returns
        -------
        G : array of shape (n_samples, n_in)
            ``A^T r`` per row.
        """
        raise NotImplementedError

    def forward(self, X):
        """The affine map ``X A^T + b``, (B, n_in) -> (B, n_out)."""
        return self.matmat(X) + self._bias_bound

    def to_dense(self):
        """The host (NumPy) matrix ``A`` of shape ``(n_out, n_in)``."""
        raise NotImplementedError

    # -- comparison and pickling --------------------------------------------------
    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        if (self.in_shape, self.out_shape) != (other.in_shape, other.out_shape):
            return False
        a, b = self.parameters(), other.parameters()
        return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)

    __hash__ = None

    def __repr__(self):
        return f"{type(self).__name__}(in_shape={self.in_shape}, out_shape={self.out_shape})"
