"""The adjoint (dot) test of a layer operator, in the spirit of PyLops' ``dottest``."""

import numpy as np

from .._array_api import as_namespace, to_numpy

__all__ = ["dottest"]


def dottest(layer, xp, dtype, rng, *, n_samples=3, rtol=None):
    """Check ``<A x, y> == <x, A^T y>`` for a layer operator, to rounding.

    Parameters
    ----------
    layer : Layer
        A host layer (it is bound with ``layer.to_namespace(xp, dtype=dtype)``)
        or a layer already bound to ``xp``.
    xp : namespace
        The array API namespace to test in.
    dtype : floating dtype of ``xp``
        ``xp.float32`` or ``xp.float64``.
    rng : numpy.random.Generator
        Draws the random test batches ``X`` (n_samples, n_in) and
        ``Y`` (n_samples, n_out).
    n_samples : int, default=3
        Rows of the test batches: every row is one dot test.
    rtol : float, default=None
        Relative tolerance on each row's two inner products; ``None`` uses
        ``1e-4`` in float32 and ``1e-10`` in float64.

    Returns
    -------
    lhs, rhs : ndarray of shape (n_samples,)
        ``<A x_b, y_b>`` and ``<x_b, A^T y_b>`` per row, in float64.

    Raises
    ------
    AssertionError
        If a row fails the test, or ``matmat`` / ``rmatmat`` return the wrong
        shapes.

    References
    ----------
    PyLops, ``pylops.utils.dottest`` (Ravasi & Vasconcelos, 2020).
    """
    bound = layer if layer.xp is not None else layer.to_namespace(xp, dtype=dtype)
    n_out, n_in = bound.shape
    X = as_namespace(rng.standard_normal((n_samples, n_in)), xp, dtype=dtype)
    Y = as_namespace(rng.standard_normal((n_samples, n_out)), xp, dtype=dtype)
    AX, ATY = bound.matmat(X), bound.rmatmat(Y)
    assert tuple(AX.shape) == (n_samples, n_out), f"matmat shape {tuple(AX.shape)}"
    assert tuple(ATY.shape) == (n_samples, n_in), f"rmatmat shape {tuple(ATY.shape)}"
    X, Y = to_numpy(X).astype(np.float64), to_numpy(Y).astype(np.float64)
    AX, ATY = to_numpy(AX).astype(np.float64), to_numpy(ATY).astype(np.float64)
    lhs = np.sum(AX * Y, axis=1)
    rhs = np.sum(X * ATY, axis=1)
    if rtol is None:
        rtol = 1e-4 if dtype == xp.float32 else 1e-10
    # Scale of the sums: rounding is relative to sum |a_i b_i|, not to the result.
    scale = np.sum(np.abs(AX * Y), axis=1) + np.sum(np.abs(X * ATY), axis=1)
    err = np.abs(lhs - rhs)
    bad = err > rtol * scale
    assert not np.any(bad), (
        f"dot test failed for {layer!r}: <Ax, y> = {lhs[bad]}, <x, A^T y> = {rhs[bad]} "
        f"(relative error {np.max(err / scale):.3g} > {rtol})"
    )
    return lhs, rhs
