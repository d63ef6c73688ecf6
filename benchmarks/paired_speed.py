"""Latent-Pursuit / Oracle time on clean signals, paired runs, on several generators (issue 15).

Each run times the Oracle (given the true supports) and then Latent-Pursuit
on the same signals; the figure is the median over ``--repeats`` such pairs
of the per-pair ratio, so a change of the machine's speed between runs moves
both terms of a ratio. Generators (``--nets``, comma-separated):

* ``saturating``: ``fashion-mnist-fc`` with its last layer x3 (tanh, 32 %
  of pixels beyond 0.999; :mod:`benchmarks.noise_saturating`);
* ``fashion-mnist-fc``: the shipped generator;
* ``random-20-80-200-400``, ``random-20-128-392-784-identity``,
  ``random-30-200-400-600``: random nets (``random_state=3``), tanh output
  unless the name says identity.

To compare two commits, run it in a ``git worktree`` of each, alternately.

Examples
--------
::

    python -m benchmarks.paired_speed
    python -m benchmarks.paired_speed --nets saturating,fashion-mnist-fc --repeats 7
"""

import argparse
import datetime
import json
import os
import sys
import time
import warnings
from collections import Counter

import numpy as np

from skinvert import LatentPursuitInverter, OracleInverter, make_random_generator

from ._common import git_rev, pretrained_generator, result_path
from .noise_saturating import saturating_generator

NETS = {
    "saturating": lambda: saturating_generator(3.0),
    "fashion-mnist-fc": lambda: pretrained_generator("fashion-mnist-fc")[0],
    "random-20-80-200-400": lambda: make_random_generator(
        [20, 80, 200, 400], output_activation="tanh", random_state=3
    ),
    "random-20-128-392-784-identity": lambda: make_random_generator(
        [20, 128, 392, 784], output_activation="identity", random_state=3
    ),
    "random-30-200-400-600": lambda: make_random_generator(
        [30, 200, 400, 600], output_activation="tanh", random_state=3
    ),
}


def paired(G, n_signals, repeats, seed):
    """Median LP / Oracle time ratio over ``repeats`` paired transforms, and
    the stages and accuracy of Latent-Pursuit's last run."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n_signals, G.n_latent))
    X, S = G.forward(Z), G.supports(Z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oracle, lp = OracleInverter(G).fit(X), LatentPursuitInverter(G).fit(X)
        pairs = []
        for _ in range(repeats):
            t = time.perf_counter()
            oracle.transform(X, supports=S)
            to = time.perf_counter() - t
            t = time.perf_counter()
            Zl, info = lp.transform(X, return_info=True)
            pairs.append((time.perf_counter() - t, to))
    tl, to = np.array(pairs).T
    err = np.linalg.norm(Zl - Z, axis=1) / np.linalg.norm(Z, axis=1)
    return {
        "n_signals": n_signals,
        "repeats": repeats,
        "latent_pursuit_s_median": float(np.median(tl)),
        "oracle_s_median": float(np.median(to)),
        "ratio_median": float(np.median(tl / to)),
        "ratio_min_max": [float(np.min(tl / to)), float(np.max(tl / to))],
        "exact_rows": int(np.sum(err <= 1e-6)),
        "max_relative_error": float(err.max()),
        "stages": {str(k): int(v) for k, v in Counter(info["stage"]).items()},
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--n-signals", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=result_path("paired_speed.json"))
    args = ap.parse_args(argv)
    out = {
        "meta": {
            "command": "python -m benchmarks.paired_speed " + " ".join(sys.argv[1:]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "git": git_rev(),
            "load_avg_start": os.getloadavg(),
        },
        "results": {},
    }
    for name in args.nets.split(","):
        r = paired(NETS[name](), args.n_signals, args.repeats, args.seed)
        out["results"][name] = r
        print(
            f"{name}: LP {r['latent_pursuit_s_median']:.3f} s, Oracle {r['oracle_s_median']:.3f} s,"
            f" LP / Oracle {r['ratio_median']:.2f} (pairs {r['ratio_min_max'][0]:.2f}-"
            f"{r['ratio_min_max'][1]:.2f}), exact {r['exact_rows']} / {r['n_signals']},"
            f" stages {r['stages']}",
            flush=True,
        )
    out["meta"]["load_avg_end"] = os.getloadavg()
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
