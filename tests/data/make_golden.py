"""Record the golden outputs of every inverter (tests/test_golden.py checks them).

Run from the repository root: ``python tests/data/make_golden.py``. The cases
are fixed seeds on a random tanh net, on the shipped ``fashion-mnist-fc``, with
NaN-missing entries, with ``noise_std`` and with a measurement. Re-record only
when a change of the outputs is intended and explained.
"""

import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "golden_outputs.npz")


def cases():
    """Yield (name, make_estimator, X, transform kwargs) for every golden case."""
    from skinvert import (
        GradientDescentInverter,
        LatentPursuitInverter,
        LayeredBPInverter,
        OracleInverter,
        make_random_generator,
    )
    from skinvert.datasets import load_pretrained_generator

    rng = np.random.default_rng(20261202)
    nets = {
        "tanh": make_random_generator([20, 80, 200, 400], random_state=0),
        "fmnist": load_pretrained_generator("fashion-mnist-fc"),
    }
    for net, G in nets.items():
        Z = rng.standard_normal((12, G.n_latent))
        X = G.forward(Z)
        S = G.supports(Z)
        Xmiss = X.copy()
        Xmiss[rng.random(X.shape) < 0.45] = np.nan
        Xnoisy = X + 1e-2 * rng.standard_normal(X.shape)
        yield f"{net}/clean/lp", lambda G=G: LatentPursuitInverter(G), X, {}
        yield f"{net}/clean/lbp", lambda G=G: LayeredBPInverter(G), X, {}
        yield f"{net}/clean/oracle", lambda G=G: OracleInverter(G), X, {"supports": S}
        yield (
            f"{net}/clean/gd",
            lambda G=G: GradientDescentInverter(G, transform_max_iter=150, random_state=0),
            X,
            {},
        )
        yield f"{net}/missing/lp", lambda G=G: LatentPursuitInverter(G), Xmiss, {}
        yield f"{net}/missing/oracle", lambda G=G: OracleInverter(G), Xmiss, {"supports": S}
        yield (
            f"{net}/missing/gd",
            lambda G=G: GradientDescentInverter(G, transform_max_iter=150, random_state=0),
            Xmiss,
            {},
        )
        yield f"{net}/noise/lp", lambda G=G: LatentPursuitInverter(G, noise_std=1e-2), Xnoisy, {}
        yield f"{net}/noise/lbp", lambda G=G: LayeredBPInverter(G, noise_std=1e-2), Xnoisy, {}
        yield f"{net}/noise/oracle", lambda G=G: OracleInverter(G), Xnoisy, {"supports": S}
    # Measurements y = A G(z): an identity net (folded A) and the PLU net.
    Gi = make_random_generator([10, 60, 150, 300], output_activation="identity", random_state=1)
    for net, G, m in (("identity", Gi, 200), ("fmnist", nets["fmnist"], 500)):
        A = rng.standard_normal((m, G.n_output)) / np.sqrt(m)
        Z = rng.standard_normal((8, G.n_latent))
        Y = G.forward(Z) @ A.T
        S = G.supports(Z)
        yield f"{net}/measured/lp", lambda G=G, A=A: LatentPursuitInverter(G, measurement=A), Y, {}
        yield (
            f"{net}/measured/oracle",
            lambda G=G, A=A: OracleInverter(G, measurement=A),
            Y,
            {"supports": S},
        )
        yield (
            f"{net}/measured/gd",
            lambda G=G, A=A: GradientDescentInverter(
                G, measurement=A, transform_max_iter=150, random_state=0
            ),
            Y,
            {},
        )


def run_case(make, X, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = make().fit(X)
        return np.asarray(est.transform(X, **kwargs))


def main():
    out = {}
    for name, make, X, kwargs in cases():
        out[name + "/X"] = X
        out[name + "/Z"] = run_case(make, X, kwargs)
        print(name, out[name + "/Z"].shape)
    np.savez_compressed(PATH, **out)
    print("wrote", PATH)


if __name__ == "__main__":
    main()
