"""GradientDescentInverter: the paper's baseline (eq. 1 by momentum gradient descent)."""

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Hidden, Interval, StrOptions, validate_params

from .._array_api import as_namespace, namespace_of
from ..algorithms.gradient_descent import adam_descent, gradient_lipschitz, momentum_descent
from ..generator import ReLUGenerator
from ._base import BaseInverter
from ._batching import _to_host, generator_arrays
from ._diagnostics import warn_user

# The two ways a row ends at the iteration cap (the ConvergenceWarning's stages).
_STILL_DESCENDING = "gradient descent, still descending at the cap"
_STALLED = "gradient descent, stalled at a spurious stationary point"


class GradientDescentInverter(BaseInverter):
    """Invert a generator by gradient descent on ``1/2 ||G(z) - y||^2`` (eq. 1).

    Batched heavy-ball gradient descent with a decaying step over all signals
    at once; missing entries (NaN) are left out of the loss. This is the
    baseline the paper compares its pursuits with (section 6).

    Parameters
    ----------
    generator : ReLUGenerator, str or torch.nn.Module
        The generator to invert: a :class:`~skinvert.ReLUGenerator`, a
        pretrained name, a ``.npz``/``.safetensors`` file or a PyTorch module
        (see :class:`LatentPursuitInverter`); converted in ``fit``.
    measurement : array-like, sparse matrix or LinearOperator of shape (m, n), default=None
        Linear measurements ``y = A G(z) + e``: X then holds the m
        measurements of each signal (NaN: a missing measurement) and the loss
        is ``1/2 ||obs * (A G(z) - y)||^2``, whose gradient back-propagates
        through ``A^T``. A dense matrix may live in any array API namespace
        (it is converted to X's namespace and dtype); a SciPy sparse matrix,
        a ``LinearOperator`` or any object with ``shape``, ``@`` and ``.T``
        works with NumPy data. ``n`` is the generator's output size;
        ``inverse_transform`` still returns the signals ``G(Z)`` (n features)
        and ``score`` compares ``A G(Z)`` with X. Any output activation.
    solver : {"momentum", "adam"}, default="momentum"
        ``"momentum"``: heavy-ball gradient descent with a decaying step, the
        paper's baseline (section 6.2); ``"adam"``: Adam, the CSGM-style loop
        (:func:`~skinvert.algorithms.gradient_descent.adam_descent`).
    learning_rate : float or "auto", default=0.1
        Initial step size ``eta_0`` (the paper's 1e-1). ``"auto"`` scales it to
        the generator and the measurement: ``2 (1 + momentum) / lipschitz_``
        for momentum (the heavy-ball stability limit at the typical
        curvature of eq. 1, estimated in ``fit``; the constant 0.1 suits one
        network only), and 0.05 (a step in the units of z ~ N(0, I)) for
        Adam, whose step does not scale with the gradient.
        With momentum, each row halves its own step whenever a step would
        increase its loss.
    momentum : float, default=0.9
        Heavy-ball momentum (the paper's 0.9; ``solver="momentum"``).
    decay : float, default=1e-3
        Step decay: ``eta_k = eta_0 / (1 + decay * k)``.
    transform_max_iter : int, default=2000
        Iteration limit per signal (the paper uses 10,000:
        ``transform_max_iter=10_000``). Named like scikit-learn's
        ``SparseCoder.transform_max_iter``: the iterations happen in
        ``transform``, not in ``fit``. The
        default is the point past which, on the paper's random nets, the
        rows that converge have converged and the others are stuck in a
        spurious stationary point that more iterations do not leave.
    tol : float, default=1e-8
        A row stops when its gradient norm is below ``tol``.
    n_restarts : int, default=1
        Number of starting points; each row keeps the result with the
        lowest loss.
    gamma : float, default=0.0
        Ridge weight: ``gamma/2 ||z||^2`` is added to the loss (a Gaussian
        prior on z; the name every inverter uses for it).
    alpha : float, default="deprecated"
        Former name of ``gamma``.

        .. deprecated:: 0.2
           ``alpha`` was renamed ``gamma`` in 0.2 and will be removed in 0.4.
    batch_size : int or None, default=None
        Rows per batch (None: sized for about 512 MiB of working memory).
    n_jobs : int or None, default=None
        Joblib workers the batches are split across (NumPy input only;
        ``None`` means 1 unless in a ``joblib.parallel_config`` context, -1
        all cores). Results equal those of ``n_jobs=1``: rows are independent.
    verbose : int, default=0
        Show a progress bar over rows (rows done, rate, time left) when positive.
    random_state : int, RandomState instance or None, default=None
        Draws the starting points in ``fit``.

    Attributes
    ----------
    generator_ : ReLUGenerator
    n_components_ : int
        ``n_0``, the latent size.
    n_features_in_ : int
        The number of features of X (m with a ``measurement``).
    measurement_ : array, LinearOperator or None
        The validated measurement (a dense one in X's namespace and device).
    init_codes_ : ndarray of shape (n_restarts, n_components)
        The starting points, drawn from N(0, I) once in ``fit`` and shared by
        every row, so a row's result does not depend on the batch it is in.
    lipschitz_ : float
        The typical curvature of eq. 1 (Lipschitz constant of its gradient):
        the median ``||J(z)||_2^2 + gamma`` of the end-to-end Jacobian
        (through phi and the measurement) over 32 codes drawn from N(0, I)
        in ``fit`` (:func:`~skinvert.algorithms.gradient_descent.gradient_lipschitz`).
        Its maximum over the probes is typically 2-4x larger; the per-row
        step halving takes care of the rows that need a smaller step.
    learning_rate_ : float
        The step used (``learning_rate``, or its ``"auto"`` value).

    Notes
    -----
    The update is ``v <- momentum v - eta_k grad``, ``z <- z + v`` on the
    per-row loss ``1/2 ||obs * (G(z) - y)||^2 + gamma/2 ||z||^2``, whose
    gradient is computed by back-propagation through eq. 3. A
    ``ConvergenceWarning`` reports the rows that end without converging, in
    two groups: rows still descending at ``transform_max_iter`` (their loss
    fell by half over the last 10 % of the iterations: raise
    ``transform_max_iter``) and rows stalled at a spurious stationary point
    or a kink of the ReLUs (more iterations do not help: raise
    ``n_restarts``, or use an inverter that does not descend, such as
    :class:`HybridInverter` or :class:`LatentPursuitInverter`). Rows whose
    final fit is exact are not reported.

    Examples
    --------
    >>> import numpy as np
    >>> from skinvert import GradientDescentInverter, make_random_generator
    >>> G = make_random_generator([5, 40, 100], random_state=0)
    >>> X = G.forward(np.random.default_rng(0).standard_normal((3, 5)))
    >>> Z = GradientDescentInverter(G, random_state=0).fit(X).transform(X)
    >>> Z.shape
    (3, 5)
    """

    _parameter_constraints = {
        **BaseInverter._parameter_constraints,
        "measurement": "no_validation",  # checked in fit (shape, dtype, finite)
        "solver": [StrOptions({"momentum", "adam"})],
        "learning_rate": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "decay": [Interval(Real, 0, None, closed="left")],
        "transform_max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_restarts": [Interval(Integral, 1, None, closed="left")],
        "gamma": [Interval(Real, 0, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left"), Hidden(StrOptions({"deprecated"}))],
    }

    def __init__(
        self,
        generator,
        *,
        measurement=None,
        solver="momentum",
        learning_rate=0.1,
        momentum=0.9,
        decay=1e-3,
        transform_max_iter=2000,
        tol=1e-8,
        n_restarts=1,
        gamma=0.0,
        alpha="deprecated",
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
        self.solver = solver
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.decay = decay
        self.transform_max_iter = transform_max_iter
        self.tol = tol
        self.n_restarts = n_restarts
        self.gamma = gamma
        self.alpha = alpha

    def _fit_extra(self, X, rng):
        # Drawn on the host, kept in X's namespace, device and dtype (the
        # array API convention for fitted attributes).
        xp, dev = namespace_of(X)
        codes = rng.standard_normal((self.n_restarts, self.n_components_))
        self.init_codes_ = as_namespace(codes, xp, dtype=X.dtype, device=dev)
        gamma = self._gamma()
        # Probes from their own seed: the starting points above stay those
        # of earlier versions for a given random_state.
        probes = np.random.default_rng(0).standard_normal((32, self.n_components_))
        W, b = generator_arrays(self.generator_, xp, X.dtype, dev)
        self.lipschitz_ = gradient_lipschitz(
            W, b, self.generator_.activation, xp,
            as_namespace(probes, xp, dtype=X.dtype, device=dev),
            measurement=self._measurement(xp, X.dtype, dev), alpha=gamma, quantile=0.5,
        )
        if self.learning_rate != "auto":
            self.learning_rate_ = float(self.learning_rate)
        elif self.solver == "adam":
            self.learning_rate_ = 0.05
        else:
            self.learning_rate_ = 2.0 * (1.0 + self.momentum) / self.lipschitz_

    def _gamma(self):
        if isinstance(self.alpha, str):  # "deprecated": not set
            return float(self.gamma)
        warn_user(
            "'alpha' was renamed 'gamma' (the ridge weight's name in every inverter) in "
            "0.2 and will be removed in 0.4; use gamma instead.",
            FutureWarning,
        )
        return float(self.alpha)

    def _bytes_per_sample(self, generator, itemsize, host=False):
        per = itemsize * self.n_restarts * 12 * sum(generator.layer_sizes)
        A = getattr(self, "measurement_", None)
        return per if A is None else per + itemsize * self.n_restarts * 4 * A.shape[0]

    def _transform_batch(self, Y, obs, xp, state):
        B = Y.shape[0]
        R = self.n_restarts
        _, dev = namespace_of(Y)
        init = as_namespace(self.init_codes_, xp, dtype=Y.dtype, device=dev)
        Z0 = xp.concat([xp.broadcast_to(init[r : r + 1, :], (B, init.shape[1])) for r in range(R)])
        Yr = xp.concat([Y] * R) if R > 1 else Y
        obsr = xp.concat([obs] * R) if R > 1 else obs
        if self.solver == "adam":
            run, extra = adam_descent, {}
        else:
            run, extra = momentum_descent, {"momentum": self.momentum}
        gamma = float(self.gamma) if isinstance(self.alpha, str) else float(self.alpha)
        first = xp.full((Z0.shape[0],), -1, dtype=xp.int64, device=dev)
        # A row that ends at the cap is "still descending" when its loss fell
        # over its last 10 % of the iterations (10 at least) at least a tenth as
        # fast (per iteration, in log scale) as over the whole run: more
        # iterations help. (Runs shorter than 20 iterations are too short to tell.)
        # Otherwise it is stalled at a spurious stationary point or a kink of
        # the ReLUs: more iterations do not help, other starts do.
        k_ref = self.transform_max_iter - max(10, self.transform_max_iter // 10)
        first_loss, ref = None, None

        def per_row_iterations(k, loss_k, converged_k):
            # The iteration at which each row converged (per-row n_iter of the info).
            nonlocal first, first_loss, ref
            first = xp.where(converged_k & (first < 0), xp.full_like(first, k), first)
            if k == 1:
                first_loss = loss_k
            if k == k_ref:
                ref = loss_k

        Z, loss, n_iter, converged = run(
            Z0,
            Yr,
            obsr,
            state.weights,
            state.biases,
            self.generator_.activation,
            xp,
            learning_rate=self.learning_rate_,
            decay=self.decay,
            alpha=gamma,
            max_iter=self.transform_max_iter,
            tol=self.tol,
            measurement=state.measurement,
            callback=per_row_iterations,
            **extra,
        )
        iters = xp.where(first < 0, xp.full_like(first, n_iter), first)
        descending = ~_to_host(converged, xp) & _still_descending(
            *(None if v is None else _to_host(v, xp) for v in (first_loss, ref, loss)),
            k_ref,
            n_iter,
        )
        best_Z, best_loss, best_conv = Z[:B, ...], loss[:B], converged[:B]
        best_it, best_r = iters[:B], xp.zeros((B,), dtype=xp.int64, device=dev)
        for r in range(1, R):
            rows = slice(r * B, (r + 1) * B)
            Zr, lr_, cr = Z[rows, ...], loss[rows], converged[rows]
            better = lr_ < best_loss
            best_Z = xp.where(better[:, None], Zr, best_Z)
            best_loss = xp.where(better, lr_, best_loss)
            best_conv = xp.where(better, cr, best_conv)
            best_it = xp.where(better, iters[rows], best_it)
            best_r = xp.where(better, xp.full_like(best_r, r), best_r)
        start = _to_host(best_r, xp)
        best_desc = descending[start * B + np.arange(B)]
        best_stalled = ~_to_host(best_conv, xp) & ~best_desc
        state.record.flag(_STILL_DESCENDING, best_desc)
        state.record.flag(_STALLED, best_stalled)
        record = state.record
        record.n_iter[:] = _to_host(best_it, xp)
        kind = np.where(best_desc, ", still descending", np.where(best_stalled, ", stalled", ""))
        record.stage[:] = [f"start {int(r)}{k}" for r, k in zip(start, kind)]
        return best_Z

    def _stage_param(self, stage):
        if stage == _STALLED:
            return "n_restarts, or use HybridInverter or LatentPursuitInverter"
        return "transform_max_iter"


def _still_descending(first_loss, ref, loss, k_ref, n_iter):
    """Rows (NumPy, host) whose log-loss fell over iterations ``k_ref..n_iter``
    at least a tenth as fast per iteration as over ``1..n_iter`` (all rows
    when the run was too short to tell, none when it stopped before ``k_ref``)."""
    if k_ref < 10 or first_loss is None:
        return np.ones(loss.shape, dtype=bool)
    if ref is None or n_iter <= k_ref:
        return np.zeros(loss.shape, dtype=bool)
    tiny = np.finfo(np.float64).tiny
    log_l = np.log(np.maximum(loss.astype(np.float64), tiny))
    rate_last = (np.log(np.maximum(ref.astype(np.float64), tiny)) - log_l) / (n_iter - k_ref)
    rate_all = (np.log(np.maximum(first_loss.astype(np.float64), tiny)) - log_l) / (n_iter - 1)
    return (rate_last > 0) & (rate_last >= 0.1 * rate_all)


@validate_params(
    {"X": ["array-like"], "generator": [ReLUGenerator], "return_estimator": ["boolean"]},
    prefer_skip_nested_validation=False,
)
def gradient_descent_inversion(X, generator, *, measurement=None, solver="momentum",
                               learning_rate="auto", n_restarts=1, transform_max_iter=2000,
                               gamma=0.0, random_state=None, return_estimator=False, **params):
    """Invert X by gradient descent on eq. 1 (the functional form of the baseline).

    Fits a :class:`GradientDescentInverter` on X and returns its codes. The
    step defaults to ``learning_rate="auto"`` here: scaled from the
    generator and the measurement (``2 (1 + momentum) / lipschitz_``), so the result is that
    of a competently tuned baseline on any network.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Signals, or measurements with a ``measurement``; NaN marks a missing entry.
    generator : ReLUGenerator
        The generator to invert.
    measurement : array-like, sparse matrix or LinearOperator of shape (m, n), default=None
        Linear measurements ``y = A G(z) + e``: X then holds the m
        measurements of each signal (NaN: a missing measurement) and the loss
        is ``1/2 ||obs * (A G(z) - y)||^2``, whose gradient back-propagates
        through ``A^T``. A dense matrix may live in any array API namespace
        (it is converted to X's namespace and dtype); a SciPy sparse matrix,
        a ``LinearOperator`` or any object with ``shape``, ``@`` and ``.T``
        works with NumPy data. ``n`` is the generator's output size;
        ``inverse_transform`` still returns the signals ``G(Z)`` (n features)
        and ``score`` compares ``A G(Z)`` with X. Any output activation.
    solver : {"momentum", "adam"}, default="momentum"
        ``"momentum"``: heavy-ball gradient descent with a decaying step, the
        paper's baseline (section 6.2); ``"adam"``: Adam, the CSGM-style loop
        (:func:`~skinvert.algorithms.gradient_descent.adam_descent`).
    learning_rate : float or "auto", default=0.1
        Initial step size ``eta_0`` (the paper's 1e-1). ``"auto"`` scales it to
        the generator and the measurement: ``2 (1 + momentum) / lipschitz_``
        for momentum (the heavy-ball stability limit at the typical
        curvature of eq. 1, estimated in ``fit``; the constant 0.1 suits one
        network only), and 0.05 (a step in the units of z ~ N(0, I)) for
        Adam, whose step does not scale with the gradient.
        With momentum, each row halves its own step whenever a step would
        increase its loss.
    n_restarts : int, default=1
        Number of starting points; each row keeps the result with the
        lowest loss.
    transform_max_iter : int, default=2000
        Iteration limit per signal (the paper uses 10,000:
        ``transform_max_iter=10_000``). Named like scikit-learn's
        ``SparseCoder.transform_max_iter``: the iterations happen in
        ``transform``, not in ``fit``. The
        default is the point past which, on the paper's random nets, the
        rows that converge have converged and the others are stuck in a
        spurious stationary point that more iterations do not leave.
    gamma : float, default=0.0
        Ridge weight: ``gamma/2 ||z||^2`` is added to the loss (a Gaussian
        prior on z; the name every inverter uses for it).
    random_state : int, RandomState instance or None, default=None
        Draws the starting points in ``fit``.
    return_estimator : bool, default=False
        Also return the fitted estimator (its ``lipschitz_``, ``learning_rate_``).
    **params
        Any other parameter of :class:`GradientDescentInverter`.

    Returns
    -------
    Z : array of shape (n_samples, n_latent)
        The latent codes.
    estimator : GradientDescentInverter
        Only with ``return_estimator=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from skinvert import gradient_descent_inversion, make_random_generator
    >>> G = make_random_generator([5, 40, 100], random_state=0)
    >>> X = G.forward(np.random.default_rng(0).standard_normal((3, 5)))
    >>> gradient_descent_inversion(X, G, random_state=0).shape
    (3, 5)
    """
    est = GradientDescentInverter(
        generator, measurement=measurement, solver=solver, learning_rate=learning_rate,
        n_restarts=n_restarts, transform_max_iter=transform_max_iter, gamma=gamma,
        random_state=random_state, **params,
    )
    Z = est.fit(X).transform(X)
    return (Z, est) if return_estimator else Z
