"""Property tests of spark, sub-spark, sub-rank and coherence (skinvert.analysis).

Sizes are small so every example is exact or cheap; brute-force references
enumerate subsets with ``np.linalg.matrix_rank`` on integer matrices, where
the rank is computed reliably in floating point.
"""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skinvert.analysis import (
    KINDS,
    BoundedValue,
    mutual_coherence,
    mutual_coherence_sub,
    spark,
    sub_rank,
    sub_spark,
    welch_bound,
)

FAST = settings(deadline=None, max_examples=30)
seeds = st.integers(0, 2**32 - 1)


# -- brute-force references -------------------------------------------------
def brute_spark(W):
    m, n = W.shape
    for k in range(1, n + 1):
        for cols in itertools.combinations(range(n), k):
            if np.linalg.matrix_rank(W[:, cols]) < k:
                return k
    return n + 1


def brute_mu(W):
    norms = np.linalg.norm(W, axis=0)
    if np.any(norms == 0):
        return math.inf
    if W.shape[1] < 2:
        return 0.0
    C = np.abs((W / norms).T @ (W / norms))
    np.fill_diagonal(C, 0)
    return float(min(C.max(), 1.0))


def row_subsets(m, s):
    return itertools.combinations(range(m), s)


def small_int_matrix(rng, m, n):
    """Integer entries in {-2..2}: structured dependencies and zero entries occur."""
    return rng.integers(-2, 3, size=(m, n)).astype(float)


# -- spark --------------------------------------------------------------------
@FAST
@given(m=st.integers(1, 6))
def test_spark_of_identity_pair_is_two(m):
    eye = np.eye(m)
    res = spark(np.hstack([eye, eye]))
    assert res.kind == "exact" and res.value == 2


@FAST
@given(m=st.integers(1, 7), n=st.integers(2, 9), seed=seeds)
def test_spark_of_duplicated_column_is_two(m, n, seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, n))
    i, j = rng.choice(n, 2, replace=False)
    W[:, j] = rng.uniform(0.5, 3.0) * rng.choice([-1, 1]) * W[:, i]
    res = spark(W)
    assert res.kind == "exact" and res.value == 2


@FAST
@given(m=st.integers(1, 7), extra=st.integers(1, 5), seed=seeds)
def test_spark_of_gaussian_wide_matrix_is_m_plus_one(m, extra, seed):
    W = np.random.default_rng(seed).standard_normal((m, m + extra))
    res = spark(W)
    assert res.kind == "exact" and res.value == m + 1


@FAST
@given(m=st.integers(1, 8), n=st.integers(1, 8), seed=seeds)
def test_spark_of_tall_gaussian_is_n_plus_one(m, n, seed):
    W = np.random.default_rng(seed).standard_normal((max(m, n), n))
    assert spark(W).value == n + 1


def test_spark_zero_column_is_one():
    W = np.random.default_rng(0).standard_normal((3, 4))
    W[:, 2] = 0
    assert spark(W).value == 1 and spark(W).is_exact


def test_spark_large_gaussian_is_bounded_and_generic_estimate():
    W = np.random.default_rng(0).standard_normal((40, 70))
    res = spark(W, max_combinations=1000)
    assert res.kind == "upper_bound" and res.value == 41 and res.upper == 41
    assert 1 + 1 / mutual_coherence(W) <= res.lower <= 41
    est = spark(W, max_combinations=1000, assume_generic=True)
    assert est.kind == "estimate" and est.value == 41 and est.generic == 41


@FAST
@given(m=st.integers(1, 5), n=st.integers(1, 7), seed=seeds)
def test_spark_matches_brute_force_and_coherence_bound(m, n, seed):
    W = small_int_matrix(np.random.default_rng(seed), m, n)
    res = spark(W)
    ref = brute_spark(W)
    assert res.kind == "exact" and res.value == ref
    mu = mutual_coherence(W)
    # spark >= 1 + 1/mu (Donoho & Elad), capped by the n + 1 convention.
    bound = 1 + 1 / mu if mu > 0 else math.inf
    assert ref >= min(bound, n + 1) - 1e-9


@FAST
@given(m=st.integers(1, 5), n=st.integers(2, 8), seed=seeds)
def test_spark_bounds_contain_truth_without_search(m, n, seed):
    W = small_int_matrix(np.random.default_rng(seed), m, n)
    res = spark(W, max_combinations=0, n_trials=3, random_state=seed)
    ref = brute_spark(W)
    assert res.lower <= ref <= res.upper
    assert res.kind in KINDS and (res.kind == "exact") == (res.lower == res.upper)


# -- coherence ------------------------------------------------------------------
@FAST
@given(m=st.integers(1, 8), n=st.integers(2, 12), seed=seeds)
def test_coherence_invariances_and_welch_bound(m, n, seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, n))
    mu = mutual_coherence(W)
    scales = rng.uniform(0.1, 10, n) * rng.choice([-1, 1], n)
    assert mutual_coherence(W * scales) == pytest.approx(mu, rel=1e-12, abs=1e-12)
    assert mutual_coherence(W[:, rng.permutation(n)]) == pytest.approx(mu, rel=1e-12, abs=1e-12)
    assert mu >= welch_bound(m, n) - 1e-12
    assert 0 <= mu <= 1
    assert mu == pytest.approx(brute_mu(W), abs=1e-12)


def test_welch_bound_is_attained_by_a_tight_frame():
    # Three unit vectors at 120 degrees in the plane: mu = 1/2 = Welch(2, 3).
    a = 2 * np.pi * np.arange(3) / 3
    W = np.vstack([np.cos(a), np.sin(a)])
    assert mutual_coherence(W) == pytest.approx(welch_bound(2, 3)) == pytest.approx(0.5)
    assert spark(W).value == 3  # = 1 + 1/mu: the coherence bound is tight here


# -- sub-matrix quantities ----------------------------------------------------------
@FAST
@given(m=st.integers(1, 6), n=st.integers(1, 5), data=st.data(), seed=seeds)
def test_sub_rank_exact_and_bounded(m, n, data, seed):
    W = small_int_matrix(np.random.default_rng(seed), m, n)
    s = data.draw(st.integers(1, m))
    ref = min(np.linalg.matrix_rank(W[list(S)]) for S in row_subsets(m, s))
    res = sub_rank(W, s)
    assert res.is_exact and res.value == ref
    assert res.value <= np.linalg.matrix_rank(W)  # sub-rank <= rank
    cheap = sub_rank(W, s, max_combinations=0, n_trials=2, random_state=seed)
    assert cheap.lower <= ref <= cheap.upper <= min(s, np.linalg.matrix_rank(W))


@FAST
@given(m=st.integers(2, 30), n=st.integers(1, 10), data=st.data(), seed=seeds)
def test_sub_rank_never_exceeds_rank_gaussian(m, n, data, seed):
    W = np.random.default_rng(seed).standard_normal((m, n))
    s = data.draw(st.integers(1, m))
    res = sub_rank(W, s, max_combinations=500, random_state=seed)
    assert res.lower <= res.value <= res.upper <= min(s, n)
    assert res.upper <= np.linalg.matrix_rank(W)


@FAST
@given(m=st.integers(1, 5), n=st.integers(2, 5), data=st.data(), seed=seeds)
def test_sub_spark_exact_and_bounded(m, n, data, seed):
    W = small_int_matrix(np.random.default_rng(seed), m, n)
    s = data.draw(st.integers(1, m))
    ref = min(brute_spark(W[list(S)]) for S in row_subsets(m, s))
    res = sub_spark(W, s)
    assert res.is_exact and res.value == ref
    assert res.value <= brute_spark(W)  # more rows never lower the spark
    cheap = sub_spark(W, s, max_combinations=0, n_trials=2, random_state=seed)
    assert cheap.lower <= ref <= cheap.upper


@FAST
@given(m=st.integers(1, 6), n=st.integers(2, 6), data=st.data(), seed=seeds)
def test_mu_s_exact_and_bounded(m, n, data, seed):
    rng = np.random.default_rng(seed)
    W = small_int_matrix(rng, m, n) if seed % 2 else rng.standard_normal((m, n))
    s = data.draw(st.integers(1, m))
    ref = max(brute_mu(W[list(S)]) for S in row_subsets(m, s))
    res = mutual_coherence_sub(W, s)
    assert res.is_exact and res.value == pytest.approx(ref, abs=1e-12)
    cheap = mutual_coherence_sub(W, s, max_combinations=0, n_trials=2, random_state=seed)
    assert cheap.lower - 1e-12 <= ref <= cheap.upper + 1e-12
    assert cheap.kind in ("exact", "lower_bound")


def test_gaussian_sub_quantities_generic_estimates():
    W = np.random.default_rng(1).standard_normal((40, 10))
    sr = sub_rank(W, 20, max_combinations=100, assume_generic=True)
    assert sr.kind == "estimate" and sr.value == 10 and sr.lower <= 10 <= sr.upper
    ss = sub_spark(W, 20, max_combinations=100, assume_generic=True)
    assert ss.kind == "estimate" and ss.value == 11
    ss = sub_spark(W, 20, max_combinations=100)
    assert ss.kind == "upper_bound" and ss.value == ss.upper == 11
    # s <= (every-s-rows-independent size) makes sub-rank exact from the bounds.
    assert sub_rank(W, 2, max_combinations=100).is_exact


def test_input_validation():
    W = np.ones((3, 2))
    with pytest.raises(ValueError):
        sub_rank(W, 4)
    with pytest.raises(ValueError):
        sub_spark(W, 0)
    with pytest.raises(TypeError):
        mutual_coherence_sub(W, 1.5)
    with pytest.raises(ValueError):
        spark(np.ones(3))
    with pytest.raises(ValueError):
        mutual_coherence(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError):
        BoundedValue(1, "guess", 1, 1, "")
    r = spark(np.eye(3))
    assert int(r) == 4 and float(r) == 4.0 and "exact" in str(r) and "exact" in repr(r)
