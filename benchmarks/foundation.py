"""Foundation acceptance: Oracle and gradient descent on a random [20, 80, 200, 400] tanh net.

    python -m benchmarks.foundation [--n-signals 512] [--gd-iter 2000] [--n-jobs 1]

Prints, for 512 noiseless signals G(z), z ~ N(0, I): the Oracle's minimum and
median z-SNR (true supports given), gradient descent's median and 10th
percentile y-SNR and z-SNR, and the wall time of each (fit + transform), then
the n_jobs speed-up of gradient descent when ``--n-jobs`` > 1.
"""

import argparse
import json
import time
import warnings

import numpy as np

from skinvert import GradientDescentInverter, OracleInverter, make_random_generator
from skinvert.metrics import snr_db


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n-signals", type=int, default=512)
    p.add_argument("--gd-iter", type=int, default=2000)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--json", default="benchmarks/results/foundation.json")
    a = p.parse_args()
    G = make_random_generator([20, 80, 200, 400], random_state=0)
    Z = np.random.default_rng(1).standard_normal((a.n_signals, 20))
    X = G.forward(Z)
    out = {"n_signals": a.n_signals, "layer_sizes": G.layer_sizes}
    t = time.perf_counter()
    Zo = OracleInverter(G).fit(X).transform(X, supports=G.supports(Z))
    out["oracle"] = {
        "time_s": time.perf_counter() - t,
        "z_snr_min": float(np.min(snr_db(Z, Zo))),
        "z_snr_median": float(np.median(snr_db(Z, Zo))),
    }
    for n_jobs in sorted({1, a.n_jobs}):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t = time.perf_counter()
            gd = GradientDescentInverter(
                G, transform_max_iter=a.gd_iter, n_jobs=n_jobs, random_state=0
            )
            Zg = gd.fit(X).transform(X)
            elapsed = time.perf_counter() - t
        ys, zs = snr_db(X, G.forward(Zg)), snr_db(Z, Zg)
        out[f"gradient_descent_n_jobs_{n_jobs}"] = {
            "time_s": elapsed,
            "iterations": a.gd_iter,
            "y_snr_median": float(np.median(ys)),
            "y_snr_p10": float(np.percentile(ys, 10)),
            "z_snr_median": float(np.median(zs)),
            "z_snr_p10": float(np.percentile(zs, 10)),
            "warnings": [str(x.message) for x in w],
        }
    print(json.dumps(out, indent=1))
    with open(a.json, "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
