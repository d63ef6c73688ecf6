"""The spectral constants of the pursuits' fit: one eigendecomposition per layer."""

import numpy as np
import pytest

from skinvert import LatentPursuitInverter, LayeredBPInverter, make_random_generator
from skinvert.algorithms._batch import lipschitz_constants
from skinvert.algorithms.noise import noise_gains
from skinvert.inverters._batching import spectral_constants


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sizes", [[5, 30, 12], [8, 20, 60, 90]])
def test_spectral_constants_equal_the_two_functions(sizes, dtype):
    """Bit for bit what lipschitz_constants and noise_gains return."""
    G = make_random_generator(sizes, random_state=3)
    weights = [np.asarray(W, dtype=dtype) for W in G.weights]
    lip, gains = spectral_constants(weights)
    assert lip == list(lipschitz_constants(weights))
    assert gains == noise_gains(weights)


@pytest.mark.parametrize("Est", [LatentPursuitInverter, LayeredBPInverter])
def test_fit_decomposes_each_layer_once(Est, monkeypatch):
    G = make_random_generator([6, 30, 50, 80], random_state=0)
    X = G.forward(np.random.default_rng(0).standard_normal((3, 6)))
    calls = []
    eigvalsh = np.linalg.eigvalsh

    def counted(a, *args, **kwargs):
        calls.append(a.shape)
        return eigvalsh(a, *args, **kwargs)

    monkeypatch.setattr(np.linalg, "eigvalsh", counted)
    est = Est(G).fit(X)
    assert len(calls) == len(G.weights)
    assert est.lipschitz_ == list(lipschitz_constants(G.weights))
    assert est.noise_gains_ == noise_gains(G.weights)
