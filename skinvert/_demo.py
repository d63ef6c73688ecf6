"""``python -m skinvert demo``: invert signals of a generator with every inverter.

Generates ``G(z)`` for ``z ~ N(0, I)``, corrupts them (clean, 45 % of the
pixels missing at random, the top 13 of 28 rows missing), inverts them with
every inverter that applies (Oracle, Latent-Pursuit, Layered BP, the hybrid,
gradient descent; the layer-wise pursuits are left out, with the reason
printed, on a generator such as the convolutional ``fashion-mnist-dcgan``
whose contracting last layer they cannot invert) and prints the per-layer
SNR (median, p10, p90) and the wall time of each method; writes a figure
like the paper's Figures 6/7 (:func:`demo_figure`).
"""

import argparse
import os
import time
import warnings

import numpy as np

from .metrics import layer_snr, snr_db, summarize

MASKS = ("clean", "random45", "top13")
#: The figure's default path: under ./out/, which .gitignore covers.
DEFAULT_OUT = os.path.join("out", "skinvert_demo.png")


def _generator(name, seed):
    if name == "random":
        from ._random_generator import make_random_generator

        desc = "random [20, 80, 200, 400], tanh"
        return make_random_generator([20, 80, 200, 400], random_state=seed), desc
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


def layerwise_obstacle(generator):
    """Why the layer-wise pursuits do not apply to ``generator`` (None: they do)."""
    return None if generator.is_dense else generator.layerwise_obstacle()


def available_methods(generator, seed, gd_iter=1000):
    """The inverters to compare: (label, estimator, needs_true_supports).

    Latent-Pursuit and Layered BP only where their layer problems are posed
    (:func:`layerwise_obstacle`); the hybrid (section 6.1: gradient-descent
    starts and the exact polish) and gradient descent always.
    """
    import skinvert

    layerwise = []
    if layerwise_obstacle(generator) is None:
        layerwise = [
            ("Latent-Pursuit", skinvert.LatentPursuitInverter(generator), False),
            ("Layered BP", skinvert.LayeredBPInverter(generator), False),
        ]
    return [
        ("Oracle", skinvert.OracleInverter(generator), True),
        *layerwise,
        ("Hybrid", skinvert.HybridInverter(generator, random_state=seed), False),
        (
            "Gradient descent",
            skinvert.GradientDescentInverter(
                generator, transform_max_iter=gd_iter, random_state=seed
            ),
            False,
        ),
    ]


def run_demo(
    generator, *, n_signals=32, masks=MASKS, seed=0, gd_iter=1000, out=None, stream=print,
    title=None,
):
    """Run the comparison; return ``{(mask, method): {"snr": ..., "time": s}}``.

    With ``out`` a path, also writes the figure (:func:`demo_figure`) there,
    creating its folder.
    """
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n_signals, generator.n_latent))
    X = generator.forward(Z)
    S = generator.supports(Z)
    results = {}
    recon = {}
    reason = layerwise_obstacle(generator)
    if reason:
        stream(f"Latent-Pursuit and Layered BP do not apply: {reason}.")
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
        "Hybrid = gradient-descent starts + exact polish (HybridInverter); "
        "gradient descent: GradientDescentInverter's defaults."
    )
    if out:
        demo_figure(generator, X, recon, masks, out, title=title)
        stream(f"figure written to {os.path.abspath(out)}")
    return results


#: Missing pixels are drawn in this colour, which no grey-scale image uses.
MISSING_COLOUR = "#ff00ff"
_MASK_LABELS = {
    "clean": "clean",
    "random45": "45 % missing",
    "top13": "top 13 rows missing",
}


def _snr_label(ref, est):
    snr = float(snr_db(ref[None, :], est[None, :])[0])
    return "exact" if snr >= 100.0 else f"{snr:.1f} dB"


def demo_figure(generator, X, recon, masks, out, *, n_show=2, title=None):
    """The demo's figure: one row per (mask, signal), one column per method.

    Columns: the clean signal, what the inverters saw (missing pixels in
    magenta, :data:`MISSING_COLOUR`; none for the clean mask), then
    ``G(z_hat)`` of every inverter with its SNR against the clean signal
    ("exact" at 100 dB and above) under the panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = generator.n_output
    side = int(round(n**0.5))
    square = side * side == n
    methods = [m for (mk, m) in recon if mk == masks[0] and m != "corrupted"]
    columns = ["clean signal", "input to the inverters"] + methods
    lo_hi = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}.get(generator.activation.name)
    vmin, vmax = lo_hi or (float(np.nanmin(X)), float(np.nanmax(X)))
    cmap = matplotlib.colormaps["gray"].copy()
    cmap.set_bad(MISSING_COLOUR)
    n_show = min(n_show, X.shape[0])
    rows = [(mask, k) for mask in masks for k in range(n_show)]
    fig, axes = plt.subplots(
        len(rows), len(columns), figsize=(1.55 * len(columns) + 1.2, 1.75 * len(rows) + 0.9),
        squeeze=False,
    )
    for r, (mask, k) in enumerate(rows):
        ref = np.asarray(X[k], dtype=float)
        for c, col in enumerate(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                v, label = ref, ""
            elif c == 1:
                v = np.asarray(recon[(mask, "corrupted")][k], dtype=float)
                miss = np.isnan(v).mean()
                if miss == 0:  # the clean signal itself: not drawn twice
                    ax.text(0.5, 0.5, "nothing missing:\nthe clean signal", ha="center",
                            va="center", fontsize=7, transform=ax.transAxes)
                    if r == 0:
                        ax.set_title(col, fontsize=8)
                    continue
                label = f"{100 * miss:.0f} % missing"
            else:
                v = np.asarray(recon[(mask, col)][k], dtype=float)
                label = _snr_label(ref, v)
            if square:
                ax.imshow(np.ma.masked_invalid(v.reshape(side, side)), cmap=cmap,
                          vmin=vmin, vmax=vmax, interpolation="nearest")
            else:
                ax.plot(ref, lw=0.4, color="0.7")
                ax.plot(v, lw=0.5, color="C0")
            ax.set_xlabel(label, fontsize=7, labelpad=2,
                          color="darkgreen" if label == "exact" else "black")
            if r == 0:
                ax.set_title(col, fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{_MASK_LABELS.get(mask, mask)}\nsignal {k + 1}", fontsize=7)
    fig.suptitle(
        title or "skinvert demo: G(z_hat) of each inverter, SNR vs the clean signal "
        "(magenta: missing pixels)", fontsize=9,
    )
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)


def main(argv=None):
    """``python -m skinvert demo``; returns the exit status (bad arguments: 2, one line)."""
    parser = argparse.ArgumentParser(
        prog="python -m skinvert",
        description="skinvert: invert ReLU generative models (Aberdam, Simon & Elad 2020).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="invert signals of a generator with every inverter",
        description="Invert G(z) for z ~ N(0, I), clean and with missing pixels, with "
        "every inverter; print the per-layer SNR and time of each and draw a figure.",
    )
    demo.add_argument(
        "--generator", default=None,
        help="a pretrained name (fashion-mnist-fc, digits-fc, fashion-mnist-dcgan), "
        "'random' (a random "
        "[20, 80, 200, 400] tanh net), or a .npz/.safetensors file; default: "
        "fashion-mnist-fc when shipped, else random",
    )
    demo.add_argument(
        "--n-signals", type=int, default=32,
        help="number of signals G(z) to invert per mask (default: 32)",
    )
    demo.add_argument(
        "--gd-iter", type=int, default=1000,
        help="gradient-descent iterations (default: 1000; the paper uses 10000)",
    )
    demo.add_argument(
        "--masks", default=",".join(MASKS),
        help=f"comma-separated subset of {', '.join(MASKS)} (default: all)",
    )
    demo.add_argument(
        "--seed", type=int, default=0,
        help="seed of the latent codes, the masks and the random generator (default: 0)",
    )
    demo.add_argument(
        "--out", default=DEFAULT_OUT,
        help=f"figure path (default: {DEFAULT_OUT}, a folder .gitignore covers; '' for none)",
    )
    args = parser.parse_args(argv)
    if args.n_signals < 1:
        parser.error("--n-signals must be >= 1")
    if args.gd_iter < 1:
        parser.error("--gd-iter must be >= 1")
    masks = tuple(m for m in args.masks.split(",") if m)
    if not masks:
        parser.error(f"--masks is empty; choose from {', '.join(MASKS)}")
    for m in masks:
        if m not in MASKS:
            parser.error(f"unknown mask {m!r}; choose from {', '.join(MASKS)}")
    name = args.generator or _default_generator_name()
    try:
        generator, desc = _generator(name, args.seed)
    except (OSError, ValueError, TypeError) as exc:
        parser.error(f"--generator {name!r}: {_one_line(exc)}")
    print(f"skinvert demo: generator {desc}, layer sizes {generator.layer_sizes}")
    t0 = time.perf_counter()
    run_demo(
        generator,
        n_signals=args.n_signals,
        masks=masks,
        seed=args.seed,
        gd_iter=args.gd_iter,
        out=args.out or None,
        title=f"skinvert demo, generator {desc}: G(z_hat) of each inverter, SNR vs the clean "
        "signal (magenta: missing pixels)",
    )
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__
