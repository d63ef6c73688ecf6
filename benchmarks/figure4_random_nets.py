"""The paper's Figure 4: inverting random two-layer generators (section 6.1).

    x = tanh(W_1 ReLU(W_0 z)),   z in R^{n0},  x_1 in R^{n1},  x in R^{625}

with iid Gaussian weights (``skinvert.make_random_generator``). For every
latent size n0 and hidden size n1, ``--n-signals`` codes ``z ~ N(0, I)`` are
inverted from their noiseless signals ``G(z)`` by

* gradient descent (momentum 0.9, decaying step, ``--gd-iter`` iterations;
  the paper runs 10,000),
* Layered Basis-Pursuit (Algorithm 2, debiased),
* Latent-Pursuit (Algorithm 5, lambda = 0, gamma = 0, debiased),
* the Oracle (Algorithm 1 on the true supports), as a reference,

and every layer of ``G(z_hat)`` is compared with the truth (SNR in dB, exact
recoveries capped at 300 dB). The figure has a row per n0 and a column per
layer (z, x1, image): median lines with 10-90 % and 25-75 % quantile
ribbons, and a dashed vertical line at n1 = 2 n0 (where s1 ~ n1 / 2 = n0).

Examples
--------
::

    python -m benchmarks.figure4_random_nets --quick
    python -m benchmarks.figure4_random_nets                  # n0 in {100, 200}, full grid, 64 signals
    python -m benchmarks.figure4_random_nets --n-signals 512 --gd-iter 10000   # the paper's setting
    python -m benchmarks.figure4_random_nets --plot-only      # redraw the PNG from the JSON

Results (JSON, PNG) go to ``benchmarks/results/``; the JSON is rewritten after
every (n0, n1) so an interrupted run keeps what it finished.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time
import warnings

import numpy as np

import skinvert
from skinvert import (
    GradientDescentInverter,
    LatentPursuitInverter,
    LayeredBPInverter,
    OracleInverter,
    make_random_generator,
)
from skinvert.metrics import layer_snr, support_errors

from ._common import CAP, git_rev, result_path, snr_stats

QUANTILES = (10, 25, 75, 90)
DEFAULT_GRID = (50, 100, 200, 300, 500, 700, 850, 1000, 1250, 1500)
QUICK_GRID = (100, 300, 500, 700, 850)
METHODS = (
    "Oracle",
    "Latent-Pursuit",
    "Latent-Pursuit (no debias)",
    "Layered BP",
    "Gradient descent",
)
KEYS = {
    "oracle": "Oracle",
    "lp": "Latent-Pursuit",
    "lpnd": "Latent-Pursuit (no debias)",
    "lbp": "Layered BP",
    "gd": "Gradient descent",
}
STYLE = {
    "Gradient descent": dict(color="tab:blue"),
    "Layered BP": dict(color="tab:green"),
    "Latent-Pursuit": dict(color="tab:red"),
    "Latent-Pursuit (no debias)": dict(color="tab:orange", ls=":"),
    "Oracle": dict(color="0.2", ls="--", lw=1.0, zorder=5),
}


def _ints(text):
    return [int(v) for v in text.split(",") if v.strip()]


def _floats(text):
    return [float(v) for v in text.split(",") if v.strip()]


def stats(values):
    """Median, quantiles, mean and fraction >= 60 dB of a per-sample SNR array (clipped)."""
    return snr_stats(values, quantiles=QUANTILES, mean=True, frac_good=True)


def _seed(*parts):
    """A reproducible 32-bit seed for one configuration."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def run_method(label, G, X, Z, S, args):
    """Invert X with one method; return (Zhat, wall seconds, warnings, extra)."""
    extra = {}

    def timed(est, **kw):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            est.fit(X)
            Zh = est.transform(X, **kw)
            dt = time.perf_counter() - t0
        return Zh, dt, sorted({str(m.message) for m in w})

    if label == "Oracle":
        Zh, dt, caught = timed(OracleInverter(G), supports=S)
    elif label == "Latent-Pursuit":
        Zh, dt, caught = timed(LatentPursuitInverter(G, lam=0.0, gamma=0.0))
    elif label == "Latent-Pursuit (no debias)":
        Zh, dt, caught = timed(LatentPursuitInverter(G, lam=0.0, gamma=0.0, debias=False))
    elif label == "Layered BP":
        # The paper picks the best lambda_1 of {1e-5, 7e-6, 3e-6, 1e-6, 0};
        # with several --lbp-lams the one with the best median z-SNR is kept
        # (time and warnings are those of the chosen lambda's run).
        best = None
        per_lam = {}
        for lam in args.lbp_lams:
            Zh_l, dt_l, w_l = timed(LayeredBPInverter(G, lam=lam))
            med = stats(layer_snr(G, Z, Zh_l)["z"])["median"]
            per_lam[repr(lam)] = {"z_median": med, "time_s": dt_l}
            if best is None or med > best[0]:
                best = (med, lam, Zh_l, dt_l, w_l)
        _, lam, Zh, dt, caught = best
        if len(args.lbp_lams) > 1:
            extra["lambda_sweep"] = per_lam
            extra["sweep_time_s"] = sum(v["time_s"] for v in per_lam.values())
        extra["lam"] = lam
    elif label == "Gradient descent":
        est = GradientDescentInverter(
            G,
            random_state=args.seed,
            transform_max_iter=args.gd_iter,
            learning_rate=args.gd_lr,
            momentum=0.9,
            decay=args.gd_decay,
        )
        Zh, dt, caught = timed(est)
        extra.update(iterations=args.gd_iter, learning_rate=args.gd_lr, decay=args.gd_decay)
    else:  # pragma: no cover
        raise ValueError(label)
    return Zh, dt, caught, extra


def run_config(n0, n1, args, stream):
    G = make_random_generator(
        [n0, n1, args.n], output_activation="tanh", random_state=_seed(args.seed, n0, n1, 0)
    )
    rng = np.random.default_rng(_seed(args.seed, n0, n1, 1))
    Z = rng.standard_normal((args.n_signals, n0))
    X = G.forward(Z)
    S = G.supports(Z)
    s1 = S[0].sum(axis=1)
    res = {
        "n0": n0,
        "n1": n1,
        "n": args.n,
        "s1": {"median": float(np.median(s1)), "min": int(s1.min()), "max": int(s1.max())},
        "saturated_pixels": int(np.sum(np.abs(X) >= 1.0)),
        "methods": {},
    }
    for label in args.methods:
        if label == "Gradient descent" and args.gd_max_n1 is not None and n1 > args.gd_max_n1:
            res["methods"][label] = {"skipped": f"n1 > --gd-max-n1 {args.gd_max_n1}"}
            stream(
                f"{n0:>5} {n1:>5} {int(np.median(s1)):>5}  {label:<17} skipped (n1 > {args.gd_max_n1})"
            )
            continue
        Zh, dt, caught, extra = run_method(label, G, X, Z, S, args)
        snr = layer_snr(G, Z, Zh)
        err = support_errors(S, G.supports(Zh))
        entry = {
            "time_s": dt,
            "snr": {k: stats(v) for k, v in snr.items()},
            "support_error_samples": [int(np.sum((e["missed"] + e["spurious"]) > 0)) for e in err],
            "nonfinite_estimates": int(np.sum(~np.all(np.isfinite(np.asarray(Zh)), axis=1))),
            "warnings": caught,
            **extra,
        }
        res["methods"][label] = entry
        sz, sx, si = entry["snr"]["z"], entry["snr"]["x1"], entry["snr"]["image"]
        lam = f" lam={extra['lam']:g}" if "lam" in extra else ""
        stream(
            f"{n0:>5} {n1:>5} {int(np.median(s1)):>5}  {label:<17}"
            f"{sz['median']:>8.1f}{sz['p10']:>8.1f}{sz['p90']:>8.1f}{100 * sz['frac_ge_60db']:>7.0f}%"
            f"{sx['median']:>8.1f}{si['median']:>8.1f}{entry['support_error_samples'][0]:>6d}"
            f"{dt:>9.2f}{' W' if caught else ''}{lam}"
        )
    return res


HEADER = (
    f"{'n0':>5} {'n1':>5} {'s1':>5}  {'method':<17}{'z med':>8}{'z p10':>8}{'z p90':>8}{'z>=60':>8}"
    f"{'x1 med':>8}{'img med':>8}{'supE':>6}{'time s':>9}"
)


def plot(data, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = data["results"]
    n0s = sorted({r["n0"] for r in results})
    layers = ["z", "x1", "image"]
    fig, axes = plt.subplots(
        len(n0s),
        len(layers),
        figsize=(4.2 * len(layers), 3.2 * len(n0s)),
        squeeze=False,
        sharey=True,
    )
    for r_i, n0 in enumerate(n0s):
        rows = sorted((r for r in results if r["n0"] == n0), key=lambda r: r["n1"])
        for c_i, layer in enumerate(layers):
            ax = axes[r_i, c_i]
            for label in METHODS:
                pts = [
                    (r["n1"], r["methods"][label]["snr"][layer])
                    for r in rows
                    if "snr" in r["methods"].get(label, {})
                ]
                if not pts:
                    continue
                x = np.array([p[0] for p in pts])
                q = {
                    k: np.array([p[1][k] for p in pts])
                    for k in ("median", "p10", "p25", "p75", "p90")
                }
                st = STYLE[label]
                ax.fill_between(x, q["p10"], q["p90"], color=st["color"], alpha=0.12, lw=0)
                ax.fill_between(x, q["p25"], q["p75"], color=st["color"], alpha=0.25, lw=0)
                ax.plot(x, q["median"], marker="o", ms=3, label=label, **{"lw": 1.5, **st})
            ax.axvline(2 * n0, color="k", ls=":", lw=1)
            ax.set_title(f"n0 = {n0}: {layer}", fontsize=10)
            ax.set_xlabel("n1")
            if c_i == 0:
                ax.set_ylabel("SNR [dB]")
            ax.set_ylim(-20, CAP + 15)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="center right")
    meta = data["meta"]
    fig.suptitle(
        f"Figure 4 (random nets, n = {meta['n']}, tanh): {meta['n_signals']} signals per point, "
        f"GD {meta['gd_iter']} iterations; SNR capped at {CAP:.0f} dB; dashed: n1 = 2 n0",
        fontsize=10,
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--n0",
        type=_ints,
        default=[100, 200],
        help="latent sizes, comma-separated (default 100,200)",
    )
    p.add_argument(
        "--n1",
        type=_ints,
        default=list(DEFAULT_GRID),
        help="hidden sizes, comma-separated (default 50,100,200,300,500,700,850,1000,1250,1500)",
    )
    p.add_argument("--n", type=int, default=625, help="signal size (default 625)")
    p.add_argument(
        "--n-signals",
        type=int,
        default=None,
        help="signals per (n0, n1) (default 64; the paper: 512)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--gd-iter", type=int, default=2000, help="gradient-descent iterations (paper: 10000)"
    )
    p.add_argument("--gd-lr", type=float, default=0.1, help="initial GD step (default 0.1)")
    p.add_argument(
        "--gd-decay", type=float, default=1e-3, help="GD step decay: lr / (1 + decay k)"
    )
    p.add_argument(
        "--gd-max-n1",
        type=int,
        default=None,
        help="skip gradient descent for n1 above this (time)",
    )
    p.add_argument(
        "--lbp-lams",
        type=_floats,
        default=[0.0],
        help="Layered BP lambda(s); with several, the best median z-SNR is kept "
        "(the paper's grid: 1e-5,7e-6,3e-6,1e-6,0). Default 0",
    )
    p.add_argument(
        "--methods",
        default="oracle,lp,lbp,gd",
        help="subset of oracle,lp,lbp,gd (default) and lpnd: Latent-Pursuit with debias=False",
    )
    p.add_argument(
        "--quick", action="store_true", help="n0=100, n1 in {100,300,500,700,850}, 32 signals"
    )
    p.add_argument(
        "--out",
        default=None,
        help="PNG (default benchmarks/results/figure4_all_methods.png; figure4_quick.png with --quick)",
    )
    p.add_argument(
        "--json",
        default=None,
        help="JSON (default benchmarks/results/figure4_all_methods.json; figure4_quick.json with --quick)",
    )
    p.add_argument(
        "--plot-only", action="store_true", help="redraw --out from --json, run nothing"
    )
    args = p.parse_args(argv)

    stem = "figure4_quick" if args.quick else "figure4_all_methods"
    if args.out is None:
        args.out = result_path(stem + ".png")
    if args.json is None:
        args.json = result_path(stem + ".json")
    if args.plot_only:
        with open(args.json) as f:
            plot(json.load(f), args.out)
        print(f"figure written to {args.out}")
        return 0
    if args.quick:
        args.n0 = [100]
        args.n1 = list(QUICK_GRID)
        if args.n_signals is None:
            args.n_signals = 32
    if args.n_signals is None:
        args.n_signals = 64
    try:
        args.methods = [KEYS[k.strip()] for k in args.methods.split(",") if k.strip()]
    except KeyError as exc:
        p.error(f"unknown method {exc}; use oracle, lp, lpnd, lbp, gd")
    args.methods = [m for m in METHODS if m in args.methods]

    def stream(line):
        print(line, flush=True)

    meta = {
        "script": "benchmarks/figure4_random_nets.py",
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "skinvert": skinvert.__version__,
        "git_head": git_rev(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical cores (shared with other jobs)",
        "n": args.n,
        "n0": args.n0,
        "n1": args.n1,
        "n_signals": args.n_signals,
        "seed": args.seed,
        "gd_iter": args.gd_iter,
        "gd_lr": args.gd_lr,
        "gd_decay": args.gd_decay,
        "gd_max_n1": args.gd_max_n1,
        "lbp_lams": args.lbp_lams,
        "methods": args.methods,
        "snr_cap_db": CAP,
        "latent_pursuit": "LatentPursuitInverter(G, lam=0, gamma=0) (defaults: solver='active_set', debias=True)",
        "notes": "per-sample SNR of G(z_hat)'s layers vs the truth; quantiles after clipping to [-300, 300] dB; "
        "support_error_samples: samples whose supports of G(z_hat) differ from the true ones, per hidden layer",
    }
    data = {"meta": meta, "results": []}
    stream(
        f"Figure 4: n = {args.n}, n0 in {args.n0}, n1 in {args.n1}, {args.n_signals} signals, "
        f"GD {args.gd_iter} iterations, LBP lambda in {args.lbp_lams}"
    )
    stream(
        "SNR in dB (capped at 300); z>=60: fraction of samples with z-SNR >= 60 dB; supE: samples with a support error in x1; W: warnings"
    )
    stream(HEADER)
    t_all = time.perf_counter()
    for n0 in args.n0:
        for n1 in args.n1:
            data["results"].append(run_config(n0, n1, args, stream))
            meta["total_time_s"] = time.perf_counter() - t_all
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            tmp = args.json + ".tmp"
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1)
            os.replace(tmp, args.json)
    stream(f"total {time.perf_counter() - t_all:.1f} s; JSON written to {args.json}")
    if args.out:
        plot(data, args.out)
        stream(f"figure written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
