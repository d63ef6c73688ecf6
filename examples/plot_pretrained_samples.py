"""Samples of the shipped pretrained generators.

Draws 64 latent codes ``z ~ N(0, I)`` (seed 0), maps them through the
``fashion-mnist-fc`` generator (the paper's 20-128-392-784 architecture,
section 6.2) and writes an 8 x 8 grid to ``docs/figures/pretrained_samples.png``.

Run from the repository root::

    python examples/plot_pretrained_samples.py [--name fashion-mnist-fc] [--out PATH]
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from skinvert.datasets import load_pretrained_generator  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, os.pardir, "docs", "figures", "pretrained_samples.png")


def sample_grid(name="fashion-mnist-fc", n_rows=8, n_cols=8, seed=0, generator=None):
    """An image of ``n_rows x n_cols`` samples, values in [-1, 1] (clipped)."""
    G = load_pretrained_generator(name) if generator is None else generator
    side = int(round(np.sqrt(G.n_output)))
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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="fashion-mnist-fc")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args(argv)
    grid = sample_grid(args.name, seed=args.seed)
    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    ax.imshow(grid, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{args.name}: G(z), z ~ N(0, I), seed {args.seed}")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {os.path.normpath(args.out)}")


if __name__ == "__main__":
    main()
