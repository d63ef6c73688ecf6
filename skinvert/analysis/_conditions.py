"""The paper's conditions evaluated per sample and layer, as status arrays.

Column ``j`` of every array (``j = 0..L``) concerns the recovery of ``x_j``
(``x_0 = z``) from ``x_{j+1}`` (``x_{L+1}`` = the signal) through
``A_j = W_j^{S_{j+1}}`` (all rows of ``W_L`` for ``j = L``).
"""

import numpy as np

from ._coherence import _coherence, coherence_floor, coherence_sub_bounds
from ._results import BoundedValue, rank_tol
from ._spark import _spark_bounds, spark

__all__ = ["MET", "VIOLATED", "UNKNOWN", "STATUS_NAMES", "decide"]

MET, VIOLATED, UNKNOWN = 1, 0, -1
STATUS_NAMES = {MET: "met", VIOLATED: "violated", UNKNOWN: "unknown"}


def decide(met, violated):
    """Status codes from proved ``met`` and proved ``violated`` masks."""
    out = np.full(np.shape(met), UNKNOWN, dtype=np.int8)
    out[np.asarray(violated)] = VIOLATED
    out[np.asarray(met)] = MET
    return out


def _by_value(values, fn):
    """Evaluate ``fn(unique_values) -> tuple of arrays`` and map back to samples."""
    uniq, inv = np.unique(values, return_inverse=True)
    return [np.asarray(r)[inv] for r in fn(uniq)]


def _group_reduce(values, data, reduce):
    """Per unique value of ``values``, ``reduce`` of ``data``; mapped back to samples."""
    uniq, inv = np.unique(values, return_inverse=True)
    out = np.full(len(uniq), np.inf if reduce is np.minimum else -np.inf)
    reduce.at(out, inv, data)
    return out[inv]


def spark_at_support(q, n_j):
    """Proved bounds on ``spark(A_j)`` per sample from rank and coherence."""
    rank, mu, mn = q["rank"], q["coherence"], q["min_norm"]
    if not q.get("gram", True):  # a wide layer: only rank <= min(n_rows, n_j) is known
        upper = np.where(mn == 0, 1.0, np.minimum(q["rank_upper"], n_j) + 1.0)
        lower = np.where(mn == 0, 1.0, np.minimum(upper, 2.0))
        return lower, upper
    upper = rank + 1.0
    lower = np.minimum(upper, np.maximum(2.0, coherence_floor(mu, n_j)))
    full = rank == n_j
    zero = mn == 0
    lower = np.where(full, n_j + 1.0, np.where(zero, 1.0, lower))
    upper = np.where(full, n_j + 1.0, np.where(zero, 1.0, upper))
    return lower, upper


def evaluate(Ws, layer_sizes, s, q, *, worst_case, max_combinations, rng):
    """All conditions: returns (status, estimated, notes, quantities) dicts.

    ``s`` is (N, L) sparsities, ``q`` the list of :func:`layer_quantities`
    outputs for j = 0..L.
    """
    L = len(Ws) - 1
    N = s.shape[0]
    n0, n = layer_sizes[0], layer_sizes[-1]
    sj = np.concatenate([np.full((N, 1), n0), s], axis=1).astype(np.float64)  # s_0 := n0
    snext = np.concatenate([s, np.full((N, 1), n)], axis=1)  # s_{j+1}, s_{L+1} := n
    status, est, notes, quant = {}, {}, {}, {}
    cols = lambda: np.full((N, L + 1), UNKNOWN, dtype=np.int8)  # noqa: E731

    # Corollary 1: sizes only (iid weights assumed).
    st = cols()
    st[:, 0] = np.where(s[:, 0] >= n0, MET, VIOLATED)
    for j in range(1, L):
        st[:, j] = np.where(s[:, j - 1] < (s[:, j] + 1) / 2, MET, VIOLATED)
    st[:, L] = np.where(s[:, L - 1] < (n + 1) / 2, MET, VIOLATED)
    status["corollary1"], est["corollary1"] = st, st.copy()
    notes["corollary1"] = ["exact from sizes; assumes iid weights"] * (L + 1)

    # Per-sample spark bounds of A_j; spark(W_L) itself by a budgeted search.
    sp_lo = np.zeros((N, L + 1))
    sp_up = np.zeros((N, L + 1))
    for j in range(L + 1):
        sp_lo[:, j], sp_up[:, j] = spark_at_support(q[j], layer_sizes[j])
    spL = _spark_or_sizes(Ws[L], q[L], max_combinations, rng)
    sp_lo[:, L], sp_up[:, L] = spL.lower, spL.upper
    quant["spark_lower"], quant["spark_upper"] = sp_lo, sp_up
    rank = np.stack([qq["rank"] for qq in q], axis=1)
    full = rank == np.asarray(layer_sizes[:-1])[None, :]
    # rank-deficient is proved where the rank is known, or bounded below n_j by the sizes
    rank_up = np.stack([qq.get("rank_upper", qq["rank"]) for qq in q], axis=1)
    not_full = np.where(np.isnan(rank), rank_up < np.asarray(layer_sizes[:-1])[None, :], ~full)
    generic_sp = np.minimum(snext, np.asarray(layer_sizes[:-1])[None, :]) + 1.0
    sp_est = np.clip(generic_sp, sp_lo, sp_up)

    # Theorem 1 at the actual supports (eq. 20 and the full-rank argument of (iii)).
    met = (sj < sp_lo / 2) | full
    vio = not_full & (sj >= sp_up / 2)
    met[:, 0], vio[:, 0] = full[:, 0], not_full[:, 0]
    status["theorem1_at_support"] = decide(met, vio)
    est["theorem1_at_support"] = decide((sj < sp_est / 2) | full, ~((sj < sp_est / 2) | full))
    est["theorem1_at_support"][:, 0] = status["theorem1_at_support"][:, 0]
    exact_frac = [np.mean(sp_lo[:, j] == sp_up[:, j]) for j in range(L + 1)]
    notes["theorem1_at_support"] = ["rank(W_0^S1) exact"] + [
        f"spark(A_j) exact for {100 * exact_frac[j]:.0f}%, else [1+1/mu, rank+1]"
        for j in range(1, L)] + [f"spark(W_L) {spL.kind}"]
    _mark_size_only(notes["theorem1_at_support"], q, layer_sizes)

    if worst_case:
        _worst_case(Ws, layer_sizes, s, q, sj, snext, spL, status, est, notes, quant,
                    max_combinations, rng)

    # Theorem 2 at the actual supports: mu(W_j^{S_{j+1}}) is exact per sample.
    mu = np.stack([qq["coherence"] for qq in q], axis=1)
    quant["coherence"] = mu
    varphi_ok = q[0]["lam_min_A"] > 0
    with np.errstate(divide="ignore"):
        thr = 1.0 / (3.0 * mu)
    st = decide(sj < thr, sj >= thr)
    st[:, 0] = decide(varphi_ok, q[0]["lam_min_A"] <= 0)  # NaN (not computed): unknown
    status["theorem2_at_support"], est["theorem2_at_support"] = st, st.copy()
    notes["theorem2_at_support"] = ["varphi > 0 exact"] + ["mu(A_j) exact"] * L
    _mark_size_only(notes["theorem2_at_support"], q, layer_sizes)
    if worst_case:
        for key in ("theorem1", "theorem2"):
            _mark_size_only(notes[key], q, layer_sizes)
    return status, est, notes, quant


def _mark_size_only(notes, q, layer_sizes):
    """Label the layers whose per-sample Gram matrices were not computed."""
    for j, qq in enumerate(q):
        if not qq.get("gram", True):
            notes[j] = (f"not computed: n_{j} = {layer_sizes[j]} columns > max_gram_columns; "
                        "only size bounds (rank <= rows)")


def _spark_or_sizes(W, q, max_combinations, rng):
    """spark(W_L) by the budgeted search, or its size bounds for a wide layer."""
    if q.get("gram", True):
        return spark(W, max_combinations=max_combinations, random_state=rng)
    n_out, n_in = W.shape
    zero = bool(np.any(q["min_norm"] == 0))
    upper = 1 if zero else min(n_out, n_in) + 1
    return BoundedValue(upper, "upper_bound", 1 if zero else 2, upper,
                        "size bounds only (rank + 1 <= n_rows + 1): too wide for the search")


def _worst_case(Ws, layer_sizes, s, q, sj, snext, spL, status, est, notes, quant,
                max_combinations, rng):
    """Theorem 1 and 2 as stated: sub-spark, sub-rank, mu_s over all row subsets."""
    L = len(Ws) - 1
    N = s.shape[0]
    n0 = layer_sizes[0]
    ss_lo = np.full((N, L + 1), np.nan)
    ss_up = np.full((N, L + 1), np.nan)
    mu_lo = np.full((N, L + 1), np.nan)
    mu_up = np.full((N, L + 1), np.nan)
    ss_lo[:, L], ss_up[:, L] = spL.lower, spL.upper
    mu_lo[:, L] = mu_up[:, L] = q[L]["coherence"]
    for j in range(1, L):
        W = Ws[j]
        m, nj = W.shape
        v = snext[:, j]
        if not q[j].get("gram", True):  # too wide: sub-spark and mu_s stay unknown (NaN)
            continue

        def bounds(vals, W=W, m=m):
            lo, up = coherence_sub_bounds(W, np.maximum(vals, 1))
            lo[vals == 0] = up[vals == 0] = np.inf  # no rows: a zero column
            full_rows = vals == m
            if np.any(full_rows):
                lo[full_rows] = up[full_rows] = _coherence(W)
            return lo, up

        lo, up = _by_value(v, bounds)
        lo = np.maximum(lo, _group_reduce(v, q[j]["coherence"], np.maximum))  # attained
        mu_lo[:, j], mu_up[:, j] = lo, np.maximum(up, lo)
        sv = np.linalg.svd(W / np.linalg.norm(W, axis=0), compute_uv=False)
        rW = np.count_nonzero(sv > rank_tol(sv[0], W.shape))
        zeros = np.count_nonzero(W == 0, axis=0).max()
        lower = np.maximum(2.0, coherence_floor(mu_up[:, j], nj))
        upper = np.minimum(rW + 1.0, _group_reduce(v, q[j]["rank"] + 1.0, np.minimum))
        zero_col = v <= zeros
        lower, upper = np.where(zero_col, 1.0, lower), np.where(zero_col, 1.0, upper)
        ss_lo[:, j], ss_up[:, j] = np.minimum(lower, upper), upper
    gen = np.minimum(snext, np.asarray(layer_sizes[:-1])[None, :]) + 1.0
    ss_est = np.clip(gen, ss_lo, ss_up)
    st = decide(sj < ss_lo / 2, sj >= ss_up / 2)
    e = decide(sj < ss_est / 2, sj >= ss_est / 2)
    # (iii): n_0 = sub-rank(W_0, s_1).
    W0 = Ws[0]
    m0 = W0.shape[0]
    rn = np.linalg.norm(W0, axis=1)
    W0r = W0 / np.where(rn == 0, 1.0, rn)[:, None]
    sv = np.linalg.svd(W0r, compute_uv=False)
    tol = rank_tol(sv[0], W0.shape)
    r0 = int(np.count_nonzero(sv > tol))
    kr = 0 if np.any(rn == 0) else _spark_bounds(W0r.T, max_combinations, 0, rng, tol=tol)[0] - 1
    s1 = s[:, 0].astype(np.float64)
    sr_up = np.minimum(np.minimum(s1, r0), _group_reduce(s[:, 0], q[0]["rank"], np.minimum))
    sr_lo = np.minimum(sr_up, np.maximum(np.maximum(0.0, r0 - (m0 - s1)), np.minimum(s1, kr)))
    sr_est = np.clip(np.minimum(s1, n0), sr_lo, sr_up)
    st[:, 0] = decide(sr_lo >= n0, sr_up < n0)
    e[:, 0] = np.where(sr_est >= n0, MET, VIOLATED)
    status["theorem1"], est["theorem1"] = st, e
    quant["sub_spark_lower"], quant["sub_spark_upper"] = ss_lo, ss_up
    quant["sub_rank_lower"], quant["sub_rank_upper"] = sr_lo, sr_up
    ex = lambda a, b: f"{100 * np.mean(a == b):.0f}%"  # noqa: E731
    notes["theorem1"] = [f"sub-rank(W_0, s_1) exact for {ex(sr_lo, sr_up)}, else bounds"] + [
        f"sub-spark exact for {ex(ss_lo[:, j], ss_up[:, j])}, else bounds"
        for j in range(1, L)] + [f"spark(W_L) {spL.kind}"]
    # Theorem 2 as stated: s_j < 1 / (3 mu_{s_{j+1}}(W_j)); varphi > 0 for z.
    with np.errstate(divide="ignore"):
        t_up, t_lo = 1.0 / (3.0 * mu_up), 1.0 / (3.0 * mu_lo)
    st = decide(sj < t_up, sj >= t_lo)
    e = decide(sj < t_lo, sj >= t_lo)
    ok = decide(q[0]["lam_min_A"] > 0, q[0]["lam_min_A"] <= 0)
    st[:, 0] = e[:, 0] = ok
    status["theorem2"], est["theorem2"] = st, e
    quant["mu_s_lower"], quant["mu_s_upper"] = mu_lo, mu_up
    notes["theorem2"] = ["varphi > 0 exact"] + [
        f"mu_s exact for {ex(mu_lo[:, j], mu_up[:, j])}, else bounds (estimate: best found)"
        for j in range(1, L)] + ["mu(W_L) exact"]
