"""
=====================================================================
Noise: latent error versus sigma, with Theorem 3's band
=====================================================================

::

    python examples/plot_noise.py                       # 24 signals, sigma 1e-3, 1e-2, 1e-1
    python examples/plot_noise.py --n-signals 512 --out noise.png --json noise.json
    python examples/plot_noise.py --sigmas 1e-3,3e-3,1e-2,3e-2,1e-1 --gd 128
    python examples/plot_noise.py --generator saturating --sigmas 1e-3,1e-2

Signals ``y = G(z) + e``, ``z ~ N(0, I)`` (seed 0), ``e ~ N(0, (sigma s)^2 I)``
with ``s`` the RMS of the clean signals (sigma is relative to the signal's
scale). Inverted by the Oracle (true supports; Algorithm 1), Latent-Pursuit
and HybridInverter (the estimator the user guide recommends for noisy
signals) with ``noise_std = sigma s`` and, with ``--gd N``, gradient descent
on the first N signals. Plots the RMS latent error ``sqrt(mean ||z_hat - z||^2)``
(Theorem 3's quantity) and the median ``||z_hat - z||`` against sigma, with
the band ``[sqrt(median lower), sqrt(median upper)]`` of eq. 22 from
:func:`skinvert.analysis.invertibility_report` (Theorem 3 models noise on
phi^-1(y); the PLU output's outer slope 0.1 amplifies noise there, so the
Oracle may sit above the band's upper end). Prints the log-log slopes of the
errors versus sigma; ``--out`` and ``--json`` write the figure and the
numbers (nothing is written by default). The user guide's noise table was
measured with ``--n-signals 512``. Wall times are noisy on a shared machine.
``--generator saturating`` runs the same on ``fashion-mnist-fc`` with its last
layer scaled by 3 and a tanh output (about 32 % of the pixels beyond 0.999,
where atanh multiplies the noise by about 500): Theorem 3's model (noise on
phi^-1(y), eq. 22) does not apply there, so no band is drawn.
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from skinvert import (
    GradientDescentInverter,
    HybridInverter,
    LatentPursuitInverter,
    OracleInverter,
    ReLUGenerator,
)
from skinvert.analysis import invertibility_report
from skinvert.datasets import load_pretrained_generator


def _errors(Zhat, Z):
    e = np.linalg.norm(np.asarray(Zhat) - Z, axis=1)
    return {"rms": float(np.sqrt(np.mean(e**2))), "median": float(np.median(e))}


def main(argv=None):
    p = argparse.ArgumentParser(description="Latent error versus noise.")
    p.add_argument("--n-signals", type=int, default=24)
    p.add_argument("--sigmas", default="1e-3,1e-2,1e-1")
    p.add_argument(
        "--gd", type=int, default=0, help="gradient descent on this many signals (0: none)"
    )
    p.add_argument("--gd-iter", type=int, default=2000)
    p.add_argument("--out", default=None, help="figure file (default: none)")
    p.add_argument("--json", default=None, help="results file (default: none)")
    p.add_argument(
        "--generator", default="fashion-mnist-fc", choices=["fashion-mnist-fc", "saturating"]
    )
    a, _ = p.parse_known_args(argv)
    sigmas = [float(s) for s in a.sigmas.split(",")]
    G = load_pretrained_generator("fashion-mnist-fc")
    band = a.generator == "fashion-mnist-fc"
    if not band:  # last layer x3, tanh output: heavy saturation
        W, b = list(G.weights), list(G.biases)
        G = ReLUGenerator(W[:-1] + [3 * W[-1]], b[:-1] + [3 * b[-1]], output_activation="tanh")
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((a.n_signals, G.n_latent))
    X = G.forward(Z)
    scale = float(np.sqrt(np.mean(X**2)))
    S = G.supports(Z)
    E = rng.standard_normal(X.shape)
    rows = []
    for sigma in sigmas:
        std = sigma * scale
        Y = X + std * E
        row = {"sigma": sigma, "noise_std": std}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            Zo = OracleInverter(G).fit(Y).transform(Y, supports=S)
            row["oracle"] = {**_errors(Zo, Z), "time_s": time.perf_counter() - t0}
            t0 = time.perf_counter()
            Zl = LatentPursuitInverter(G, noise_std=std).fit(Y).transform(Y)
            row["latent_pursuit"] = {**_errors(Zl, Z), "time_s": time.perf_counter() - t0}
            t0 = time.perf_counter()
            Zh = HybridInverter(G, noise_std=std, random_state=0).fit(Y).transform(Y)
            row["hybrid"] = {**_errors(Zh, Z), "time_s": time.perf_counter() - t0}
            if a.gd:
                t0 = time.perf_counter()
                Zg = (
                    GradientDescentInverter(G, transform_max_iter=a.gd_iter, random_state=0)
                    .fit(Y)
                    .transform(Y[: a.gd])
                )
                row["gradient_descent"] = {
                    **_errors(Zg, Z[: a.gd]),
                    "n_signals": a.gd,
                    "time_s": time.perf_counter() - t0,
                }
        row["theorem3_rms_band"] = [float("nan")] * 2
        if band:
            q = invertibility_report(G, Z, noise_std=std, worst_case=False).quantities
            row["theorem3_rms_band"] = [
                float(np.sqrt(np.median(q["oracle_latent_mse_lower"]))),
                float(np.sqrt(np.median(q["oracle_latent_mse_upper"]))),
            ]
        row["lp_over_oracle_rms"] = row["latent_pursuit"]["rms"] / row["oracle"]["rms"]
        row["lp_over_oracle_median"] = row["latent_pursuit"]["median"] / row["oracle"]["median"]
        rows.append(row)
        print(
            f"sigma {sigma:g} (noise_std {std:.3g}): Oracle rms {row['oracle']['rms']:.3g} "
            f"median {row['oracle']['median']:.3g} ({row['oracle']['time_s']:.1f} s) | LP rms "
            f"{row['latent_pursuit']['rms']:.3g} median {row['latent_pursuit']['median']:.3g} "
            f"({row['latent_pursuit']['time_s']:.1f} s) | LP/Oracle rms "
            f"{row['lp_over_oracle_rms']:.2f} "
            f"median {row['lp_over_oracle_median']:.2f} | Hybrid rms {row['hybrid']['rms']:.3g} "
            f"({row['hybrid']['time_s']:.1f} s) | Theorem 3 band (rms) "
            f"[{row['theorem3_rms_band'][0]:.3g}, {row['theorem3_rms_band'][1]:.3g}]"
            + (
                f" | GD rms {row['gradient_descent']['rms']:.3g} "
                f"median {row['gradient_descent']['median']:.3g}"
                if a.gd
                else ""
            )
        )
    s = np.log10(sigmas)
    slopes = {}
    for key in ("oracle", "latent_pursuit", "hybrid") + (("gradient_descent",) if a.gd else ()):
        for stat in ("rms", "median"):
            slopes[f"{key}_{stat}"] = float(
                np.polyfit(s, np.log10([r[key][stat] for r in rows]), 1)[0]
            )
    print(
        "log-log slopes of the latent error vs sigma:", {k: round(v, 3) for k, v in slopes.items()}
    )
    fig, ax = plt.subplots(figsize=(5.5, 4))
    lo = [r["theorem3_rms_band"][0] for r in rows]
    up = [r["theorem3_rms_band"][1] for r in rows]
    if band:
        ax.fill_between(sigmas, lo, up, alpha=0.2, color="gray", label="Theorem 3 (eq. 22), RMS")
    styles = {
        "oracle": ("Oracle", "k"),
        "latent_pursuit": ("Latent-Pursuit (noise_std)", "C0"),
        "hybrid": ("HybridInverter (noise_std)", "C2"),
        "gradient_descent": (f"gradient descent ({a.gd} signals)", "C3"),
    }
    for key, (label, c) in styles.items():
        if key not in rows[0]:
            continue
        ax.loglog(sigmas, [r[key]["rms"] for r in rows], "o-", color=c, label=f"{label}, RMS")
        ax.loglog(
            sigmas, [r[key]["median"] for r in rows], "x--", color=c, label=f"{label}, median"
        )
    ax.set_xlabel("noise sigma (relative to the signals' RMS)")
    ax.set_ylabel("latent error ||z_hat - z||")
    ax.set_title(f"{a.generator}, {a.n_signals} signals")
    ax.legend(fontsize=7)
    fig.tight_layout()
    if a.out:
        fig.savefig(a.out, dpi=120)
        print("figure written to", a.out)
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {
                    "n_signals": a.n_signals,
                    "signal_rms": scale,
                    "rows": rows,
                    "loglog_slopes": slopes,
                },
                indent=2,
            )
        )
        print("results written to", a.json)
    return rows


if __name__ == "__main__":
    main()
    plt.show()
