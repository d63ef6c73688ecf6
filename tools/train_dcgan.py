"""Train the small DCGAN-style generator shipped as ``fashion-mnist-dcgan``.

Run from the repository root (torch needed; it is not imported by the package)::

    python tools/train_dcgan.py --epochs 3 --seed 0 \
        --out skinvert/datasets/data/fashion_mnist_dcgan.safetensors \
        --figure docs/figures/dcgan_samples.png

Generator (z = 32 -> 64x7x7 -> 32x14x14 -> 1x28x28)::

    Linear(32, 3136) -> Unflatten(64, 7, 7) -> BatchNorm2d(64) -> ReLU
    ConvTranspose2d(64, 32, 4, stride=2, padding=1) -> BatchNorm2d(32) -> ReLU
    ConvTranspose2d(32, 1, 4, stride=2, padding=1) -> Tanh

Discriminator: Conv2d(1, 32, 4, 2, 1) -> LeakyReLU(0.2) -> Conv2d(32, 64, 4, 2, 1)
-> LeakyReLU(0.2) -> Flatten -> Linear(3136, 1), spectral normalization on every
map (Miyato et al., 2018). Hinge loss, Adam(betas=(0.5, 0.999)), images scaled to
x / 127.5 - 1. After training the script keeps an exponential moving average of
the generator's weights, recomputes the batch-norm running statistics exactly on
z ~ N(0, I), folds every batch-norm into the map before it (eval mode) and writes

* ``OUT`` (.safetensors): the folded layer stack as plain float32 tensors
  ``layer{i}.weight`` / ``layer{i}.bias`` (torch layouts: Linear (out, in),
  ConvTranspose2d (C_in, C_out, kh, kw)); the architecture is in the header's
  ``__metadata__["architecture"]`` (JSON) and in the provenance file;
* ``OUT`` with suffix ``.json``: provenance (command, seed, epochs, wall time,
  versions, data checksum, losses per epoch) and support statistics;
* ``--figure``: a grid of samples.

Everything is seeded and run with deterministic algorithms on one thread.
"""

import argparse
import copy
import datetime
import hashlib
import json
import os
import platform
import shlex
import sys
import time

import numpy as np

N_LATENT = 32


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist",
                   help="Directory of Fashion-MNIST IDX files (Debian dataset-fashion-mnist).")
    p.add_argument("--out", required=True, help="Output .safetensors file.")
    p.add_argument("--figure", default=None, help="Samples figure (PNG) to write.")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=0,
                   help="Stop after this many steps in all (0: full epochs; for timing).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr-g", type=float, default=2e-4)
    p.add_argument("--lr-d", type=float, default=2e-4)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--bn-batches", type=int, default=50,
                   help="Batches of 1000 codes to recompute the batch-norm statistics.")
    p.add_argument("--stats-samples", type=int, default=1000)
    return p


def load_images(directory):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))
    from skinvert.datasets._idx import _find, load_idx_images

    images = load_idx_images(directory, kind="train")
    path = _find(os.fspath(directory), "train", "images")
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    X = images[:, None, :, :].astype(np.float32) / 127.5 - 1.0
    return X, {"source": f"fashion-mnist IDX file {path}", "sha256": digest,
               "n_images": len(images), "scaling": "x / 127.5 - 1"}


def build_generator():
    from torch import nn

    return nn.Sequential(
        nn.Linear(N_LATENT, 64 * 7 * 7, bias=False),
        nn.Unflatten(1, (64, 7, 7)),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1),
        nn.Tanh(),
    )


def build_discriminator():
    from torch import nn
    from torch.nn.utils.parametrizations import spectral_norm

    return nn.Sequential(
        spectral_norm(nn.Conv2d(1, 32, 4, stride=2, padding=1)),
        nn.LeakyReLU(0.2),
        spectral_norm(nn.Conv2d(32, 64, 4, stride=2, padding=1)),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        spectral_norm(nn.Linear(64 * 7 * 7, 1)),
    )


def recalibrate_batchnorm(G, n_batches, generator, batch=1000):
    """Running statistics of every BatchNorm2d = exact averages over z ~ N(0, I)."""
    import torch

    bns = [m for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    G.train()
    with torch.no_grad():
        for _ in range(n_batches):
            G(torch.randn(batch, N_LATENT, generator=generator))
    G.eval()


def fold(G):
    """The eval-mode generator as (layers, tensors): batch-norm folded into the map before it.

    BatchNorm with scale ``s_c = gamma_c / sqrt(var_c + eps)`` and shift
    ``t_c = beta_c - s_c mean_c`` after a map ``x -> A x + b`` gives
    ``x -> (s A) x + (s b + t)``, ``s`` and ``t`` repeated over each channel's pixels.
    """
    import torch

    lin, _, bn0, _, ct1, bn1, _, ct2, _ = list(G)

    def scale_shift(bn):
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return s, bn.bias - s * bn.running_mean

    with torch.no_grad():
        s, t = scale_shift(bn0)
        W0 = lin.weight.reshape(64, 49, N_LATENT) * s[:, None, None]
        b0 = t[:, None].expand(64, 49)
        s, t = scale_shift(bn1)
        W1 = ct1.weight * s[None, :, None, None]  # (C_in, C_out, kh, kw)
        b1 = t
        W2, b2 = ct2.weight, ct2.bias
    tensors = {
        "layer0.weight": W0.reshape(64 * 49, N_LATENT), "layer0.bias": b0.reshape(-1),
        "layer1.weight": W1, "layer1.bias": b1,
        "layer2.weight": W2, "layer2.bias": b2,
    }
    tensors = {k: v.detach().float().contiguous() for k, v in tensors.items()}
    conv = {"stride": [2, 2], "padding": [1, 1], "output_padding": [0, 0]}
    layers = [
        {"name": "layer0", "type": "Linear", "in_shape": [N_LATENT], "out_shape": [64 * 49],
         "then_reshape": [64, 7, 7], "bias": "flattened (n_out,)"},
        {"name": "layer1", "type": "ConvTranspose2d", "in_shape": [64, 7, 7],
         "out_shape": [32, 14, 14], "bias": "per channel (C_out,)", **conv},
        {"name": "layer2", "type": "ConvTranspose2d", "in_shape": [32, 14, 14],
         "out_shape": [1, 28, 28], "bias": "per channel (C_out,)", **conv},
    ]
    arch = {"layers": layers, "hidden_activation": "relu", "output_activation": "tanh",
            "layout": "channel-first, samples flattened in C order (torch x.reshape(B, -1))"}
    return arch, tensors


def support_statistics(G, n_samples, seed):
    """Active-ReLU fractions per hidden layer and the saturated-pixel fraction of tanh."""
    import torch

    z = torch.from_numpy(np.random.default_rng(seed).standard_normal((n_samples, N_LATENT)))
    hidden = []
    with torch.no_grad():
        h = z.float()
        for m in G:
            h = m(h)
            if isinstance(m, torch.nn.ReLU):
                hidden.append(h.reshape(n_samples, -1))
    out = {"n_samples": n_samples, "z": f"numpy default_rng({seed}).standard_normal", "hidden": []}
    for i, a in enumerate(hidden, start=1):
        frac = (a > 0).double().mean(dim=1).numpy()
        out["hidden"].append({
            "layer": i, "n_units": int(a.shape[1]),
            "mean_active_fraction": round(float(frac.mean()), 4),
            "active_fraction_min_median_max": [round(float(q), 4) for q in
                                               np.quantile(frac, [0, 0.5, 1])],
            "dead_units_fraction": round(float(((a > 0).sum(0) == 0).double().mean()), 4),
        })
    x = h.reshape(n_samples, -1)
    out["output_saturated_fraction"] = round(float((x.abs() > 0.999).double().mean()), 4)
    out["n_latent"] = N_LATENT
    out["n_output"] = int(x.shape[1])
    return out


def save_figure(G, path, seed, n=64):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    z = torch.from_numpy(np.random.default_rng(seed).standard_normal((n, N_LATENT))).float()
    with torch.no_grad():
        x = G(z).numpy()[:, 0]
    k = int(np.ceil(np.sqrt(n)))
    grid = np.ones((k * 29 + 1, k * 29 + 1))
    for i in range(n):
        r, c = divmod(i, k)
        grid[1 + 29 * r:29 * (r + 1), 1 + 29 * c:29 * (c + 1)] = x[i]
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.imshow(grid, cmap="gray", vmin=-1, vmax=1)
    ax.set_axis_off()
    ax.set_title("fashion-mnist-dcgan: G(z), z ~ N(0, I)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def train(args, argv):
    import torch
    from safetensors.torch import save_file

    t_start = time.time()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(args.seed)
    X, data_info = load_images(args.data)
    data = torch.from_numpy(X)
    G, D = build_generator(), build_discriminator()
    G_ema = copy.deepcopy(G)
    opt_g = torch.optim.Adam(G.parameters(), lr=args.lr_g, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=args.lr_d, betas=(0.5, 0.999))
    relu = torch.nn.functional.relu
    B, n_data, log, total = args.batch_size, len(data), [], 0
    t0 = time.time()
    for epoch in range(args.epochs):
        perm = torch.randperm(n_data, generator=gen)
        sums, n_steps = np.zeros(4), 0
        for step in range(n_data // B):
            real = data[perm[step * B:(step + 1) * B]]
            with torch.no_grad():
                fake = G(torch.randn(B, N_LATENT, generator=gen))
            out = D(torch.cat([real, fake]))
            d_real, d_fake = out[:B], out[B:]
            loss_d = relu(1.0 - d_real).mean() + relu(1.0 + d_fake).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            loss_g = -D(G(torch.randn(B, N_LATENT, generator=gen))).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            with torch.no_grad():
                for pe, p in zip(G_ema.parameters(), G.parameters()):
                    pe.lerp_(p, 1.0 - args.ema)
            sums += [loss_d.item(), loss_g.item(), d_real.mean().item(), d_fake.mean().item()]
            n_steps += 1
            total += 1
            if args.max_steps and total >= args.max_steps:
                break
        m = sums / max(n_steps, 1)
        entry = {"epoch": epoch + 1, "steps": n_steps, "loss_d": round(m[0], 4),
                 "loss_g": round(m[1], 4), "d_real": round(m[2], 4), "d_fake": round(m[3], 4),
                 "elapsed_s": round(time.time() - t0, 1)}
        log.append(entry)
        print(json.dumps(entry), flush=True)
        if args.max_steps and total >= args.max_steps:
            break
    train_s = time.time() - t0

    recalibrate_batchnorm(G_ema, args.bn_batches, torch.Generator().manual_seed(args.seed + 1))
    arch, tensors = fold(G_ema)
    # Reference outputs of the eval-mode torch module (batch-norm not folded),
    # which the folded stack must reproduce (tests/test_conv_operators.py).
    z_ref = torch.from_numpy(np.random.default_rng(2).standard_normal((8, N_LATENT))).float()
    with torch.no_grad():
        tensors["reference.z"] = z_ref.contiguous()
        tensors["reference.x"] = G_ema(z_ref).reshape(8, -1).contiguous()
    meta = {"architecture": json.dumps(arch), "format": "skinvert-layer-stack-v1"}
    save_file(tensors, args.out, metadata=meta)
    stats = support_statistics(G_ema, args.stats_samples, seed=0)
    if args.figure:
        save_figure(G_ema, args.figure, seed=1)

    import sklearn

    prov = {
        "file": os.path.basename(args.out),
        "command": "python tools/train_dcgan.py " + " ".join(shlex.quote(a) for a in argv),
        "seed": args.seed,
        "epochs": args.epochs,
        "arguments": vars(args),
        "architecture": arch,
        "discriminator": "SN-Conv2d(1,32,4,2,1)-LReLU(0.2)-SN-Conv2d(32,64,4,2,1)-LReLU(0.2)"
                         "-Flatten-SN-Linear(3136,1); hinge loss; Adam betas (0.5, 0.999)",
        "generator_ema": args.ema,
        "data": data_info,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "sklearn_version": sklearn.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "train_wall_s": round(train_s, 1),
        "total_wall_s": round(time.time() - t_start, 1),
        "file_bytes": os.path.getsize(args.out),
        "support_statistics": stats,
        "log": log,
    }
    prov_path = os.path.splitext(args.out)[0] + ".json"
    with open(prov_path, "w") as fh:
        json.dump(prov, fh, indent=1)
        fh.write("\n")
    print(f"wrote {args.out} and {prov_path}; training {train_s:.0f} s")
    print(json.dumps(stats, indent=1))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    train(build_parser().parse_args(argv), argv)


if __name__ == "__main__":
    main()
