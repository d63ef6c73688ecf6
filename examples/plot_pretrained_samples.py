"""
======================================
Samples of the pretrained generators
======================================

Draws 64 latent codes ``z ~ N(0, I)`` (seed 0) and maps them through the
shipped ``fashion-mnist-fc`` generator (the paper's 20-128-392-784
architecture, section 6.2, trained as a GAN on Fashion-MNIST): an 8 x 8 grid
of ``G(z)``. As the paper notes, fully connected generators give noisier
images than convolutional ones; what matters for inversion is that they are
*expansive* (see :func:`skinvert.analysis.invertibility_report`).

::

    python examples/plot_pretrained_samples.py [--name digits-fc] [--out PATH]

(``docs/figures/pretrained_samples.png`` is this figure.)
"""

import argparse
import os

import matplotlib.pyplot as plt
import numpy as np

from skinvert.datasets import load_pretrained_generator


def sample_grid(name="fashion-mnist-fc", n_rows=8, n_cols=8, seed=0, generator=None):
    """An image of ``n_rows x n_cols`` samples, values in [-1, 1] (clipped)."""
    G = load_pretrained_generator(name) if generator is None else generator
    side = round(np.sqrt(G.n_output))
    Z = np.random.default_rng(seed).standard_normal((n_rows * n_cols, G.n_latent))
    X = np.clip(G.forward(Z.astype(np.float32)), -1.0, 1.0).reshape(n_rows, n_cols, side, side)
    pad = 1
    grid = np.ones((n_rows * (side + pad) + pad, n_cols * (side + pad) + pad))
    for i in range(n_rows):
        for j in range(n_cols):
            r, c = pad + i * (side + pad), pad + j * (side + pad)
            grid[r:r + side, c:c + side] = X[i, j]
    return grid


def main(argv=None):
    p = argparse.ArgumentParser(description="Samples of the pretrained generators.")
    p.add_argument("--name", default="fashion-mnist-fc")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="figure file (default: none)")
    args, _ = p.parse_known_args(argv)
    grid = sample_grid(args.name, seed=args.seed)
    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    ax.imshow(grid, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{args.name}: G(z), z ~ N(0, I), seed {args.seed}")
    fig.tight_layout()
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        fig.savefig(args.out)
        print(f"wrote {os.path.normpath(args.out)}")


if __name__ == "__main__":
    main()
    plt.show()
