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
        The lambda_i, one per hidden layer or one for all. Ignored when
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
    solver : {"active_set", "paper"}, BaseLayerSolver or dict, default="active_set"
        The per-layer solver (:mod:`skinvert.solvers`). ``"active_set"`` is
        :class:`~skinvert.solvers.ActiveSet`: every layer problem solved
        exactly (a least-squares start and a primal-dual active-set
        refinement whose fixed point satisfies the KKT conditions exactly,
        and the Lawson-Hanson method for the layers wider than their number
        of equations and any row the refinement did not settle).
        ``"paper"`` is the paper's :class:`~skinvert.solvers.FISTA`
        (Algorithm 3) on the image layer and
        :class:`~skinvert.solvers.LinearizedADMM` (Algorithm 4, eq. 18)
        below it. A solver object (used for every layer) or a dict
        ``{"image": ..., "hidden": ..., "latent": ...}`` brings its own
        knobs; the iteration caps below then do not apply.
        For Layered BP ``solver="paper"`` runs FISTA for every lasso and solves
        z's least squares directly.
    support_tol : float, default=1e-6
        An entry belongs to a layer's support when it exceeds ``support_tol``
        times the largest entry of that layer (per sample).
    transform_max_iter : int, default=1000
        Iteration cap of the first-order solvers, per layer: FISTA and the
        linearized ADMM of ``"paper"``, and the FISTA start of the wide rows
        of a signed lasso in ``"active_set"``.
    tol : float, default=1e-10
        Relative step size at which a row's first-order iterations stop
        (same solvers as ``transform_max_iter``).
    refine_max_iter : int, default=30
        Iteration cap of ``"active_set"``: active-set refinement steps per
        layer; the Lawson-Hanson stage gets ``10 * refine_max_iter`` block
        steps (0 disables both), and the measured image layer as many
        rounds on phi's pieces.
    debias : bool, default=True
        Finish with Algorithm 1 on the estimated supports (Algorithm 5, last
        step).
    debias_max_iter : int, default=30
        Gauss-Newton iterations of the debiasing (non-linear phi).
    fallback_max_iter : int, default=0
        A hybrid (the paper's section 6.1 outlook): rows whose final estimate
        fits the signal far worse than their own image-layer estimate (loss
        above 10 times the image layer's and above 1e-12 of the signal
        energy) continue with this many gradient-descent steps on eq. 1 from
        the pursuit's estimate, keeping the lower loss. It rescues the rows
        where a hidden layer is wider than the signal (random nets with
        ``n_1 > n``), where eq. 8 alone has many non-negative solutions;
        noiseless rows the layers determine never trigger it (noisy rows
        with ``lam=0`` may, at a cost: hence off by default). 0 (default)
        gives the pure pursuit, which with the Lawson-Hanson image layer and
        the support refresh recovers the paper's Figure 4 nets up to
        ``n_1 = 2 n`` without it (64 signals, ``n_0 = 100``: exact at
        ``n_1 = 850, 1000, 1250``).
    noise_std : float or None, default=None
        Standard deviation of iid Gaussian noise on X: sets the support
        thresholds as in :class:`LatentPursuitInverter` (on ``|x_i|``).
    refresh_max_iter : int, default=10
        Support refreshes after the debiasing: re-run the Oracle
        (Algorithm 1) on the supports of ``G(z_hat)`` itself, keeping the
        new estimate only when it lowers the loss of eq. 1, until the
        supports stop changing. A row the pursuit recovered exactly is a
        fixed point already (one forward pass); on noisy signals this is
        what brings the estimate to the Oracle's error (Theorem 3); on
        signals declared clean, the fixed-support polish first, as in
        :class:`LatentPursuitInverter`. Needs ``debias=True``; 0 disables it.
    batch_size : int or None, default=None
        Rows per batch (None: about 512 MiB of working memory; with
        ``verbose`` about 20 batches). A row's code does not depend on its
        batch, ``n_jobs`` or the row order, to rounding (measured below 1e-8
        with ``batch_size=7`` against the default, also on noisy rows with
        missing entries that are not fitted exactly), with one exception:
        with ``noise_std``, rows whose fit is inconsistent with the noise are
        re-solved together with the other such rows of their batch (the
        noise retries), and rounding differences between batch shapes can
        move an entry that sits at its support threshold, so such a row may
        settle on another support of similar loss (measured: 1 of 60 rows of
        ``digits-fc`` at noise 0.05 moved by 0.99).
    n_jobs : int or None, default=None
        Joblib workers for the batches; see :class:`GradientDescentInverter`.
    verbose : int, default=0
        Show a progress bar over rows (rows done, rate, time left) when
        positive (tqdm's when installed: terminal and notebook).
    random_state : int, RandomState instance or None, default=None
        Unused: the pursuit is deterministic (kept for a uniform API).

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
