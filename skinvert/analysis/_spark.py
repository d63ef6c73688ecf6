"""Spark (paper, section 2.1), sub-spark (Definition 1) and sub-rank (Definition 2).

All three are combinatorial. Each function searches exhaustively when the
number of small linear-algebra checks fits in ``max_combinations`` and
otherwise returns rigorous bounds, labelled as such (see :class:`BoundedValue`).
"""

import itertools
import math

import numpy as np
from sklearn.utils import check_random_state

from ._coherence import _coherence, coherence_floor, coherence_sub_bounds
from ._results import _make_result, check_budget, check_matrix, check_s, rank_tol

__all__ = ["spark", "sub_spark", "sub_rank"]

_BATCH_ELEMENTS = 1_000_000
# Relative size below which an entry of a null-space vector counts as zero.
_NULL_ZERO = 1e-9


def _coherence_floor(mu, n):
    """``ceil(1 + 1/mu)`` made safe against rounding, capped at ``n + 1``, as an int."""
    return int(coherence_floor(mu, n))


def _combinations(n, k, batch):
    it = itertools.combinations(range(n), k)
    while True:
        chunk = list(itertools.islice(it, batch))
        if not chunk:
            return
        yield np.asarray(chunk, dtype=np.intp).reshape(len(chunk), k)


def _dependent(Wn, cols, tol):
    """For each row of ``cols`` (batch, k): are those columns of Wn dependent?"""
    sv = np.linalg.svd(Wn[:, cols].transpose(1, 0, 2), compute_uv=False)
    return sv[:, -1] <= tol if cols.shape[1] <= Wn.shape[0] else np.ones(len(cols), bool)


def _null_candidates(Wn, N, rows, tol):
    """Smallest verified dependent column set from null vectors vanishing on ``rows``.

    ``rows`` (batch, d - 1) picks rows of the null-space basis ``N`` (n, d);
    ``c`` orthogonal to them gives the null vector ``x = N c`` with zeros
    there. Returns the size of the smallest support that passes the direct
    dependency test, or ``inf``.
    """
    d = N.shape[1]
    if d == 1:
        X = N.T
    else:
        # c spans the orthogonal complement of the d - 1 chosen rows of N:
        # the last column of a complete QR factorisation of their transpose.
        Q, _ = np.linalg.qr(N[rows].transpose(0, 2, 1), mode="complete")  # (batch, d, d)
        X = Q[:, :, -1] @ N.T  # (batch, n)
    A = np.abs(X)
    supp = A > _NULL_ZERO * A.max(axis=1, keepdims=True)
    sizes = supp.sum(axis=1)
    for b in np.argsort(sizes, kind="stable"):
        cols = np.flatnonzero(supp[b])[None, :]
        if _dependent(Wn, cols, tol)[0]:
            return int(sizes[b])
    return math.inf


def _null_basis(Wn, r):
    """Orthonormal basis (n, n - r) of the null space of Wn, from its SVD."""
    _, _, Vt = np.linalg.svd(Wn, full_matrices=True)
    return Vt[r:].T


def _spark_bounds(W, budget, n_trials, rng, tol=None):
    """Rigorous ``(lower, upper, method)`` for spark(W), searching within ``budget``."""
    m, n = W.shape
    norms = np.sqrt(np.einsum("ij,ij->j", W, W))
    if np.any(norms == 0):
        return 1, 1, "a zero column"
    Wn = W / norms
    sv = np.linalg.svd(Wn, compute_uv=False)
    if tol is None:
        tol = rank_tol(sv[0], Wn.shape)
    r = int(np.count_nonzero(sv > tol))
    if r == n:
        return n + 1, n + 1, "independent columns (rank = n_cols): n_cols + 1 by convention"
    upper = r + 1
    lower = min(upper, max(2, _coherence_floor(_coherence(Wn), n)))
    d = n - r
    direct_cost = sum(math.comb(n, k) for k in range(lower, upper))
    null_cost = math.comb(n, d - 1)
    if lower == upper:
        return lower, upper, "coherence bound 1 + 1/mu meets rank + 1"
    if null_cost <= budget and null_cost <= direct_cost:
        N = _null_basis(Wn, r)
        best = math.inf
        batch = max(1, _BATCH_ELEMENTS // (d * d + n))
        for rows in _combinations(n, d - 1, batch):
            best = min(best, _null_candidates(Wn, N, rows, tol))
        best = min(best, upper)
        return best, best, f"exhaustive over C({n}, {d - 1}) null-space vectors"
    # Direct search by increasing size: exact if it finds a dependent set
    # or exhausts all sizes below rank + 1; otherwise it raises the lower bound.
    spent = 0
    k = lower
    while k < upper and spent + math.comb(n, k) <= budget:
        batch = max(1, _BATCH_ELEMENTS // (m * k))
        for cols in _combinations(n, k, batch):
            if np.any(_dependent(Wn, cols, tol)):
                return k, k, f"exhaustive over column subsets of size <= {k}"
        spent += math.comb(n, k)
        k += 1
    lower = k
    if lower == upper:
        return lower, upper, f"exhaustive over column subsets of size < {upper} (rank + 1)"
    method = f"lower: coherence and exhaustive search of sizes < {lower}; upper: rank + 1"
    if n_trials > 0 and d > 1:
        rows = np.stack([rng.choice(n, d - 1, replace=False) for _ in range(n_trials)])
        found = _null_candidates(Wn, _null_basis(Wn, r), rows, tol)
        if found < upper:
            upper = found
        method += " and random null-space vectors"
    return lower, upper, method


def spark(W, *, max_combinations=100_000, n_trials=16, random_state=None,
          assume_generic=False):
    """The spark of ``W``: the smallest number of linearly dependent columns.

    Parameters
    ----------
    W : array-like of shape (n_rows, n_cols)
        The matrix.
    max_combinations : int, default=100_000
        Largest number of small rank tests (column subsets, or null-space
        vectors) spent on an exhaustive search.
    n_trials : int, default=16
        Random null-space vectors tried when the search is not exhaustive;
        each one's support is a dependent column set, so an upper bound.
    random_state : int, RandomState instance or None, default=None
        Seed of the random trials.
    assume_generic : bool, default=False
        When the value is not proved, report the value of a matrix in
        general position, ``min(n_rows, n_cols) + 1`` (clipped to the proved
        interval), as ``kind="estimate"`` instead of the upper bound.

    Returns
    -------
    spark : BoundedValue
        ``1`` if a column is zero; ``n_cols + 1`` by convention when all
        columns are independent; otherwise the size of the smallest dependent
        column set, exact or bounded as labelled.

    Notes
    -----
    Proved bounds used: ``spark >= 2`` without zero columns;
    ``spark >= 1 + 1/mu(W)`` (Donoho & Elad, 2003); ``spark <= rank(W) + 1``.
    Columns are normalised first (spark is scale invariant) and the rank uses
    NumPy's ``matrix_rank`` tolerance on the normalised matrix; a column set is
    "dependent" when its smallest singular value is below that tolerance.

    Exact search has two forms, the cheaper is used: all column subsets of
    size ``k`` from the coherence bound upward, or, with a null space of
    dimension ``d = n_cols - rank``, the null vectors vanishing on ``d - 1``
    chosen coordinates (the sparsest null vector is one of them), i.e.
    ``C(n_cols, d - 1)`` candidates: ``d = 1`` makes the spark the support
    size of the single null vector. An iid Gaussian ``m x n`` matrix with
    ``n > m`` has spark ``m + 1`` with probability one (Lemma 1 and
    Corollary 1 of the paper use this).
    """
    W = check_matrix(W)
    rng = check_random_state(random_state)
    lower, upper, method = _spark_bounds(W, check_budget(max_combinations), n_trials, rng)
    generic = min(W.shape) + 1
    return _make_result(lower, upper, best=upper, side="upper", method=method,
                        generic=generic, assume_generic=assume_generic)


def sub_spark(W, s, *, max_combinations=100_000, n_trials=16, random_state=None,
              assume_generic=False):
    """The s-sub-spark: the smallest spark of ``W^S`` over row subsets ``|S| = s``.

    Parameters
    ----------
    W : array-like of shape (n_rows, n_cols)
        The matrix.
    s : int
        Rows kept, ``1 <= s <= n_rows``.
    max_combinations : int, default=100_000
        Budget of small rank tests; exhaustive when ``C(n_rows, s) * n_cols``
        fits (each row subset then gets an equal share for its own spark).
    n_trials : int, default=16
        Random row subsets tried otherwise.
    random_state : int, RandomState instance or None, default=None
        Seed of the random subsets.
    assume_generic : bool, default=False
        Report the general-position value ``min(s, n_cols) + 1`` as an
        ``"estimate"`` when the value is not proved.

    Returns
    -------
    sub_spark : BoundedValue
        The sub-spark, exact or a labelled bound or estimate.

    Notes
    -----
    Definition 1 (eq. 4): ``sub-spark(W, s) = min_{|S| = s} spark(W^S)``. It
    is non-decreasing in ``s`` and ``sub-spark(W, n_rows) = spark(W)``.
    Without exhaustive search: the upper bound is the smallest spark upper
    bound over random subsets (and ``rank(W) + 1``); the lower bound is
    ``1 + 1/mu_s(W)`` with the analytic upper bound on ``mu_s`` of
    :func:`mutual_coherence_sub` (and ``1`` when a column has ``s`` zeros,
    which is then exact). Theorem 1 (ii) requires
    ``s_i < sub-spark(W_i, s_{i+1}) / 2``.
    """
    W = check_matrix(W)
    m, n = W.shape
    s = check_s(s, m)
    budget = check_budget(max_combinations)
    rng = check_random_state(random_state)
    generic = min(s, n) + 1
    kw = dict(side="upper", generic=generic, assume_generic=assume_generic)
    if s == m:
        lo, up, method = _spark_bounds(W, budget, n_trials, rng)
        return _make_result(lo, up, best=up, method="s = n_rows: spark(W); " + method, **kw)
    if np.any(np.count_nonzero(W == 0, axis=0) >= s):
        return _make_result(1, 1, best=1, method="a column has s zeros", **kw)
    n_sub = math.comb(m, s)
    if n_sub * n <= budget:  # each subset's spark costs about n_cols rank tests or more
        share = budget // n_sub
        lo, up = math.inf, math.inf
        for rows in _combinations(m, s, 4096):
            for S in rows:
                a, b, _ = _spark_bounds(W[S], share, 0, rng)
                lo, up = min(lo, a), min(up, b)
        return _make_result(lo, up, best=up,
                            method=f"all C({m}, {s}) row subsets, each spark searched", **kw)
    _, mu_up = coherence_sub_bounds(W, [s])
    lower = max(2, _coherence_floor(float(mu_up[0]), n))
    sv = np.linalg.svd(W / np.linalg.norm(W, axis=0), compute_uv=False)
    upper = int(np.count_nonzero(sv > rank_tol(sv[0], W.shape))) + 1
    share = budget // max(1, n_trials)
    for _ in range(n_trials):
        S = np.sort(rng.choice(m, s, replace=False))
        upper = min(upper, _spark_bounds(W[S], share, 0, rng)[1])
    lower = min(lower, upper)
    return _make_result(lower, upper, best=upper, method=(
        "lower: 1 + 1/mu_s with the pairwise mu_s upper bound; "
        "upper: random row subsets and rank(W) + 1"), **kw)


def sub_rank(W, s, *, max_combinations=100_000, n_trials=16, random_state=None,
             assume_generic=False):
    """The s-sub-rank: the smallest rank of ``W^S`` over row subsets ``|S| = s``.

    Parameters
    ----------
    W : array-like of shape (n_rows, n_cols)
        The matrix.
    s : int
        Rows kept, ``1 <= s <= n_rows``.
    max_combinations : int, default=100_000
        Exhaustive when the ``C(n_rows, s)`` row subsets fit.
    n_trials : int, default=16
        Random row subsets tried otherwise.
    random_state : int, RandomState instance or None, default=None
        Seed of the random subsets.
    assume_generic : bool, default=False
        Report the general-position value ``min(s, n_cols)`` as an
        ``"estimate"`` when the value is not proved.

    Returns
    -------
    sub_rank : BoundedValue
        The sub-rank, exact or a labelled bound or estimate.

    Notes
    -----
    Definition 2 (eq. 5): ``sub-rank(W, s) = min_{|S| = s} rank(W^S)``,
    ``<= min(s, rank(W))``. Rows are normalised (rank is invariant to row
    scaling) and ranks use NumPy's tolerance on the normalised matrix.
    Proved lower bounds: ``rank(W) - (n_rows - s)`` (deleting a row lowers
    the rank by at most one), and ``min(s, k)`` where every ``k`` rows are
    independent, ``k = spark(W^T) - 1`` bounded below through
    :func:`spark` on ``W^T``. Equal bounds make the value exact (e.g.
    ``s <= k``). Theorem 1 (iii) requires ``sub-rank(W_0, s_1) = n_0``.
    """
    W = check_matrix(W)
    m, n = W.shape
    s = check_s(s, m)
    budget = check_budget(max_combinations)
    rng = check_random_state(random_state)
    rn = np.linalg.norm(W, axis=1)
    Wr = W / np.where(rn == 0, 1.0, rn)[:, None]
    sv = np.linalg.svd(Wr, compute_uv=False)
    tol = rank_tol(sv[0], W.shape)
    r = int(np.count_nonzero(sv > tol))
    kw = dict(side="upper", generic=min(s, n), assume_generic=assume_generic)

    def ranks(rows):
        svs = np.linalg.svd(Wr[rows], compute_uv=False)
        return np.count_nonzero(svs > tol, axis=-1)

    if s == m:
        return _make_result(r, r, best=r, method="s = n_rows: rank(W)", **kw)
    n_sub = math.comb(m, s)
    if n_sub <= budget:
        best = r
        for rows in _combinations(m, s, max(1, _BATCH_ELEMENTS // (s * n))):
            best = min(best, int(ranks(rows).min()))
        return _make_result(best, best, best=best,
                            method=f"exhaustive over C({m}, {s}) row subsets", **kw)
    upper = min(s, r)
    if n_trials > 0:
        rows = np.stack([np.sort(rng.choice(m, s, replace=False)) for _ in range(n_trials)])
        upper = min(upper, int(ranks(rows).min()))
    if np.any(rn == 0):
        kruskal = 0
    else:
        kruskal = _spark_bounds(Wr.T, budget, 0, rng, tol=tol)[0] - 1
    lower = min(upper, max(0, r - (m - s), min(s, kruskal)))
    return _make_result(lower, upper, best=upper, method=(
        "lower: rank(W) - (n_rows - s) and row Kruskal rank; upper: random row subsets"), **kw)
