"""Batched per-sample quantities of the row-supported matrices of a generator.

For a sample with supports ``S_1, ..., S_L`` the layer ``x_j`` (``x_0 = z``)
is recovered from the next one through ``A_j = W_j^{S_{j+1}}`` (the rows
``S_{j+1}`` of ``W_j``; all rows of ``W_L``). Everything here is computed from
the Gram matrices ``A_j^T A_j = W_j^T diag(1_{S_{j+1}}) W_j``, stacked over
samples (chunks of samples, no loop over single samples), and from the
principal sub-matrices ``G[S_j, S_j] = Wbar_j^T Wbar_j`` of Theorem 3, grouped
by support size so that each group is one batched ``eigvalsh``.
"""

import numpy as np

from ._coherence import coherence_from_gram

__all__ = ["layer_quantities", "principal_extreme_eigs", "size_only_quantities"]

_EPS = np.finfo(np.float64).eps
# Bytes of stacked Gram matrices per chunk of samples.
_CHUNK_BYTES = 64 * 2**20


def _rank_threshold(lam_max, shape):
    """Eigenvalues of A^T A at or below this count as zero (numerical rank).

    Rounding puts the zero eigenvalues of a Gram matrix near
    ``max(shape) * eps * lambda_max``; ten times that is the threshold (a
    singular-value ratio of about ``sqrt(10 max(shape) eps)``, ~1e-6).
    """
    return 10.0 * max(shape) * _EPS * lam_max


def principal_extreme_eigs(G, masks, shape_rows):
    """Smallest and largest eigenvalue of ``G[S, S]`` for each sample's mask ``S``.

    Parameters
    ----------
    G : ndarray of shape (n, n) (shared) or (n_samples, n, n) (per sample)
    masks : bool ndarray of shape (n_samples, n)
    shape_rows : int
        Rows of the underlying matrix (for the rank threshold).

    Returns
    -------
    lam_min, lam_max : ndarray of shape (n_samples,)
        ``lam_min`` is set to 0 where ``G[S, S]`` is numerically singular
        (``Wbar`` rank deficient); both are 0 for an empty support.
    """
    n_samples, n = masks.shape
    lam_min = np.zeros(n_samples)
    lam_max = np.zeros(n_samples)
    sizes = masks.sum(axis=1)
    order = np.argsort(~masks, axis=1, kind="stable")  # support indices first
    for s in np.unique(sizes):
        if s == 0:
            continue
        sel = np.flatnonzero(sizes == s)
        idx = order[sel, :s]
        if G.ndim == 2:
            sub = G[idx[:, :, None], idx[:, None, :]]
        else:
            sub = G[sel[:, None, None], idx[:, :, None], idx[:, None, :]]
        w = np.linalg.eigvalsh(sub)
        lo, hi = w[:, 0], w[:, -1]
        lo = np.where(lo <= _rank_threshold(hi, (shape_rows, s)), 0.0, lo)
        lam_min[sel] = lo
        lam_max[sel] = hi
    return lam_min, lam_max


def _gram_stats(G, shape):
    """Rank, lambda_min, lambda_max, coherence, min column norm of stacked Grams (c, n, n)."""
    w = np.linalg.eigvalsh(G)
    top = w[:, -1]
    thr = _rank_threshold(top, shape)
    rank = np.count_nonzero(w > thr[:, None], axis=1)
    lam_min = np.where(w[:, 0] <= thr, 0.0, w[:, 0])
    diag = np.diagonal(G, axis1=1, axis2=2)
    min_norm = np.sqrt(np.maximum(diag.min(axis=1), 0.0))
    return rank, lam_min, top, coherence_from_gram(G), min_norm


def size_only_quantities(W, rows_mask, cols_mask):
    """The quantities of :func:`layer_quantities` that need no Gram matrix.

    For a layer too wide for per-sample ``n_in x n_in`` Gram matrices: the
    column norms of ``A`` (one product with the squared weights) and what the
    sizes prove: ``rank(A) <= min(n_rows, n_in)`` (``rank`` is NaN and
    ``rank_upper`` holds the bound), ``lambda_min(A^T A) = 0`` where
    ``n_rows < n_in`` and ``lambda_min(Wbar^T Wbar) = 0`` where
    ``|S_j| > n_rows``; NaN (not computed) elsewhere, and for ``coherence``
    and ``lam_max``.
    """
    n_out, n_in = W.shape
    n_samples = (rows_mask if rows_mask is not None else cols_mask).shape[0]
    W2 = np.square(W)
    if rows_mask is None:
        n_rows = np.full(n_samples, float(n_out))
        sq = np.broadcast_to(W2.sum(axis=0), (n_samples, n_in))
    else:
        n_rows = rows_mask.sum(axis=1).astype(np.float64)
        sq = rows_mask.astype(np.float64) @ W2
    n_cols = np.full(n_samples, float(n_in)) if cols_mask is None else cols_mask.sum(axis=1)
    nan = np.full(n_samples, np.nan)
    return {
        "rank": nan.copy(), "rank_upper": np.minimum(n_rows, n_in),
        "lam_min_A": np.where(n_rows < n_in, 0.0, np.nan), "coherence": nan.copy(),
        "min_norm": np.sqrt(np.maximum(sq.min(axis=1), 0.0)), "n_rows": n_rows,
        "lam_min": np.where(n_cols > n_rows, 0.0, np.nan), "lam_max": nan.copy(),
        "gram": False,
    }


def layer_quantities(W, rows_mask, cols_mask):
    """Per-sample quantities of ``A = W^{S_{j+1}}`` and ``Wbar = W[S_{j+1}, S_j]``.

    Parameters
    ----------
    W : ndarray of shape (n_out, n_in), float64
        ``W_j``.
    rows_mask : bool ndarray of shape (n_samples, n_out) or None
        ``S_{j+1}``; ``None`` for the last layer (all rows).
    cols_mask : bool ndarray of shape (n_samples, n_in) or None
        ``S_j``; ``None`` for the first layer (all of z).

    Returns
    -------
    out : dict of ndarray of shape (n_samples,)
        ``rank`` (of ``A``), ``lam_min_A`` (of ``A^T A``, 0 if singular),
        ``coherence`` (``mu(A)``), ``min_norm`` (smallest column norm of
        ``A``), ``n_rows`` (rows of ``A``), ``lam_min`` and ``lam_max`` (of
        ``Wbar^T Wbar``, Theorem 3).
    """
    n_out, n_in = W.shape
    n_samples = (rows_mask if rows_mask is not None else cols_mask).shape[0]
    out = {k: np.zeros(n_samples) for k in ("rank", "lam_min_A", "coherence", "min_norm",
                                             "n_rows", "lam_min", "lam_max")}
    if rows_mask is None:
        G = W.T @ W
        rank, lam_a, lam_b, mu, mn = _gram_stats(G[None], W.shape)
        out["rank"][:], out["lam_min_A"][:] = rank[0], lam_a[0]
        out["coherence"][:], out["min_norm"][:] = mu[0], mn[0]
        out["n_rows"][:] = n_out
        if cols_mask is None:
            out["lam_min"][:], out["lam_max"][:] = lam_a[0], lam_b[0]
        else:
            out["lam_min"], out["lam_max"] = principal_extreme_eigs(G, cols_mask, n_out)
        return out
    step = max(1, _CHUNK_BYTES // (8 * (n_in * n_in + n_out * n_in)))
    for a in range(0, n_samples, step):
        sl = slice(a, min(a + step, n_samples))
        m = rows_mask[sl].astype(np.float64)
        G = np.matmul((W[None] * m[:, :, None]).transpose(0, 2, 1), W)  # (c, n_in, n_in)
        n_rows = m.sum(axis=1)
        rank, lam_a, lam_b, mu, mn = _gram_stats(G, (n_out, n_in))
        empty = n_rows == 0
        rank[empty], lam_a[empty], mn[empty] = 0, 0.0, 0.0
        mu = np.where(empty, np.inf, mu)
        out["rank"][sl], out["lam_min_A"][sl] = rank, lam_a
        out["coherence"][sl], out["min_norm"][sl], out["n_rows"][sl] = mu, mn, n_rows
        if cols_mask is None:
            out["lam_min"][sl], out["lam_max"][sl] = lam_a, lam_b
        else:
            out["lam_min"][sl], out["lam_max"][sl] = principal_extreme_eigs(
                G, cols_mask[sl], n_out)
    return out
