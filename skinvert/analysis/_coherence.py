"""Mutual coherence (paper, eq. 2) and the sub-matrix coherence ``mu_s`` (Definition 3)."""

import itertools
import math

import numpy as np
from sklearn.utils import check_random_state

from ._results import _make_result, check_budget, check_matrix, check_s

__all__ = ["mutual_coherence", "mutual_coherence_sub", "welch_bound"]

# Elements of the (rows x pairs) work arrays per chunk in the pair scans.
_CHUNK_ELEMENTS = 2_000_000


def coherence_floor(mu, n):
    """``ceil(1 + 1/mu)`` (rounding-safe), in ``[1, n + 1]``, elementwise.

    The coherence bound on the spark, ``spark(W) >= 1 + 1/mu(W)`` (paper,
    section 2.1): the one definition used by :func:`spark` and the
    per-sample conditions.
    """
    mu = np.asarray(mu, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.ceil((1.0 + 1.0 / mu) * (1.0 - 1e-9))
    f = np.where(mu == 0, n + 1, f)
    f = np.where(np.isinf(mu), 1, f)
    return np.minimum(f, n + 1)


def mutual_coherence(W):
    """Mutual coherence of the columns of ``W`` (paper, eq. 2).

    Parameters
    ----------
    W : array-like of shape (n_rows, n_cols)
        The matrix.

    Returns
    -------
    mu : float
        ``max_{i != j} |w_i^T w_j| / (||w_i||_2 ||w_j||_2)``, in ``[0, 1]``;
        ``0.0`` for a single non-zero column; ``inf`` if a column is zero (its angle
        is undefined; with ``inf`` every bound that uses ``mu`` degrades to its
        trivial value, e.g. ``spark >= 1 + 1/mu = 1``).

    Notes
    -----
    Exact, in ``O(n_rows n_cols^2)``. ``mu`` is invariant to scaling and
    permuting the columns, and for ``n_cols > n_rows`` it is at least the
    Welch bound ``sqrt((n_cols - n_rows) / (n_rows (n_cols - 1)))``
    (:func:`welch_bound`). It bounds the spark from below:
    ``spark(W) >= 1 + 1 / mu(W)``.

    References
    ----------
    Aberdam, Simon & Elad (2020), eq. 2; Donoho & Elad (2003).

    Examples
    --------
    >>> import numpy as np
    >>> from skinvert.analysis import mutual_coherence
    >>> mutual_coherence(np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))  # doctest: +ELLIPSIS
    0.7071...
    """
    W = check_matrix(W)
    return _coherence(W)


def _coherence(W):
    norms = np.sqrt(np.einsum("ij,ij->j", W, W))
    if np.any(norms == 0):
        return math.inf
    if W.shape[1] < 2:
        return 0.0
    Wn = W / norms
    C = np.abs(Wn.T @ Wn)
    np.fill_diagonal(C, 0.0)
    return float(min(C.max(), 1.0))


def coherence_from_gram(G):
    """``mu`` of the matrices whose (stacked) Gram matrices are ``G`` (..., n, n).

    ``inf`` where a diagonal entry is zero (a zero column), ``0`` for n < 2.
    """
    n = G.shape[-1]
    d = np.sqrt(np.maximum(np.diagonal(G, axis1=-2, axis2=-1), 0.0))
    zero = np.any(d == 0, axis=-1)
    if n < 2:
        return np.where(zero, np.inf, 0.0)
    d = np.where(d == 0, 1.0, d)
    C = np.abs(G) / d[..., :, None] / d[..., None, :]
    idx = np.arange(n)
    C[..., idx, idx] = 0.0
    mu = np.minimum(C.max(axis=(-2, -1)), 1.0)
    return np.where(zero, np.inf, mu)


def welch_bound(n_rows, n_cols):
    """The Welch lower bound on the coherence of any ``n_rows x n_cols`` matrix.

    Parameters
    ----------
    n_rows, n_cols : int
        The shape ``(m, n)``.

    Returns
    -------
    bound : float
        ``sqrt((n - m) / (m (n - 1)))`` when ``n > m``, else ``0.0``
        (``m >= n`` orthonormal columns exist).

    Notes
    -----
    Every ``m x n`` matrix ``W`` with non-zero columns has
    ``mutual_coherence(W) >= welch_bound(m, n)`` (Welch, 1974; Strohmer &
    Heath, 2003).
    """
    m, n = int(n_rows), int(n_cols)
    if n <= m or n < 2:
        return 0.0
    return math.sqrt((n - m) / (m * (n - 1)))


def mutual_coherence_sub(W, s, *, max_combinations=20_000, n_trials=32, random_state=None):
    """The sub-matrix coherence ``mu_s(W)`` (paper, Definition 3, eq. 6).

    Parameters
    ----------
    W : array-like of shape (n_rows, n_cols)
        The matrix.
    s : int
        The number of rows kept, ``1 <= s <= n_rows``.
    max_combinations : int, default=20_000
        Largest number of row subsets ``C(n_rows, s)`` searched exhaustively.
    n_trials : int, default=32
        Random row subsets tried when the search is not exhaustive.
    random_state : int, RandomState instance or None, default=None
        Seed of the random subsets.

    Returns
    -------
    mu_s : BoundedValue
        ``kind="exact"`` after an exhaustive search (or when ``s == n_rows``,
        where ``mu_s = mu``, or when a column has ``s`` zero entries, where
        ``mu_s = inf``); otherwise ``kind="lower_bound"`` with ``value`` the
        largest coherence found, and ``upper`` the analytic bound below.

    Notes
    -----
    ``mu_s(W) = max_{|S| = s} mu(W^S)`` where ``W^S`` keeps the rows ``S``
    (Definition 3). It enters Theorem 2 as ``s_i < 1 / (3 mu_{s_{i+1}}(W_i))``.

    Without exhaustive search:

    * lower bound (a maximum is bounded below by any candidate): for every
      column pair ``(a, b)`` the rows are ranked by
      ``a_k b_k / (a_k^2 + b_k^2)`` and the top (or bottom) ``s`` rows are
      kept, which makes the pair nearly parallel (or anti-parallel); random
      subsets are tried as well. Each candidate is a real subset, so the
      coherence found is attained.
    * upper bound: for each pair, ``|a_S^T b_S|`` is at most the sum of the
      ``s`` largest positive (or negative) products ``a_k b_k``, and
      ``||a_S||^2`` is at least the sum of the ``s`` smallest ``a_k^2``;
      the ratio, clipped to 1, bounds the pair's cosine over all ``S``.
    """
    W = check_matrix(W)
    m, n = W.shape
    s = check_s(s, m)
    budget = check_budget(max_combinations)
    if s == m:
        mu = _coherence(W)
        return _make_result(mu, mu, best=mu, side="lower", method="all rows: mu(W)")
    if np.any(np.count_nonzero(W == 0, axis=0) >= s):
        return _make_result(
            math.inf, math.inf, best=math.inf, side="lower",
            method="a column has s zero entries: some W^S has a zero column",
        )
    if n < 2:
        return _make_result(0.0, 0.0, best=0.0, side="lower", method="one column")
    if math.comb(m, s) <= budget:
        best = 0.0
        for rows in _row_subset_batches(m, s, max(1, _CHUNK_ELEMENTS // (s * n + n * n))):
            Ws = W[rows]  # (batch, s, n)
            G = np.swapaxes(Ws, 1, 2) @ Ws
            best = max(best, float(coherence_from_gram(G).max()))
        return _make_result(best, best, best=best, side="lower",
                            method=f"exhaustive over C({m}, {s}) row subsets")
    lower, upper = coherence_sub_bounds(W, [s])
    lower, upper = float(lower[0]), float(upper[0])
    rng = check_random_state(random_state)
    if n_trials > 0:
        rows = np.stack([np.sort(rng.choice(m, s, replace=False)) for _ in range(n_trials)])
        Ws = W[rows]
        lower = max(lower, float(coherence_from_gram(np.swapaxes(Ws, 1, 2) @ Ws).max()))
    return _make_result(
        lower, upper, best=lower, side="lower",
        method="pairwise row selection and random subsets (lower); pairwise top-s bound (upper)",
    )


def _row_subset_batches(m, s, batch):
    """All s-subsets of range(m), as int arrays of shape (<= batch, s)."""
    it = itertools.combinations(range(m), s)
    while True:
        chunk = list(itertools.islice(it, batch))
        if not chunk:
            return
        yield np.asarray(chunk, dtype=np.intp)


def coherence_sub_bounds(W, s_values):
    """Rigorous bounds on ``mu_s(W)`` for several ``s`` at once.

    Parameters
    ----------
    W : ndarray of shape (m, n), float64, no zero-norm column restriction
    s_values : sequence of int in [1, m]

    Returns
    -------
    lower, upper : ndarray of shape (len(s_values),)
        ``lower`` is attained by an explicit row subset found by the pairwise
        ranking heuristic; ``upper`` is the pairwise top-s bound, clipped to 1.
        Where some column has at least ``s`` exact zeros both are ``inf``.
    """
    W = np.asarray(W, dtype=np.float64)
    m, n = W.shape
    s_values = np.asarray(s_values, dtype=np.intp)
    k = s_values - 1
    lower = np.zeros(len(s_values))
    upper = np.zeros(len(s_values))
    ii, jj = np.triu_indices(n, 1)
    step = max(1, _CHUNK_ELEMENTS // m)
    W2 = W * W
    for start in range(0, len(ii), step):
        i, j = ii[start:start + step], jj[start:start + step]
        A2, B2 = W2[:, i], W2[:, j]
        P = W[:, i] * W[:, j]
        # Upper bound: top-s positive / negative products over bottom-s norms.
        pos = np.cumsum(-np.sort(-np.maximum(P, 0.0), axis=0), axis=0)[k]
        neg = np.cumsum(-np.sort(-np.maximum(-P, 0.0), axis=0), axis=0)[k]
        den = np.sqrt(np.cumsum(np.sort(A2, axis=0), axis=0)[k]
                      * np.cumsum(np.sort(B2, axis=0), axis=0)[k])
        with np.errstate(divide="ignore", invalid="ignore"):
            ub = np.where(den > 0, np.maximum(pos, neg) / den, np.inf)
        upper = np.maximum(upper, ub.max(axis=1))
        # Lower bound: rank rows by their share of the pair's correlation.
        with np.errstate(divide="ignore", invalid="ignore"):
            key = np.where(A2 + B2 > 0, P / (A2 + B2), 0.0)
        for sign in (1.0, -1.0):
            order = np.argsort(-sign * key, axis=0)
            cp = np.cumsum(np.take_along_axis(P, order, 0), axis=0)[k]
            ca = np.cumsum(np.take_along_axis(A2, order, 0), axis=0)[k]
            cb = np.cumsum(np.take_along_axis(B2, order, 0), axis=0)[k]
            with np.errstate(divide="ignore", invalid="ignore"):
                cos = np.where((ca > 0) & (cb > 0), np.abs(cp) / np.sqrt(ca * cb), 0.0)
            lower = np.maximum(lower, cos.max(axis=1))
    zeros = np.count_nonzero(W == 0, axis=0).max()
    upper = np.minimum(upper, 1.0)
    lower = np.minimum(lower, upper)
    hit = s_values <= zeros
    lower[hit] = np.inf
    upper[hit] = np.inf
    return lower, upper
