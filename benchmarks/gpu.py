"""GPU check and throughput of every inverter on the shipped generator.

One prepared script for a machine with a GPU (it also runs on the CPU with
``--device cpu`` to check itself):

    SCIPY_ARRAY_API=1 python -m benchmarks.gpu --out gpu.json [--budget-s 240]

For CuPy (when ``cupy.cuda.is_available()``) and torch-CUDA (when
``torch.cuda.is_available()``), float32 and float64, it (1) checks each
inverter's result on 512 signals against NumPy's (max relative difference of
z) and (2) measures throughput (signals/s, transform only, after a warm-up)
for batches of 512 to 65,536 signals. Results go to a JSON file; the run stops
adding sizes when ``--budget-s`` is spent.
"""

import argparse
import json
import os
import time

os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import sklearn

import skinvert
import skinvert.metrics

SIZES = (512, 4096, 16384, 65536)


def _generator():
    try:
        from skinvert.datasets import load_pretrained_generator

        return load_pretrained_generator("fashion-mnist-fc")
    except Exception:  # no shipped weights: a random net of the same shape
        return skinvert.make_random_generator(
            [20, 128, 392, 784], output_activation="plu", random_state=0
        )


def _backends(device):
    out = []
    if device == "cpu":
        import torch

        out.append(("torch-cpu", torch.asarray, lambda a: a.cpu().numpy(), lambda: None))
        return out
    try:
        import cupy

        if cupy.cuda.is_available():
            out.append(("cupy", cupy.asarray, cupy.asnumpy, cupy.cuda.Device().synchronize))
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            out.append(
                (
                    "torch-cuda",
                    lambda a: torch.asarray(a, device="cuda"),
                    lambda a: a.cpu().numpy(),
                    torch.cuda.synchronize,
                )
            )
    except ImportError:
        pass
    return out


def _methods(G):
    return {
        "latent_pursuit": lambda: skinvert.LatentPursuitInverter(G, batch_size=65536),
        "layered_bp": lambda: skinvert.LayeredBPInverter(G, batch_size=65536),
        "oracle": lambda: skinvert.OracleInverter(G, batch_size=65536),
        "gradient_descent_200it": lambda: skinvert.GradientDescentInverter(
            G, transform_max_iter=200, batch_size=65536, random_state=0
        ),
    }


def _run(est, X, S):
    if isinstance(est, skinvert.OracleInverter):
        return est.transform(X, supports=S)
    return est.transform(X)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="gpu.json")
    p.add_argument("--device", default="gpu", choices=["gpu", "cpu"])
    p.add_argument("--budget-s", type=float, default=240.0)
    p.add_argument("--sizes", default=",".join(map(str, SIZES)))
    a = p.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    t_start = time.perf_counter()
    G = _generator()
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((max(sizes), G.n_latent))
    X = G.forward(Z)
    S = G.supports(Z)
    report = {"generator": G.layer_sizes, "checks": {}, "throughput": {}}
    import warnings

    warnings.simplefilter("ignore")
    backends = _backends(a.device)
    if not backends:
        report["error"] = (
            "no GPU backend available (cupy.cuda.is_available() / torch.cuda.is_available())"
        )
    for name, to_dev, to_host, sync in backends:
        for dtype in ("float32", "float64"):
            Xd = X.astype(dtype)
            for mname, make in _methods(G).items():
                key = f"{name}/{dtype}/{mname}"
                ref = _run(make().fit(Xd[:512]), Xd[:512], [s[:512] for s in S])
                with sklearn.config_context(array_api_dispatch=True):
                    Xg = to_dev(Xd[:512])
                    Sg = [to_dev(s[:512]) for s in S]
                    est = make().fit(Xg)
                    out = to_host(_run(est, Xg, Sg))
                rel = float(np.max(np.abs(out - ref)) / max(np.max(np.abs(ref)), 1e-30))
                zsnr = float(np.median(skinvert.metrics.snr_db(Z[:512], out)))
                report["checks"][key] = {"max_rel_diff_vs_numpy": rel, "median_z_snr_db": zsnr}
                print(key, "check", report["checks"][key], flush=True)
                for n in sizes:
                    if time.perf_counter() - t_start > a.budget_s:
                        report["throughput"][f"{key}/{n}"] = "skipped (budget)"
                        continue
                    with sklearn.config_context(array_api_dispatch=True):
                        Xg = to_dev(Xd[:n])
                        Sg = [to_dev(s[:n]) for s in S]
                        est = make().fit(Xg)
                        _run(est, Xg[:256], [s[:256] for s in Sg])  # warm-up
                        sync()
                        t = time.perf_counter()
                        Zg = _run(est, Xg, Sg)
                        sync()
                        dt = time.perf_counter() - t
                    zs = float(np.median(skinvert.metrics.snr_db(Z[:n], to_host(Zg))))
                    report["throughput"][f"{key}/{n}"] = {
                        "seconds": dt,
                        "signals_per_s": n / dt,
                        "median_z_snr_db": zs,
                    }
                    print(key, n, report["throughput"][f"{key}/{n}"], flush=True)
    report["wall_s"] = time.perf_counter() - t_start
    with open(a.out, "w") as fh:
        json.dump(report, fh, indent=1)
    print("written", a.out)


if __name__ == "__main__":
    main()
