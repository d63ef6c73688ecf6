"""The paper's Figures 5, 8 and 11 on the shipped generator: per-layer SNR of every inverter.

    python examples/plot_trained_inversion.py --mask clean    --out figure5.png
    python examples/plot_trained_inversion.py --mask random45 --out figure8.png
    python examples/plot_trained_inversion.py --mask top13    --out figure11.png

512 signals G(z), z ~ N(0, I) (``--n-signals``), inverted by the Oracle (true
supports), Latent-Pursuit, Layered BP and gradient descent (``--gd-iter``, the
paper uses 10,000); for each layer (z, x1, x2, image) the median SNR with the
10/25/75/90 % quantiles, as in the paper's figures. Also prints the table of
``python -m skinvert demo``.
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from skinvert._demo import run_demo  # noqa: E402
from skinvert.datasets import load_pretrained_generator  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mask", default="clean", choices=["clean", "random45", "top13"])
    p.add_argument("--n-signals", type=int, default=512)
    p.add_argument("--gd-iter", type=int, default=2000)
    p.add_argument("--generator", default="fashion-mnist-fc")
    p.add_argument("--out", default="trained_inversion.png")
    a = p.parse_args()
    G = load_pretrained_generator(a.generator)
    results = run_demo(G, n_signals=a.n_signals, masks=(a.mask,), gd_iter=a.gd_iter)
    layers = ["z"] + [f"x{i}" for i in range(1, G.n_layers + 1)] + ["image"]
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(len(layers))
    for (_, method), res in results.items():
        v = np.array([np.minimum(res["snr"][name], 300.0) for name in layers])
        q = np.percentile(v, [10, 25, 50, 75, 90], axis=1)
        line = ax.plot(x, q[2], marker="o", label=f"{method} ({res['time']:.1f} s)")[0]
        ax.fill_between(x, q[0], q[4], color=line.get_color(), alpha=0.12)
        ax.fill_between(x, q[1], q[3], color=line.get_color(), alpha=0.25)
    ax.set_xticks(x, layers)
    ax.set_ylabel("SNR (dB, exact capped at 300)")
    ax.set_title(f"{a.generator}: {a.mask}, {a.n_signals} signals")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print("figure written to", a.out)


if __name__ == "__main__":
    main()
