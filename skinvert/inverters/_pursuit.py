"""LatentPursuitInverter (Algorithm 5) and the glue shared with LayeredBPInverter."""

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from .._array_api import device
from .._functional import _latent_pursuit, per_layer
from .._functional._common import _declared_noiseless
from .._functional._latent_pursuit import polish_start_applies
from .._linalg import ROW_PRODUCT_TABLE_MAX
from ..algorithms._batch import Batch
from ..solvers import BaseLayerSolver, resolve_solver
from ._base import BaseInverter
from ._batching import _to_host, check_layerwise, spectral_constants
from ._linear_start import LINEAR_START_MAX_FEATURES, fit_linear_start, linear_start_decoder

_POS = Interval(Real, 0, None, closed="left")
#: The seed of the generator samples the noisy linear start is fitted on.
LINEAR_START_SEED = 0


class _PursuitInverter(BaseInverter):
    """Parameters and glue shared by the layer-wise pursuits."""

    _nonneg = True

    _parameter_constraints = {
        **BaseInverter._parameter_constraints,
        "lam": [_POS, "array-like"],
        "solver": [StrOptions({"active_set", "paper"}), BaseLayerSolver, dict],
        "support_tol": [Interval(Real, 0, 1, closed="left")],
        "transform_max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [_POS],
        "refine_max_iter": [Interval(Integral, 0, None, closed="left")],
        "debias": ["boolean"],
        "debias_max_iter": [Interval(Integral, 0, None, closed="left")],
        "fallback_max_iter": [Interval(Integral, 0, None, closed="left")],
        "noise_std": [_POS, None],
        "refresh_max_iter": [Interval(Integral, 0, None, closed="left")],
    }

    def _common_kwargs(self):
        """The twin's keyword arguments shared by both pursuits."""
        return dict(
            lam=self.lam, solver=self.solver, support_tol=self.support_tol,
            max_iter=self.transform_max_iter, tol=self.tol, refine_max_iter=self.refine_max_iter,
            debias=self.debias, debias_max_iter=self.debias_max_iter,
            refresh_max_iter=self.refresh_max_iter, fallback_max_iter=self.fallback_max_iter,
            noise_std=self.noise_std, noise_gains=self.noise_gains_,
        )

    def _bytes_per_sample(self, generator, itemsize, host=False):
        # Measured with tracemalloc (tests/test_memory_estimates.py,
        # benchmarks/memory.py --estimates). In the worst case a row builds
        # its own Gram matrix of the largest layer and the masked system
        # solved on it (k x k each: missing or saturated entries, noise), or,
        # on a layer wider than its equations (k > m), the Lawson-Hanson
        # inverse (G_PP)^-1 on at most c = min(k, 5 m / 4) slots (rank m plus
        # a block) and the blocks of its update (about 5 c^2 / 2 in all); the
        # (n, n_0) map of the debiasing, and vectors.
        sizes = generator.layer_sizes
        wide = []
        if self._nonneg:
            wide = [
                5 * min(k, -(-5 * m // 4)) ** 2 // 2
                for k, m in zip(sizes[1:-1], sizes[2:])
                if k > m
            ]
        if host and self._shares_host_blocks():
            # On NumPy the exact solvers build the per-row Gram matrices of a
            # tall layer, and the debiasing its maps, on blocks of rows of a
            # fixed size (host_block_rows): a fixed cost, not a per-row one.
            # What grows with the batch is the stack of a layer whose table of
            # row products is small enough for one GEMM over the whole batch
            # (row_weighted_gram: its k (k + 1) / 2 products and the mirrored
            # k x k matrix), or a wide layer's inverses.
            tables = [
                k * k + k * (k + 1) // 2
                for k, m in zip(sizes[:-1], sizes[1:])
                if m * k * k <= ROW_PRODUCT_TABLE_MAX
            ]
            return itemsize * (max(tables + wide + [0]) + 8 * sum(sizes))
        square = max([2 * max(s * s for s in sizes[:-1])] + wide)
        per = itemsize * (square + 4 * sizes[-1] * sizes[0] + 8 * sum(sizes))
        A = getattr(self, "measurement_", None)
        if A is not None and generator.activation.name != "identity":
            # The per-sample image-layer problems A D W_L of the pieces of phi.
            m, n, k = A.shape[0], sizes[-1], sizes[-2]
            per += itemsize * (n * k + 3 * m * k + 2 * k * k + 4 * n * sizes[0])
        return per

    def _shares_host_blocks(self):
        """Whether every per-row matrix stack of this configuration is built on
        host blocks of rows (the exact solvers without a noise model, an
        epsilon schedule or a measurement); see :meth:`_bytes_per_sample`."""
        return (
            isinstance(self.solver, str)
            and self.solver == "active_set"
            and self.noise_std is None
            and getattr(self, "epsilon", None) is None
            and getattr(self, "measurement_", None) is None
        )

    @property
    def _needs_inverse(self):
        # Without a measurement every layer-wise step is posed on phi^-1(X).
        return getattr(self, "measurement_", None) is None

    def _transform_batch(self, Y, obs, xp, state):
        batch = Batch(
            Y, obs, state.weights, state.biases, self.generator_.activation, xp,
            measurement=state.measurement, lipschitz=self.lipschitz_,
        )
        res = self._run(batch)
        record_pursuit(res, state, xp)
        if state.measurement is None:  # (a measurement's pursuit runs on a folded batch)
            state.loss = res.known_loss()
        return res.z

    def _stage_param(self, stage):
        return pursuit_stage_param(stage, self.solver)

    def _exact_fit_expected(self):
        # Clean signals declared (no noise level, no lambda, no ridge) and the
        # exact solvers with debiasing (Corollary 2: z is then recovered exactly).
        return (
            _declared_noiseless(
                self.lam, self.noise_std, gamma=getattr(self, "gamma", 0.0),
                epsilon=getattr(self, "epsilon", None),
            )
            and isinstance(self.solver, str)
            and self.solver == "active_set"
            and self.debias
        )

    def _check_measurement_supported(self, generator):
        act = generator.activation
        if not act.piecewise_linear:
            raise ValueError(
                f"A measurement with a {act.name} output is only supported by "
                f"GradientDescentInverter: {type(self).__name__} needs an identity or "
                "piecewise-linear (leaky_relu, plu) output activation."
            )
        exact = isinstance(self.solver, str) and self.solver == "active_set" or (
            not isinstance(self.solver, str)
            and resolve_solver(self.solver, nonneg=self._nonneg).image.exact
        )
        if act.name != "identity" and (not exact or not self._nonneg):
            what = f"solver={self.solver!r}" if not exact else type(self).__name__
            raise ValueError(
                f"{what} supports a measurement with an identity output only (this "
                f"generator's output is {act.name}); use LatentPursuitInverter with "
                "solver='active_set' or GradientDescentInverter."
            )

    def _fit_extra(self, X, rng):
        # Step bounds of the first-order solvers and the noise gains,
        # computed once per generator; the per-layer parameters are checked.
        check_layerwise(self, self.generator_)
        weights = self.generator_.weights
        self.lipschitz_, self.noise_gains_ = spectral_constants(weights)
        L = max(self.generator_.n_layers, 1)
        per_layer(self.lam, L, "lam")
        if hasattr(self, "rho"):
            per_layer(self.rho, L, "rho")
        resolve_solver(self.solver, nonneg=self._nonneg)


def record_pursuit(res, state, xp):
    """Per-row diagnostics of a :class:`PursuitResult` into a transform's state."""
    for stage, n_bad in res.not_converged.items():
        if stage in res.rows:
            state.flag(stage, res.rows[stage], xp)
        else:
            state.count(stage, n_bad)
    record = state.record
    record.stage[:] = "pursuit"
    for stage, rows in res.decided.items():
        record.stage[_to_host(rows, xp).astype(bool)] = stage
    if res.n_refresh is not None:
        record.n_iter[:] = _to_host(res.n_refresh, xp)


def pursuit_stage_param(stage, solver):
    """The parameter that raises the iteration cap of a pursuit's ``stage``."""
    if "debiasing" in stage:
        return "debias_max_iter"
    if "fallback" in stage:
        return "fallback_max_iter"
    if "pieces of phi" in stage:
        return "refine_max_iter"
    if isinstance(solver, str):
        return "refine_max_iter" if solver == "active_set" else "transform_max_iter or tol"
    return "the solver's max_iter"


class LatentPursuitInverter(_PursuitInverter):
    """The paper's Latent-Pursuit (Algorithm 5), with exact per-layer solves.

    Inverts the generator layer by layer: the image layer by eq. 8
    (non-negative lasso), the middle layers by eq. 9 (equations on the
    support of the layer above, ``x >= 0`` and the ReLU inequalities
    ``W_i^{S^c} x + b_i^{S^c} <= 0`` on its zeros), z by eq. 16 (ridge
    ``gamma``), then optionally debiases: the Oracle (Algorithm 1) on the
    estimated supports.

    Parameters
    ----------
    generator : ReLUGenerator, str or torch.nn.Module
        The generator to invert: a :class:`~skinvert.ReLUGenerator`, the name
        of a pretrained one (:func:`~skinvert.datasets.load_pretrained_generator`),
        a ``.npz``/``.safetensors`` file, or a PyTorch module (converted by
        :func:`~skinvert.io.from_torch`); converted in ``fit``.
    measurement : array-like, sparse matrix or LinearOperator of shape (m, n), default=None
        Linear measurements ``y = A G(z) + e``: X holds the m measurements of
        each signal (see :class:`GradientDescentInverter`). With an identity
        phi, A is folded into the last layer (``A W_L``, ``A b_L``) and every
        step is unchanged. With a piecewise-linear phi (``leaky_relu``,
        ``plu``) the image layer of eq. 8 is solved by an active set on phi's
        linear pieces (per-sample problems ``A D W_L``, at most
        ``refine_max_iter`` rounds; see
        :func:`skinvert.algorithms._measured.measured_image_layer`) and
        the debiasing minimises ``||y - A phi(.)||`` by Gauss-Newton. tanh and
        sigmoid outputs raise a ValueError (use GradientDescentInverter), as
        does ``solver="paper"`` with a non-identity phi.

    lam : float or array-like of shape (n_layers,), default=0.0
        The lambda_i of eqs. 8-9, one per hidden layer ``x_1..x_L`` or one for
        all. 0 is right for noiseless signals (the paper's choice on random
        nets); raise it with the noise level.
    rho : float or array-like of shape (n_layers,), default=1e-2
        The rho of the linearized ADMM (Algorithm 4): ``rho[0]`` for the z-step,
        ``rho[i]`` for the middle layer ``x_i``. Used by ``solver="paper"``.
    gamma : float, default=0.0
        Ridge weight of the z-step, eq. 16 (the MAP prior of z ~ N(0, I)).
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
        Standard deviation ``sigma`` of iid Gaussian noise on the observed
        entries of X (``y = G(z) + e``, ``e ~ N(0, sigma^2 I)``; Theorem 3's
        model), in X's units. Sets each layer's support threshold
        (:class:`~skinvert.algorithms.noise.NoiseRule`): an entry
        of ``x_i`` is in the support only above ``delta_i``, the error level
        the noise is expected to leave in that layer
        (``delta_{L+1} = sigma * sqrt(median_k phi'(u_k)^-2)``; for tanh and
        sigmoid the image layer is weighted by ``phi'(u)^2`` and its entries
        get their own levels from the weighted Gram matrix,
        ``delta_i = g_i delta_{i+1}`` with ``g_i`` from Theorem 3, eq. 21;
        see ``noise_gains_``). Entries below it become ReLU inequalities of
        eq. 9 rather than equations (with every solver). ``lam`` is left as given: on the
        shipped generator ``lam > 0`` was measured to *raise* the error once
        the supports are thresholded and debiased (the l1 bias moves the
        supports; see docs/user_guide/inverters.md). None: no threshold beyond
        ``support_tol`` (right for noiseless signals, where it changes
        nothing: every true entry is far above the noise-free 0). With the
        defaults most noisy rows never reach that pass: they are decided by
        the polish from a fitted linear start (``refresh_max_iter``, below).
    refresh_max_iter : int, default=10
        Support refreshes after the debiasing: re-run the Oracle
        (Algorithm 1) on the supports of ``G(z_hat)`` itself, keeping the
        new estimate only when it lowers the loss of eq. 1, until the
        supports stop changing. A row the pursuit recovered exactly is a
        fixed point already (one forward pass); on noisy signals this is
        what brings the estimate to the Oracle's error (Theorem 3). On
        signals declared clean (no ``noise_std`` or ``epsilon``, ``lam =
        0``) a row with every entry observed first takes the fixed-support
        Gauss-Newton polish with support refresh (:func:`skinvert.polish`'s
        steps, up to ``5 * refresh_max_iter``), kept where it stops at a
        well-posed fixed point; ``info.n_iter`` then counts its steps. Where
        the image layer is wider than the row's usable entries of
        ``phi^-1(x)`` (eq. 8 has more unknowns than equations: the paper's
        Figure 4 past ``n_1 = n``), such a row takes that polish *before*
        the pass, from the least squares of the linearized network (every
        ReLU replaced by half its input), and skips the pass when it fits
        the signal to rounding at a well-posed fixed point (``info.stage``
        ``"linearized start"``): Lawson-Hanson on such a layer costs 10-30x
        the Oracle, the start about 1-1.5x, with the same exact codes
        (``skinvert/algorithms/_polish_start.py``). With ``noise_std``
        (and ``lam = 0``, ``gamma = 0``) every row takes that polish before
        the pass, from a linear decoder that ``fit`` regresses on 8000
        noisy samples of the generator (``start_coef_``, the
        :class:`HybridInverter`'s linear start; ``"linear start"``), and
        keeps it when its loss is within 3 chi-square standard deviations
        of its mean (on a boundary between support regions too, with
        missing entries where the least squares there is well posed); a row
        that is not takes ten Adam steps and a second polish, then the
        hybrid's rounds of shared gradient-descent starts and basin hopping
        (``"descent starts"``), and only the rows still inconsistent run
        the pass. 512 signals of a saturating tanh generator at ``sigma =
        1e-2`` / ``1e-3`` (six draws, one thread): 1.1-2.1x the Oracle's
        time (about 0.4 s more for a row that reaches the pass) against
        9-13x from the linearized start, RMS latent error 0.98-1.09x;
        ``fashion-mnist-fc`` 0.9-1.5x; the paper's pass alone takes 35x.
        Needs ``debias=True``; 0 disables it (the paper's Algorithm 5 and
        its debiasing alone).
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
        Unused: the pursuit is deterministic (the samples of the noisy
        linear start come from a fixed seed); kept for a uniform API.

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
    start_mean_, start_coef_, start_offset_ : arrays or None
        The linear start of the noisy polish, ``z0 = (f(x) - start_mean_)
        @ start_coef_ + start_offset_`` with ``f(x) = [x, phi^-1(x)]``
        (``x`` alone with a measurement, or beyond 2048 features), fitted
        by ridge regression on 8000 samples of the generator with noise of
        ``noise_std`` (:func:`~skinvert.algorithms.hybrid.linear_decoder`);
        None where that polish does not run (no ``noise_std``, ``lam > 0``,
        ``gamma > 0``, no refresh or debiasing, ``solver="paper"``, more
        than 4096 features).

    Notes
    -----
    Rows whose refinement does not reach a fixed point within
    ``refine_max_iter`` keep their best iterate and are counted in one
    ``ConvergenceWarning`` per call, naming the parameter to raise, unless
    their final fit is exact. ``transform(X, return_info=True)`` returns
    per-row diagnostics (``stage``: ``"pursuit"``, ``"refresh"``,
    ``"linearized start"``, ``"linear start"``, ``"descent starts"``,
    ``"fallback"``, ``"noise retry"`` or ``"noise polish"``; ``n_iter``: accepted support
    refreshes, plus the polish's steps on clean signals, see
    ``refresh_max_iter``). Without a measurement the layer-wise steps work on
    ``phi^-1(X)``: a row whose every entry is saturated is a ValueError.

    References
    ----------
    A. Aberdam, D. Simon, M. Elad. When and How Can Deep Generative Models be
    Inverted? arXiv:2006.15555, 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from skinvert import LatentPursuitInverter, make_random_generator
    >>> G = make_random_generator([20, 80, 200, 400], random_state=0)
    >>> Z = np.random.default_rng(0).standard_normal((8, 20))
    >>> X = G.forward(Z)
    >>> Zhat = LatentPursuitInverter(G).fit(X).transform(X)
    >>> bool(np.allclose(Zhat, Z))
    True
    """

    _parameter_constraints = {
        **_PursuitInverter._parameter_constraints,
        "rho": [_POS, "array-like"],
        "gamma": [_POS],
    }

    def __init__(
        self,
        generator,
        *,
        measurement=None,
        lam=0.0,
        rho=1e-2,
        gamma=0.0,
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
        self.rho = rho
        self.gamma = gamma
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

    #: Fit the linear start of the noisy polish (False: the hybrid's own
    #: pursuit start, which does not polish before its pass under noise).
    _fits_linear_start = True

    def _fit_extra(self, X, rng):
        super()._fit_extra(X, rng)
        self.start_mean_ = self.start_coef_ = self.start_offset_ = None
        if self._uses_linear_start():
            # A fixed seed: the pursuit stays deterministic (random_state unused).
            fitted = fit_linear_start(self, X, np.random.default_rng(LINEAR_START_SEED))
            self.start_mean_, self.start_coef_, self.start_offset_ = fitted

    def _uses_linear_start(self):
        """Whether the noisy polish before the pass starts from the fitted
        linear decoder: ``noise_std`` set, the polish applies (refresh and
        debiasing on, ``lam = 0``, ``gamma = 0``, the exact image solver), a
        hidden layer, at most :data:`LINEAR_START_MAX_FEATURES` features."""
        return bool(
            self._fits_linear_start
            and self.noise_std
            and self.generator_.n_layers > 0
            and self.n_features_in_ <= LINEAR_START_MAX_FEATURES
            and polish_start_applies(self.lam, self.gamma, self.debias, self.refresh_max_iter)
            and resolve_solver(self.solver, nonneg=True).image.exact
        )

    def _run(self, batch):
        start = linear_start_decoder(self, batch.xp, batch.dtype, device(batch.Y))
        return _latent_pursuit(
            batch, rho=self.rho, gamma=self.gamma, start=start, **self._common_kwargs()
        )
