"""OracleInverter: latent recovery on known supports (Algorithms 1 and 6)."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._array_api import get_namespace, namespace_of
from .._functional import _oracle_inversion
from ..algorithms._batch import Batch
from ._base import BaseInverter
from ._gradient_descent import GradientDescentInverter
from ._pursuit import LatentPursuitInverter


class OracleInverter(BaseInverter):
    """The paper's Oracle: least squares on the true supports of every layer.

    Parameters
    ----------
    generator : ReLUGenerator, str or torch.nn.Module
        The generator to invert: a :class:`~skinvert.ReLUGenerator`, a
        pretrained name, a ``.npz``/``.safetensors`` file or a PyTorch module
        (see :class:`LatentPursuitInverter`); converted in ``fit``.
    method : {"end_to_end", "layerwise"}, default="end_to_end"
        ``"end_to_end"`` is Algorithm 1: ``min_z ||y - phi(A_S z + c_S)||``
        through the row-supported product of the weights (non-linear least
        squares in ``n_0`` unknowns, solved exactly by SVD-based
        Levenberg-Marquardt). ``"layerwise"`` is Algorithm 6 (appendix B):
        least squares layer by layer on phi^-1(y), the estimator of
        Theorem 3.
    gamma : float, default=0.0
        Ridge weight on z (the MAP prior of eq. 16).
    transform_max_iter : int, default=30
        Levenberg-Marquardt iterations of the end-to-end method (non-linear
        phi only; identity needs none).
    tol : float or None, default=None
        Relative step size at which a row stops (default sqrt(eps)).
    support_estimator : estimator or None, default=None
        Used only when ``transform`` gets no ``supports``: an inverter whose
        ``transform`` gives a first estimate ``Z0``; the supports of
        ``G(Z0)`` are then used, which turns the Oracle into the *debiasing*
        step of Algorithm 5 on estimated supports. None uses
        :class:`LatentPursuitInverter` with this estimator's generator (and
        measurement; :class:`GradientDescentInverter` for a measurement with a
        tanh or sigmoid output, which the pursuits do not support). This is
        no Oracle any more: without true supports (as with
        ``measurement=A`` and no ``supports``) the result is that estimator's
        followed by Algorithm 1 on its supports, and the warnings say so
        ("supports estimated by LatentPursuitInverter").
    measurement : array-like, sparse matrix or LinearOperator of shape (m, n), default=None
        Linear measurements ``y = A G(z) + e`` (X holds the m measurements;
        NaN: a missing one). Algorithm 1 then minimises
        ``1/2 ||y - A phi(A_S z + c_S)||^2``: started from the least squares
        with phi taken as the identity (exact for an identity output), then
        Levenberg-Marquardt through A and phi. ``method="end_to_end"`` only
        (Algorithm 6 needs phi^-1 of the signal itself).
    batch_size : int or None, default=None
        Rows per batch (None: sized for about 512 MiB of working memory;
        within a batch, on NumPy, Algorithm 1 iterates on blocks of about
        8 MiB of per-row (n, n_0) maps, which runs fastest; see the scaling
        guide).
    n_jobs : int or None, default=None
        Joblib workers the batches are split across (NumPy input only).
    verbose : int, default=0
        Show a progress bar over rows (rows done, rate, time left) when positive.
    random_state : int, RandomState instance or None, default=None
        Seeds the default support estimator where it is gradient descent; the
        Oracle itself is deterministic.

    Attributes
    ----------
    generator_ : ReLUGenerator
    n_components_ : int
    n_features_in_ : int
    support_estimator_ : estimator
        The fitted support estimator (a clone).

    Notes
    -----
    ``transform(X, supports=S)`` takes the true supports, e.g.
    ``generator.supports(Z)``. With metadata routing enabled
    (``sklearn.set_config(enable_metadata_routing=True)``) and
    ``oracle.set_transform_request(supports=True)``, a Pipeline passes
    ``supports`` through ``pipe.transform(X, supports=S)``.

    Examples
    --------
    >>> import numpy as np
    >>> from skinvert import OracleInverter, make_random_generator
    >>> G = make_random_generator([20, 80, 200, 400], random_state=0)
    >>> Z = np.random.default_rng(1).standard_normal((4, 20))
    >>> X = G.forward(Z)
    >>> Zhat = OracleInverter(G).fit(X).transform(X, supports=G.supports(Z))
    >>> bool(np.allclose(Zhat, Z))
    True
    """

    _parameter_constraints = {
        **BaseInverter._parameter_constraints,
        "method": [StrOptions({"end_to_end", "layerwise"})],
        "gamma": [Interval(Real, 0, None, closed="left")],
        "transform_max_iter": [Interval(Integral, 0, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "support_estimator": [HasMethods(["fit", "transform"]), None],
    }

    def __init__(
        self,
        generator,
        *,
        method="end_to_end",
        gamma=0.0,
        transform_max_iter=30,
        tol=None,
        support_estimator=None,
        measurement=None,
        batch_size=None,
        n_jobs=None,
        verbose=0,
        random_state=None,
    ):
        super().__init__(
            generator, measurement=measurement, batch_size=batch_size, n_jobs=n_jobs,
            verbose=verbose, random_state=random_state,
        )
        self.method = method
        self.gamma = gamma
        self.transform_max_iter = transform_max_iter
        self.tol = tol
        self.support_estimator = support_estimator

    def _check_measurement_supported(self, generator):
        if self.method != "end_to_end":
            raise ValueError(
                "OracleInverter(method='layerwise') needs phi^-1 of the signal itself and does "
                "not support a measurement; use method='end_to_end'."
            )

    def _fit_extra(self, X, rng):
        if self.support_estimator is None:
            act = self.generator_.activation
            if not self.generator_.is_dense and self.generator_.layerwise_obstacle():
                # No layer-wise pursuit here (e.g. a DCGAN's contracting layer).
                from ._hybrid import HybridInverter

                est = HybridInverter(
                    self.generator_, measurement=self.measurement, random_state=self.random_state
                )
            elif self.measurement is not None and not act.piecewise_linear:
                # The pursuits see through A only for piecewise-linear outputs.
                est = GradientDescentInverter(
                    self.generator_, measurement=self.measurement, random_state=self.random_state
                )
            else:
                est = LatentPursuitInverter(self.generator_, measurement=self.measurement)
        else:
            est = clone(self.support_estimator)
            if "generator" in est.get_params():
                est.set_params(generator=self.generator_)
        self.support_estimator_ = est.fit(X)

    def _bytes_per_sample(self, generator, itemsize, host=False):
        sizes = generator.layer_sizes
        if self.method == "end_to_end":
            if host:
                # On NumPy the per-row (n, n_0) maps are built on blocks of
                # rows (host_block_rows), a fixed cost: what grows with the
                # batch is each row's vectors (measured 17 KiB per row on
                # fashion-mnist-fc against 21 KiB estimated).
                return itemsize * 2 * sum(sizes)
            return itemsize * (5 * sizes[-1] * sizes[0] + 4 * sum(sizes))
        # Layer-wise (Algorithm 1 one layer at a time): per layer x_i of k
        # unknowns and m equations, the row-weighted W^T diag(w) W (built
        # through an (m, k) product) while the product is alive, or the
        # masked system and its factorization (about 5 k^2 / 2 in all).
        # Measured within 1.5x (benchmarks/memory.py --estimates).
        return itemsize * max(
            max(m * k + k * k, 5 * k * k // 2) for k, m in zip(sizes[:-1], sizes[1:])
        )

    def transform(self, X, supports=None, return_info=False):
        """Recover the latent codes of X on the given supports.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Signals; NaN marks a missing entry.
        supports : list of arrays of shape (n_samples, n_i), or array of shape \
(n_samples, sum(n_1..n_L)), default=None
            The supports of the hidden layers 1..L (boolean, or integer or
            float holding only 0 and 1), as returned by
            ``generator.supports(Z)``, or those arrays concatenated along
            axis 1 (a sample-aligned form that cross-validation can split).
            None estimates them with ``support_estimator_`` (see
            ``support_estimator``).
        return_info : bool, default=False
            Also return per-row diagnostics, as in
            :meth:`LatentPursuitInverter.transform` (``stage``: ``"oracle"``,
            or ``"oracle on <estimator>'s supports"``; ``n_iter``: -1).

        Returns
        -------
        Z : array of shape (n_samples, n_components)
            The latent codes, in X's namespace, device and dtype.
        info : Bunch
            Only with ``return_info=True``.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        name, est_report = type(self).__name__, None
        if supports is None:
            est = self.support_estimator_
            est_name = type(est).__name__
            if isinstance(est, BaseInverter):
                try:
                    Z0, est_report = est._transform_report(X, validated=True)
                except ValueError as exc:
                    raise ValueError(
                        f"{name} got no supports and estimates them with {est_name}: {exc}"
                    ) from exc
            else:
                Z0 = est.transform(X)
            # (HybridInverter's batches carry info columns after the codes.)
            supports = self.generator_.supports(Z0[:, : self.generator_.n_latent])
        supports = self._check_supports(X, supports)
        Z, report = self._transform_report(X, validated=True, supports=supports)
        if est_report is not None:
            report.absorb(est_report, prefix=f"the support estimate ({est_name}): ")
            report.stage[:] = f"oracle on {est_name}'s supports"
            name = f"{name} (supports estimated by {est_name}: transform got none)"
        self._warn(report, name)
        return (Z, report.info()) if return_info else Z

    def _stage_param(self, stage):
        head = "the support estimate ("
        if stage.startswith(head):
            inner = stage.split("): ", 1)[1]
            est = self.support_estimator_
            param = est._stage_param(inner) if isinstance(est, BaseInverter) else None
            return f"support_estimator's {param}" if param else "support_estimator's limits"
        return "transform_max_iter"

    def _check_supports(self, X, supports):
        sizes = self.generator_.layer_sizes[1:-1]
        n = X.shape[0]
        shapes = [(n, s) for s in sizes]
        if not isinstance(supports, (list, tuple)):
            scalar = isinstance(supports, (str, bytes, Integral, Real))
            if scalar or not hasattr(supports, "shape"):
                raise TypeError(
                    f"supports must be a list of {len(sizes)} boolean arrays of shapes {shapes} "
                    f"or one array of shape ({n}, {sum(sizes)}); got {type(supports).__name__}."
                )
            if len(supports.shape) != 2 or supports.shape[1] != sum(sizes):
                raise ValueError(
                    "supports must be a list of arrays of shapes "
                    f"{shapes} or one array of shape (n_samples, "
                    f"{sum(sizes)}); got an array of shape {tuple(supports.shape)}."
                )
            parts, start = [], 0
            for s in sizes:
                parts.append(supports[:, start : start + s])
                start += s
            supports = parts
        if len(supports) != len(sizes):
            raise ValueError(
                f"supports must hold {len(sizes)} arrays (one per hidden layer), got "
                f"{len(supports)}."
            )
        return [_check_support(S, i, (n, s)) for i, (S, s) in enumerate(zip(supports, sizes))]

    def _transform_batch(self, Y, obs, xp, state, supports):
        _, dev = namespace_of(Y)
        masks = [_as_mask(xp.asarray(S, device=dev), Y.dtype, xp) for S in supports]
        batch = Batch(Y, obs, state.weights, state.biases, self.generator_.activation, xp,
                      measurement=state.measurement)
        Z, rows = _oracle_inversion(batch, masks, method=self.method, gamma=self.gamma,
                                    max_iter=self.transform_max_iter, tol=self.tol,
                                    return_rows=True)
        if rows is not None:
            state.flag("the Oracle's Gauss-Newton", rows, xp)
        state.record.stage[:] = "oracle"
        return Z


def _check_support(S, i, shape):
    """One layer's support: a boolean, or 0/1 integer or float, array of ``shape``."""
    where = f"supports[{i}] (layer {i + 1})"
    if isinstance(S, (str, bytes)) or np.isscalar(S) or S is None:
        raise TypeError(f"{where} must be an array of shape {shape}, got {type(S).__name__}.")
    if not hasattr(S, "shape") or not hasattr(S, "dtype"):
        S = np.asarray(S)
        if S.dtype == object:
            raise TypeError(f"{where} must be a rectangular boolean array of shape {shape}.")
    if tuple(S.shape) != tuple(shape):
        raise ValueError(f"{where} must have shape {shape}, got {tuple(S.shape)}.")
    xp, _ = get_namespace(S) if not isinstance(S, np.ndarray) else (None, None)
    if isinstance(S, np.ndarray):
        kind = S.dtype.kind
        if kind not in "biuf":
            raise TypeError(
                f"{where} must be boolean (or integer / float holding only 0 and 1), got "
                f"dtype {S.dtype}."
            )
        ok = kind == "b" or bool(np.all((S == 0) | (S == 1)))
    else:
        if xp.isdtype(S.dtype, "bool"):
            ok = True
        elif xp.isdtype(S.dtype, ("integral", "real floating")):
            ok = bool(xp.all((S == 0) | (S == 1)))
        else:
            raise TypeError(f"{where} must be boolean, got dtype {S.dtype}.")
    if not ok:
        raise ValueError(
            f"{where} must hold only 0/1 (or True/False) values; got other values "
            "(e.g. NaN, 0.5, 2 or -1)."
        )
    return S


def _as_mask(S, dtype, xp):
    """A 0/1 float mask of ``dtype`` from a boolean or numeric support array."""
    if S.dtype != xp.bool:
        S = S != 0
    return xp.astype(S, dtype)
