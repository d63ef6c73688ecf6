"""Train the paper's fully connected ReLU generator adversarially (section 6.2).

Run ``python -m tools.train_fc_gan --help``. The shipped weights were made
with the commands recorded in ``skinvert/datasets/data/PROVENANCE.md``.

Generator (the paper's architecture, ``--sizes 20,128,392,784``)::

    Linear(20, 128)  -> BatchNorm1d -> ReLU
    Linear(128, 392) -> BatchNorm1d -> ReLU
    Linear(392, 784) -> PLU(alpha=0.1, c=1)

Discriminator: fully connected, spectral normalization on every linear map
(Miyato et al., 2018), LeakyReLU(0.2). Hinge loss, Adam(betas=(0.5, 0.999)),
images scaled to [-1, 1] (the PLU's unit-slope band for c = 1). After training
the script keeps an exponential moving average of the generator's weights,
recomputes the batch-norm running statistics exactly on ``z ~ N(0, I)`` (so
eval mode matches the training distribution), folds batch-norm with
:func:`skinvert.io.from_torch` and writes a float32 generator file plus a JSON
provenance file (command, seed, epochs, versions, data, support statistics).

Everything is seeded (torch, NumPy, the data order, the latent codes) and run
with deterministic algorithms on a fixed number of CPU threads, so the same
command on the same torch build gives the same weights.
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

from skinvert.datasets._idx import DEBIAN_FASHION_MNIST_DIR, _find, load_idx_images

DEFAULT_SIZES = {
    "fashion-mnist": "20,128,392,784",
    "mnist": "20,128,392,784",
    "digits": "8,32,64,64",
}
DEFAULT_DISC = {"fashion-mnist": "512,256", "mnist": "512,256", "digits": "128,64"}


def _ints(text):
    return [int(t) for t in text.split(",") if t.strip()]


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m tools.train_fc_gan",
        description=(
            "Train a fully connected ReLU generator (Linear-BatchNorm1d-ReLU hidden "
            "layers, PLU output) adversarially against a spectrally normalized "
            "fully connected discriminator, and write it as a skinvert generator "
            "file (batch-norm folded)."
        ),
    )
    p.add_argument(
        "--dataset",
        choices=sorted(DEFAULT_SIZES),
        default="fashion-mnist",
        help="fashion-mnist / mnist: IDX files in --data; digits: sklearn's "
        "load_digits (8x8). Default: fashion-mnist.",
    )
    p.add_argument(
        "--data",
        default=None,
        help="Directory of IDX files (train-images-idx3-ubyte[.gz]). Default for "
        f"fashion-mnist: {DEBIAN_FASHION_MNIST_DIR} (Debian package "
        "dataset-fashion-mnist); required for mnist.",
    )
    p.add_argument("--out", required=True, help="Output generator file (.npz or .safetensors).")
    p.add_argument(
        "--provenance",
        default=None,
        help="Provenance JSON to write (default: --out with suffix .json).",
    )
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads.")
    p.add_argument("--sizes", default=None, help="Generator layer sizes n0,n1,...,n.")
    p.add_argument("--disc-sizes", default=None, help="Discriminator hidden sizes.")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr-g", type=float, default=2e-4)
    p.add_argument("--lr-d", type=float, default=2e-4)
    p.add_argument("--beta1", type=float, default=0.5)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument(
        "--loss",
        choices=("hinge", "ns"),
        default="hinge",
        help="hinge or non-saturating (ns) GAN loss.",
    )
    p.add_argument(
        "--ema", type=float, default=0.999, help="EMA decay of the generator weights (0 disables)."
    )
    p.add_argument("--plu-alpha", type=float, default=0.1)
    p.add_argument("--plu-c", type=float, default=1.0)
    p.add_argument(
        "--bn-batches",
        type=int,
        default=100,
        help="Batches of 1024 latent codes to recompute batch-norm statistics.",
    )
    p.add_argument("--stats-samples", type=int, default=512)
    p.add_argument(
        "--snapshot-every",
        type=int,
        default=0,
        help="Also write the generator every N epochs to OUT_epochN.npz "
        "(for inspecting training; 0 disables).",
    )
    p.add_argument("--quiet", action="store_true")
    return p


def load_training_images(dataset, data):
    """Training images as float32 of shape (n_samples, n_pixels) in [-1, 1], and a source note."""
    if dataset == "digits":
        from sklearn.datasets import load_digits

        X = load_digits().images.reshape(-1, 64).astype(np.float32)
        return X / 8.0 - 1.0, {
            "source": "sklearn.datasets.load_digits (8x8, values 0..16)",
            "scaling": "x / 8 - 1",
        }
    if data is None:
        if dataset == "mnist":
            raise SystemExit("--dataset mnist needs --data DIR (a directory of MNIST IDX files).")
        data = DEBIAN_FASHION_MNIST_DIR
    images = load_idx_images(data, kind="train")
    path = _find(os.fspath(data), "train", "images")
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    X = images.reshape(len(images), -1).astype(np.float32) / 127.5 - 1.0
    return X, {
        "source": f"{dataset} IDX file {path}",
        "sha256": digest,
        "n_images": int(len(images)),
        "scaling": "x / 127.5 - 1",
    }


def build_generator(sizes, alpha, c):
    """``(Linear -> BatchNorm1d -> ReLU)*`` then ``Linear -> PLU``, as an nn.Sequential."""
    import torch.nn as nn

    from skinvert.io._torch import PLU

    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(b), nn.ReLU()]
    layers.append(PLU(alpha=alpha, c=c))
    return nn.Sequential(*layers)


def build_discriminator(n, hidden):
    """Fully connected, spectral norm on every Linear, LeakyReLU(0.2)."""
    import torch.nn as nn
    from torch.nn.utils.parametrizations import spectral_norm

    layers, a = [], n
    for h in hidden:
        layers += [spectral_norm(nn.Linear(a, h)), nn.LeakyReLU(0.2)]
        a = h
    layers.append(spectral_norm(nn.Linear(a, 1)))
    return nn.Sequential(*layers)


def recalibrate_batchnorm(G, n0, n_batches, generator, batch=1024):
    """Set every BatchNorm1d's running statistics to exact averages over z ~ N(0, I)."""
    import torch

    bns = [m for m in G.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    if not bns or n_batches <= 0:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    G.train()
    with torch.no_grad():
        for _ in range(n_batches):
            G(torch.randn(batch, n0, generator=generator))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    G.eval()


def train(args, argv=None):
    import torch

    from skinvert.datasets._stats import support_statistics
    from skinvert.io import from_torch

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # noqa: NPY002 (the recorded runs seeded the legacy global state)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(args.seed)

    sizes = _ints(args.sizes or DEFAULT_SIZES[args.dataset])
    disc = _ints(args.disc_sizes or DEFAULT_DISC[args.dataset])
    X, data_info = load_training_images(args.dataset, args.data)
    if X.shape[1] != sizes[-1]:
        raise SystemExit(f"--sizes ends with {sizes[-1]} but the images have {X.shape[1]} pixels.")
    data = torch.from_numpy(X)
    n_data, n0 = len(data), sizes[0]

    G = build_generator(sizes, args.plu_alpha, args.plu_c)
    D = build_discriminator(sizes[-1], disc)
    G_ema = copy.deepcopy(G).eval() if args.ema > 0 else None
    opt_g = torch.optim.Adam(G.parameters(), lr=args.lr_g, betas=(args.beta1, args.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=args.lr_d, betas=(args.beta1, args.beta2))
    relu, softplus = torch.nn.functional.relu, torch.nn.functional.softplus
    B = args.batch_size
    log = []
    t0 = time.time()
    for epoch in range(args.epochs):
        perm = torch.randperm(n_data, generator=gen)
        sums = np.zeros(4)
        n_steps = n_data // B
        for step in range(n_steps):
            real = data[perm[step * B : (step + 1) * B]]
            # discriminator step
            with torch.no_grad():
                fake = G(torch.randn(B, n0, generator=gen))
            out = D(torch.cat([real, fake]))
            d_real, d_fake = out[:B], out[B:]
            if args.loss == "hinge":
                loss_d = relu(1.0 - d_real).mean() + relu(1.0 + d_fake).mean()
            else:
                loss_d = softplus(-d_real).mean() + softplus(d_fake).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            # generator step
            d_gen = D(G(torch.randn(B, n0, generator=gen)))
            loss_g = -d_gen.mean() if args.loss == "hinge" else softplus(-d_gen).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            if G_ema is not None:
                with torch.no_grad():
                    for pe, p in zip(G_ema.parameters(), G.parameters()):
                        pe.lerp_(p, 1.0 - args.ema)
            sums += [loss_d.item(), loss_g.item(), d_real.mean().item(), d_fake.mean().item()]
        m = sums / max(n_steps, 1)
        entry = {
            "epoch": epoch + 1,
            "loss_d": m[0],
            "loss_g": m[1],
            "d_real": m[2],
            "d_fake": m[3],
            "elapsed_s": round(time.time() - t0, 1),
        }
        log.append(entry)
        if args.snapshot_every and (epoch + 1) % args.snapshot_every == 0:
            snap = copy.deepcopy(G_ema if G_ema is not None else G)
            recalibrate_batchnorm(snap, n0, args.bn_batches, torch.Generator().manual_seed(0))
            stem, ext = os.path.splitext(args.out)
            from_torch(snap.float()).save(f"{stem}_epoch{epoch + 1}{ext}")
        if not args.quiet:
            print(
                f"epoch {epoch + 1:3d}/{args.epochs}  loss_d {m[0]:.3f}  loss_g {m[1]:.3f}  "
                f"D(real) {m[2]:+.3f}  D(fake) {m[3]:+.3f}  {entry['elapsed_s']:.0f}s",
                flush=True,
            )
    train_s = time.time() - t0

    final = G_ema if G_ema is not None else G
    recalibrate_batchnorm(final, n0, args.bn_batches, gen)
    final.eval()
    generator = from_torch(final.float())
    generator.save(args.out)
    with torch.no_grad():
        z = torch.randn(256, n0, generator=torch.Generator().manual_seed(1))
        diff = float(np.abs(generator.forward(z.numpy()) - final(z).numpy()).max())
    stats = support_statistics(generator, n_samples=args.stats_samples, random_state=0)

    import sklearn

    prov = {
        "file": os.path.basename(args.out),
        "command": "python -m tools.train_fc_gan "
        + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "seed": args.seed,
        "epochs": args.epochs,
        "arguments": vars(args),
        "generator_sizes": sizes,
        "discriminator_hidden": disc,
        "data": data_info,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "sklearn_version": sklearn.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "train_wall_s": round(train_s, 1),
        "from_torch_max_abs_diff": diff,
        "support_statistics": stats,
        "log": log,
    }
    prov_path = args.provenance or os.path.splitext(args.out)[0] + ".json"
    with open(prov_path, "w") as fh:
        json.dump(prov, fh, indent=1)
        fh.write("\n")
    if not args.quiet:
        print(f"wrote {args.out} and {prov_path} (training {train_s:.0f}s)")
        print(json.dumps(stats, indent=1))
    return generator, prov


def main(argv=None):
    args = build_parser().parse_args(argv)
    train(args, argv)


if __name__ == "__main__":
    main()
