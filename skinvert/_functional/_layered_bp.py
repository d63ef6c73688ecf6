"""layered_basis_pursuit (Algorithm 2) and its private twin _layered_basis_pursuit."""

from sklearn.utils._param_validation import validate_params

from ..algorithms.layered_bp import layered_bp
from ..algorithms.noise import noise_gains
from ..solvers import resolve_solver
from ._common import (
    _COMMON,
    _POS,
    _RETRIES,
    _batch_of,
    _declared_noiseless,
    _output,
    _refinement,
    _rule,
    _single_threaded,
    _warn,
)

__all__ = ["_layered_basis_pursuit", "layered_basis_pursuit"]


def _layered_basis_pursuit(
    batch,
    *,
    lam=0.0,
    epsilon=None,
    solver="active_set",
    support_tol=1e-6,
    max_iter=1000,
    tol=1e-10,
    refine_max_iter=30,
    debias=True,
    debias_max_iter=30,
    refresh_max_iter=10,
    fallback_max_iter=0,
    fallback_tol=1e-6,
    noise_std=None,
    noise_gains=None,
    noise_c=1.0,
    noise_retries=_RETRIES,
    noise_retry_sd=10.0,
):
    """:func:`layered_basis_pursuit` on a :class:`Batch`, without validation."""
    if epsilon is not None and noise_std is not None:
        raise ValueError(
            "Give at most one of epsilon (a bound on ||e||_2, Algorithm 2's schedule) "
            f"and noise_std (iid Gaussian noise), got epsilon={epsilon!r} and "
            f"noise_std={noise_std!r}."
        )
    plan = resolve_solver(
        solver, nonneg=False, max_iter=max_iter, tol=tol, refine_max_iter=refine_max_iter
    )
    rule, model = _rule(
        batch,
        lam,
        support_tol,
        False,
        noise_std,
        noise_gains,
        noise_c,
        noise_retries,
        noise_retry_sd,
        epsilon=epsilon,
    )
    refinement = _refinement(
        debias, debias_max_iter, refresh_max_iter, fallback_max_iter, fallback_tol,
        noiseless=_declared_noiseless(lam, noise_std, epsilon=epsilon),
    )
    return layered_bp(batch, plan, rule, refinement=refinement, noise=model)


@validate_params({**_COMMON, "epsilon": [_POS, None]}, prefer_skip_nested_validation=True)
def layered_basis_pursuit(
    X,
    generator,
    *,
    measurement=None,
    lam=0.0,
    epsilon=None,
    solver="active_set",
    support_tol=1e-6,
    max_iter=1000,
    tol=1e-10,
    refine_max_iter=30,
    debias=True,
    debias_max_iter=30,
    refresh_max_iter=10,
    fallback_max_iter=0,
    fallback_tol=1e-6,
    noise_std=None,
    noise_c=1.0,
    noise_retries=_RETRIES,
    noise_retry_sd=10.0,
    return_supports=False,
):
    """Layered Basis-Pursuit (Algorithm 2): recover the latent codes of signals X.

    A lasso per layer from the image back (signed, no ReLU constraints), z by
    least squares on the last support, then the optional debiasing. The
    estimator :class:`~skinvert.LayeredBPInverter` calls the same kernel.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Signals (with a ``measurement``: their m measurements); NaN marks a
        missing entry.
    generator : ReLUGenerator
        The generator to invert.
    measurement : array-like, sparse matrix or LinearOperator of shape (m, n), default=None
        Linear measurements ``y = A G(z) + e`` (identity output: folded into
        the last layer; piecewise-linear output: Latent-Pursuit with the
        exact solver only).
    lam : float or array-like of shape (n_layers,), default=0.0
        The weight lambda_i of the l1 term of every hidden layer ``x_1..x_L``, or one
        for all.
    epsilon : float or None, default=None
        A bound ``||e||_2 <= epsilon`` on the noise: Algorithm 2's lambda
        schedule (Theorem 2, eqs. 29-31); at most one of ``epsilon`` and
        ``noise_std``.
    solver : {"active_set", "paper"}, BaseLayerSolver or dict, default="active_set"
        The per-layer solver (:mod:`skinvert.solvers`): a string alias, one
        solver object for every layer, or a dict by role
        (``"image"``, ``"hidden"``, ``"latent"``).
    support_tol : float, default=1e-6
        An entry is in a layer's support above ``support_tol`` times the
        row's largest entry.
    max_iter : int, default=1000
        Iteration cap of the first-order solvers of the aliases (FISTA,
        linearized ADMM; the FISTA start of ``"active_set"``).
    tol : float, default=1e-10
        Relative step at which those iterations stop.
    refine_max_iter : int, default=30
        Active-set refinement steps of ``"active_set"`` (Lawson-Hanson:
        ten times as many).
    debias : bool, default=True
        Finish with Algorithm 1 on the estimated supports.
    debias_max_iter : int, default=30
        Gauss-Newton iterations of each Algorithm 1 solve.
    refresh_max_iter : int, default=10
        Support refreshes after the debiasing (0: none); on signals declared
        clean, the fixed-support polish first (see
        :class:`~skinvert.LatentPursuitInverter`).
    fallback_max_iter : int, default=0
        Gradient-descent steps on eq. 1 for rows the layers did not
        determine (0: none).
    fallback_tol : float, default=1e-6
        Relative residual below which a row never falls back.
    noise_std : float or None, default=None
        Standard deviation of iid Gaussian noise on the observed entries:
        sets the support thresholds of
        :class:`~skinvert.algorithms.noise.NoiseRule` (Theorem 3, eq. 21).
    noise_c : float, default=1.0
        With ``noise_std``: the support threshold in error standard
        deviations.
    noise_retries : array-like of float, default=(3.0, 0.5, 6.0, 2.0, 10.0)
        With ``noise_std``: scalings of ``noise_c`` tried on rows whose fit
        is inconsistent with the noise level (empty: no retries).
    noise_retry_sd : float, default=10.0
        "Inconsistent": a loss this many chi^2 standard deviations above its
        mean.
    return_supports : bool, default=False
        Also return the estimated supports of ``x_1..x_L``.

    Returns
    -------
    Z : array of shape (n_samples, n_latent)
        The latent codes, in X's namespace and float dtype.
    supports : list of bool arrays of shape (n_samples, n_i)
        The estimated supports of ``x_1..x_L``; only with
        ``return_supports=True``.

    See Also
    --------
    skinvert.LayeredBPInverter : The estimator.
    latent_pursuit : Algorithm 5.

    Examples
    --------
    >>> import numpy as np
    >>> from skinvert import layered_basis_pursuit, make_random_generator
    >>> G = make_random_generator([5, 30, 80, 160], random_state=0)
    >>> Z = np.random.default_rng(0).standard_normal((4, 5))
    >>> bool(np.allclose(layered_basis_pursuit(G.forward(Z), G), Z))
    True
    """
    batch = _batch_of(X, generator, measurement, "layered_basis_pursuit")
    gains = None if noise_std is None else noise_gains(generator.weights)
    res = _single_threaded(
        _layered_basis_pursuit,
        batch,
        lam=lam,
        epsilon=epsilon,
        solver=solver,
        support_tol=support_tol,
        max_iter=max_iter,
        tol=tol,
        refine_max_iter=refine_max_iter,
        debias=debias,
        debias_max_iter=debias_max_iter,
        refresh_max_iter=refresh_max_iter,
        fallback_max_iter=fallback_max_iter,
        fallback_tol=fallback_tol,
        noise_std=noise_std,
        noise_gains=gains,
        noise_c=noise_c,
        noise_retries=noise_retries,
        noise_retry_sd=noise_retry_sd,
    )
    _warn(res.not_converged, "layered_basis_pursuit")
    return _output(res, return_supports)
