"""Which inverters warn on clean, invertible signals, and how (issue 18).

Every inverter with its defaults, on clean signals of the shipped
``fashion-mnist-fc`` and of a random 20-100-200-500 net: the fraction of
exact rows (z-SNR >= 60 dB), the time, and every warning raised, with
gradient descent's rows split as its warning splits them (still descending
at the cap, or stalled at a spurious stationary point)::

    python -m benchmarks.clean_warnings --n-signals 200
"""

import argparse
import warnings

import numpy as np

from skinvert import (
    GradientDescentInverter,
    HybridInverter,
    LatentPursuitInverter,
    LayeredBPInverter,
    OracleInverter,
    make_random_generator,
)

from ._common import GOOD_DB, pretrained_generator, result_path, snr_db_floored, timer, write_json

INVERTERS = {
    "LatentPursuitInverter": LatentPursuitInverter,
    "LayeredBPInverter": LayeredBPInverter,
    "OracleInverter": OracleInverter,
    "HybridInverter": HybridInverter,
    "GradientDescentInverter": lambda G: GradientDescentInverter(G, random_state=0),
}


def run(G, X, Z, make):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with timer() as t:
            Zh, info = make(G).fit(X).transform(X, return_info=True)
    snr = snr_db_floored(Z, Zh)
    return {
        "exact": float(np.mean(snr >= GOOD_DB)),
        "seconds": t["s"],
        "not_converged": {k: int(v) for k, v in info["not_converged"].items()},
        "not_recovered": int(np.sum(~info["recovered"])),
        "warnings": [f"{w.category.__name__}: {w.message}" for w in rec],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-signals", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=result_path("clean_warnings.json"))
    args = ap.parse_args(argv)
    nets = {
        "fashion-mnist-fc": pretrained_generator("fashion-mnist-fc")[0],
        "random 20-100-200-500": make_random_generator([20, 100, 200, 500], random_state=0),
    }
    out = {"n_signals": args.n_signals, "seed": args.seed, "results": {}}
    for name, G in nets.items():
        Z = np.random.default_rng(args.seed).standard_normal((args.n_signals, G.n_latent))
        X = G.forward(Z)
        for label, make in INVERTERS.items():
            r = run(G, X, Z, make)
            out["results"].setdefault(name, {})[label] = r
            print(f"{name:22s} {label:24s} exact {r['exact']:.3f} in {r['seconds']:.1f} s; "
                  f"not converged {r['not_converged'] or 0}; warnings: {len(r['warnings'])}",
                  flush=True)
            for w in r["warnings"]:
                print(f"    {w[:300]}")
    write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
