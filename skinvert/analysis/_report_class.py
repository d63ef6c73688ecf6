"""The result object of :func:`invertibility_report`."""

import warnings

import numpy as np

from ._conditions import MET, STATUS_NAMES, UNKNOWN, VIOLATED

__all__ = ["InvertibilityReport"]

_TITLES = {
    "corollary1": "Corollary 1 (iid weights)",
    "theorem1": "Theorem 1 (sub-spark/sub-rank)",
    "theorem1_at_support": "Theorem 1 at own supports",
    "theorem2": "Theorem 2 coherence (mu_s)",
    "theorem2_at_support": "Theorem 2 at own supports",
}


class InvertibilityReport:
    """Per-sample, per-layer verdicts of the paper's uniqueness and stability theory.

    Built by :func:`invertibility_report` or
    :func:`invertibility_report_from_supports`; ``print(report)`` gives a
    summary table.

    Parameters
    ----------
    layer_sizes, sparsity, status, estimated, notes, quantities : object
        Stored as the attributes of the same names (see Attributes).
    epsilon, noise_std : float or None
        The noise bound and noise level the report was built for.
    elapsed : float
        Seconds spent building the report.
    output_activation : str
        The generator's output activation phi.

    Attributes
    ----------
    layer_sizes : list of int
        ``[n_0, ..., n_L, n]``.
    n_samples, n_layers : int
        Samples analysed, and ``L``.
    sparsity : ndarray of shape (n_samples, n_layers)
        ``s_i = ||x_i||_0`` for ``i = 1..L`` (column ``i - 1``).
    status : dict of str to ndarray of int8, shape (n_samples, n_layers + 1)
        Proved verdicts per condition (keys: ``conditions``). Column ``j``
        is the recovery of ``x_j`` (``x_0 = z``) from ``x_{j+1}``. Codes:
        ``1`` met (proved from exact values or bounds), ``0`` violated
        (proved), ``-1`` unknown (the proved bounds straddle the threshold).
    estimated : dict of str to ndarray of int8, same shapes
        ``status`` with the unknowns settled by estimates: the value of a
        matrix in general position (which iid Gaussian weights are with
        probability one) clipped to the proved interval, for spark, sub-spark
        and sub-rank; the largest ``mu_s`` found, for Theorem 2.
    notes : dict of str to list of str
        Per condition and layer: what was exact and what was bounded.
    quantities : dict of str to ndarray
        The numbers (also reachable as attributes, e.g. ``report.varphi``):
        ``rank`` (n, L+1) rank of ``A_j = W_j^{S_{j+1}}``, exact (numerical),
        ``-1`` where not computed (a layer wider than ``max_gram_columns``);
        ``rank_upper`` (n, L+1) a proved upper bound (the rank, or
        ``min(rows, n_j)`` where not computed); NaN in any other quantity means
        "not computed" (see ``notes``);
        ``coherence`` (n, L+1) ``mu(A_j)``, exact; ``spark_lower`` /
        ``spark_upper`` (n, L+1) proved bounds on ``spark(A_j)``;
        ``min_column_norm`` (n, L+1); ``varphi`` (n,) ``lambda_min(A_0^T A_0)``;
        ``lambda_min`` / ``lambda_max`` (n, L+1) of ``Wbar_j^T Wbar_j``
        (Theorem 3; ``lambda_min = 0`` marks rank deficiency), exact;
        ``lipschitz_inverse`` (n,); with ``worst_case``: ``sub_spark_lower`` /
        ``sub_spark_upper`` (n, L+1; column L is spark(W_L)), ``sub_rank_lower``
        / ``sub_rank_upper`` (n,), ``mu_s_lower`` / ``mu_s_upper`` (n, L+1;
        column L is mu(W_L)), proved bounds, NaN in column 0 (not used for z);
        with ``epsilon``: ``layer_error_bound`` (n, L)
        ``epsilon_i`` of eq. 29-31 and ``latent_error_bound`` (n,) eq. 7,
        guarantees only where ``theorem2`` is met; with ``noise_std``:
        ``oracle_mse_lower`` / ``oracle_mse_upper`` (n, L) and
        ``oracle_latent_mse_lower`` / ``oracle_latent_mse_upper`` (n,), the
        Theorem 3 interval for ``E||x_hat_i - x_i||^2`` and ``E||z_hat - z||^2``
        (``[0, inf]`` where a ``Wbar_j`` is rank deficient).
    elapsed : float
        Seconds spent building the report.
    """

    conditions = tuple(_TITLES)

    def __init__(self, *, layer_sizes, sparsity, status, estimated, notes, quantities,
                 epsilon, noise_std, elapsed, output_activation):
        self.layer_sizes = list(layer_sizes)
        self.sparsity = sparsity
        self.n_samples, self.n_layers = sparsity.shape
        self.status = status
        self.estimated = estimated
        self.notes = notes
        self.quantities = quantities
        self.epsilon = epsilon
        self.noise_std = noise_std
        self.elapsed = elapsed
        self.output_activation = output_activation
        self.lipschitz_inverse_kind = "given or global"
        self.conditions = tuple(k for k in _TITLES if k in status)

    @property
    def sigma(self):
        """Deprecated alias of ``noise_std`` (FutureWarning); removed in 0.4."""
        warnings.warn(
            "InvertibilityReport.sigma was renamed noise_std in skinvert 0.2 and will be "
            "removed in 0.4.",
            FutureWarning,
            stacklevel=2,
        )
        return self.noise_std

    def __getattr__(self, name):
        q = self.__dict__.get("quantities", {})
        if name in q:
            return q[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def holds(self, condition, *, estimated=False):
        """Per-sample verdict over all layers: met if every layer is met.

        Parameters
        ----------
        condition : str
            One of :attr:`conditions`.
        estimated : bool, default=False
            Use the verdicts with the unknowns settled by estimates.

        Returns
        -------
        status : ndarray of int8, shape (n_samples,)
            ``1`` all layers met, ``0`` some layer violated, ``-1`` otherwise.
        """
        a = (self.estimated if estimated else self.status)[condition]
        out = np.full(a.shape[0], UNKNOWN, dtype=np.int8)
        out[np.all(a == MET, axis=1)] = MET
        out[np.any(a == VIOLATED, axis=1)] = VIOLATED
        return out

    def fraction_met(self, condition, *, estimated=False, layer=None):
        """Fraction of samples meeting ``condition`` (at one ``layer`` or all).

        Parameters
        ----------
        condition : str
            One of :attr:`conditions`.
        estimated : bool, default=False
            Use the verdicts with the unknowns settled by estimates.
        layer : int or None, default=None
            A column of the status arrays; None: every layer must be met.

        Returns
        -------
        fraction : float
            The fraction of samples whose verdict is met.
        """
        if layer is None:
            return float(np.mean(self.holds(condition, estimated=estimated) == MET))
        a = (self.estimated if estimated else self.status)[condition]
        return float(np.mean(a[:, layer] == MET))

    # -- text ---------------------------------------------------------------
    def _layer_name(self, j):
        return "z" if j == 0 else f"x{j}"

    def __str__(self):
        L, N = self.n_layers, self.n_samples
        lines = [
            f"InvertibilityReport: {N} samples, layer sizes {self.layer_sizes}, "
            f"phi={self.output_activation}, {self.elapsed:.2f} s",
            "Column j = recovery of x_j from x_{j+1} (x_0 = z, x_{L+1} = signal). "
            "Proved verdicts; 'est. met' settles unknowns with estimates.",
        ]
        sp = "  ".join(
            f"s{i}: {int(np.median(self.sparsity[:, i - 1]))} "
            f"[{int(self.sparsity[:, i - 1].min())}-{int(self.sparsity[:, i - 1].max())}]"
            f" of {self.layer_sizes[i]}" for i in range(1, L + 1))
        lines.append(f"sparsity median [min-max]: {sp}")
        head = f"{'condition':32s} {'layer':>5s} {'met':>6s} {'viol.':>6s} {'unkn.':>6s} " \
               f"{'est.met':>7s}  basis"
        lines += [head, "-" * len(head)]
        for c in self.conditions:
            st, es = self.status[c], self.estimated[c]
            for j in range(L + 1):
                lines.append(
                    f"{_TITLES[c]:32s} {self._layer_name(j):>5s} {np.mean(st[:, j] == MET):6.1%} "
                    f"{np.mean(st[:, j] == VIOLATED):6.1%} {np.mean(st[:, j] == UNKNOWN):6.1%} "
                    f"{np.mean(es[:, j] == MET):7.1%}  {self.notes[c][j]}")
            h, he = self.holds(c), self.holds(c, estimated=True)
            lines.append(
                f"{_TITLES[c]:32s} {'all':>5s} {np.mean(h == MET):6.1%} "
                f"{np.mean(h == VIOLATED):6.1%} {np.mean(h == UNKNOWN):6.1%} "
                f"{np.mean(he == MET):7.1%}")
        q = self.quantities
        med = lambda a: np.median(a)  # noqa: E731
        lines.append(
            f"varphi = lambda_min(W_0^S1' W_0^S1): median {med(q['varphi']):.3g}; "
            f"mu(A_j) median: " + ", ".join(
                f"{self._layer_name(j)} {med(q['coherence'][:, j]):.3g}" for j in range(1, L + 1)))
        if "latent_error_bound" in q:
            lines.append(
                f"eq. 7 latent bound (epsilon={self.epsilon:g}, "
                f"ell {self.lipschitz_inverse_kind}): median "
                f"{med(q['latent_error_bound']):.3g}, finite for "
                f"{np.mean(np.isfinite(q['latent_error_bound'])):.1%}; a guarantee only where "
                "Theorem 2 holds")
        if "oracle_latent_mse_lower" in q:
            lines.append(
                f"Theorem 3 (noise_std={self.noise_std:g}) E||z_hat - z||^2 in "
                f"[{med(q['oracle_latent_mse_lower']):.3g}, "
                f"{med(q['oracle_latent_mse_upper']):.3g}] (medians); per layer: " + ", ".join(
                    f"x{i} [{med(q['oracle_mse_lower'][:, i - 1]):.3g}, "
                    f"{med(q['oracle_mse_upper'][:, i - 1]):.3g}]" for i in range(1, L + 1)))
        return "\n".join(lines)

    def __repr__(self):
        return (f"<InvertibilityReport: {self.n_samples} samples, layer sizes "
                f"{self.layer_sizes}, conditions {list(self.conditions)}>")

    @staticmethod
    def status_name(code):
        """Name of a status code.

        Parameters
        ----------
        code : int
            ``1``, ``0`` or ``-1``.

        Returns
        -------
        name : str
            ``"met"``, ``"violated"`` or ``"unknown"``.
        """
        return STATUS_NAMES[int(code)]
