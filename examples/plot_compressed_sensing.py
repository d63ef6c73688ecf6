"""
==================================================
Compressed sensing: linear measurements y = A G(z)
==================================================

Every inverter takes ``measurement=A`` for signals observed through a linear
operator, ``y = A G(z) + e``: ``X`` then holds the ``m`` measurements of each
signal, ``transform`` returns the codes and ``inverse_transform`` the full
signals ``G(z_hat)``.

What works depends on ``m`` and on the output activation (see the user
guide's table): gradient descent works for any output; Latent-Pursuit and the
Oracle need an identity or piecewise-linear output (identity, leaky ReLU,
PLU), and the pursuit is exact when ``m`` is at least the size of the last
hidden layer (here 392). Below it the image layer through ``A`` is
under-determined and recovery depends on the signal.

Options: ``--n-signals N`` (default 8), ``--m 300,784``, ``--out FILE``.
"""

# %%
import argparse
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np

from skinvert import GradientDescentInverter, LatentPursuitInverter
from skinvert.datasets import load_pretrained_generator
from skinvert.metrics import snr_db

parser = argparse.ArgumentParser(description="Compressed sensing with a generator prior.")
parser.add_argument("--n-signals", type=int, default=8)
parser.add_argument("--m", default="300,784", help="numbers of measurements")
parser.add_argument("--out", default=None)
args, _ = parser.parse_known_args()

G = load_pretrained_generator("fashion-mnist-fc")  # PLU output: piecewise linear
rng = np.random.default_rng(0)
Z = rng.standard_normal((args.n_signals, G.n_latent))
X = G.forward(Z)

# %%
# Gaussian measurements, two sizes
# --------------------------------
recovered = {}
for m in [int(v) for v in args.m.split(",")]:
    A = rng.standard_normal((m, G.n_output)) / np.sqrt(m)
    Y = X @ A.T  # rows are signals: y = A G(z) for each row
    for name, est in [
        ("gradient descent", GradientDescentInverter(G, measurement=A, random_state=0)),
        ("Latent-Pursuit", LatentPursuitInverter(G, measurement=A)),
    ]:
        if name == "Latent-Pursuit" and m < G.layer_sizes[-2]:
            continue  # under-determined image layer: seconds per signal, see the text
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Z_hat = est.fit(Y).transform(Y)
        snr = np.minimum(snr_db(Z, Z_hat), 300)
        recovered[(m, name)] = est.inverse_transform(Z_hat)
        print(f"m = {m:4d}, {name:16s}: median z-SNR {np.median(snr):6.1f} dB, "
              f"{np.mean(snr >= 60):.0%} >= 60 dB, {time.perf_counter() - t0:.1f} s")

# %%
# Signals recovered from the measurements
# ---------------------------------------
n = min(6, args.n_signals)
rows = [("truth", X)] + [(f"m={m}, {name}", Xh) for (m, name), Xh in recovered.items()]
fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.45 * len(rows)))
for r, (label, images) in enumerate(rows):
    for j in range(n):
        axes[r, j].imshow(np.clip(images[j], -1, 1).reshape(28, 28), cmap="gray",
                          vmin=-1, vmax=1)
        axes[r, j].set_axis_off()
    axes[r, 0].set_title(label, fontsize=7, loc="left")
fig.tight_layout()
if args.out:
    fig.savefig(args.out, dpi=120)
plt.show()
