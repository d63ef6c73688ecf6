"""Figures 8 and 11 at 512 signals: inpainting with the shipped generator.

    python -m benchmarks.inpainting --mask random45 --n-signals 512
    python -m benchmarks.inpainting --mask top13 --n-signals 512

Signals ``G(z)``, ``z ~ N(0, I)`` (seed 0), with 45 % of the pixels missing at
random (Figure 8) or the top 13 of 28 rows missing (Figure 11). Reports for the
Oracle (true supports), Latent-Pursuit and gradient descent: the median z-SNR,
the median SNR of the restored missing pixels (``G(z_hat)`` against ``G(z)`` on
the missing entries only), the share of rows above 40 dB there, and wall
times (noisy on a shared machine). Writes benchmarks/results/inpainting_<mask>.json.
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

from skinvert import GradientDescentInverter, LatentPursuitInverter, OracleInverter
from skinvert._demo import corrupt
from skinvert.datasets import load_pretrained_generator
from skinvert.metrics import snr_db, summarize


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mask", default="random45", choices=["random45", "top13"])
    p.add_argument("--n-signals", type=int, default=512)
    p.add_argument("--gd-iter", type=int, default=2000)
    p.add_argument("--no-gd", action="store_true")
    a = p.parse_args()
    G = load_pretrained_generator("fashion-mnist-fc")
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((a.n_signals, G.n_latent))
    X = G.forward(Z)
    Xc = corrupt(X, a.mask, rng)
    miss = np.isnan(Xc)
    methods = [
        ("Oracle", OracleInverter(G), True),
        ("Latent-Pursuit", LatentPursuitInverter(G), False),
    ]
    if not a.no_gd:
        methods.append(
            (
                "Gradient descent",
                GradientDescentInverter(G, transform_max_iter=a.gd_iter, random_state=0),
                False,
            )
        )
    out = {
        "mask": a.mask,
        "n_signals": a.n_signals,
        "missing_fraction": float(miss.mean()),
        "methods": {},
    }
    print(f"{a.mask}: {a.n_signals} signals, {100 * miss.mean():.1f} % missing")
    for label, est, oracle in methods:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            est.fit(Xc)
            Zh = est.transform(Xc, supports=G.supports(Z)) if oracle else est.transform(Xc)
            dt = time.perf_counter() - t0
        zs = snr_db(Z, Zh)
        Xh = G.forward(Zh)
        ps = snr_db(np.where(miss, X, np.nan), Xh)
        r = {
            "z_snr": summarize(zs),
            "missing_pixel_snr": summarize(ps),
            "rows_missing_pixels_ge_40dB": float(np.mean(ps >= 40)),
            "time_s": dt,
        }
        out["methods"][label] = r
        print(
            f"  {label:<17} z-SNR median {r['z_snr']['median']:7.1f} dB (p10 {r['z_snr']['p10']:6.1f}) | "
            f"missing pixels median {r['missing_pixel_snr']['median']:7.1f} dB (p10 {r['missing_pixel_snr']['p10']:6.1f}) "
            f"| {dt:7.1f} s"
        )
    path = Path(__file__).parent / "results" / f"inpainting_{a.mask}.json"
    path.write_text(json.dumps(out, indent=2))
    print("written", path)


if __name__ == "__main__":
    main()
