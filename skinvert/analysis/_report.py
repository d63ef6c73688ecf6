"""``invertibility_report``: the paper's theorems evaluated for a batch of samples."""

import functools
import math
import time
import warnings

import numpy as np
from sklearn.utils import check_random_state

from .._array_api import single_threaded_blas, to_numpy
from .._theory import BP_CONSTANT
from ._conditions import evaluate
from ._persample import layer_quantities, size_only_quantities
from ._report_class import InvertibilityReport

__all__ = ["invertibility_report", "invertibility_report_from_supports"]



def _noise_std(noise_std, sigma):
    """``noise_std``, or the deprecated ``sigma`` (renamed in 0.2, removed in 0.4)."""
    if isinstance(sigma, str) and sigma == "deprecated":
        return noise_std
    warnings.warn(
        "invertibility_report(sigma=...) was renamed noise_std=... in skinvert 0.2 (the name "
        "the inverters use) and will be removed in 0.4.",
        FutureWarning,
        stacklevel=4,
    )
    if noise_std is not None:
        raise ValueError("Pass noise_std only; sigma is its deprecated alias.")
    return sigma


def _single_threaded(func):
    """Run on one BLAS thread: the report works on stacks of small matrices,
    where threaded OpenBLAS was measured 13x slower on a busy 2-core machine
    (512 signals of the shipped generator: 102 s vs 7.9 s)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with single_threaded_blas(np):
            return func(*args, **kwargs)

    return wrapper


@_single_threaded
def invertibility_report(generator, Z, *, epsilon=None, noise_std=None, lipschitz_inverse=None,
                         worst_case=True, max_combinations=20_000, random_state=0,
                         max_gram_columns=2048, sigma="deprecated"):
    """Check the paper's uniqueness and stability conditions for latent codes ``Z``.

    Parameters
    ----------
    generator : ReLUGenerator
        The generator ``G``.
    Z : array-like of shape (n_samples, n_latent)
        Latent codes (any array namespace; the analysis runs in float64 NumPy).
        Their supports ``S_i = {k : x_i[k] > 0}`` are those of ``G``'s forward pass.
    epsilon : float, default=None
        Noise level ``||e||_2 <= epsilon`` for Theorem 2's error bounds (eq. 7,
        29-31). ``None`` skips them.
    noise_std : float, default=None
        Noise standard deviation ``sigma`` for Theorem 3's Oracle error
        interval (the ``noise_std`` of the inverters). ``None`` skips it.
    lipschitz_inverse : float, array-like of shape (n_samples,) or None, default=None
        ``ell``, the Lipschitz constant of phi^-1 in eq. 7. ``None``: the
        activation's global constant; where that is infinite (tanh, sigmoid),
        the local constant ``max_k 1 / phi'(u_k)`` at each clean signal's
        pre-activation ``u``, which is an estimate (valid as epsilon -> 0).
    worst_case : bool, default=True
        Also evaluate Theorems 1 and 2 exactly as stated, with sub-spark,
        sub-rank and ``mu_s`` over all row subsets (Definitions 1-3), which are
        bounded rather than computed (see :class:`InvertibilityReport`).
    max_combinations : int, default=20_000
        Budget of the exhaustive searches (spark of ``W_L``, Kruskal rank of
        the rows of ``W_0``).
    random_state : int, RandomState instance or None, default=0
        Seed of the randomized searches.
    max_gram_columns : int, default=2048
        Widest layer (``n_j`` columns of ``W_j``) whose per-sample Gram
        matrices ``A_j^T A_j`` (``n_j x n_j``, one eigen-decomposition per
        sample) are computed. A wider layer (e.g. the 6272-unit layer of a
        DCGAN) gets only what its sizes prove, labelled in ``notes``: its
        rank is at most its number of rows (``rank`` is -1, not computed,
        and ``rank_upper`` holds the bound), so full column rank, Theorem 1
        at the support and Theorem 3's ``lambda_min`` are decided where the
        layer has fewer rows than columns; its coherence, sub-spark and
        ``mu_s`` are NaN and their verdicts unknown.
    sigma : float or None
        Deprecated alias of ``noise_std`` (FutureWarning); removed in 0.4.

    Returns
    -------
    report : InvertibilityReport
        Arrays per sample and layer, and a summary through ``print(report)``.

    Raises
    ------
    ValueError
        If a layer's dense matrix does not fit in memory (the message names
        the layer): the analysis needs every ``W_j``.

    See Also
    --------
    invertibility_report_from_supports : The same from (estimated) supports.

    Notes
    -----
    Conditions checked (column ``j`` of each array is the recovery of ``x_j``
    from ``x_{j+1}``, ``x_0 = z``, ``x_{L+1}`` the signal):

    * ``corollary1`` -- Corollary 1: ``s_L < (n + 1)/2``,
      ``s_i < (s_{i+1} + 1)/2``, ``s_1 >= n_0``. Exact, but it assumes iid
      weights.
    * ``theorem1`` -- Theorem 1 as stated: (i) ``s_L < spark(W_L)/2``,
      (ii) ``s_i < sub-spark(W_i, s_{i+1})/2`` (Definition 1), (iii)
      ``sub-rank(W_0, s_1) = n_0`` (Definition 2).
    * ``theorem1_at_support`` -- the conditions the proof of Theorem 1 uses
      (Appendix A, eq. 20), at the sample's own supports:
      ``s_j < spark(W_j^{S_{j+1}})/2`` or ``W_j^{S_{j+1}}`` of full column rank
      (then ``x_j`` is unique among all vectors, as in (iii)); for ``z``,
      ``rank(W_0^{S_1}) = n_0``. Implied by ``theorem1``, so weaker and still
      sufficient for uniqueness.
    * ``theorem2`` -- Theorem 2's coherence condition
      ``s_i < 1 / (3 mu_{s_{i+1}}(W_i))`` (Definition 3) for ``i = 1..L``, and
      ``varphi = lambda_min((W_0^{S_1})^T W_0^{S_1}) > 0`` for ``z``.
    * ``theorem2_at_support`` -- the same with ``mu(W_i^{S_{i+1}})`` at the
      sample's supports, which is what Lemma 2 is applied to in Appendix C
      (noiseless case, where estimated and true supports agree).

    Theorem 2's latent bound (eq. 7) is ``||z_hat - z|| < epsilon_1 / sqrt(varphi)``
    with ``epsilon_{L+1} = ell epsilon`` and
    ``epsilon_i = (3 + sqrt 1.5) sqrt(s_i) / min_j ||w_{i,j}^{S_{i+1}}|| epsilon_{i+1}``
    (eq. 29-31), and Theorem 3's Oracle interval (eq. 21-22) is
    ``noise_std^2 s_i / prod_{j>=i} lambda_max(Wbar_j^T Wbar_j) <= E||x_hat_i - x_i||^2
    <= noise_std^2 s_i / prod_{j>=i} lambda_min(Wbar_j^T Wbar_j)`` with
    ``Wbar_j = W_j[S_{j+1}, S_j]``, ``Wbar_L = W_L[:, S_L]``,
    ``Wbar_0 = W_0[S_1, :]`` and ``s_0 = n_0`` for ``z``. Theorem 3 assumes
    phi = identity; for another phi it describes noise added before phi.
    """
    Z = to_numpy(Z)
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[1] != generator.n_latent:
        raise ValueError(
            f"Z must have shape (n_samples, {generator.n_latent}), got {Z.shape}.")
    _, hidden = generator.forward(Z, return_hidden=True)
    hidden = [np.asarray(h) for h in hidden]
    supports = [h > 0 for h in hidden]
    ell_kind = "given"
    if lipschitz_inverse is None:
        ell = generator.activation.lipschitz_inverse
        ell_kind = "global"
        if not math.isfinite(ell):
            last = generator.layers[-1].to_namespace(np, dtype=np.float64)
            U = last.forward(hidden[-1] if hidden else Z)
            d = np.asarray(generator.activation.derivative(U, np), dtype=np.float64)
            with np.errstate(divide="ignore"):
                ell = 1.0 / d.min(axis=1)
            ell_kind = "local at the clean signal (estimate)"
        lipschitz_inverse = ell
    rep = invertibility_report_from_supports(
        generator, supports, epsilon=epsilon, noise_std=_noise_std(noise_std, sigma),
        lipschitz_inverse=lipschitz_inverse, worst_case=worst_case,
        max_combinations=max_combinations, random_state=random_state,
        max_gram_columns=max_gram_columns)
    rep.lipschitz_inverse_kind = ell_kind
    return rep


@_single_threaded
def invertibility_report_from_supports(generator, supports, *, epsilon=None, noise_std=None,
                                       lipschitz_inverse=None, worst_case=True,
                                       max_combinations=20_000, random_state=0,
                                       max_gram_columns=2048, sigma="deprecated"):
    """Check the paper's conditions from the hidden-layer supports.

    Use this with supports estimated from signals, e.g.
    ``generator.supports(Z_hat)`` for an inverter's latent estimate ``Z_hat``,
    or the supports a pursuit returns.

    Parameters
    ----------
    generator : ReLUGenerator
        The generator.
    supports : list of array-like of bool, shape (n_samples, n_i), i = 1..L
        ``S_1, ..., S_L`` (non-zero entries count as in the support).
    epsilon : float, default=None
        As in :func:`invertibility_report`.
    noise_std : float, default=None
        As in :func:`invertibility_report`.
    lipschitz_inverse : float, array-like of shape (n_samples,) or None, default=None
        ``ell`` for eq. 7; ``None`` takes the activation's global constant
        (``inf`` for tanh and sigmoid, which makes eq. 7 infinite: pass a
        value, or use :func:`invertibility_report` with the latent codes).
    worst_case : bool, default=True
        As in :func:`invertibility_report`.
    max_combinations : int, default=20_000
        As in :func:`invertibility_report`.
    random_state : int, RandomState instance or None, default=0
        As in :func:`invertibility_report`.
    max_gram_columns : int, default=2048
        As in :func:`invertibility_report`.
    sigma : float or None
        Deprecated alias of ``noise_std`` (FutureWarning); removed in 0.4.

    Returns
    -------
    report : InvertibilityReport
        As returned by :func:`invertibility_report`.

    Notes
    -----
    See :func:`invertibility_report` for the conditions and bounds.
    """
    t0 = time.perf_counter()
    noise_std = _noise_std(noise_std, sigma)
    rng = check_random_state(random_state)
    L = generator.n_layers
    sizes = generator.layer_sizes
    if L < 1:
        raise ValueError("The generator has no hidden layer: there is nothing to analyse.")
    if not hasattr(supports, "__len__") or len(supports) != L:
        raise ValueError(f"supports must be a list of {L} boolean arrays, one per hidden layer.")
    masks = []
    for i, m in enumerate(supports):
        m = np.asarray(to_numpy(m)) != 0
        if m.ndim != 2 or m.shape[1] != sizes[i + 1]:
            raise ValueError(
                f"supports[{i}] must have shape (n_samples, {sizes[i + 1]}), got {m.shape}.")
        masks.append(m)
    N = masks[0].shape[0]
    if any(m.shape[0] != N for m in masks):
        raise ValueError("All supports must have the same number of samples.")
    try:
        Ws = [np.asarray(W, dtype=np.float64) for W in generator.weights]
    except ValueError as exc:
        raise ValueError(f"invertibility_report needs every layer's dense matrix: {exc}") from exc
    s = np.stack([m.sum(axis=1) for m in masks], axis=1).astype(np.int64)

    def quantities(j):
        rows, cols = masks[j] if j < L else None, masks[j - 1] if j else None
        if Ws[j].shape[1] > max_gram_columns:
            return size_only_quantities(Ws[j], rows, cols)
        return layer_quantities(Ws[j], rows, cols)

    q = [quantities(j) for j in range(L + 1)]
    status, est, notes, quant = evaluate(Ws, sizes, s, q, worst_case=worst_case,
                                         max_combinations=max_combinations, rng=rng)
    stack = lambda key: np.stack([qq[key] for qq in q], axis=1)  # noqa: E731
    rank = stack("rank")
    quant["rank"] = np.where(np.isnan(rank), -1, rank).astype(np.int64)  # -1: not computed
    quant["rank_upper"] = np.stack(
        [qq.get("rank_upper", qq["rank"]) for qq in q], axis=1).astype(np.int64)
    quant["min_column_norm"] = stack("min_norm")
    quant["varphi"] = q[0]["lam_min_A"]
    quant["lambda_min"], quant["lambda_max"] = stack("lam_min"), stack("lam_max")

    if lipschitz_inverse is None:
        lipschitz_inverse = generator.activation.lipschitz_inverse
    ell = np.broadcast_to(np.asarray(lipschitz_inverse, dtype=np.float64), (N,)).copy()
    quant["lipschitz_inverse"] = ell
    if epsilon is not None:
        quant.update(_theorem2_bounds(float(epsilon), ell, s, quant))
    if noise_std is not None:
        quant.update(_theorem3_bounds(float(noise_std), s, sizes[0], quant))
    return InvertibilityReport(
        layer_sizes=sizes, sparsity=s, status=status, estimated=est, notes=notes,
        quantities=quant, epsilon=epsilon, noise_std=noise_std,
        elapsed=time.perf_counter() - t0,
        output_activation=generator.activation.name)


def _theorem2_bounds(epsilon, ell, s, quant):
    """eq. 29-31 (``epsilon_i``) and eq. 7 (latent) for every sample."""
    N, L = s.shape
    mn = quant["min_column_norm"]
    eps = ell * epsilon  # epsilon_{L+1}
    layer = np.zeros((N, L))
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(L, 0, -1):
            eps = BP_CONSTANT * np.sqrt(s[:, i - 1]) / mn[:, i] * eps
            eps = np.where(np.isnan(eps), np.inf, eps)
            layer[:, i - 1] = eps
        z = np.where(quant["varphi"] > 0, eps / np.sqrt(quant["varphi"]), np.inf)
    z = np.where(np.isnan(z), np.inf, z)
    return {"layer_error_bound": layer, "latent_error_bound": z}


def _theorem3_bounds(noise_std, s, n0, quant):
    """eq. 21 and 22: the Oracle's expected squared error interval."""
    N, L = s.shape
    lmin, lmax = quant["lambda_min"], quant["lambda_max"]
    card = np.concatenate([np.full((N, 1), n0), s], axis=1).astype(np.float64)
    lo = np.zeros((N, L + 1))
    up = np.full((N, L + 1), np.inf)
    pmin = np.ones(N)
    pmax = np.ones(N)
    bad = np.zeros(N, dtype=bool)  # a rank-deficient Wbar_j above: no interval
    for i in range(L, -1, -1):
        pmin, pmax = pmin * lmin[:, i], pmax * lmax[:, i]
        bad |= lmin[:, i] <= 0
        with np.errstate(divide="ignore", invalid="ignore"):
            lo[:, i] = np.where(bad, 0.0, noise_std**2 * card[:, i] / pmax)
            up[:, i] = np.where(bad, np.inf, noise_std**2 * card[:, i] / pmin)
        zero = card[:, i] == 0  # an empty layer is estimated exactly (as 0)
        lo[zero, i], up[zero, i] = 0.0, 0.0
    return {"oracle_mse_lower": lo[:, 1:], "oracle_mse_upper": up[:, 1:],
            "oracle_latent_mse_lower": lo[:, 0], "oracle_latent_mse_upper": up[:, 0]}
