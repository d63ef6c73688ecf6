"""Inverters on a convolutional generator (issue 14, item 3): layer-generic code paths."""

import numpy as np
import pytest

from skinvert import (
    GradientDescentInverter,
    HybridInverter,
    LatentPursuitInverter,
    LayeredBPInverter,
    OracleInverter,
    ReLUGenerator,
)
from skinvert.operators import Composite, ConvTranspose2d, Dense, Reshape


def small_conv_generator(activation="identity", dtype=np.float64, seed=0):
    """z (8) -> Dense 8x4x4 -> ConvT(8->8, k4 s2 p1) 8x8x8 -> ConvT(8->1, k4 s2 p1) 1x16x16.

    The last layer maps 512 units to 256 outputs (it contracts, like a DCGAN's).
    """
    rng = np.random.default_rng(seed)
    w0, b0 = rng.standard_normal((128, 8)) / np.sqrt(8), rng.standard_normal(128) / 4
    w1, b1 = rng.standard_normal((8, 8, 4, 4)) / 4, rng.standard_normal(8) / 4
    w2, b2 = rng.standard_normal((8, 1, 4, 4)) / 4, rng.standard_normal(1) / 4
    layers = [
        Composite([Dense(w0.astype(dtype), b0.astype(dtype)), Reshape((128,), (8, 4, 4))]),
        ConvTranspose2d(w1.astype(dtype), b1.astype(dtype), in_shape=(8, 4, 4), stride=2,
                        padding=1),
        ConvTranspose2d(w2.astype(dtype), b2.astype(dtype), in_shape=(8, 8, 8), stride=2,
                        padding=1),
    ]
    return ReLUGenerator.from_layers(layers, output_activation=activation)


# The gradient-descent tests run a few dozen iterations on purpose.
short_descent = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def codes(n, seed=1):
    return np.random.default_rng(seed).standard_normal((n, 8))


def z_snr_db(Z, Zhat):
    err = np.linalg.norm(Z - Zhat, axis=1)
    return 20 * np.log10(np.linalg.norm(Z, axis=1) / np.maximum(err, 1e-300))


def test_generator_is_not_dense_and_not_layerwise():
    G = small_conv_generator()
    assert not G.is_dense
    assert "512 units to 256 outputs" in G.layerwise_obstacle()


@pytest.mark.parametrize("activation", ["identity", "tanh"])
def test_oracle_exact_on_true_supports(activation):
    G = small_conv_generator(activation)
    Z = codes(6)
    X = G.forward(Z)
    Zhat = OracleInverter(G).fit(X).transform(X, supports=G.supports(Z))
    np.testing.assert_allclose(Zhat, Z, rtol=1e-7, atol=1e-7)


@short_descent
def test_gradient_descent_runs_and_lowers_the_loss():
    G = small_conv_generator("tanh")
    Z = codes(5)
    X = G.forward(Z)
    est = GradientDescentInverter(G, solver="adam", transform_max_iter=50, random_state=0).fit(X)
    assert np.isfinite(est.lipschitz_) and est.lipschitz_ > 0
    Zhat = est.transform(X)
    Z0 = np.broadcast_to(est.init_codes_[:1], Z.shape)
    before = np.sum((G.forward(Z0) - X) ** 2, axis=1)
    after = np.sum((G.forward(Zhat) - X) ** 2, axis=1)
    assert np.all(after < before)


@short_descent
def test_momentum_gradient_descent_lowers_the_loss():
    G = small_conv_generator("identity")
    Z = codes(4)
    X = G.forward(Z)
    est = GradientDescentInverter(G, solver="momentum", transform_max_iter=30,
                                  random_state=0).fit(X)
    Zhat = est.transform(X)
    Z0 = np.broadcast_to(est.init_codes_[:1], Z.shape)
    assert np.all(np.sum((G.forward(Zhat) - X) ** 2, axis=1)
                  < np.sum((G.forward(Z0) - X) ** 2, axis=1))


@pytest.mark.parametrize("activation", ["identity", "tanh"])
def test_hybrid_exact_on_clean_signals(activation):
    G = small_conv_generator(activation)
    Z = codes(8)
    X = G.forward(Z)
    est = HybridInverter(G, random_state=0).fit(X)
    assert est.pursuit_ is None
    assert est.start_max_iter_ == 300  # "auto" on a convolutional generator
    Zhat, info = est.transform(X, return_info=True)
    assert np.all(z_snr_db(Z, Zhat) >= 60), z_snr_db(Z, Zhat)
    assert np.all(info["start"] >= 0)


def test_hybrid_exact_with_missing_entries():
    G = small_conv_generator("tanh")
    Z = codes(8, seed=2)
    X = G.forward(Z)
    X[np.random.default_rng(3).random(X.shape) < 0.45] = np.nan
    Zhat = HybridInverter(G, random_state=0).fit(X).transform(X)
    assert np.all(z_snr_db(Z, Zhat) >= 60), z_snr_db(Z, Zhat)


def test_hybrid_exact_with_a_gaussian_measurement():
    G = small_conv_generator("identity")
    A = np.random.default_rng(4).standard_normal((40, 256)) / np.sqrt(40)
    Z = codes(8, seed=5)
    Y = G.forward(Z) @ A.T
    Zhat = HybridInverter(G, measurement=A, random_state=0).fit(Y).transform(Y)
    assert np.all(z_snr_db(Z, Zhat) >= 60), z_snr_db(Z, Zhat)


@pytest.mark.parametrize("Inverter", [LatentPursuitInverter, LayeredBPInverter])
def test_layerwise_inverters_refuse(Inverter):
    G = small_conv_generator()
    X = G.forward(codes(2))
    with pytest.raises(ValueError, match=f"{Inverter.__name__} cannot invert this generator: "
                                         r".*512 units to 256 outputs.*use HybridInverter"):
        Inverter(G).fit(X)


def test_hybrid_use_pursuit_true_refuses():
    G = small_conv_generator()
    X = G.forward(codes(2))
    with pytest.raises(ValueError, match="cannot invert this generator"):
        HybridInverter(G, use_pursuit=True).fit(X)


@short_descent
@pytest.mark.parametrize("Inverter", [GradientDescentInverter, HybridInverter])
def test_float32_preserved(Inverter):
    G = small_conv_generator("tanh", dtype=np.float32)
    X = G.forward(codes(3).astype(np.float32)).astype(np.float32)
    kw = {"transform_max_iter": 20} if Inverter is GradientDescentInverter else {}
    Zhat = Inverter(G, random_state=0, **kw).fit(X).transform(X)
    assert Zhat.dtype == np.float32
    assert np.all(np.isfinite(Zhat))


def test_oracle_float32_and_default_support_estimator():
    G = small_conv_generator("identity", dtype=np.float32)
    Z = codes(3).astype(np.float32)
    X = G.forward(Z).astype(np.float32)
    est = OracleInverter(G, random_state=0).fit(X)
    assert isinstance(est.support_estimator_, HybridInverter)
    Zhat = est.transform(X)
    assert Zhat.dtype == np.float32
    np.testing.assert_allclose(Zhat, Z, rtol=1e-3, atol=1e-3)


@short_descent
def test_composite_dense_generator_matches_the_dense_path():
    """The layer-generic path on a fully connected network wrapped in Composite layers
    gives the dense path's codes (gradient descent, to rounding)."""
    rng = np.random.default_rng(7)
    W = [rng.standard_normal((30, 6)) / 2, rng.standard_normal((60, 30)) / 5]
    b = [rng.standard_normal(30) / 4, rng.standard_normal(60) / 4]
    dense = ReLUGenerator(W, b, output_activation="tanh")
    wrapped = ReLUGenerator.from_layers([Composite([Dense(w, c)]) for w, c in zip(W, b)],
                                        output_activation="tanh")
    assert dense.is_dense and not wrapped.is_dense
    X = dense.forward(rng.standard_normal((4, 6)))
    kw = {"transform_max_iter": 40, "random_state": 0}
    Za = GradientDescentInverter(dense, **kw).fit(X).transform(X)
    Zb = GradientDescentInverter(wrapped, **kw).fit(X).transform(X)
    np.testing.assert_allclose(Zb, Za, rtol=1e-8, atol=1e-10)
