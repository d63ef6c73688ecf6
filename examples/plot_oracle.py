"""
=======================================================
The Oracle: inversion with known supports (Algorithm 1)
=======================================================

When the supports ``S_i`` of the hidden layers are known, every ReLU is a
known linear map and ``G`` becomes ``phi(A_S z + c_S)``: inversion is a
small (non-linear) least-squares problem in ``n_0`` unknowns. This is the
paper's *Oracle* (Algorithm 1; Algorithm 6 solves it layer by layer). It is
the reference every other inverter is compared with, and Theorem 3 bounds its
error under Gaussian noise.

:class:`skinvert.OracleInverter` takes the true supports in ``transform``
(``supports=G.supports(Z)``); without them it estimates the supports with
Latent-Pursuit first, which turns it into the debiasing step of Algorithm 5.

Options: ``--n-signals N`` (default 64), ``--out FILE``.
"""

# %%
import argparse

import matplotlib.pyplot as plt
import numpy as np

from skinvert import OracleInverter, make_random_generator
from skinvert.analysis import invertibility_report

parser = argparse.ArgumentParser(description="The Oracle and Theorem 3.")
parser.add_argument("--n-signals", type=int, default=64)
parser.add_argument("--out", default=None)
args, _ = parser.parse_known_args()

# A random 20-80-200-400 generator (W_i ~ N(0, 2/n_i)) with an identity
# output, so that noise on y is noise on phi^-1(y), Theorem 3's model.
G = make_random_generator([20, 80, 200, 400], output_activation="identity", random_state=0)
rng = np.random.default_rng(0)
Z = rng.standard_normal((args.n_signals, G.n_latent))
X = G.forward(Z)
S = G.supports(Z)  # [bool array (n_signals, 80), bool array (n_signals, 200)]

# %%
# Noiseless: exact
# ----------------
oracle = OracleInverter(G).fit(X)
print("true supports, max error:", np.abs(oracle.transform(X, supports=S) - Z).max())
print("estimated supports, max error:", np.abs(oracle.transform(X) - Z).max())

# %%
# Noise: the error grows linearly with sigma, inside Theorem 3's interval
# ------------------------------------------------------------------------
# Theorem 3 gives lower and upper bounds on ``E ||z_hat - z||^2`` for the
# layer-wise Oracle (Algorithm 6) under ``e ~ N(0, sigma^2 I)`` on
# ``phi^-1(y)``; :func:`skinvert.analysis.invertibility_report` evaluates them
# per sample.
sigmas = np.array([1e-4, 1e-3, 1e-2])
E = rng.standard_normal(X.shape)
rms, lower, upper = [], [], []
for sigma in sigmas:
    Y = X + sigma * E
    Z_hat = OracleInverter(G, method="layerwise").fit(Y).transform(Y, supports=S)
    rms.append(np.sqrt(np.mean(np.sum((Z_hat - Z) ** 2, axis=1))))
    q = invertibility_report(G, Z, noise_std=sigma, worst_case=False).quantities
    lower.append(np.sqrt(np.median(q["oracle_latent_mse_lower"])))
    upper.append(np.sqrt(np.median(q["oracle_latent_mse_upper"])))
    print(f"sigma {sigma:g}: RMS latent error {rms[-1]:.3g}, "
          f"Theorem 3 band [{lower[-1]:.3g}, {upper[-1]:.3g}]")

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.fill_between(sigmas, lower, upper, color="gray", alpha=0.3, label="Theorem 3 (median band)")
ax.loglog(sigmas, rms, "o-", color="k", label="Oracle, layer-wise (RMS)")
ax.set_xlabel("noise sigma")
ax.set_ylabel("latent error")
ax.legend()
fig.tight_layout()
if args.out:
    fig.savefig(args.out, dpi=120)
plt.show()
