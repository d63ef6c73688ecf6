"""Latent-Pursuit against the Oracle on clean signals, wide layers, a measurement,
and the noisy hybrid."""

import time
import warnings

import numpy as np

from skinvert import (
    HybridInverter,
    LatentPursuitInverter,
    OracleInverter,
    ReLUGenerator,
    make_random_generator,
)
from skinvert.datasets import load_pretrained_generator

N_SIGNALS = 256


def generator(name):
    """``fashion-mnist-fc``, or its saturating tanh variant (the last layer x3:
    about 32 % of the pixels beyond 0.999), as in ``benchmarks.noise_saturating``."""
    G = load_pretrained_generator("fashion-mnist-fc")
    if name == "saturating":
        W, b = list(G.weights), list(G.biases)
        W[-1], b[-1] = 3.0 * W[-1], 3.0 * b[-1]
        G = ReLUGenerator(W, b, output_activation="tanh")
    return G


def signals(G, sigma=0.0, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((N_SIGNALS, G.n_latent))
    X = G.forward(Z)
    if sigma:
        X = X + sigma * rng.standard_normal(X.shape)
    return X, G.supports(Z)


class CleanSignals:
    """Clean signals: Latent-Pursuit exact, the Oracle on the true supports."""

    params = ["fashion-mnist-fc", "saturating"]
    param_names = ["generator"]
    timeout = 300

    def setup(self, name):
        warnings.simplefilter("ignore")
        G = generator(name)
        self.X, self.S = signals(G)
        self.lp = LatentPursuitInverter(G).fit(self.X)
        self.oracle = OracleInverter(G).fit(self.X)

    def time_latent_pursuit(self, name):
        self.lp.transform(self.X)

    def time_oracle(self, name):
        self.oracle.transform(self.X, supports=self.S)

    def peakmem_latent_pursuit(self, name):
        self.lp.transform(self.X)

    def track_latent_pursuit_over_oracle(self, name):
        """The issue's ratio (target <= 1.5), best of three alternated runs each."""
        lp = oracle = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            self.lp.transform(self.X)
            lp = min(lp, time.perf_counter() - t)
            t = time.perf_counter()
            self.oracle.transform(self.X, supports=self.S)
            oracle = min(oracle, time.perf_counter() - t)
        return lp / oracle

    track_latent_pursuit_over_oracle.unit = "ratio"


class NoisyHybrid:
    """Noise sigma = 1e-2 on the saturating generator: the hybrid and
    Latent-Pursuit with ``noise_std`` (most of its rows by the polish from
    its linearized start), and the Oracle."""

    timeout = 300

    def setup(self):
        warnings.simplefilter("ignore")
        G = generator("saturating")
        self.X, self.S = signals(G, sigma=1e-2)
        self.hybrid = HybridInverter(G, noise_std=1e-2, random_state=0).fit(self.X)
        self.lp = LatentPursuitInverter(G, noise_std=1e-2).fit(self.X)
        self.oracle = OracleInverter(G).fit(self.X)

    def time_hybrid(self):
        self.hybrid.transform(self.X)

    def time_latent_pursuit(self):
        self.lp.transform(self.X)

    def time_oracle(self):
        self.oracle.transform(self.X, supports=self.S)


class WideLayer:
    """The paper's Figure 4 net ``[100, n1, 625]`` (tanh) with ``n1 > 625``:
    clean rows by the polish from the linearized start (the rows it would
    leave: the image layer's Lawson-Hanson and the refresh)."""

    params = [850, 1000]
    param_names = ["n1"]
    timeout = 300

    def setup(self, n1):
        warnings.simplefilter("ignore")
        G = make_random_generator([100, n1, 625], output_activation="tanh", random_state=n1)
        rng = np.random.default_rng(0)
        Z = rng.standard_normal((16, 100))
        self.X = G.forward(Z)
        self.lp = LatentPursuitInverter(G).fit(self.X)

    def time_latent_pursuit(self, n1):
        self.lp.transform(self.X)


class Measurement:
    """``m = 300`` Gaussian measurements of ``fashion-mnist-fc`` (PLU
    output): Latent-Pursuit through the measurement, 32 signals."""

    timeout = 300

    def setup(self):
        warnings.simplefilter("ignore")
        G = generator("fashion-mnist-fc")
        rng = np.random.default_rng(0)
        A = rng.standard_normal((300, G.n_output)) / np.sqrt(300)
        Z = rng.standard_normal((32, G.n_latent))
        self.Y = G.forward(Z) @ A.T
        self.lp = LatentPursuitInverter(G, measurement=A).fit(self.Y)

    def time_latent_pursuit(self):
        self.lp.transform(self.Y)
