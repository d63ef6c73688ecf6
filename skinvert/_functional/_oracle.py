"""oracle_inversion (Algorithms 1 and 6) and its twin."""

from sklearn.utils._param_validation import StrOptions, validate_params

from .._array_api import namespace_of
from ..algorithms.oracle import oracle_end_to_end, oracle_layerwise
from ..generator import ReLUGenerator
from ._common import _NONNEG_INT, _POS, _batch_of, _single_threaded, _warn

__all__ = ["_oracle_inversion", "oracle_inversion"]


def _oracle_inversion(
    batch, masks, *, method="end_to_end", gamma=0.0, max_iter=30, tol=None, return_rows=False
):
    """:func:`oracle_inversion` on a :class:`Batch` with float 0/1 ``masks``.

    Returns ``(Z, n_not_converged)``, or with ``return_rows`` ``(Z, rows)``:
    the bool array of the rows that did not converge (None: none can fail).
    """
    xp = batch.xp
    if method == "layerwise":
        Z, _ = oracle_layerwise(
            batch.Y,
            batch.obs,
            batch.weights,
            batch.biases,
            batch.activation,
            masks,
            xp,
            gamma=gamma,
        )
        return Z, (None if return_rows else 0)
    Z, _, conv = oracle_end_to_end(
        batch.Y,
        batch.obs,
        batch.weights,
        batch.biases,
        batch.activation,
        masks,
        xp,
        gamma=gamma,
        max_iter=max_iter,
        tol=tol,
        measurement=batch.measurement,
    )
    if return_rows:
        return Z, (~conv if max_iter > 0 else None)
    n_bad = int(xp.sum(xp.astype(~conv, xp.int32))) if max_iter > 0 else 0
    return Z, n_bad


@validate_params(
    {
        "X": ["array-like"],
        "generator": [ReLUGenerator],
        "supports": [list, tuple],
        "method": [StrOptions({"end_to_end", "layerwise"})],
        "gamma": [_POS],
        "max_iter": [_NONNEG_INT],
        "tol": [_POS, None],
        "measurement": "no_validation",
    },
    prefer_skip_nested_validation=True,
)
def oracle_inversion(
    X,
    generator,
    supports,
    *,
    method="end_to_end",
    gamma=0.0,
    max_iter=30,
    tol=None,
    measurement=None,
):
    """The Oracle: latent codes from the true supports (Algorithm 1 or 6).

    The estimator :class:`~skinvert.OracleInverter` calls the same kernel.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Signals (with a ``measurement``: their m measurements); NaN marks a
        missing entry.
    generator : ReLUGenerator
        The generator to invert.
    supports : list of arrays of shape (n_samples, n_i)
        Supports of the hidden layers 1..L (boolean or 0/1), e.g.
        ``generator.supports(Z)``.
    method : {"end_to_end", "layerwise"}, default="end_to_end"
        Algorithm 1 (non-linear least squares through phi) or Algorithm 6
        (least squares layer by layer on phi^-1(y)).
    gamma : float, default=0.0
        Ridge weight on z (the MAP prior of eq. 16).
    max_iter : int, default=30
        Levenberg-Marquardt iterations of Algorithm 1 (non-linear phi).
    tol : float or None, default=None
        Relative step at which a row stops (None: sqrt(eps)).
    measurement : array-like, sparse matrix or LinearOperator of shape (m, n), default=None
        Linear measurements ``y = A G(z) + e`` (``"end_to_end"`` only).

    Returns
    -------
    Z : array of shape (n_samples, n_latent)
        The latent codes, in X's namespace and float dtype.

    See Also
    --------
    skinvert.OracleInverter : The estimator.

    Examples
    --------
    >>> import numpy as np
    >>> from skinvert import make_random_generator, oracle_inversion
    >>> G = make_random_generator([5, 30, 80, 160], random_state=0)
    >>> Z = np.random.default_rng(0).standard_normal((4, 5))
    >>> bool(np.allclose(oracle_inversion(G.forward(Z), G, G.supports(Z)), Z))
    True
    """
    if method == "layerwise" and measurement is not None:
        raise ValueError("method='layerwise' does not support a measurement.")
    batch = _batch_of(X, generator, measurement, "oracle_inversion")
    xp = batch.xp
    sizes = generator.layer_sizes[1:-1]
    if len(supports) != len(sizes):
        raise ValueError(f"supports must hold {len(sizes)} arrays, got {len(supports)}.")
    masks = []
    for i, (S, s) in enumerate(zip(supports, sizes, strict=True)):
        S = xp.asarray(S, device=namespace_of(batch.Y)[1])
        if tuple(S.shape) != (batch.Y.shape[0], s):
            raise ValueError(
                f"supports[{i}] must have shape ({batch.Y.shape[0]}, {s}), got {tuple(S.shape)}."
            )
        masks.append(xp.astype(S != 0 if S.dtype != xp.bool else S, batch.dtype))
    Z, n_bad = _single_threaded(
        _oracle_inversion, batch, masks, method=method, gamma=gamma, max_iter=max_iter, tol=tol
    )
    _warn({"the Oracle's Gauss-Newton": n_bad}, "oracle_inversion")
    return Z
