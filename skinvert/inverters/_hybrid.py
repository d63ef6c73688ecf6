"""HybridInverter: pursuit and gradient-descent starts, exact polish (section 6.1)."""

from numbers import Integral, Real

from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._array_api import as_namespace, namespace_of
from .._functional._latent_pursuit import _latent_pursuit
from .._linalg import row_blocks
from ..algorithms.gradient_descent import gradient_lipschitz
from ..algorithms.hybrid import DECODER_START, HybridStarts, hybrid_batch
from ..algorithms.polish import NOISY_TOL
from ._base import BaseInverter
from ._batching import _to_host, _TransformState, check_layerwise, generator_arrays
from ._linear_start import LINEAR_START_MAX_FEATURES, fit_linear_start, linear_start_decoder
from ._pursuit import LatentPursuitInverter

_INFO = ("loss", "start", "fixed_point", "n_iter")
#: ``info.stage`` of the starts with a negative number.
_STAGES = {-1: "pursuit", DECODER_START: "linear start"}
#: With ``noise_std`` (and ``tol=None``) the polish stops at steps below this
#: relative size instead of refining to rounding (the noise puts the codes'
#: error at 1e-3..1e-2 of ||z||); shared with Latent-Pursuit's noisy start.
NOISY_POLISH_TOL = NOISY_TOL
#: Gradient-descent iterations from the linear start before its polish
#: (:class:`~skinvert.algorithms.hybrid.HybridStarts`' ``decoder_descent``).
LINEAR_START_DESCENT = 10


def _pursuit_estimate(estimator, Y, obs, xp, state):
    """The layer-wise pursuit's estimate of a batch (its iteration-limit counts are
    not reported: the polish decides the row)."""
    return estimator._transform_batch(
        Y, obs, xp, _TransformState(state.weights, state.biases, state.measurement, Y.shape[0])
    )


class _PursuitStart(LatentPursuitInverter):
    """Latent-Pursuit as the hybrid's start.

    The rows whose pursuit estimate is inconsistent with the noise take one
    round of its gradient-descent polish (:func:`~skinvert.algorithms._refine.
    descent_polish`: its finish by Algorithm 1 on the supports of each
    descent point recovers saturating rows that no polished start of the
    hybrid reached, measured on rows left at 250-17000 chi-square standard
    deviations), without the retries under other thresholds and image
    models (a full Latent-Pursuit pass each, on rows that every start of
    the hybrid has already missed).
    """

    _NOISE_MODEL_CHANGES = {"retries": (), "image_retries": (), "polish_rounds": 1}
    _fits_linear_start = False

    def _run(self, batch):
        return _latent_pursuit(
            batch, rho=self.rho, gamma=self.gamma,
            noise_model_changes=self._NOISE_MODEL_CHANGES, **self._common_kwargs(),
        )


def pursuit_applies(generator, measurement_shape):
    """Whether Latent-Pursuit's layer problems are posed.

    Without a measurement, always; through ``m`` measurements, for a
    piecewise-linear output when ``m >= n_L`` (the image layer needs about
    ``2 s_L`` equations, and ``s_L ~ n_L / 2``): below that the layer-wise
    start is slow and wrong, and the gradient-descent starts do the work.
    """
    if not generator.is_dense and generator.layerwise_obstacle() is not None:
        return False  # e.g. a DCGAN's contracting last convolution
    if measurement_shape is None:
        return True
    enough = measurement_shape[0] >= generator.layer_sizes[-2]
    return generator.activation.piecewise_linear and enough


class HybridInverter(BaseInverter):
    """Exact inversion beyond the layer-wise regime: starts, exact polish, selection.

    The hybrid of the paper's section 6.1 outlook. Every signal gets

    1. **starts**: Latent-Pursuit's estimate (Algorithm 5) where its layer
       problems are posed (no measurement, or an identity / piecewise-linear
       output seen through ``m >= n_L`` measurements), with ``noise_std`` a
       linear decoder's estimate (``linear_start``), and, for the rows these
       do not fit, gradient
       descent on eq. 1 from ``n_restarts`` starting codes (rows x restarts
       in one batch);
    2. **exact polish**: Algorithm 1 (fixed-support Gauss-Newton /
       Levenberg-Marquardt through the whole network and the measurement)
       on the supports of the current estimate, alternated with support
       refresh until the supports are a fixed point (:func:`skinvert.polish`);
    3. **selection** by the loss of eq. 1: a row polishes its starts in the
       order of their loss and stops once its loss is consistent with the
       noise level (``noise_std``; without it, with rounding);
    4. **basin hopping**: a row that no start fits restarts gradient descent
       (and the polish) from its best code so far plus
       ``perturbation_scale`` times shared N(0, I) directions, up to
       ``n_perturbations`` times; rows already fitted never pay for it.

    Parameters
    ----------
    generator : ReLUGenerator, str or torch.nn.Module
        The generator to invert: a :class:`~skinvert.ReLUGenerator`, a
        pretrained name, a ``.npz``/``.safetensors`` file or a PyTorch module
        (see :class:`LatentPursuitInverter`); converted in ``fit``.
        Any output activation (identity, leaky_relu, plu, tanh, sigmoid) and
        any layers (fully connected, or convolutional e.g. from
        :func:`skinvert.io.from_torch`: gradient descent and the polish then
        run through the layers' ``matmat`` / ``rmatmat``).
    measurement : array-like, sparse matrix or LinearOperator of shape (m, n), default=None
        Linear measurements ``y = A G(z) + e`` (X holds the m measurements;
        NaN: a missing one); see :class:`GradientDescentInverter`. The
        end-to-end problem has ``n_0`` unknowns, so far fewer measurements
        than a layer-wise inversion needs (``m >= n_0`` per fixed support).
    noise_std : float or None, default=None
        Standard deviation of iid Gaussian noise on the observed entries of X.
        A row stops trying starts once its loss is below the chi-square bound
        ``sigma^2 / 2 (n_obs + noise_retry_sd sqrt(2 n_obs))``; also passed
        to the pursuit start (without a measurement or with an identity
        output), and it enables the boundary search (``boundary_sd``).
    noise_retry_sd : float, default=3.0
        That bound's chi-square standard deviations above the mean. A wrong
        support region can fit nearly as well as the right one: on 512
        signals of a saturating tanh generator at noise 1e-2, rows ended 12x
        and 6x the Oracle's error at 4.1 and 6.1 standard deviations when the
        bound was 10 (the pursuits' ``noise_retry_sd``). Rows legitimately
        above 3 (about 0.13 %) only pay for more starts, until three more
        polished starts have landed on their best loss (then they stop:
        :data:`skinvert.algorithms.hybrid.CONFIRMATIONS`).
    boundary_sd : float, default=0.5
        With ``noise_std`` and dense layers, the last stage tries, for every
        row, the neighbouring support regions across the hidden units whose
        pre-activation is within ``boundary_sd`` standard deviations (of its
        noise, Theorem 3's covariance) of 0 (at most 8 per row and layer,
        the closest first), and keeps one where the loss is lower
        (:func:`skinvert.algorithms.neighbours.search_neighbours`).
        Measured on that generator: the row that every start left 3.2x the
        Oracle's error (in the neighbouring region, loss 0.55 standard
        deviations above the Oracle's) is recovered, RMS latent error
        1.14x -> 1.05x the Oracle's, at about 15 % of the time. 0: none.
    gamma : float, default=0.0
        Ridge weight on z (eq. 16's prior) in every stage.
    n_restarts : int, default=8
        Gradient-descent starts per signal (codes drawn from N(0, I) in
        ``fit``); 0 keeps the pursuit start only (needs a pursuit).
    restarts_per_round : int, default=2
        Gradient-descent starts run together per round: the rows a round fits
        exactly (or to the noise level) skip the later rounds, so easy
        problems pay for two starts, hard ones for all ``n_restarts``.
    start_solver : {"adam", "momentum"}, default="adam"
        The gradient-descent solver of the starts.
    start_learning_rate : float or "auto", default="auto"
        ``"auto"``: 0.05 for Adam (a step in z units) and
        ``2 (1 + 0.9) / lipschitz_`` for momentum (see
        :class:`GradientDescentInverter`).
    start_max_iter : int or "auto", default="auto"
        Gradient-descent iterations per start: enough to reach the basin of
        the polish, which does the rest. ``"auto"``: 100 on a fully
        connected generator, 300 on one with convolutional (or other
        non-dense) layers, whose starts need longer to reach that basin
        (``fashion-mnist-dcgan``, 32 clean signals, 8 starts: 91 % exact
        with 100 iterations, 100 % with 300).
    n_perturbations : int, default=16
        Basin-hopping starts at most per signal (step 4), run
        ``restarts_per_round`` at a time, only for the rows whose loss is
        still above the noise (or rounding) bound after every other start;
        their directions are drawn in ``fit`` (``perturb_codes_``). 0: none.
        Rows that no code can fit (signals outside the generator's range,
        or noise without ``noise_std``) pay for all ``n_restarts +
        n_perturbations`` starts; set it to 0 there. (With ``noise_std``,
        a row whose best loss, within 10 chi-square standard deviations,
        three more polished starts have landed on stops.)
    perturbation_scale : float, default=0.5
        The length scale of those starts around the row's best code, in z
        units (the prior N(0, I) has unit scale).
    use_pursuit : bool, "auto" or "fallback", default="auto"
        Use Latent-Pursuit's estimate as a start where its problems are
        posed (no measurement, or a piecewise-linear output and
        ``m >= n_L``, the size of the last hidden layer; never on a
        convolutional generator with a contracting layer, see
        :meth:`~skinvert.ReLUGenerator.layerwise_obstacle`). True: as every
        row's first start. "fallback": only for the rows that every
        gradient-descent and basin-hopping start leaves far (10 chi-square
        standard deviations) above the noise level.
        "auto": the first start on noiseless signals (where it is exact and
        cheap), the fallback with ``noise_std`` (where the pursuit takes
        19-46 s and the hybrid 2.7-4.7 s: 512 signals at noise 1e-2 of
        ``fashion-mnist-fc`` and at 1e-3 and 1e-2 of a saturating tanh
        generator).
    linear_start : bool or "auto", default="auto"
        Polish a linear decoder's estimate of every row first (before the
        gradient-descent starts): the ridge regression of z on
        ``A G(z) + e`` over 8000 codes drawn from N(0, I) in ``fit``, with
        ``e`` of ``noise_std`` (:func:`skinvert.algorithms.hybrid.linear_decoder`;
        missing entries take the outputs' mean). Without a measurement and
        with a non-identity phi it regresses on ``[y, phi^-1(y)]``
        (:func:`skinvert.algorithms.hybrid.decoder_features`; up to 2048
        features): on the saturating generator below the polish of this
        start fits 96 % of the rows instead of 89-90 %, and the transform
        took 1.38-2.23 s against 1.80-2.56 s (8 paired runs, RMS 0.996-1.08x
        the Oracle's against 0.989-1.07x; 0.2-0.35 s more in ``fit``).
        Not in the paper: a cheap deterministic start. "auto": with
        ``noise_std`` (and at most 4096
        features, the decoder's (m, m) covariance), where it fits most rows
        to the noise level by itself: 512 signals of a saturating tanh
        generator at noise 1e-3 / 1e-2 and of ``fashion-mnist-fc`` at 1e-2,
        transform 5.9-7.2 s -> 2.7-4.7 s (0.4 s more in ``fit``), RMS latent
        error 0.99-1.05x -> 0.99-1.07x the Oracle's, no row beyond 3x (8
        draws).
    polish_max_iter : int, default=50
        Gauss-Newton steps of each polish.
    tol : float or None, default=None
        Relative step of the polish's stop. None: with ``noise_std`` 1e-6
        (the noise limits the accuracy far above it), otherwise
        ``sqrt(eps)`` and the steps go on to rounding (see
        :func:`skinvert.polish`).
    batch_size : int or None, default=None
        Rows per batch (None: sized for about 512 MiB of working memory;
        within a batch, on NumPy, the polish and the boundary search work on
        blocks of about 8 MiB of per-row (n, n_0) maps, which runs fastest,
        and the pursuit start on blocks its own estimate sizes; see the
        scaling guide). Larger batches pay once for the rounds of starts
        that only a few rows still need.
    n_jobs : int or None, default=None
        Joblib workers the batches are split across (NumPy input only;
        ``None`` means 1 unless in a ``joblib.parallel_config`` context, -1
        all cores). Results equal those of ``n_jobs=1``: rows are independent.
        The hybrid's per-row work (polish, starts) gains little from BLAS
        threads, unlike the Oracle's: 512 noisy signals of a saturating tanh
        generator on 2 cores, transform 2.2-3.1 s with ``n_jobs=None``,
        1.4-1.9 s with ``n_jobs=2`` (the Oracle 0.5-0.8 s either way;
        ``python -m benchmarks.noise_saturating --methods hybrid --n-jobs 2``).
    verbose : int, default=0
        Show a progress bar over rows (rows done, rate, time left) when positive.
    random_state : int, RandomState instance or None, default=None
        Draws the starting points in ``fit``.

    Attributes
    ----------
    generator_ : ReLUGenerator
    n_components_ : int
    n_features_in_ : int
    measurement_ : array, LinearOperator or None
    init_codes_ : array of shape (n_restarts, n_components)
        The gradient-descent starting codes, shared by every row (so a row's
        result does not depend on its batch).
    perturb_codes_ : array of shape (n_perturbations, n_components)
        The basin-hopping directions, N(0, I), shared by every row.
    start_max_iter_ : int
        The gradient-descent iterations per start (``start_max_iter``
        resolved).
    lipschitz_ : float
        The typical curvature of eq. 1: the median Lipschitz estimate of its
        gradient over 32 codes drawn from N(0, I) (see
        :func:`~skinvert.algorithms.gradient_descent.gradient_lipschitz`).
    start_learning_rate_ : float
    pursuit_ : LatentPursuitInverter or None
        The fitted pursuit of the first start (None where it is not used).
    start_mean_ : array of shape (p,) or None
        The linear start ``z0 = (f(x) - start_mean_) @ start_coef_ +
        start_offset_`` (None where ``linear_start`` is off). Without a
        measurement and with a non-identity phi, ``f(x) = [x, phi^-1(x)]``
        (p = 2m, m the features; a bounded phi's x clipped first, see
        :func:`skinvert.algorithms.hybrid.decoder_features`), otherwise
        ``f(x) = x`` (p = m).
    start_coef_ : array of shape (p, n_components) or None
    start_offset_ : array of shape (n_components,) or None

    Notes
    -----
    ``transform(X, return_info=True)`` also returns per-row diagnostics: a
    dict of arrays of shape (n_samples,) in X's namespace: ``"loss"`` (eq. 1
    at the returned code), ``"start"`` (-1: the pursuit's estimate won;
    -3: the linear start's; ``0 <= r < n_restarts``: the gradient-descent start from
    ``init_codes_[r]``; ``n_restarts + k``: the basin-hopping start along
    ``perturb_codes_[k]``),
    ``"fixed_point"`` (the winning polish reached a support fixed point) and
    ``"n_iter"`` (its Gauss-Newton steps). One ``ConvergenceWarning``
    counts the rows whose supports did not reach a fixed point and those
    whose loss stayed above the noise (or rounding) bound.

    Examples
    --------
    >>> import numpy as np
    >>> from skinvert import HybridInverter, make_random_generator
    >>> G = make_random_generator([10, 60, 200], random_state=0)
    >>> Z = np.random.default_rng(0).standard_normal((4, 10))
    >>> A = np.random.default_rng(1).standard_normal((30, 200)) / np.sqrt(30)
    >>> est = HybridInverter(G, measurement=A, random_state=0)
    >>> Zhat = est.fit(G.forward(Z) @ A.T).transform(G.forward(Z) @ A.T)
    >>> bool(np.allclose(Zhat, Z))
    True
    """

    _parameter_constraints = {
        **BaseInverter._parameter_constraints,
        "measurement": "no_validation",  # checked in fit (shape, dtype, finite)
        "noise_std": [Interval(Real, 0, None, closed="left"), None],
        "gamma": [Interval(Real, 0, None, closed="left")],
        "n_restarts": [Interval(Integral, 0, None, closed="left")],
        "restarts_per_round": [Interval(Integral, 1, None, closed="left")],
        "start_solver": [StrOptions({"adam", "momentum"})],
        "start_learning_rate": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "start_max_iter": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "n_perturbations": [Interval(Integral, 0, None, closed="left")],
        "perturbation_scale": [Interval(Real, 0, None, closed="neither")],
        "use_pursuit": ["boolean", StrOptions({"auto", "fallback"})],
        "linear_start": ["boolean", StrOptions({"auto"})],
        "noise_retry_sd": [Interval(Real, 0, None, closed="left")],
        "boundary_sd": [Interval(Real, 0, None, closed="left")],
        "polish_max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left"), None],
    }

    def __init__(
        self,
        generator,
        *,
        measurement=None,
        noise_std=None,
        noise_retry_sd=3.0,
        boundary_sd=0.5,
        gamma=0.0,
        n_restarts=8,
        restarts_per_round=2,
        start_solver="adam",
        start_learning_rate="auto",
        start_max_iter="auto",
        n_perturbations=16,
        perturbation_scale=0.5,
        use_pursuit="auto",
        linear_start="auto",
        polish_max_iter=50,
        tol=None,
        batch_size=None,
        n_jobs=None,
        verbose=0,
        random_state=None,
    ):
        super().__init__(
            generator,
            batch_size=batch_size,
            n_jobs=n_jobs,
            verbose=verbose,
            random_state=random_state,
        )
        self.measurement = measurement
        self.noise_std = noise_std
        self.noise_retry_sd = noise_retry_sd
        self.boundary_sd = boundary_sd
        self.gamma = gamma
        self.n_restarts = n_restarts
        self.restarts_per_round = restarts_per_round
        self.start_solver = start_solver
        self.start_learning_rate = start_learning_rate
        self.start_max_iter = start_max_iter
        self.n_perturbations = n_perturbations
        self.perturbation_scale = perturbation_scale
        self.use_pursuit = use_pursuit
        self.linear_start = linear_start
        self.polish_max_iter = polish_max_iter
        self.tol = tol

    def _fit_extra(self, X, rng):
        xp, dev = namespace_of(X)
        G = self.generator_
        codes = rng.standard_normal((self.n_restarts, self.n_components_))
        self.init_codes_ = as_namespace(codes, xp, dtype=X.dtype, device=dev)
        probes = as_namespace(rng.standard_normal((32, self.n_components_)), xp,
                              dtype=X.dtype, device=dev)
        W, b = generator_arrays(G, xp, X.dtype, dev)
        self.lipschitz_ = gradient_lipschitz(
            W, b, G.activation, xp, probes, measurement=self._measurement(xp, X.dtype, dev),
            alpha=self.gamma, quantile=0.5,
        )
        # drawn after the probes: init_codes_ and lipschitz_ are those of a
        # hybrid without basin hopping
        hops = rng.standard_normal((self.n_perturbations, self.n_components_))
        self.perturb_codes_ = as_namespace(hops, xp, dtype=X.dtype, device=dev)
        if self.start_max_iter == "auto":
            self.start_max_iter_ = 100 if G.is_dense else 300
        else:
            self.start_max_iter_ = int(self.start_max_iter)
        if self.start_learning_rate != "auto":
            self.start_learning_rate_ = float(self.start_learning_rate)
        elif self.start_solver == "adam":
            self.start_learning_rate_ = 0.05
        else:
            self.start_learning_rate_ = 2.0 * 1.9 / self.lipschitz_
        A = getattr(self, "measurement_", None)
        applies = pursuit_applies(G, None if A is None else tuple(A.shape))
        if self.use_pursuit is True and not applies:
            check_layerwise(LatentPursuitInverter(G), G)  # names the layer where one blocks
            raise ValueError(
                "use_pursuit=True: Latent-Pursuit's problems are not posed through this "
                f"measurement (a {G.activation.name} output, m={A.shape[0]}; it needs a "
                f"piecewise-linear output and m >= n_L = {G.layer_sizes[-2]}); use "
                "use_pursuit='auto'."
            )
        self.pursuit_ = None
        if applies and self.use_pursuit in (True, "auto", "fallback"):
            # The pursuits take noise_std only where A folds into the last layer.
            folded = self.measurement is None or G.activation.name == "identity"
            self.pursuit_ = _PursuitStart(
                G, measurement=self.measurement, gamma=self.gamma,
                noise_std=self.noise_std if folded else None,
            ).fit(X)
        self._fit_linear_start(X, rng)
        if self.pursuit_ is None and self.n_restarts == 0:
            raise ValueError(
                "n_restarts=0 leaves no start: the pursuit start is not used here "
                f"(use_pursuit={self.use_pursuit!r}); set n_restarts >= 1."
            )

    def _fit_linear_start(self, X, rng):
        """``start_mean_``, ``start_coef_``, ``start_offset_``: the linear
        decoder of the first start (:func:`~skinvert.inverters._linear_start.
        fit_linear_start`), or None where it is not used. Drawn last, so the
        other draws of ``random_state`` are those of a hybrid without it."""
        self.start_mean_ = self.start_coef_ = self.start_offset_ = None
        m = self.n_features_in_
        use = self.linear_start
        if use == "auto":
            use = bool(self.noise_std) and m <= LINEAR_START_MAX_FEATURES
        if not use:
            return
        if m > 2 * LINEAR_START_MAX_FEATURES:
            raise ValueError(
                f"linear_start=True needs an (m, m) covariance of the m = {m} features "
                f"(at most {2 * LINEAR_START_MAX_FEATURES}); use linear_start=False."
            )
        self.start_mean_, self.start_coef_, self.start_offset_ = fit_linear_start(self, X, rng)

    def _polish_tol(self):
        """The polish's ``tol``: with ``noise_std`` and ``tol=None``,
        :data:`NOISY_POLISH_TOL` (the noise limits the codes' accuracy far
        above rounding); otherwise ``tol`` (None: to rounding)."""
        if self.tol is None and self.noise_std:
            return NOISY_POLISH_TOL
        return self.tol

    def _decoder(self, xp, dtype, dev):
        """The linear start of a batch (None without one)."""
        return linear_start_decoder(self, xp, dtype, dev)

    def _bytes_per_sample(self, generator, itemsize, host=False):
        # The larger of a round's gradient-descent starts (restarts_per_round
        # copies of every row, descending in single precision for
        # double-precision input, _descend: activations, gradients, Adam
        # moments and the repeated signals) and the other stages' per-row
        # vectors. The polish and the boundary search build every layer's
        # (n_i, n_0) map per row: on blocks of rows on NumPy
        # (host_block_rows, a fixed cost), of the whole batch elsewhere. The
        # pursuit is not counted: it runs on blocks its own estimate sizes
        # (_transform_batch). Measured with tracemalloc (tests/
        # test_memory_estimates.py, benchmarks/memory.py --estimates).
        sizes = generator.layer_sizes
        n0, n, total = sizes[0], sizes[-1], sum(sizes)
        A = getattr(self, "measurement_", None)
        m = n if A is None else A.shape[0]
        R = max(1, min(self.restarts_per_round, max(self.n_restarts, self.n_perturbations)))
        descent = 4 if itemsize == 8 else itemsize  # float32 starts (see _low_precision)
        per = max(descent * R * (6 * total + 4 * m), itemsize * 3 * (total + m))
        if not host:
            per += itemsize * (6 * n * n0 + 2 * sum(sizes[1:]) * n0 + 4 * m * n0)
        return per

    def transform(self, X, return_info=False):
        """Recover the latent codes of the signals X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Signals (or measurements); NaN marks a missing entry.
        return_info : bool, default=False
            Also return the per-row diagnostics (see Notes of the class).

        Returns
        -------
        Z : array of shape (n_samples, n_components)
            The latent codes, in X's namespace, device and dtype.
        info : Bunch
            Only with ``return_info=True``: the keys of
            :meth:`BaseInverter.transform` (host arrays; ``stage`` is
            ``"pursuit"``, ``"linear start"`` or ``"start r"``), and the hybrid's own arrays of
            shape (n_samples,) in X's namespace (see Notes), which replace
            ``loss`` and ``n_iter``.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        out, base = self._transform(X, validated=True, return_info=True)
        xp, dev = namespace_of(X)
        k = self.n_components_
        Z = out[:, :k]
        if not return_info:
            return Z
        if out.shape[1] == k:  # no rows: BaseInverter returns the codes only
            out = xp.concat([out, xp.zeros((0, len(_INFO)), dtype=out.dtype, device=dev)], axis=1)
        info = {key: out[:, k + j] for j, key in enumerate(_INFO)}
        info["start"] = xp.astype(info["start"], xp.int32)
        info["n_iter"] = xp.astype(info["n_iter"], xp.int32)
        info["fixed_point"] = info["fixed_point"] > 0
        start = _to_host(info["start"], xp)
        base.stage = base.stage.astype(object)
        base.stage[:] = [_STAGES.get(int(r), f"start {int(r)}") for r in start]
        base.stage = base.stage.astype(str)
        base.update(info)
        return Z, base

    def _low_precision(self, Y, xp, state):
        """The generator in single precision for the gradient-descent starts of
        double-precision signals (None in single precision, or where the
        weights do not fit float32)."""
        if Y.dtype != xp.float64:
            return None
        _, dev = namespace_of(Y)
        try:
            return generator_arrays(self.generator_, xp, xp.float32, dev)
        except ValueError:
            return None

    def _pursuit_first(self):
        """Whether the pursuit is every row's first start (else a fallback)."""
        if self.use_pursuit == "auto":
            return not self.noise_std
        return self.use_pursuit is True

    def _stage_param(self, stage):
        return "polish_max_iter" if "polish" in stage else "n_restarts or start_max_iter"

    def _transform_batch(self, Y, obs, xp, state):
        act = self.generator_.activation
        _, dev = namespace_of(Y)
        pursuit = None
        if self.pursuit_ is not None:
            # The pursuit's working memory per row (its own Gram matrices) is
            # far above the hybrid's: it runs on blocks of rows that its own
            # estimate sizes (rows are independent).
            itemsize, n_workers, host = self._memory_setting(xp, Y.dtype)
            rows = self.pursuit_._auto_batch_rows(itemsize, n_workers, host=host)

            def pursuit(Yb, Ob):
                parts = [
                    _pursuit_estimate(self.pursuit_, Yb[sl, ...], Ob[sl, ...], xp, state)
                    for sl in row_blocks(Yb.shape[0], rows)
                ]
                return parts[0] if len(parts) == 1 else xp.concat(parts)

        init = None
        if self.n_restarts:
            init = as_namespace(self.init_codes_, xp, dtype=Y.dtype, device=dev)
        hops = None
        if self.n_perturbations and self.n_restarts:
            hops = as_namespace(self.perturb_codes_, xp, dtype=Y.dtype, device=dev)
        starts = HybridStarts(init, solver=self.start_solver,
                              learning_rate=self.start_learning_rate_,
                              max_iter=self.start_max_iter_, pursuit=pursuit,
                              per_round=self.restarts_per_round, perturb_codes=hops,
                              perturb_scale=self.perturbation_scale,
                              pursuit_first=self._pursuit_first(),
                              boundary_sd=self.boundary_sd,
                              low_precision=self._low_precision(Y, xp, state),
                              decoder=self._decoder(xp, Y.dtype, dev),
                              decoder_descent=LINEAR_START_DESCENT)
        Z, info = hybrid_batch(
            Y, obs, state.weights, state.biases, act, xp, starts,
            measurement=state.measurement, gamma=self.gamma, noise_std=self.noise_std,
            noise_sd=self.noise_retry_sd, polish_max_iter=self.polish_max_iter,
            tol=self._polish_tol(),
        )
        B = Y.shape[0]
        fits = info["fits"]
        n_fit = int(xp.sum(xp.astype(fits, xp.int32)))
        # A noisy row whose loss is consistent with the noise may end between
        # two support regions (the minimum of eq. 1 at a kink): not a failure.
        n_off = int(xp.sum(xp.astype(~info["fixed_point"] & ~fits, xp.int32)))
        state.count("the polish (supports not at a fixed point within polish_max_iter)", n_off)
        state.count("every start (loss above the noise level)" if self.noise_std
                    else "every start (loss above rounding: not an exact fit)", B - n_fit)
        cols = [xp.astype(info[key], Y.dtype)[:, None] for key in _INFO]
        return xp.concat([Z] + cols, axis=1)
