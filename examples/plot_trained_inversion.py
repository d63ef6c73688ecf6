"""
==================================================================
Every inverter, layer by layer (the paper's Figures 5, 8 and 11)
==================================================================

Signals of the shipped ``fashion-mnist-fc`` generator, clean or with missing
pixels, inverted by the Oracle (true supports), Latent-Pursuit, Layered BP
and gradient descent. Each estimate is fed back through the generator and
every layer (``z``, ``x1``, ``x2``, image) is compared with the truth: the
median SNR with its 10-90 % band, as in the paper's figures.

::

    python examples/plot_trained_inversion.py                       # clean, 32 signals
    python examples/plot_trained_inversion.py --mask random45 --out figure8.png
    python examples/plot_trained_inversion.py --mask top13 --n-signals 512 --gd-iter 10000

``python -m skinvert demo`` prints the same comparison as a table.
"""

# %%
import argparse
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np

from skinvert import (
    GradientDescentInverter,
    LatentPursuitInverter,
    LayeredBPInverter,
    OracleInverter,
)
from skinvert.datasets import load_pretrained_generator
from skinvert.metrics import layer_snr

parser = argparse.ArgumentParser(description="Per-layer SNR of every inverter.")
parser.add_argument("--mask", default="clean", choices=["clean", "random45", "top13"])
parser.add_argument("--n-signals", type=int, default=32)
parser.add_argument("--gd-iter", type=int, default=1000, help="the paper uses 10,000")
parser.add_argument("--generator", default="fashion-mnist-fc")
parser.add_argument("--out", default=None)
args, _ = parser.parse_known_args()

G = load_pretrained_generator(args.generator)
rng = np.random.default_rng(0)
Z = rng.standard_normal((args.n_signals, G.n_latent))
X = G.forward(Z)
if args.mask == "random45":
    X = np.where(rng.random(X.shape) < 0.45, np.nan, X)
elif args.mask == "top13":
    side = round(np.sqrt(G.n_output))
    X[:, : (13 * side * side) // 28] = np.nan

# %%
# Invert with every method
# ------------------------
inverters = {
    "Oracle (true supports)": OracleInverter(G),
    "Latent-Pursuit": LatentPursuitInverter(G),
    "Layered BP": LayeredBPInverter(G),
    f"gradient descent ({args.gd_iter} it.)": GradientDescentInverter(
        G, transform_max_iter=args.gd_iter, random_state=0),
}
snrs = {}
for name, est in inverters.items():
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X)
        if isinstance(est, OracleInverter):
            Z_hat = est.transform(X, supports=G.supports(Z))
        else:
            Z_hat = est.transform(X)
    snrs[name] = layer_snr(G, Z, Z_hat)
    print(f"{name:28s} {time.perf_counter() - t0:5.1f} s, median z-SNR "
          f"{np.median(np.minimum(snrs[name]['z'], 300)):6.1f} dB")

# %%
# Per-layer SNR
# -------------
layers = list(next(iter(snrs.values())))
fig, ax = plt.subplots(figsize=(6, 4))
x = np.arange(len(layers))
for name, s in snrs.items():
    v = np.array([np.clip(s[k], -20, 300) for k in layers])
    q = np.percentile(v, [10, 50, 90], axis=1)
    line = ax.plot(x, q[1], marker="o", label=name)[0]
    ax.fill_between(x, q[0], q[2], color=line.get_color(), alpha=0.15)
ax.set_xticks(x, layers)
ax.set_ylabel("SNR (dB, exact capped at 300)")
ax.set_title(f"{args.generator}: {args.mask}, {args.n_signals} signals")
ax.legend(fontsize=7)
fig.tight_layout()
if args.out:
    fig.savefig(args.out, dpi=120)
plt.show()
