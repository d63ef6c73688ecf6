"""LayeredBPInverter: the paper's Layered Basis-Pursuit (Algorithm 2)."""

from .._functional import _layered_basis_pursuit
from ._pursuit import _POS, _PursuitInverter


class LayeredBPInverter(_PursuitInverter):
    """The paper's Layered Basis-Pursuit (Algorithm 2).

    ``x_L = argmin 1/2 ||phi^-1(y) - b_L - W_L x||^2 + lambda_L ||x||_1``,
    then for ``i = L-1..1`` a lasso on the rows ``S_{i+1}`` of the layer
    above, then z by least squares on ``S_1``; optionally debiased by the
    Oracle on the estimated supports (as in the paper's experiments).
    Unlike Latent-Pursuit it uses neither ``x >= 0`` nor the zeros of the
    layer above.

    Parameters
    ----------
    generator : ReLUGenerator, str or torch.nn.Module
        As in :class:`LatentPursuitInverter`.
    measurement : array-like, sparse matrix or LinearOperator of shape (m, n), default=None
        Linear measurements ``y = A G(z) + e``: X holds the m measurements of
        each signal (see :class:`GradientDescentInverter`). Identity output
        only (A is folded into the last layer); other outputs raise a
        ValueError.

    lam : float or array-like of shape (n_layers,), default=0.0
        lambda_i, one per hidden layer or one for all. Ignored when
        ``epsilon`` is given.
    epsilon : float or None, default=None
        A bound on the noise, ``||e||_2 <= epsilon``: sets Algorithm 2's
        schedule ``lambda_L = 2 ell epsilon``, ``lambda_i = 2 epsilon_{i+1}``
        with ``epsilon_i`` of Theorem 2 (eqs. 29-31) computed per sample from
        the estimated support sizes. This worst-case schedule grows by
        ``(3 + sqrt(1.5)) sqrt(s_i) / min_j ||w_{i,j}||`` per layer and
        empties the supports of trained nets at moderate noise; prefer
        ``noise_std`` for Gaussian noise. At most one of ``epsilon`` and
        ``noise_std``.
    noise_std : float or None, default=None
        Standard deviation of iid Gaussian noise on X: sets the support
        thresholds as in :class:`LatentPursuitInverter` (on ``|x_i|``).
    solver, support_tol, transform_max_iter, tol, refine_max_iter, debias, \
debias_max_iter, fallback_max_iter, refresh_max_iter, batch_size, n_jobs, verbose, random_state
        As in :class:`LatentPursuitInverter` (``solver="paper"`` runs FISTA
        for every lasso and solves z's least squares directly).

    Attributes
    ----------
    generator_ : ReLUGenerator
    n_components_ : int
    n_features_in_ : int
        The number of features of X (m with a ``measurement``).
    measurement_ : array, LinearOperator or None
        The validated measurement (a dense one in X's namespace and device).
    lipschitz_ : list of float
        ``lambda_max(W_i^T W_i)`` for every layer, computed once in ``fit``:
        the step bounds of the first-order solvers (with a measurement, the
        folded ``A W_L`` is bounded per batch).
    noise_gains_ : tuple of float
        ``g_i``, i = 0..L: the RMS error gain of the least squares of layer
        ``x_i`` from ``x_{i+1}`` on a support of about half the rows
        (:func:`~skinvert.algorithms.noise.noise_gains`), used with
        ``noise_std``.

    Notes
    -----
    Theorem 2: when ``s_i < 1 / (3 mu_{s_{i+1}}(W_i))`` in every layer, the
    estimated supports are subsets of the true ones and the error obeys
    eq. 7; without noise (Corollary 2) z is recovered exactly.
    """

    _nonneg = False

    _parameter_constraints = {
        **_PursuitInverter._parameter_constraints,
        "epsilon": [_POS, None],
    }

    def __init__(
        self,
        generator,
        *,
        measurement=None,
        lam=0.0,
        epsilon=None,
        solver="active_set",
        support_tol=1e-6,
        transform_max_iter=1000,
        tol=1e-10,
        refine_max_iter=30,
        debias=True,
        debias_max_iter=30,
        fallback_max_iter=0,
        noise_std=None,
        refresh_max_iter=10,
        batch_size=None,
        n_jobs=None,
        verbose=0,
        random_state=None,
    ):
        super().__init__(
            generator, measurement=measurement, batch_size=batch_size, n_jobs=n_jobs,
            verbose=verbose, random_state=random_state,
        )
        self.lam = lam
        self.epsilon = epsilon
        self.solver = solver
        self.support_tol = support_tol
        self.transform_max_iter = transform_max_iter
        self.tol = tol
        self.refine_max_iter = refine_max_iter
        self.debias = debias
        self.debias_max_iter = debias_max_iter
        self.fallback_max_iter = fallback_max_iter
        self.noise_std = noise_std
        self.refresh_max_iter = refresh_max_iter

    def _fit_extra(self, X, rng):
        if self.epsilon is not None and self.noise_std is not None:
            raise ValueError(
                "Give at most one of epsilon (a bound on ||e||_2, Algorithm 2's schedule) "
                f"and noise_std (iid Gaussian noise), got epsilon={self.epsilon!r} and "
                f"noise_std={self.noise_std!r}."
            )
        super()._fit_extra(X, rng)

    def _run(self, batch):
        return _layered_basis_pursuit(batch, epsilon=self.epsilon, **self._common_kwargs())
