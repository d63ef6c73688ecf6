"""n_jobs: identical results and the speed-up of spreading batches over workers.

    python -m benchmarks.n_jobs [--n-signals 4000] [--batch-size 500] [--n-jobs 2]
                                [--repeats 3] [--gd-iter 200]

On the shipped ``digits-fc`` generator (8-32-64-64, PLU output), float64
noiseless signals, ``LatentPursuitInverter`` and ``GradientDescentInverter``
transform the same signals with ``n_jobs=1`` and ``n_jobs=N`` (joblib's
default loky backend; one BLAS thread per batch either way). The script
checks the codes are bit-identical (``np.array_equal``) and reports the best
of ``--repeats`` wall times of ``transform`` for each, after one untimed
warm-up call that starts the worker processes. Writes
``benchmarks/results/n_jobs.json``.
"""

import argparse
import json
import os
import time
import warnings

import numpy as np

from skinvert import GradientDescentInverter, LatentPursuitInverter
from skinvert.datasets import load_pretrained_generator

from ._common import result_path


def timed(est, X, repeats):
    est.transform(X[: 2 * est.batch_size])  # warm-up: starts the workers
    best, Z = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        Z = est.transform(X)
        best = min(best, time.perf_counter() - t)
    return Z, best


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-signals", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--gd-iter", type=int, default=200)
    p.add_argument("--json", default=result_path("n_jobs.json"))
    a = p.parse_args()
    G = load_pretrained_generator("digits-fc")
    X = G.forward(np.random.default_rng(0).standard_normal((a.n_signals, G.n_latent)))
    makers = {
        "LatentPursuitInverter": lambda nj: LatentPursuitInverter(
            G, batch_size=a.batch_size, n_jobs=nj
        ),
        f"GradientDescentInverter(transform_max_iter={a.gd_iter})": lambda nj: (
            GradientDescentInverter(
                G,
                transform_max_iter=a.gd_iter,
                batch_size=a.batch_size,
                n_jobs=nj,
                random_state=0,
            )
        ),
    }
    out = {
        "generator": "digits-fc [8, 32, 64, 64], PLU output",
        "n_signals": a.n_signals,
        "batch_size": a.batch_size,
        "n_jobs": a.n_jobs,
        "repeats": a.repeats,
        "cpu_count": os.cpu_count(),
        "note": "wall times are the best of `repeats` on a shared, loaded machine",
        "results": {},
    }
    for name, make in makers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning of capped runs
            Z1, t1 = timed(make(1).fit(X[:10]), X, a.repeats)
            Zn, tn = timed(make(a.n_jobs).fit(X[:10]), X, a.repeats)
        same = bool(np.array_equal(Z1, Zn))
        out["results"][name] = {
            "time_n_jobs_1_s": t1,
            f"time_n_jobs_{a.n_jobs}_s": tn,
            "speedup": t1 / tn,
            "identical": same,
        }
        print(
            f"{name:45s} n_jobs=1 {t1:7.2f} s   n_jobs={a.n_jobs} {tn:7.2f} s   "
            f"speed-up {t1 / tn:4.2f}x   identical: {same}",
            flush=True,
        )
    with open(a.json, "w") as fh:
        json.dump(out, fh, indent=1)
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
