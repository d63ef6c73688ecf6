"""Tests of invertibility_report: per-sample quantities, conditions and bounds.

Theorem 3 is checked against a Monte-Carlo run of the layer-wise Oracle
(Algorithm 6), written here with NumPy least squares on the true supports.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from skinvert import ReLUGenerator, make_random_generator
from skinvert.analysis import (
    MET,
    UNKNOWN,
    VIOLATED,
    InvertibilityReport,
    invertibility_report,
    invertibility_report_from_supports,
    mutual_coherence,
    spark,
)

seeds = st.integers(0, 2**32 - 1)


def _latents(G, n, seed):
    return np.random.default_rng(seed).standard_normal((n, G.n_latent))


# -- Theorem 3 against the Oracle's Monte-Carlo error -------------------------
def layerwise_oracle(G, Y, supports):
    """Algorithm 6 (phi = identity) for one sample's supports, batched over rows of Y.

    Returns the estimates [z_hat, x_hat_1, ..., x_hat_L] restricted to the
    supports (z_hat in full), each of shape (n_draws, s_i).
    """
    Ws, bs = G.weights, G.biases
    L = G.n_layers
    S = supports
    # First step: x_L^S from y through Wbar_L = W_L[:, S_L].
    est = [None] * (L + 1)
    cur = (Y - bs[L]) @ np.linalg.pinv(Ws[L][:, S[L - 1]]).T
    est[L] = cur
    for i in range(L - 1, 0, -1):  # Wbar_i = W_i[S_{i+1}, S_i]
        rows, cols = S[i], S[i - 1]
        cur = (cur - bs[i][rows]) @ np.linalg.pinv(Ws[i][np.ix_(rows, cols)]).T
        est[i] = cur
    est[0] = (cur - bs[0][S[0]]) @ np.linalg.pinv(Ws[0][S[0], :]).T
    return est


@settings(deadline=None, max_examples=15)
@given(n0=st.integers(2, 3), depth=st.integers(1, 3), seed=seeds,
       sigma=st.sampled_from([1e-3, 0.1, 1.0]))
def test_theorem3_bounds_hold_for_oracle_monte_carlo(n0, depth, seed, sigma):
    rng = np.random.default_rng(seed)
    sizes = [n0]
    for _ in range(depth):
        sizes.append(int(sizes[-1] * rng.uniform(2.2, 3.0)) + 2)
    sizes.append(int(sizes[-1] * rng.uniform(0.8, 1.5)) + 2)
    G = make_random_generator(sizes, output_activation="identity", random_state=seed)
    # A latent whose supports make every Wbar_j of full column rank (Theorem 3's setting).
    for _ in range(50):
        z = rng.standard_normal((1, n0))
        rep = invertibility_report(G, z, noise_std=sigma, worst_case=False)
        if np.all(rep.lambda_min > 0):
            break
    else:
        assume(False)  # no latent with full-rank supported matrices: discard the example
    x, hidden = G.forward(z, return_hidden=True)
    S = [h[0] > 0 for h in hidden]
    K = 4000
    Y = x + sigma * rng.standard_normal((K, sizes[-1]))
    est = layerwise_oracle(G, Y, S)
    truths = [z[0]] + [h[0][s] for h, s in zip(hidden, S)]
    lowers = [rep.oracle_latent_mse_lower[0]] + list(rep.oracle_mse_lower[0])
    uppers = [rep.oracle_latent_mse_upper[0]] + list(rep.oracle_mse_upper[0])
    for i in range(depth + 1):
        err2 = np.sum((est[i] - truths[i]) ** 2, axis=1)
        mean, se = err2.mean(), err2.std(ddof=1) / np.sqrt(K)
        # The Oracle is linear: E||x_hat - x||^2 = sigma^2 tr(A A^T) exactly,
        # and Theorem 3 brackets that number; the Monte-Carlo mean is within
        # a few standard errors of it (4 SE: a false alarm odds of ~6e-5).
        assert lowers[i] <= uppers[i]
        assert lowers[i] - 4 * se <= mean <= uppers[i] + 4 * se, (i, lowers[i], mean, uppers[i])
        # Exact expectation from the composed pseudo-inverses, no sampling error.
        E = est_map(G, S, i)
        exact = sigma**2 * np.sum(E * E)
        assert lowers[i] * (1 - 1e-9) <= exact <= uppers[i] * (1 + 1e-9)
        assert abs(mean - exact) <= 5 * se


def est_map(G, S, i):
    """The matrix A_{[i, L]} mapping the noise e to the error of x_hat_i (of z if i = 0)."""
    L = G.n_layers
    A = np.linalg.pinv(G.weights[L][:, S[L - 1]])
    for j in range(L - 1, i - 1, -1):
        Wbar = G.weights[j][S[j], :] if j == 0 else G.weights[j][np.ix_(S[j], S[j - 1])]
        A = np.linalg.pinv(Wbar) @ A
    return A


# -- Figure 4 segments -----------------------------------------------------------
def test_report_flags_failure_segment_and_passes_success_segment():
    n0, n = 10, 100
    # Failure segment: s_1 ~ n_1 / 2 = 6 < n_0.
    G = make_random_generator([n0, 12, n], random_state=0)
    Z = _latents(G, 64, 1)
    rep = invertibility_report(G, Z)
    s1 = rep.sparsity[:, 0]
    assert np.mean(s1 < n0) > 0.9
    for c in ("corollary1", "theorem1_at_support", "theorem1"):
        col = rep.status[c][:, 0]  # recovery of z from x_1
        assert np.all(col[s1 < n0] == VIOLATED), c
        assert np.all(rep.holds(c)[s1 < n0] == VIOLATED)
    # Success segment: n_0 <= s_1 ~ n_1 / 2 < (n + 1) / 2.
    G = make_random_generator([n0, 40, n], random_state=0)
    rep = invertibility_report(G, _latents(G, 64, 1))
    s1 = rep.sparsity[:, 0]
    ok = (s1 >= n0) & (s1 < (n + 1) / 2)
    assert ok.mean() > 0.95
    assert np.all(rep.holds("corollary1")[ok] == MET)
    assert np.all(rep.holds("theorem1_at_support")[ok] == MET)
    assert np.all(rep.estimated["theorem1"][ok, 0] == MET)
    assert rep.fraction_met("theorem1_at_support") == pytest.approx(ok.mean())


# -- consistency with the primitives ------------------------------------------------
@settings(deadline=None, max_examples=10)
@given(seed=seeds, depth=st.integers(1, 3))
def test_report_quantities_match_direct_computation(seed, depth):
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(2, 5))]
    for _ in range(depth):
        sizes.append(int(sizes[-1] * rng.uniform(1.5, 3.0)) + 1)
    sizes.append(int(rng.integers(sizes[-1] // 2 + 1, 2 * sizes[-1] + 2)))
    biases = [0.3 * rng.standard_normal(m) for m in sizes[1:]]
    G0 = make_random_generator(sizes, output_activation="identity", random_state=seed)
    G = ReLUGenerator(G0.weights, biases, output_activation="identity")
    Z = _latents(G, 6, seed)
    rep = invertibility_report(G, Z, epsilon=0.1, noise_std=0.1, max_combinations=2000)
    S = G.supports(Z)
    L = G.n_layers
    for k in range(len(Z)):
        assert list(rep.sparsity[k]) == [int(s[k].sum()) for s in S]
        for j in range(L + 1):
            A = G.weights[j] if j == L else G.weights[j][S[j][k]]
            Wbar = A if j == 0 else A[:, S[j - 1][k]]
            assert rep.rank[k, j] == (np.linalg.matrix_rank(A) if A.size else 0)
            if A.shape[0] and np.all(np.linalg.norm(A, axis=0) > 0):
                assert rep.coherence[k, j] == pytest.approx(mutual_coherence(A), abs=1e-10)
                sp = spark(A)
                assert rep.spark_lower[k, j] <= sp.upper and sp.lower <= rep.spark_upper[k, j]
            if Wbar.size:
                lam = np.linalg.eigvalsh(Wbar.T @ Wbar)
                assert rep.lambda_max[k, j] == pytest.approx(lam[-1], rel=1e-8)
                if rep.lambda_min[k, j] > 0:
                    assert rep.lambda_min[k, j] == pytest.approx(lam[0], rel=1e-6)
        # eq. 7 by hand.
        c = 3 + np.sqrt(1.5)
        bound = 0.1 * 1.0  # epsilon * ell (identity)
        for i in range(L, 0, -1):
            A = G.weights[i] if i == L else G.weights[i][S[i][k]]
            bound *= c * np.sqrt(S[i - 1][k].sum()) / np.linalg.norm(A, axis=0).min()
        A0 = G.weights[0][S[0][k]]
        phi = np.linalg.eigvalsh(A0.T @ A0)[0] if A0.size else 0.0
        if rep.varphi[k] > 0:
            assert rep.latent_error_bound[k] == pytest.approx(bound / np.sqrt(phi), rel=1e-6)
        else:
            assert rep.latent_error_bound[k] == np.inf
    # Proved verdicts are also estimated verdicts; Theorem 1 as stated implies
    # its at-support form; every status code is in the documented set.
    for c in rep.conditions:
        st_, es = rep.status[c], rep.estimated[c]
        assert set(np.unique(st_)) <= {MET, VIOLATED, UNKNOWN}
        assert np.all(es[st_ == MET] == MET) and np.all(es[st_ == VIOLATED] == VIOLATED)
    assert np.all(rep.status["theorem1_at_support"][rep.status["theorem1"] == MET] == MET)
    assert np.all(rep.status["theorem2_at_support"][rep.status["theorem2"] == MET] == MET)
    # Bounds are ordered.
    assert np.all(rep.sub_spark_lower[:, 1:] <= rep.sub_spark_upper[:, 1:])
    assert np.all(rep.sub_rank_lower <= rep.sub_rank_upper)
    assert np.all(rep.mu_s_lower[:, 1:] <= rep.mu_s_upper[:, 1:])
    assert np.all(rep.spark_lower <= rep.spark_upper)
    assert np.all(rep.oracle_mse_lower <= rep.oracle_mse_upper)


def test_report_from_supports_matches_report_from_latents():
    G = make_random_generator([5, 16, 40, 60], output_activation="identity", random_state=3)
    Z = _latents(G, 20, 3)
    a = invertibility_report(G, Z, epsilon=0.01, noise_std=0.01)
    b = invertibility_report_from_supports(G, G.supports(Z), epsilon=0.01, noise_std=0.01)
    for c in a.conditions:
        np.testing.assert_array_equal(a.status[c], b.status[c])
    for k in a.quantities:
        np.testing.assert_allclose(a.quantities[k], b.quantities[k])


def test_sigma_is_a_deprecated_alias_of_noise_std():
    G = make_random_generator([4, 12, 30, 50], output_activation="identity", random_state=0)
    Z = _latents(G, 8, 0)
    new = invertibility_report(G, Z, noise_std=0.1, worst_case=False)
    with pytest.warns(FutureWarning, match="renamed noise_std"):
        old = invertibility_report(G, Z, sigma=0.1, worst_case=False)
    np.testing.assert_array_equal(old.oracle_mse_upper, new.oracle_mse_upper)
    assert new.noise_std == 0.1
    with pytest.warns(FutureWarning, match="renamed noise_std"):
        assert old.sigma == 0.1
    with pytest.warns(FutureWarning, match="renamed noise_std"):
        invertibility_report_from_supports(G, G.supports(Z), sigma=0.1, worst_case=False)
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="noise_std only"):
        invertibility_report(G, Z, noise_std=0.1, sigma=0.1)


def test_report_summary_and_arrays():
    G = make_random_generator([4, 12, 30, 50], random_state=0)
    rep = invertibility_report(G, _latents(G, 16, 0), epsilon=1e-3, noise_std=1e-2)
    assert isinstance(rep, InvertibilityReport)
    text = str(rep)
    for title in ("Corollary 1", "Theorem 1", "Theorem 2", "eq. 7", "Theorem 3"):
        assert title in text
    assert rep.sparsity.shape == (16, 2)
    assert rep.status["corollary1"].shape == (16, 3)
    assert rep.latent_error_bound.shape == (16,)
    assert rep.oracle_mse_upper.shape == (16, 2)
    assert rep.status_name(MET) == "met" and rep.status_name(UNKNOWN) == "unknown"
    # tanh: the global Lipschitz constant of atanh is infinite; the local one is used.
    assert np.all(np.isfinite(rep.lipschitz_inverse)) and "local" in rep.lipschitz_inverse_kind
    assert "InvertibilityReport" in repr(rep)
    with pytest.raises(AttributeError):
        rep.no_such_quantity  # noqa: B018


def test_report_input_validation():
    G = make_random_generator([3, 8, 20], random_state=0)
    with pytest.raises(ValueError):
        invertibility_report(G, np.zeros((2, 4)))
    with pytest.raises(ValueError):
        invertibility_report_from_supports(G, [np.ones((2, 7), bool)])
    with pytest.raises(ValueError):
        invertibility_report_from_supports(G, [])


@settings(deadline=None, max_examples=10)
@given(seed=seeds)
def test_worst_case_bounds_contain_exhaustive_values(seed):
    from skinvert.analysis import mutual_coherence_sub, sub_rank, sub_spark

    rng = np.random.default_rng(seed)
    sizes = [2, int(rng.integers(4, 7)), int(rng.integers(6, 9)), 10]
    G = make_random_generator(sizes, output_activation="identity", random_state=seed)
    rep = invertibility_report(G, _latents(G, 12, seed))
    W0, W1 = G.weights[0], G.weights[1]
    for k in range(12):
        s1, s2 = rep.sparsity[k]
        if s2 >= 1:
            ss = sub_spark(W1, int(s2))
            mu = mutual_coherence_sub(W1, int(s2))
            assert ss.is_exact and mu.is_exact
            assert rep.sub_spark_lower[k, 1] <= ss.value <= rep.sub_spark_upper[k, 1]
            assert rep.mu_s_lower[k, 1] - 1e-12 <= mu.value <= rep.mu_s_upper[k, 1] + 1e-12
        if s1 >= 1:
            sr = sub_rank(W0, int(s1))
            assert sr.is_exact
            assert rep.sub_rank_lower[k] <= sr.value <= rep.sub_rank_upper[k]
