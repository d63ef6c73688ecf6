"""
==================================================
Compressed sensing: linear measurements y = A G(z)
==================================================

Every inverter takes ``measurement=A`` for signals observed through a linear
operator, ``y = A G(z) + e``: ``X`` then holds the ``m`` measurements of each
signal, ``transform`` returns the codes and ``inverse_transform`` the full
signals ``G(z_hat)``.

With few measurements the layer-wise pursuits cannot work: their image layer
needs about ``2 s_L`` equations (here ``s_L`` is about 200 of the 392 units
of the last hidden layer), and with a tanh or sigmoid output they refuse a
measurement outright. :class:`~skinvert.HybridInverter` (the paper's
section 6.1 outlook) solves the end-to-end problem instead, which has only
``n_0 = 20`` unknowns: gradient-descent starts, then an exact fixed-support
Gauss-Newton polish with support refresh. It is exact when, on the supports
of the true code, the Jacobian of ``A G`` has full column rank (``m >= n_0``
at least) and one of its starts lands in the right region.

This example uses the shipped generator's weights with a tanh output (the
pursuits refuse it behind ``A``) and compares the hybrid with gradient
descent (eq. 1, momentum, ``learning_rate="auto"``).

Options: ``--n-signals N`` (default 6), ``--m 60,200``, ``--generator plu``
(the shipped PLU output; adds Latent-Pursuit where ``m >= 392``),
``--out FILE``.
"""

# %%
import argparse
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np

from skinvert import (
    GradientDescentInverter,
    HybridInverter,
    LatentPursuitInverter,
    ReLUGenerator,
    polish,
)
from skinvert.datasets import load_pretrained_generator
from skinvert.metrics import snr_db

parser = argparse.ArgumentParser(description="Compressed sensing with a generator prior.")
parser.add_argument("--n-signals", type=int, default=6)
parser.add_argument("--m", default="60,200", help="numbers of measurements")
parser.add_argument("--generator", choices=["tanh", "plu"], default="tanh")
parser.add_argument("--out", default=None)
args, _ = parser.parse_known_args()

G = load_pretrained_generator("fashion-mnist-fc")  # 20-128-392-784, PLU output
if args.generator == "tanh":
    G = ReLUGenerator(G.weights, G.biases, output_activation="tanh")
rng = np.random.default_rng(0)
Z = rng.standard_normal((args.n_signals, G.n_latent))
X = G.forward(Z)

# %%
# Gaussian measurements, A of shape (m, 784)
# ------------------------------------------
# A signal counts as recovered exactly when its latent SNR is at least 60 dB
# (the hybrid typically reaches rounding, near 300 dB).
recovered = {}
for m in [int(v) for v in args.m.split(",")]:
    A = rng.standard_normal((m, G.n_output)) / np.sqrt(m)
    Y = X @ A.T  # rows are signals: y = A G(z) for each row
    candidates = [
        ("gradient descent",
         GradientDescentInverter(G, measurement=A, learning_rate="auto", random_state=0)),
        ("HybridInverter", HybridInverter(G, measurement=A, random_state=0)),
    ]
    if G.activation.piecewise_linear and m >= G.layer_sizes[-2]:
        candidates.append(("Latent-Pursuit", LatentPursuitInverter(G, measurement=A)))
    for name, est in candidates:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gradient descent's ConvergenceWarning
            Z_hat = est.fit(Y).transform(Y)
        snr = np.minimum(snr_db(Z, Z_hat), 300)
        recovered[(m, name)] = est.inverse_transform(Z_hat)
        if name == "gradient descent":
            Z_gd, A_gd, Y_gd = Z_hat, A, Y
        print(f"m = {m:4d}, {name:16s}: median z-SNR {np.median(snr):6.1f} dB, "
              f"{np.mean(snr >= 60):4.0%} exact, {time.perf_counter() - t0:.1f} s")

# %%
# Polishing an estimate
# ---------------------
# :func:`skinvert.polish` is the hybrid's exact stage on its own: it refines
# any estimate (here gradient descent's at the last ``m``; your own code's
# works too) and turns those that start in the right support region into
# the exact codes.
t0 = time.perf_counter()
Z_pol = polish(Z_gd, Y_gd, G, measurement=A_gd)
snr_gd = np.minimum(snr_db(Z, Z_gd), 300)
snr_pol = np.minimum(snr_db(Z, Z_pol), 300)
print(f"m = {A_gd.shape[0]}: gradient descent {np.mean(snr_gd >= 60):.0%} exact, "
      f"after polish {np.mean(snr_pol >= 60):.0%} exact ({time.perf_counter() - t0:.1f} s)")

# %%
# Signals recovered from the measurements
# ---------------------------------------
n = min(6, args.n_signals)
rows = [("truth", X)] + [(f"m={m}, {name}", Xh) for (m, name), Xh in recovered.items()]
fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.45 * len(rows)), squeeze=False)
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
