"""The per-sample working-memory estimates that size ``batch_size=None``.

tracemalloc counts every NumPy allocation, so the peak of a transform is
deterministic: the slope of the peak against the batch size must match the
estimate (``_bytes_per_sample``) within 1.5x where the estimate is meant to
be tight (wide image layers, and the Oracles). ``benchmarks/memory.py
--estimates`` prints the same comparison on the shipped generator and a
Figure 4 net.
"""

import numpy as np
import pytest

from benchmarks.memory import traced_peak as _peak
from skinvert import HybridInverter, LatentPursuitInverter, OracleInverter, make_random_generator

from ._helpers import without_polish_start

G = make_random_generator([20, 220, 160], output_activation="tanh", random_state=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda B: LatentPursuitInverter(G, batch_size=B),
        lambda B: OracleInverter(G, batch_size=B),
        lambda B: OracleInverter(G, method="layerwise", batch_size=B),
    ],
    ids=["latent_pursuit", "oracle", "oracle_layerwise"],
)
def test_estimate_within_1_5x_of_measured_slope(make, monkeypatch):
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((24, G.n_latent))
    X, S = G.forward(Z), G.supports(Z)

    def slope():
        peaks = []
        for B in (8, 24):
            est = make(B).fit(X[:B])
            kw = {"supports": [s[:B] for s in S]} if isinstance(est, OracleInverter) else {}
            peaks.append(_peak(est, X[:B], kw))
        return (peaks[1] - peaks[0]) / 16, est

    if isinstance(make(1), LatentPursuitInverter):
        # The clean rows of this wide layer are fitted by the polish from the
        # linearized network, in far less memory than the estimate, which is
        # that of the rows it leaves to the layer-wise pass (Lawson-Hanson):
        # the pass is measured below.
        start, est = slope()
        assert start <= est._bytes_per_sample(est.generator_, X.dtype.itemsize)
        without_polish_start(monkeypatch)
    measured, est = slope()
    estimate = est._bytes_per_sample(est.generator_, X.dtype.itemsize)
    assert 1 / 1.5 <= estimate / measured <= 1.5, (estimate, measured)


# -- HybridInverter ----------------------------------------------------------
# Its per-row maps (polish, boundary search) are built on blocks of rows on
# NumPy (host_block_rows): a fixed cost there. The blocks are made small here
# so that batches of a few dozen rows measure the per-sample slope beyond them.


@pytest.fixture
def small_host_blocks(monkeypatch):
    import skinvert._linalg

    monkeypatch.setattr(skinvert._linalg, "HOST_BLOCK_BYTES", 64 * 2**10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"restarts_per_round": 1},
        {},  # two starts per round
        {"restarts_per_round": 8},
        {"noise_std": 1e-2, "linear_start": False},
    ],
    ids=["one_per_round", "default", "eight_per_round", "noisy"],
)
def test_hybrid_estimate_within_1_5x_of_measured_slope(kwargs, small_host_blocks):
    # A net of the paper's sizes; every row descends from the first round's
    # starts (no pursuit start): the worst case the estimate is for.
    G_paper = make_random_generator([20, 128, 392, 784], output_activation="tanh",
                                    random_state=0)
    rng = np.random.default_rng(0)
    # Batches of 96 and 192 rows: below about 96 the peak is a stage of
    # fixed cost (the weights' copies in both precisions, about 12 MB here),
    # not the descent, and a slope between such peaks measures nothing.
    Z = rng.standard_normal((192, G_paper.n_latent))
    X = G_paper.forward(Z)
    if "noise_std" in kwargs:
        X = X + 1e-2 * rng.standard_normal(X.shape)
    peaks = []
    for B in (96, 192):
        est = HybridInverter(G_paper, batch_size=B, n_restarts=8, n_perturbations=0,
                             use_pursuit=False, random_state=0, **kwargs).fit(X[:B])
        peaks.append(_peak(est, X[:B], {}))
    slope = (peaks[1] - peaks[0]) / 96
    estimate = est._bytes_per_sample(est.generator_, X.dtype.itemsize, host=True)
    assert 1 / 1.5 <= estimate / slope <= 1.5, (estimate, slope)
    # Elsewhere (no blocks) the per-row maps count too.
    assert est._bytes_per_sample(est.generator_, X.dtype.itemsize) > 1.5 * estimate


def test_hybrid_pursuit_runs_on_blocks_its_own_estimate_sizes(monkeypatch):
    """The pursuit start (per-row Gram matrices: far more memory per row
    than the hybrid's own stages) runs on blocks of rows sized by its own
    estimate, so it does not bound the hybrid's automatic batches; its
    rows are independent, so the blocks change no code."""
    import skinvert.inverters._base as base
    from skinvert.inverters import _hybrid

    rng = np.random.default_rng(1)
    Z = rng.standard_normal((40, G.n_latent))  # noiseless: the pursuit start fits them
    X = G.forward(Z)
    whole = HybridInverter(G, random_state=0).fit(X)
    Z_whole = whole.transform(X)
    assert len(whole._batches(40, 8, host=True)) == 1

    est = HybridInverter(G, random_state=0).fit(X)
    per = est.pursuit_._bytes_per_sample(G, 8, host=True)
    monkeypatch.setattr(base, "WORKING_MEMORY", 12 * per)  # pursuit blocks of 12 rows
    seen = []
    real = _hybrid._pursuit_estimate

    def spy(estimator, Y, obs, xp, state):
        seen.append(Y.shape[0])
        return real(estimator, Y, obs, xp, state)

    monkeypatch.setattr(_hybrid, "_pursuit_estimate", spy)
    Z_blocks = est.set_params(batch_size=40).transform(X)
    assert seen == [12, 12, 12, 4]
    # The same codes up to rounding (the pursuit's shared products round
    # with the number of rows): noiseless rows, recovered exactly.
    np.testing.assert_allclose(Z_blocks, Z_whole, rtol=0, atol=1e-13)
    np.testing.assert_allclose(Z_blocks, Z, rtol=0, atol=1e-12)
    # The hybrid's own estimate, not the pursuit's, sizes its batches.
    assert est._bytes_per_sample(G, 8, host=True) < per


# -- Latent-Pursuit on NumPy: the per-row Gram matrices on host blocks --------
# A net of the paper's sizes: the image layer's per-row 392 x 392 Gram
# matrices (missing or saturated pixels) are built on blocks of rows, a fixed
# cost; what grows with the batch is the hidden layer's stack of 128 x 128
# Gram matrices from one GEMM over the whole batch. The batches are large
# enough (128 and 384 rows) for that stack to be the peak, beyond the blocks.
G_PAPER = make_random_generator([20, 128, 392, 784], output_activation="tanh", random_state=0)


@pytest.mark.parametrize("signals", ["clean", "missing"])
def test_latent_pursuit_host_estimate_within_1_5x_of_measured_slope(signals):
    rng = np.random.default_rng(0)
    X = G_PAPER.forward(rng.standard_normal((384, G_PAPER.n_latent)))
    if signals == "missing":
        X[rng.random(X.shape) < 0.45] = np.nan
    peaks = []
    for B in (128, 384):
        est = LatentPursuitInverter(G_PAPER, batch_size=B).fit(np.nan_to_num(X[:B]))
        peaks.append(_peak(est, X[:B], {}))
    slope = (peaks[1] - peaks[0]) / 256
    estimate = est._bytes_per_sample(est.generator_, X.dtype.itemsize, host=True)
    assert 1 / 1.5 <= estimate / slope <= 1.5, (estimate, slope)
    # 512 signals are one automatic batch on NumPy (each batch rebuilds its
    # tables and shared factorizations); elsewhere every row's own Gram
    # matrices count (no blocks), and so they do with a noise model.
    assert len(LatentPursuitInverter(G_PAPER).fit(X)._batches(512, 8, host=True)) == 1
    assert est._bytes_per_sample(est.generator_, 8) > 5 * estimate
    noisy = LatentPursuitInverter(G_PAPER, noise_std=1e-2).fit(np.nan_to_num(X))
    assert noisy._bytes_per_sample(G_PAPER, 8, host=True) == noisy._bytes_per_sample(G_PAPER, 8)


def test_oracle_host_estimate_within_1_5x_of_measured_slope():
    # Its per-row (n, n_0) maps are built on blocks of 67 rows here: beyond
    # them only each row's vectors grow with the batch.
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((640, G_PAPER.n_latent))
    X, S = G_PAPER.forward(Z), G_PAPER.supports(Z)
    peaks = []
    for B in (128, 640):
        est = OracleInverter(G_PAPER, batch_size=B).fit(X[:B])
        peaks.append(_peak(est, X[:B], {"supports": [s[:B] for s in S]}))
    slope = (peaks[1] - peaks[0]) / 512
    estimate = est._bytes_per_sample(est.generator_, X.dtype.itemsize, host=True)
    assert 1 / 1.5 <= estimate / slope <= 1.5, (estimate, slope)
