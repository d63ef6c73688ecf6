"""
=====================================================
Inpainting: missing pixels filled by the generator
=====================================================

NaN in ``X`` marks a missing entry for every inverter. The pursuits drop the
missing rows from their layer problems, so as long as the observed pixels
still determine the last hidden layer, the latent code (and hence every
missing pixel) is recovered. :class:`skinvert.GeneratorImputer` wraps an
inverter into a scikit-learn transformer that returns ``X`` with its NaN
replaced by ``G(z_hat)``, usable in a ``Pipeline``.

Two masks of the paper's Figures 8 and 11 on the shipped ``fashion-mnist-fc``
generator: 45 % of the pixels missing at random, and the top 13 of 28 rows
missing.

Options: ``--n-signals N`` (default 16), ``--out FILE``.
"""

# %%
import argparse

import matplotlib.pyplot as plt
import numpy as np

from skinvert import GeneratorImputer, LatentPursuitInverter
from skinvert.datasets import load_pretrained_generator
from skinvert.metrics import snr_db

parser = argparse.ArgumentParser(description="Inpainting with GeneratorImputer.")
parser.add_argument("--n-signals", type=int, default=16)
parser.add_argument("--out", default=None)
args, _ = parser.parse_known_args()

G = load_pretrained_generator("fashion-mnist-fc")
rng = np.random.default_rng(0)
Z = rng.standard_normal((args.n_signals, G.n_latent))
X = G.forward(Z)

masks = {
    "45 % at random": rng.random(X.shape) < 0.45,
    "top 13 rows": np.broadcast_to(np.arange(784) < 13 * 28, X.shape),
}

# %%
# Fill the missing pixels
# -----------------------
imputer = GeneratorImputer(LatentPursuitInverter(G))
filled = {}
for name, missing in masks.items():
    X_missing = np.where(missing, np.nan, X)
    filled[name] = imputer.fit(X_missing).transform(X_missing)
    # SNR of the restored pixels only
    truth = np.where(missing, X, np.nan)
    snr = snr_db(truth, filled[name])
    print(f"{name}: median SNR of the restored pixels {np.median(np.minimum(snr, 300)):.1f} dB")

# %%
# Observed (olive: missing) and filled images
# -------------------------------------------
n = min(6, args.n_signals)
fig, axes = plt.subplots(4, n, figsize=(1.3 * n, 5.6))
for r, (name, missing) in enumerate(masks.items()):
    for j in range(n):
        shown = np.ma.masked_array(np.clip(X[j], -1, 1), mask=missing[j]).reshape(28, 28)
        cmap = plt.get_cmap("gray").with_extremes(bad="tab:olive")
        axes[2 * r, j].imshow(shown, cmap=cmap, vmin=-1, vmax=1)
        axes[2 * r + 1, j].imshow(np.clip(filled[name][j], -1, 1).reshape(28, 28),
                                  cmap="gray", vmin=-1, vmax=1)
    axes[2 * r, 0].set_title(f"{name}: observed", fontsize=8, loc="left")
    axes[2 * r + 1, 0].set_title("filled by G(z_hat)", fontsize=8, loc="left")
for ax in axes.ravel():
    ax.set_axis_off()
fig.tight_layout()
if args.out:
    fig.savefig(args.out, dpi=120)
plt.show()

# %%
# In a Pipeline
# -------------
# Any estimator that does not accept NaN can follow the imputer.
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline

X_missing = np.where(masks["45 % at random"], np.nan, X)
pipe = make_pipeline(GeneratorImputer(LatentPursuitInverter(G)), PCA(n_components=2))
print(pipe.fit_transform(X_missing)[:3])
