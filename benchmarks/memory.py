"""Peak memory of ``transform`` against the number of signals, at a fixed batch_size.

    python -m benchmarks.memory [--sizes 10000 100000] [--batch-size 1000]
                                [--inverters gd,lp] [--gd-iter 20]
    python -m benchmarks.memory --estimates [--estimate-batches 8 32]
    python -m benchmarks.memory --estimates --host --estimate-batches 128 512 \
        --estimate-nets fashion-mnist-fc
    python -m benchmarks.memory --hybrid-estimates

``--estimates`` checks instead the per-sample working-memory estimates that
size ``batch_size=None`` (``_bytes_per_sample``): for Latent-Pursuit, Layered
BP and the Oracle (end-to-end and layer-wise) on ``fashion-mnist-fc`` (clean
and with 45 % missing entries) and the Figure 4 net ``[100, 850, 625]``
(tanh), it measures the tracemalloc peak of ``transform`` on one batch of
each size in ``--estimate-batches``, fits ``peak = fixed + per_sample * B``
and prints the estimate against ``per_sample`` (``benchmarks/results/
memory_estimates.json``).

Every (inverter, n_signals) runs in a fresh Python subprocess that

1. imports skinvert, loads the shipped ``digits-fc`` generator (8-32-64-64,
   PLU output) and fits the inverter on 10 signals: the *baseline* peak RSS;
2. fills a preallocated float32 array of ``n_signals`` noiseless signals
   ``G(z)``, one batch at a time (so that building the input does not itself
   hold the hidden layers of every signal): the input array's own size is
   ``n_signals * 64 * 4`` bytes;
3. runs ``transform`` with ``batch_size`` rows per batch.

The peak RSS (``VmHWM`` of ``/proc/self/status``, and ``ru_maxrss`` of
``getrusage(RUSAGE_CHILDREN)`` in the parent as a cross-check) is read after
each step. ``batch_size`` bounds the working memory: what grows with
``n_signals`` is the input, the output codes and the per-batch results held
until they are concatenated, i.e. a few hundred bytes per signal, so peak RSS
for 100,000 signals should be well under twice that for 10,000. The script
writes ``benchmarks/results/memory.json`` and prints a table.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

from ._common import ROOT, result_path

CHILD = r"""
import json, os, sys, time, warnings

def hwm():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return -1

import numpy as np
from skinvert import GradientDescentInverter, LatentPursuitInverter
from skinvert.datasets import load_pretrained_generator

n, batch, kind, gd_iter = {n}, {batch}, {kind!r}, {gd_iter}
G = load_pretrained_generator("digits-fc")
rng = np.random.default_rng(0)
if kind == "gd":
    est = GradientDescentInverter(G, transform_max_iter=gd_iter, batch_size=batch, random_state=0)
else:
    est = LatentPursuitInverter(G, batch_size=batch)
fit_X = G.forward(rng.standard_normal((10, G.n_latent)).astype(np.float32))
est.fit(fit_X)
out = {{"baseline_hwm": hwm()}}
X = np.empty((n, G.n_output), dtype=np.float32)
for start in range(0, n, batch):
    stop = min(n, start + batch)
    X[start:stop] = G.forward(rng.standard_normal((stop - start, G.n_latent)).astype(np.float32))
out["input_bytes"] = int(X.nbytes)
out["after_input_hwm"] = hwm()
t = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # ConvergenceWarning of the capped gradient descent
    Z = est.transform(X)
out["transform_s"] = time.perf_counter() - t
out["output_bytes"] = int(Z.nbytes)
out["output_dtype"] = str(Z.dtype)
out["peak_hwm"] = hwm()
print("RESULT " + json.dumps(out))
"""


def _child_env():
    """The environment of a child: this checkout first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_child(n, batch, kind, gd_iter):
    code = CHILD.format(n=n, batch=batch, kind=kind, gd_iter=gd_iter)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_child_env()
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT ") :])
    res["wall_s"] = wall
    # ru_maxrss (KiB on Linux) is the max over all waited-for children so far:
    # only meaningful when this child raised it, i.e. runs go in increasing size.
    res["ru_maxrss_children"] = after * 1024 if after > before else None
    return res


def traced_peak(est, X, kwargs):
    """tracemalloc peak (bytes above the start) of ``est.transform(X)``."""
    import tracemalloc
    import warnings

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.transform(X, **kwargs)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def estimates(batches, path, host=False, only=None):
    """Per-sample memory estimates against tracemalloc (see the module notes).

    ``host``: the estimates that size NumPy batches (``host=True``), where the
    per-row stacks built on blocks of rows are a fixed cost; measure them
    between batches beyond those blocks (``--estimate-batches 128 512``).
    ``only``: the generators to run (names as in the table).
    """
    import warnings

    import numpy as np

    from skinvert import (
        LatentPursuitInverter,
        LayeredBPInverter,
        OracleInverter,
        make_random_generator,
    )
    from skinvert.datasets import load_pretrained_generator

    nets = [
        ("fashion-mnist-fc", load_pretrained_generator("fashion-mnist-fc"), ("clean", "missing")),
        (
            "Figure 4 [100, 850, 625]",
            make_random_generator([100, 850, 625], output_activation="tanh", random_state=850),
            ("clean",),
        ),
    ]
    makers = {
        "LatentPursuitInverter": lambda G, B: LatentPursuitInverter(G, batch_size=B),
        "LayeredBPInverter": lambda G, B: LayeredBPInverter(G, batch_size=B),
        "OracleInverter": lambda G, B: OracleInverter(G, batch_size=B),
        "OracleInverter(layerwise)": lambda G, B: OracleInverter(
            G, method="layerwise", batch_size=B
        ),
    }
    if only:
        nets = [n for n in nets if n[0] in only]
    rows = []
    MiB, KiB = 2**20, 2**10
    for net, G, modes in nets:
        rng = np.random.default_rng(0)
        Z = rng.standard_normal((max(batches), G.n_latent))
        X0 = G.forward(Z)
        S0 = G.supports(Z)
        for mode in modes:
            X = X0.copy()
            if mode == "missing":
                X[rng.random(X.shape) < 0.45] = np.nan
            for name, make in makers.items():
                peaks = []
                for B in batches:
                    est = make(G, B)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        est.fit(np.nan_to_num(X[:B]))
                    kw = {"supports": [s[:B] for s in S0]} if name.startswith("Oracle") else {}
                    peaks.append(traced_peak(est, X[:B], kw))
                per = (peaks[-1] - peaks[0]) / (batches[-1] - batches[0])
                fixed = peaks[0] - per * batches[0]
                estimate = est._bytes_per_sample(est.generator_, X.dtype.itemsize, host=host)
                r = {
                    "generator": net,
                    "signals": mode,
                    "inverter": name,
                    "batches": list(batches),
                    "host": host,
                    "peaks_bytes": peaks,
                    "measured_bytes_per_sample": per,
                    "fixed_bytes": fixed,
                    "estimate_bytes_per_sample": estimate,
                    "estimate_over_measured": estimate / per,
                }
                rows.append(r)
                print(
                    f"{net:26s} {mode:8s} {name:26s} estimate {estimate / KiB:8.0f} KiB  "
                    f"measured {per / KiB:8.0f} KiB/sample (+{fixed / MiB:5.1f} MiB)  "
                    f"ratio {estimate / per:5.2f}",
                    flush=True,
                )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump({"machine": platform.platform(), "rows": rows}, fh, indent=1)
    print(f"wrote {path}")


def hybrid_estimates(path, batches=(256, 1024)):
    """HybridInverter's per-sample estimate on NumPy (``host=True``) against
    the tracemalloc slope between batches of 256 and 1024 signals, beyond
    the blocks of rows its per-row maps are built on (see the module notes)."""
    import warnings

    import numpy as np

    from benchmarks.noise_saturating import saturating_generator
    from skinvert import HybridInverter
    from skinvert.datasets import load_pretrained_generator

    fm = load_pretrained_generator("fashion-mnist-fc")
    cases = [
        ("fashion-mnist-fc", fm, 0.0, {}),
        ("fashion-mnist-fc", fm, 0.0, {"use_pursuit": False}),
        ("fashion-mnist-fc", fm, 0.0, {"use_pursuit": False, "restarts_per_round": 8}),
        ("saturating tanh", saturating_generator(), 1e-2, {"noise_std": 1e-2}),
    ]
    rows = []
    KiB = 2**10
    for net, G, sigma, kwargs in cases:
        rng = np.random.default_rng(0)
        X = G.forward(rng.standard_normal((max(batches), G.n_latent)))
        X = X + sigma * rng.standard_normal(X.shape)
        peaks = []
        for B in batches:
            est = HybridInverter(G, batch_size=B, random_state=0, **kwargs)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(X[:B])
            peaks.append(traced_peak(est, X[:B], {}))
        per = (peaks[-1] - peaks[0]) / (batches[-1] - batches[0])
        estimate = est._bytes_per_sample(est.generator_, X.dtype.itemsize, host=True)
        rows.append({"generator": net, "kwargs": kwargs, "batches": list(batches),
                     "peaks_bytes": peaks, "measured_bytes_per_sample": per,
                     "estimate_bytes_per_sample": estimate,
                     "estimate_over_measured": estimate / per})
        print(f"{net:18s} {str(kwargs):52s} estimate {estimate / KiB:6.0f} KiB  "
              f"measured {per / KiB:6.0f} KiB/sample  ratio {estimate / per:5.2f}", flush=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump({"machine": platform.platform(), "rows": rows}, fh, indent=1)
    print(f"wrote {path}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--inverters", default="gd,lp", help="comma list of gd, lp")
    p.add_argument("--gd-iter", type=int, default=20)
    p.add_argument("--json", default=result_path("memory.json"))
    p.add_argument("--estimates", action="store_true", help="check _bytes_per_sample instead")
    p.add_argument("--estimate-batches", type=int, nargs=2, default=[8, 32])
    p.add_argument("--host", action="store_true",
                   help="with --estimates: the NumPy estimates (host=True)")
    p.add_argument("--estimate-nets", default=None,
                   help="with --estimates: comma list of generators (default: all)")
    p.add_argument("--hybrid-estimates", action="store_true",
                   help="check HybridInverter's _bytes_per_sample (NumPy) instead")
    a = p.parse_args()
    if a.estimates:
        name = "memory_estimates_host.json" if a.host else "memory_estimates.json"
        only = None if a.estimate_nets is None else a.estimate_nets.split(",")
        estimates(a.estimate_batches, result_path(name), host=a.host, only=only)
        return
    if a.hybrid_estimates:
        hybrid_estimates(result_path("memory_estimates_hybrid.json"))
        return
    sizes = sorted(a.sizes)
    names = {
        "gd": f"GradientDescentInverter(transform_max_iter={a.gd_iter})",
        "lp": "LatentPursuitInverter()",
    }
    out = {
        "generator": "digits-fc [8, 32, 64, 64], PLU output",
        "dtype": "float32",
        "batch_size": a.batch_size,
        "sizes": sizes,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus (shared), "
        f"Python {platform.python_version()}",
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "runs": {},
    }
    MB = 2**20
    for kind in a.inverters.split(","):
        runs = {}
        for n in sizes:
            r = run_child(n, a.batch_size, kind, a.gd_iter)
            runs[str(n)] = r
            print(
                f"{names[kind]:45s} n={n:>7d}  baseline {r['baseline_hwm'] / MB:7.1f} MiB  "
                f"input {r['input_bytes'] / MB:6.1f} MiB  peak {r['peak_hwm'] / MB:7.1f} MiB  "
                f"transform {r['transform_s']:6.1f} s",
                flush=True,
            )
        entry = {"inverter": names[kind], "runs": runs}
        if len(sizes) >= 2:
            lo, hi = runs[str(sizes[0])], runs[str(sizes[-1])]
            entry["peak_ratio"] = hi["peak_hwm"] / lo["peak_hwm"]
            entry["bytes_per_signal"] = (hi["peak_hwm"] - lo["peak_hwm"]) / (sizes[-1] - sizes[0])
            entry["input_bytes_per_signal"] = hi["input_bytes"] / sizes[-1]
            entry["output_bytes_per_signal"] = hi["output_bytes"] / sizes[-1]
            entry["ratio_at_most_2"] = entry["peak_ratio"] <= 2.0
            print(
                f"  peak ratio {sizes[-1]}/{sizes[0]}: {entry['peak_ratio']:.3f}  "
                f"growth {entry['bytes_per_signal']:.0f} B/signal (input row "
                f"{entry['input_bytes_per_signal']:.0f} B, output row "
                f"{entry['output_bytes_per_signal']:.0f} B)",
                flush=True,
            )
        out["runs"][kind] = entry
    os.makedirs(os.path.dirname(a.json), exist_ok=True)
    with open(a.json, "w") as fh:
        json.dump(out, fh, indent=1)
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
