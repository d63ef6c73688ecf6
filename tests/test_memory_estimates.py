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
from skinvert import LatentPursuitInverter, OracleInverter, make_random_generator

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
def test_estimate_within_1_5x_of_measured_slope(make):
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((24, G.n_latent))
    X, S = G.forward(Z), G.supports(Z)
    peaks = []
    for B in (8, 24):
        est = make(B).fit(X[:B])
        kw = {"supports": [s[:B] for s in S]} if isinstance(est, OracleInverter) else {}
        peaks.append(_peak(est, X[:B], kw))
    slope = (peaks[1] - peaks[0]) / 16
    estimate = est._bytes_per_sample(est.generator_, X.dtype.itemsize)
    assert 1 / 1.5 <= estimate / slope <= 1.5, (estimate, slope)
