"""Linear measurements y = A G(z) (issue 6, item 4) on the shipped generator.

The fashion-mnist-fc generator (20-128-392-784, PLU output), z ~ N(0, I),
A ~ N(0, 1/m) of shape (m, 784). Reports, per method, the median / p10 / p90
z-SNR and image SNR (G(z_hat) vs G(z)), the fraction of rows at or above
60 dB z-SNR, and the wall time. Timings on a shared machine are noisy.

    python -m benchmarks.measurements --n 512 --m 300 784
    python -m benchmarks.measurements --n 512 --m 300 --methods hybrid lp
"""

import argparse
import json
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from skinvert import GradientDescentInverter, HybridInverter, LatentPursuitInverter
from skinvert.datasets import load_pretrained_generator

from ._common import result_path, snr_db_floored, snr_stats


def methods():
    return {
        "gd_default": lambda G, A: GradientDescentInverter(G, measurement=A, random_state=0),
        "gd_10000": lambda G, A: GradientDescentInverter(
            G, measurement=A, transform_max_iter=10_000, random_state=0
        ),
        "lp": lambda G, A: LatentPursuitInverter(G, measurement=A),
        "lp_fallback2000": lambda G, A: LatentPursuitInverter(
            G, measurement=A, fallback_max_iter=2000
        ),
        # Gradient-descent starts + exact polish (no pursuit start below m = n_L).
        "hybrid": lambda G, A: HybridInverter(G, measurement=A, random_state=0),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512, help="signals")
    ap.add_argument("--m", type=int, nargs="+", default=[300], help="measurements")
    ap.add_argument("--methods", nargs="+", default=list(methods()))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=result_path("measurements.json"))
    args = ap.parse_args()
    G = load_pretrained_generator("fashion-mnist-fc")
    rng = np.random.default_rng(args.seed)
    Z = rng.standard_normal((args.n, G.n_latent))
    X = G.forward(Z)
    results = {"generator": "fashion-mnist-fc", "n_signals": args.n, "seed": args.seed, "runs": []}
    for m in args.m:
        A = rng.standard_normal((m, G.n_output)) / np.sqrt(m)
        Y = X @ A.T
        for name in args.methods:
            est = methods()[name](G, A)
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                Zh = est.fit(Y).transform(Y)
            wall = time.perf_counter() - t0
            zs, xs = snr_db_floored(Z, Zh), snr_db_floored(X, G.forward(Zh))
            run = {
                "m": m,
                "method": name,
                "z_snr_db": snr_stats(zs, cap=None),
                "image_snr_db": snr_stats(xs, cap=None),
                "frac_z_snr_ge_60": float(np.mean(zs >= 60)),
                "wall_s": wall,
                "s_per_signal": wall / args.n,
                "warnings": sorted({str(w.message) for w in caught}),
            }
            results["runs"].append(run)
            print(
                f"m={m:4d} {name:16s} z-SNR median {run['z_snr_db']['median']:7.1f} "
                f"p10 {run['z_snr_db']['p10']:7.1f} p90 {run['z_snr_db']['p90']:7.1f} | image "
                f"median {run['image_snr_db']['median']:7.1f} | >=60 dB "
                f"{run['frac_z_snr_ge_60']:.3f} | {wall:7.1f} s ({wall / args.n:.3f} s/signal)",
                flush=True,
            )
            # Written after every run, so that a partial run keeps its figures.
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
