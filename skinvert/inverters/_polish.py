"""The functional polish: ``skinvert.polish(Z0, X, generator, ...)``."""

from numbers import Integral, Real

from sklearn.utils import gen_batches
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.validation import check_array

from .._array_api import get_namespace, namespace_of, single_threaded_blas
from ..algorithms.polish import polish_batch
from ..generator import ReLUGenerator
from ..operators import Measurement, check_measurement
from ._batching import generator_arrays

__all__ = ["polish"]


@validate_params(
    {
        "Z0": ["array-like"],
        "X": ["array-like"],
        "generator": [ReLUGenerator],
        "measurement": "no_validation",  # checked below (shape, dtype, finite)
        "gamma": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "return_info": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def polish(Z0, X, generator, *, measurement=None, gamma=0.0, max_iter=50, tol=None,
           batch_size=None, return_info=False):
    """Polish latent estimates to the exact codes: Algorithm 1 with support refresh.

    From each estimate ``z0``, Levenberg-Marquardt steps on the fixed-support
    problem of Algorithm 1 (the Oracle, ``min_z 1/2 ||y - A phi(A_S z + c_S)||^2``
    with ``S`` the supports of the current estimate), each accepted only if it
    lowers the loss of eq. 1 through the real network, with the supports
    refreshed after every step, until they are a fixed point. Any estimate
    works: gradient descent's, a pursuit's, your own code's.

    Parameters
    ----------
    Z0 : array-like of shape (n_samples, n_latent)
        Starting codes.
    X : array-like of shape (n_samples, n_features)
        The signals (``n_features = generator.n_output``) or, with a
        ``measurement``, their measurements; NaN marks a missing entry.
    generator : ReLUGenerator
        The generator (any output activation).
    measurement : array-like, sparse matrix or LinearOperator of shape (m, n), default=None
        Linear measurements ``y = A G(z)`` (see
        :class:`~skinvert.GradientDescentInverter`).
    gamma : float, default=0.0
        Ridge weight on z (the MAP prior of eq. 16).
    max_iter : int, default=50
        Gauss-Newton steps per row.
    tol : float or None, default=None
        Relative step below which a row on a support fixed point stops.
        None: ``sqrt(eps)`` of the dtype, and in double precision a row
        steps on while its (mixed-precision) steps contract, down to
        rounding; a given ``tol`` stops it there.
    batch_size : int or None, default=None
        Rows per batch (None: all at once).
    return_info : bool, default=False
        Also return per-row diagnostics.

    Returns
    -------
    Z : array of shape (n_samples, n_latent)
        In X's namespace and float dtype; the loss of eq. 1 at each row is
        never above that at ``Z0``.
    info : dict
        Only with ``return_info=True``: ``"loss"`` (eq. 1 at Z),
        ``"n_iter"`` (steps per row) and ``"fixed_point"`` (the supports of
        the row reached a fixed point), arrays of shape (n_samples,).

    See Also
    --------
    skinvert.HybridInverter : Starts from the pursuit and multi-start gradient
        descent, then this polish.

    Notes
    -----
    A generalisation of Algorithm 1 (the Oracle) to unknown supports; for a
    piecewise-linear phi without noise, a start inside the true support
    region reaches the exact z in one Gauss-Newton step. For a smooth phi
    (tanh, sigmoid) in double precision the steps are mixed-precision: their
    matrix from the map built in single precision, their gradient in double
    precision, so the fixed points (and noiseless codes, to rounding) are
    those of double precision. See
    :func:`skinvert.algorithms.polish.polish_batch`.

    Examples
    --------
    >>> import numpy as np
    >>> from skinvert import make_random_generator, polish
    >>> G = make_random_generator([10, 60, 200], random_state=0)
    >>> Z = np.random.default_rng(0).standard_normal((4, 10))
    >>> Zhat = polish(Z + 0.01, G.forward(Z), G)
    >>> bool(np.allclose(Zhat, Z))
    True
    """
    xp, _ = get_namespace(X)
    X = check_array(X, dtype=[xp.float64, xp.float32], ensure_all_finite="allow-nan",
                    ensure_min_samples=0)
    Z0 = check_array(Z0, dtype=X.dtype, ensure_min_samples=0)
    if Z0.shape != (X.shape[0], generator.n_latent):
        raise ValueError(
            f"Z0 must have shape ({X.shape[0]}, {generator.n_latent}) (one code of size "
            f"generator.n_latent per row of X), got {tuple(Z0.shape)}."
        )
    A = None
    if measurement is not None:
        A = check_measurement(measurement, X, generator.n_output)
    elif X.shape[1] != generator.n_output:
        raise ValueError(
            f"X has {X.shape[1]} features, but the generator produces signals of size "
            f"{generator.n_output} (generator.n_output)."
        )
    if X.shape[0] and bool(xp.any(xp.all(xp.isnan(X), axis=1))):
        raise ValueError("Some rows of X have no observed entry (all NaN): nothing to fit.")
    return _polish(Z0, X, generator, A, gamma=gamma, max_iter=max_iter, tol=tol,
                   batch_size=batch_size, return_info=return_info)


def _polish(Z0, X, generator, A, *, gamma=0.0, max_iter=50, tol=None, batch_size=None,
            return_info=False):
    """:func:`polish` without validation (``A``: a checked measurement or None)."""
    xp, dev = namespace_of(X)
    W, b = generator_arrays(generator, xp, X.dtype, dev)
    meas = None if A is None else Measurement(A, xp, X.dtype, dev)
    n = X.shape[0]
    parts = []
    for sl in gen_batches(n, batch_size or max(n, 1)):
        Xb = X[sl, ...]
        missing = xp.isnan(Xb)
        obs = xp.astype(~missing, X.dtype)
        Y = xp.where(missing, xp.zeros_like(Xb), Xb)
        with single_threaded_blas(xp):
            parts.append(polish_batch(Z0[sl, ...], Y, obs, W, b, generator.activation, xp,
                                      measurement=meas, gamma=gamma, max_iter=max_iter, tol=tol))
    if not parts:
        Z = xp.zeros((0, generator.n_latent), dtype=X.dtype, device=dev)
        info = {k: xp.zeros((0,), device=dev) for k in ("loss", "n_iter", "fixed_point")}
    else:
        cat = (lambda k: parts[0][k]) if len(parts) == 1 else (
            lambda k: xp.concat([p[k] for p in parts], axis=0))
        Z, loss, n_iter, fixed = (cat(k) for k in range(4))
        info = {"loss": loss, "n_iter": n_iter, "fixed_point": fixed}
    return (Z, info) if return_info else Z
