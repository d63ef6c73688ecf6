"""Compressed sensing y = A G(z) with few measurements (issue 13).

For each generator (the shipped ``fashion-mnist-fc``, 20-128-392-784 PLU; its
tanh variant, same weights; a random net of the same sizes, tanh) and each m,
Gaussian A (m x 784, entries N(0, 1/m)) and z ~ N(0, I), all methods in one
run:

- ``hybrid``: HybridInverter (defaults);
- ``gd``: GradientDescentInverter with the step scaled to the net and A
  (``learning_rate="auto"``, 2000 iterations);
- ``lp``: LatentPursuitInverter where its problems are posed (piecewise-linear
  output);
- ``adam``: the CSGM-style PyTorch loop users run today (Adam, lr 5e-2,
  ``--adam-iters`` iterations, ``--adam-restarts`` starts per signal, the
  lowest loss kept; float64, one thread like the NumPy kernels).

Reports the fraction exact (z-SNR >= 60 dB), median / p10 / p90 z-SNR and wall
time. Then, on the tanh variant, inpainting (45 % of pixels missing at random;
top 13 rows missing) and a noise sweep at m = 200 against the Oracle (true
supports): latent RMS error of each. Outputs
``results/compressed_sensing[_<tag>].json`` and ``.png``. Timings on a shared
machine are noisy; compare ratios within one run.

    python benchmarks/compressed_sensing.py --n 64 --tag n64
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

from skinvert import (
    GradientDescentInverter,
    HybridInverter,
    LatentPursuitInverter,
    OracleInverter,
    ReLUGenerator,
    make_random_generator,
)
from skinvert.datasets import load_pretrained_generator

M_ALL = [20, 30, 40, 50, 60, 80, 100, 150, 200, 300, 784]
RESULTS = Path(__file__).parent / "results"


def zsnr(Z, Zh):
    num = np.sum(Z**2, axis=1)
    den = np.maximum(np.sum((Z - Zh) ** 2, axis=1), 1e-300)
    return 10 * np.log10(num / den)


def stats(Z, Zh, seconds):
    s = zsnr(Z, np.asarray(Zh, dtype=np.float64))
    return {
        "exact": float(np.mean(s >= 60)),
        "median_db": float(np.median(s)),
        "p10_db": float(np.percentile(s, 10)),
        "p90_db": float(np.percentile(s, 90)),
        "seconds": seconds,
    }


def nets():
    G = load_pretrained_generator("fashion-mnist-fc")
    return {
        "shipped_plu": G,
        "shipped_tanh": ReLUGenerator(G.weights, G.biases, output_activation="tanh"),
        "random_tanh": make_random_generator(G.layer_sizes, output_activation="tanh", random_state=0),
    }


def adam_loop(G, A, Y, *, iters, restarts, lr=5e-2, seed=0):
    """CSGM (Bora et al. 2017): Adam on ||A G(z) - y||^2 from random starts."""
    import torch

    torch.set_num_threads(1)
    Ws = [torch.from_numpy(np.asarray(W, dtype=np.float64)) for W in G.weights]
    bs = [torch.from_numpy(np.asarray(b, dtype=np.float64)) for b in G.biases]
    At = torch.from_numpy(A)
    Yt = torch.from_numpy(Y).repeat(restarts, 1)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(Yt.shape[0], G.n_latent, generator=gen, dtype=torch.float64, requires_grad=True)
    act = G.activation

    def out(z):
        x = z
        for W, b in zip(Ws[:-1], bs[:-1]):
            x = torch.relu(x @ W.T + b)
        u = x @ Ws[-1].T + bs[-1]
        return act(u, torch) @ At.T

    opt = torch.optim.Adam([z], lr=lr)
    for _ in range(iters):
        opt.zero_grad()
        loss = ((out(z) - Yt) ** 2).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        per = ((out(z) - Yt) ** 2).sum(1).reshape(restarts, -1)
        best = per.argmin(0)
        zz = z.detach().reshape(restarts, -1, G.n_latent)
        return zz[best, torch.arange(Y.shape[0])].numpy()


def run_cs(args, G, Z, rng, methods):
    X = G.forward(Z)
    rows = {}
    for m in args.m:
        A = rng.standard_normal((m, G.n_output)) / np.sqrt(m)
        Y = X @ A.T
        row = {}
        for name in methods:
            if name == "lp" and (not G.activation.piecewise_linear or m not in args.lp_m):
                continue
            t = time.perf_counter()
            if name == "adam":
                if m not in args.adam_m:
                    continue
                Zh = adam_loop(G, A, Y, iters=args.adam_iters, restarts=args.adam_restarts)
            else:
                Zh = make(name, G, A).fit(Y).transform(Y)
            row[name] = stats(Z, Zh, time.perf_counter() - t)
            print(f"  m={m:4d} {name:7s} {row[name]}", flush=True)
        rows[str(m)] = row
    return rows


def make(name, G, A):
    if name == "hybrid":
        return HybridInverter(G, measurement=A, random_state=0)
    if name == "gd":
        return GradientDescentInverter(G, measurement=A, learning_rate="auto", random_state=0)
    return LatentPursuitInverter(G, measurement=A)


def rms(E):
    return float(np.sqrt(np.mean(E**2)))


def run_inpainting(G, Z, rng):
    X = G.forward(Z)
    out = {}
    for case in ("random45", "top13"):
        Xm = X.copy()
        if case == "random45":
            Xm[rng.random(X.shape) < 0.45] = np.nan
        else:
            Xm[:, : 13 * 28] = np.nan
        t = time.perf_counter()
        Zh = HybridInverter(G, random_state=0).fit(Xm).transform(Xm)
        out[case] = stats(Z, Zh, time.perf_counter() - t)
        print(f"  inpainting {case}: {out[case]}", flush=True)
    return out


def run_noise(G, Z, rng, sigmas, m=200):
    X = G.forward(Z)
    A = rng.standard_normal((m, G.n_output)) / np.sqrt(m)
    S = G.supports(Z)
    out = {}
    for sigma in sigmas:
        Y = X @ A.T + sigma * rng.standard_normal((len(Z), m))
        t = time.perf_counter()
        Zh = HybridInverter(G, measurement=A, noise_std=sigma, random_state=0).fit(Y).transform(Y)
        th = time.perf_counter() - t
        Zo = OracleInverter(G, measurement=A).fit(Y).transform(Y, supports=S)
        out[str(sigma)] = {
            "hybrid_rms": rms(Zh - Z), "oracle_rms": rms(Zo - Z),
            "ratio": rms(Zh - Z) / rms(Zo - Z), "hybrid_seconds": th,
        }
        print(f"  noise sigma={sigma}: {out[str(sigma)]}", flush=True)
    return out


def figure(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res["cs"])
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 6.5), squeeze=False)
    for j, net in enumerate(names):
        ms = sorted(int(m) for m in res["cs"][net])
        for meth in ("hybrid", "gd", "lp", "adam"):
            pts = [(m, res["cs"][net][str(m)][meth]) for m in ms if meth in res["cs"][net][str(m)]]
            if not pts:
                continue
            x = [p[0] for p in pts]
            axes[0, j].plot(x, [100 * p[1]["exact"] for p in pts], "o-", label=meth)
            axes[1, j].plot(x, [min(p[1]["median_db"], 300) for p in pts], "o-", label=meth)
        axes[0, j].set_title(f"{net} ({res['n']} signals)")
        for i, lab in enumerate(("% exact (z-SNR >= 60 dB)", "median z-SNR (dB)")):
            axes[i, j].set_xscale("log")
            axes[i, j].set_ylabel(lab)
            axes[i, j].set_xlabel("m (Gaussian measurements)")
        axes[0, j].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512, help="signals")
    ap.add_argument("--m", type=int, nargs="+", default=M_ALL)
    ap.add_argument("--nets", nargs="+", default=list(nets()))
    ap.add_argument("--methods", nargs="+", default=["hybrid", "gd", "lp", "adam"])
    ap.add_argument("--adam-iters", type=int, default=2000)
    ap.add_argument("--adam-restarts", type=int, default=4)
    ap.add_argument("--adam-m", type=int, nargs="+", default=M_ALL, help="m values for adam")
    ap.add_argument("--lp-m", type=int, nargs="+", default=M_ALL, help="m values for lp")
    ap.add_argument("--sigmas", type=float, nargs="*", default=[1e-3, 1e-2, 3e-2])
    ap.add_argument("--skip-extra", action="store_true", help="no inpainting / noise sweep")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    all_nets = nets()
    res = {"n": args.n, "args": vars(args), "cs": {}}
    for name in args.nets:
        G = all_nets[name]
        print(name, G, flush=True)
        Z = np.random.default_rng(0).standard_normal((args.n, G.n_latent))
        res["cs"][name] = run_cs(args, G, Z, np.random.default_rng(1), args.methods)
        save(res, args)  # after every net: a long run keeps what it measured
    if not args.skip_extra:
        G = all_nets["shipped_tanh"]
        Z = np.random.default_rng(2).standard_normal((args.n, G.n_latent))
        res["inpainting_tanh"] = run_inpainting(G, Z, np.random.default_rng(3))
        if args.sigmas:
            res["noise_m200_tanh"] = run_noise(G, Z, np.random.default_rng(4), args.sigmas)
    save(res, args)


def save(res, args):
    stem = "compressed_sensing" + (f"_{args.tag}" if args.tag else "")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(res, indent=1))
    figure(res, RESULTS / f"{stem}.png")
    print("wrote", RESULTS / f"{stem}.json", flush=True)


if __name__ == "__main__":
    main()
