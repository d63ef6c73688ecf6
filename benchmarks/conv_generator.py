"""Inverting the shipped convolutional generator ``fashion-mnist-dcgan`` (issue 14).

The generator is a DCGAN (z = 32 -> 64x7x7 -> 32x14x14 -> 1x28x28, tanh):
its last transposed convolution maps 6272 units to 784 pixels, so the
layer-wise pursuits cannot invert it, while the end-to-end problem has only
32 unknowns. ``--n-signals`` codes ``z ~ N(0, I)`` (seeded) give signals
``G(z)``, observed in five ways:

* ``clean``; ``random45``: 45 % of the pixels missing at random (NaN);
  ``top13``: the top 13 rows of every image missing;
* ``gauss_m100`` / ``gauss_m200``: ``y = A G(z)``, ``A`` Gaussian
  ``N(0, 1/m)`` with m = 100 or 200 rows.

Methods (``--methods``, all by default): ``HybridInverter`` with its
defaults (gradient-descent starts, exact fixed-support polish, basin
hopping; ``--hybrid-start-iter`` overrides ``start_max_iter``), skinvert's
``GradientDescentInverter`` (Adam, ``--gd-iter``
iterations, one start) and, when torch is importable, a CSGM-style torch
Adam loop on the same network rebuilt as ``torch.nn`` modules (all codes
at once from a N(0, I) start, ``--adam-iter`` iterations; ``--adam-long``
adds a 10,000-iteration run). Per method and setting: the fraction of
exact rows (z-SNR >= 60 dB), the median z-SNR (capped at 300 dB) and the
wall time (fit + transform, ``time.perf_counter``, same process). Writes
``benchmarks/results/conv_generator_n<N>.json`` and ``.png`` (``--out``
sets the stem, e.g. to keep the runs of a split benchmark apart).

Examples
--------
::

    python -m benchmarks.conv_generator --n-signals 32
    python -m benchmarks.conv_generator --n-signals 256 --adam-long
"""

import argparse
import json
import warnings

import numpy as np

from benchmarks._common import (
    GOOD_DB,
    git_rev,
    pretrained_generator,
    result_path,
    timer,
)
from skinvert import GradientDescentInverter, HybridInverter

SETTINGS = ("clean", "random45", "top13", "gauss_m100", "gauss_m200")


def z_snr_db(Z, Zh):
    """Per-row ``20 log10(||z|| / ||z - z_hat||)`` (dB), NaN -> -inf, capped at 300."""
    err = np.linalg.norm(Z - Zh, axis=1)
    v = 20 * np.log10(np.linalg.norm(Z, axis=1) / np.maximum(err, 1e-300))
    return np.clip(np.where(np.isfinite(v), v, -np.inf), -300, 300)


def observe(G, Z, setting, seed):
    """``(X, A)``: the observations of ``G(Z)`` in ``setting`` (NaN: missing) and the
    measurement matrix (None without one)."""
    X = G.forward(Z)
    rng = np.random.default_rng(seed)
    if setting == "random45":
        X = np.where(rng.random(X.shape) < 0.45, np.nan, X)
    elif setting == "top13":
        X = X.copy()
        X[:, : 13 * 28] = np.nan
    elif setting.startswith("gauss_m"):
        m = int(setting[len("gauss_m"):])
        A = rng.standard_normal((m, X.shape[1])) / np.sqrt(m)
        return X @ A.T, A
    return X, None


def torch_network(G, torch, dtype):
    """The DCGAN as ``torch.nn.Sequential`` from the generator's layers."""
    nn = torch.nn
    first, conv1, conv2 = G.layers
    dense, reshape = first.layers

    def t(a):
        return torch.as_tensor(np.array(a), dtype=dtype)

    lin = nn.Linear(dense.shape[1], dense.shape[0]).to(dtype)
    ct1 = nn.ConvTranspose2d(*conv1.weight.shape[:2], conv1.weight.shape[2], stride=conv1.stride,
                             padding=conv1.padding, output_padding=conv1.output_padding).to(dtype)
    ct2 = nn.ConvTranspose2d(*conv2.weight.shape[:2], conv2.weight.shape[2], stride=conv2.stride,
                             padding=conv2.padding, output_padding=conv2.output_padding).to(dtype)
    with torch.no_grad():
        lin.weight.copy_(t(dense.weight))
        lin.bias.copy_(t(dense.bias))
        for mod, layer in ((ct1, conv1), (ct2, conv2)):
            mod.weight.copy_(t(layer.weight))
            mod.bias.copy_(t(layer.channel_bias))
    net = nn.Sequential(lin, nn.Unflatten(1, tuple(reshape.out_shape)), nn.ReLU(), ct1,
                        nn.ReLU(), ct2, nn.Flatten(), nn.Tanh())
    for p in net.parameters():
        p.requires_grad_(False)
    z = np.random.default_rng(0).standard_normal((2, G.n_latent))
    gap = np.max(np.abs(net(torch.as_tensor(z, dtype=dtype)).numpy() - G.forward(z)))
    if gap > 1e-5:
        raise RuntimeError(f"the torch rebuild of the generator differs from it by {gap:.2e}")
    return net


def torch_adam(net, torch, X, A, n_iter, lr, seed, dtype):
    """CSGM-style Adam on ``sum_rows 1/2 ||obs * (A G(z) - y)||^2``; returns the codes."""
    obs = torch.as_tensor(~np.isnan(X), dtype=dtype)
    Y = torch.as_tensor(np.nan_to_num(X), dtype=dtype)
    At = None if A is None else torch.as_tensor(A, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(X.shape[0], 32, generator=gen, dtype=dtype).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    for _ in range(n_iter):
        opt.zero_grad()
        out = net(z)
        if At is not None:
            out = out @ At.T
        loss = 0.5 * ((obs * (out - Y)) ** 2).sum()
        loss.backward()
        opt.step()
    return z.detach().numpy().astype(np.float64)


def run(args):
    G, source = pretrained_generator("fashion-mnist-dcgan")
    Z = np.random.default_rng(args.seed).standard_normal((args.n_signals, G.n_latent))
    try:
        import torch

        torch.set_num_threads(args.threads)
        net = torch_network(G, torch, torch.float64)
        # warm-up outside the timings (torch's first convolution sets itself up)
        torch_adam(net, torch, G.forward(Z[:2]), None, 2, args.adam_lr, args.seed, torch.float64)
    except ImportError:
        torch = net = None
    adam_runs = [] if torch is None else [args.adam_iter] + ([10_000] if args.adam_long else [])
    hybrid_kw = {}
    hybrid_name = "HybridInverter (defaults)"
    if args.hybrid_start_iter is not None:
        hybrid_kw["start_max_iter"] = args.hybrid_start_iter
        hybrid_name = f"HybridInverter (start_max_iter={args.hybrid_start_iter})"
    results = {}
    for setting in args.settings:
        X, A = observe(G, Z, setting, args.seed + 1)
        rows = {}
        methods = [
            (hybrid_name,
             lambda X=X, A=A: HybridInverter(
                 G, measurement=A, random_state=0, **hybrid_kw).fit(X).transform(X)),
            (f"GradientDescentInverter (Adam, {args.gd_iter} it.)",
             lambda X=X, A=A: GradientDescentInverter(
                 G, measurement=A, solver="adam", transform_max_iter=args.gd_iter,
                 random_state=0).fit(X).transform(X)),
        ]
        for n_it in adam_runs:
            methods.append((f"torch Adam ({n_it} it., lr {args.adam_lr:g})",
                            lambda X=X, A=A, n_it=n_it: torch_adam(
                                net, torch, X, A, n_it, args.adam_lr, args.seed, torch.float64)))
        keys = ["hybrid", "gd"] + ["adam"] * len(adam_runs)
        methods = [m for k, m in zip(keys, methods) if k in args.methods]
        for name, fn in methods:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with timer() as t:
                    Zh = np.asarray(fn(), dtype=np.float64)
            snr = z_snr_db(Z, Zh)
            rows[name] = {"frac_exact": float(np.mean(snr >= GOOD_DB)),
                          "median_z_snr_db": float(np.median(snr)), "time_s": t["s"]}
            print(f"{setting:>11} | {name:<42} | exact {rows[name]['frac_exact']:6.1%} | "
                  f"median {rows[name]['median_z_snr_db']:7.1f} dB | {t['s']:7.1f} s", flush=True)
        results[setting] = rows
    return {"generator": "fashion-mnist-dcgan", "source": source, "n_signals": args.n_signals,
            "seed": args.seed, "gd_iter": args.gd_iter, "adam_iter": adam_runs,
            "adam_lr": args.adam_lr, "methods": args.methods, "exact_db": GOOD_DB, "git": git_rev(), "results": results}


def figure(data, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(data["results"])
    methods = list(dict.fromkeys(m for s in settings for m in data["results"][s]))
    nan = {"frac_exact": np.nan, "time_s": np.nan}
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    w = 0.8 / len(methods)
    for k, m in enumerate(methods):
        x = np.arange(len(settings)) + k * w
        cells = [data["results"][s].get(m, nan) for s in settings]  # a method may skip one
        axes[0].bar(x, [c["frac_exact"] for c in cells], w, label=m)
        axes[1].bar(x, [c["time_s"] for c in cells], w, label=m)
    for ax, title in zip(axes, ("fraction exact (z-SNR >= 60 dB)", "time (s)")):
        ax.set_xticks(np.arange(len(settings)) + 0.4 - w / 2, settings, fontsize=8)
        ax.set_title(title, fontsize=9)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"fashion-mnist-dcgan, {data['n_signals']} signals", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-signals", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--gd-iter", type=int, default=500)
    p.add_argument("--adam-iter", type=int, default=2000)
    p.add_argument("--adam-lr", type=float, default=0.05)
    p.add_argument("--adam-long", action="store_true", help="also 10,000 torch Adam iterations")
    p.add_argument("--hybrid-start-iter", type=int, default=None,
                   help="HybridInverter's start_max_iter (default: its own, 'auto')")
    p.add_argument("--methods", default="hybrid,gd,adam",
                   help="comma-separated subset of hybrid, gd, adam")
    p.add_argument("--hybrid-only", action="store_true", help="same as --methods hybrid")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    args.settings = [s for s in args.settings.split(",") if s]
    args.methods = ["hybrid"] if args.hybrid_only else [m for m in args.methods.split(",") if m]
    if set(args.methods) - {"hybrid", "gd", "adam"}:
        p.error(f"unknown methods {args.methods}; choose from hybrid, gd, adam")
    bad = set(args.settings) - set(SETTINGS)
    if bad:
        p.error(f"unknown settings {sorted(bad)}; choose from {SETTINGS}")
    data = run(args)
    out = args.out or result_path(f"conv_generator_n{args.n_signals}")
    with open(out + ".json", "w") as f:
        json.dump(data, f, indent=1)
    figure(data, out + ".png")
    print(f"wrote {out}.json and {out}.png")


if __name__ == "__main__":
    main()
