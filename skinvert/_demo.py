"""``python -m skinvert demo``: invert signals of a generator with every inverter.

Generates ``G(z)`` for ``z ~ N(0, I)``, corrupts them (clean, 45 % of the
pixels missing at random, the top 13 of 28 rows missing), inverts them with
every available inverter and prints the per-layer SNR (median, p10, p90) and
the wall time of each method; writes a figure like the paper's Figures 6/7.
"""

import argparse
import time
import warnings

import numpy as np

from .metrics import layer_snr, summarize

MASKS = ("clean", "random45", "top13")


def _generator(name, seed):
    if name == "random":
        from .generator import make_random_generator

        return make_random_generator([20, 80, 200, 400], random_state=seed), "random [20, 80, 200, 400], tanh"
    try:
        from .datasets import load_pretrained_generator
    except ImportError:  # pragma: no cover - the datasets package ships with skinvert
        load_pretrained_generator = None
    if load_pretrained_generator is not None and not name.endswith((".npz", ".safetensors")):
        return load_pretrained_generator(name), f"pretrained {name!r}"
    from .io import load_generator

    return load_generator(name), name


def _default_generator_name():
    try:
        from .datasets import list_pretrained_generators

        names = list_pretrained_generators()
    except Exception:  # pragma: no cover - no shipped weights
        return "random"
    return "fashion-mnist-fc" if "fashion-mnist-fc" in names else "random"


def corrupt(X, kind, rng):
    """Apply a mask: ``clean``, ``random45`` (45 % of entries missing at random) or
    ``top13`` (the top 13 of 28 rows of a 28x28 image; the first 13/28 of the
    entries for other sizes). Missing entries become NaN."""
    X = np.array(X, dtype=np.float64, copy=True)
    n = X.shape[1]
    if kind == "clean":
        return X
    if kind == "random45":
        X[rng.random(X.shape) < 0.45] = np.nan
        return X
    if kind == "top13":
        side = int(round(n**0.5))
        cut = 13 * side if side * side == n and side == 28 else int(round(n * 13 / 28))
        X[:, :cut] = np.nan
        return X
    raise ValueError(f"Unknown mask {kind!r}; use one of {MASKS}.")


def available_methods(generator, seed, gd_iter=1000):
    """The inverters to compare: (label, estimator, needs_true_supports)."""
    import skinvert

    methods = [("Oracle", skinvert.OracleInverter(generator), True)]
    for label, name in (("Latent-Pursuit", "LatentPursuitInverter"), ("Layered BP", "LayeredBPInverter")):
        cls = getattr(skinvert, name, None)
        if cls is not None:
            methods.append((label, cls(generator), False))
    methods.append(
        (
            "Gradient descent",
            skinvert.GradientDescentInverter(
                generator, transform_max_iter=gd_iter, random_state=seed
            ),
            False,
        )
    )
    return methods


def run_demo(
    generator, *, n_signals=32, masks=MASKS, seed=0, gd_iter=1000, out=None, stream=print
):
    """Run the comparison; return ``{(mask, method): {"snr": ..., "time": s}}``."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n_signals, generator.n_latent))
    X = generator.forward(Z)
    S = generator.supports(Z)
    results = {}
    recon = {}
    layers = ["z"] + [f"x{i}" for i in range(1, generator.n_layers + 1)] + ["image"]
    for mask in masks:
        Xc = corrupt(X, mask, rng)
        missing = np.isnan(Xc).mean()
        stream(f"\n== {mask}: {n_signals} signals, {100 * missing:.0f} % of entries missing ==")
        head = f"{'method':<18}" + "".join(f"{name:>22}" for name in layers) + f"{'time (s)':>10}"
        stream(head)
        stream(f"{'':<18}" + "".join(f"{'med / p10 / p90':>22}" for _ in layers))
        for label, est, needs_support in available_methods(generator, seed, gd_iter):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                est.fit(Xc)
                Zh = est.transform(Xc, supports=S) if needs_support else est.transform(Xc)
                elapsed = time.perf_counter() - t0
            snr = layer_snr(generator, Z, Zh)
            results[(mask, label)] = {"snr": snr, "time": elapsed}
            recon[(mask, label)] = generator.forward(Zh)
            cells = ""
            for name in layers:
                s = summarize(snr[name])
                cells += f"{s['median']:>8.1f}/{s['p10']:>6.1f}/{s['p90']:>6.1f}"
            stream(f"{label:<18}{cells}{elapsed:>10.2f}")
        recon[(mask, "corrupted")] = Xc
    stream(
        "\nSNR in dB (exact recoveries capped at 300 dB); Oracle = true supports given; "
        "gradient descent: momentum 0.9, step 0.1 decaying."
    )
    if out:
        _figure(generator, X, recon, masks, out)
        stream(f"figure written to {out}")
    return results


def _figure(generator, X, recon, masks, out, n_show=6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = generator.n_output
    side = int(round(n**0.5))
    square = side * side == n
    methods = [m for (mk, m) in recon if mk == masks[0] and m != "corrupted"]
    ours = next((m for m in ("Latent-Pursuit", "Layered BP", "Oracle") if m in methods), methods[0])
    rows = []
    for mask in masks:
        rows += [
            (f"{mask}: clean", X),
            (f"{mask}: corrupted", recon[(mask, "corrupted")]),
            (f"{mask}: gradient descent", recon[(mask, "Gradient descent")]),
            (f"{mask}: {ours}", recon[(mask, ours)]),
        ]
    fig, axes = plt.subplots(len(rows), n_show, figsize=(1.4 * n_show, 1.4 * len(rows)), squeeze=False)
    for r, (title, data) in enumerate(rows):
        for c in range(n_show):
            ax = axes[r, c]
            v = np.asarray(data[c], dtype=float)
            if square:
                img = np.ma.masked_invalid(v.reshape(side, side))
                ax.imshow(img, cmap="gray", vmin=-1, vmax=1)
            else:
                ax.plot(v, lw=0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=6, rotation=0, ha="right", va="center")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m skinvert")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="invert signals of a generator with every inverter")
    demo.add_argument("--generator", default=None, help="pretrained name, 'random', or a .npz/.safetensors file")
    demo.add_argument("--n-signals", type=int, default=32)
    demo.add_argument(
        "--gd-iter", type=int, default=1000,
        help="gradient-descent iterations (the paper uses 10000)",
    )
    demo.add_argument("--masks", default=",".join(MASKS), help=f"comma-separated subset of {MASKS}")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="skinvert_demo.png", help="figure path ('' for none)")
    args = parser.parse_args(argv)
    if args.n_signals < 1:
        parser.error("--n-signals must be >= 1")
    masks = tuple(m for m in args.masks.split(",") if m)
    for m in masks:
        if m not in MASKS:
            parser.error(f"unknown mask {m!r}; choose from {MASKS}")
    name = args.generator or _default_generator_name()
    generator, desc = _generator(name, args.seed)
    print(f"skinvert demo: generator {desc}, layer sizes {generator.layer_sizes}")
    t0 = time.perf_counter()
    run_demo(
        generator,
        n_signals=args.n_signals,
        masks=masks,
        seed=args.seed,
        gd_iter=args.gd_iter,
        out=args.out or None,
    )
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0
