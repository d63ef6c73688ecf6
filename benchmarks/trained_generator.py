"""Inverting the shipped trained generator (the paper's section 6.2, Figure 5).

The generator is ``fashion-mnist-fc`` (20-128-392-784, Linear-BN-ReLU x2,
Linear-PLU; batch-norm folded into the weights). ``--n-signals`` codes
``z ~ N(0, I)`` (seeded) give noiseless signals ``G(z)``, which every method
inverts:

* the Oracle (Algorithm 1 on the true supports): the reference,
* Latent-Pursuit (Algorithm 5, debiased),
* Layered Basis-Pursuit (Algorithm 2, debiased),
* skinvert's gradient descent (momentum 0.9, step 0.1 decaying,
  ``--gd-iter`` iterations; the paper uses 10,000),
* when torch is importable, a PyTorch Adam loop (CSGM-style: what users run
  today), on the same generator rebuilt as a ``torch.nn.Sequential`` of
  Linear + ReLU layers and a PLU output, all codes optimised at once from a
  random N(0, I) start, ``--torch-iter`` iterations.

For each method: per-layer SNR of ``G(z_hat)`` against the truth (median,
10th and 90th percentiles, dB, exact recoveries capped at 300 dB), the
fraction of samples whose image SNR is at least 60 dB, the number of samples
whose supports of ``G(z_hat)`` differ from the true ones in each hidden
layer, and the wall time of fit + transform (``time.perf_counter``, same
process). Writes ``benchmarks/results/trained_generator.json`` and prints a
markdown table.

Examples
--------
::

    python -m benchmarks.trained_generator --n-signals 512
    python -m benchmarks.trained_generator --n-signals 64 --torch-iter 2000   # a short check
    python -m benchmarks.trained_generator --no-torch
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time
import warnings

import numpy as np

import skinvert
from skinvert import (
    GradientDescentInverter,
    LatentPursuitInverter,
    LayeredBPInverter,
    OracleInverter,
    load_generator,
    make_random_generator,
)
from skinvert.metrics import layer_snr, support_errors

from ._common import (
    CAP,
    GOOD_DB,
    SHIPPED_WEIGHTS,
    pretrained_generator,
    result_path,
    sha256,
    snr_stats,
)

WEIGHTS = str(SHIPPED_WEIGHTS / "fashion_mnist_fc.npz")


def get_generator(name, seed):
    """The generator to invert and a description of it."""
    if name == "random":  # same shape and output as the trained net, for development
        G = make_random_generator(
            [20, 128, 392, 784],
            output_activation=("plu", {"slope": 0.1, "c": 1.0}),
            random_state=seed,
        )
        return G, "random 20-128-392-784, PLU output (NOT the trained generator)"
    if name.endswith((".npz", ".safetensors")):
        return load_generator(name), name
    return pretrained_generator(name)


def stats(values):
    """Median, p10 and p90 of a per-sample SNR array (clipped to +-CAP dB)."""
    return snr_stats(values)


def evaluate(G, Z, S, Zh):
    Zh = np.asarray(Zh, dtype=np.float64)
    snr = layer_snr(G, Z, Zh)
    err = support_errors(S, G.supports(Zh))
    img = np.where(np.isnan(snr["image"]), -np.inf, snr["image"])
    return {
        "snr": {k: stats(v) for k, v in snr.items()},
        "frac_image_ge_60db": float(np.mean(img >= GOOD_DB)),
        "z_median_db": stats(snr["z"])["median"],
        "support_error_samples": {
            f"x{i}": int(np.sum((e["missed"] + e["spurious"]) > 0))
            for i, e in enumerate(err, start=1)
        },
        "support_error_entries_median": {
            f"x{i}": float(np.median(e["missed"] + e["spurious"]))
            for i, e in enumerate(err, start=1)
        },
    }


def run_skinvert(label, est, X, S=None):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        est.fit(X)
        Zh = est.transform(X, supports=S) if S is not None else est.transform(X)
        dt = time.perf_counter() - t0
    return Zh, dt, sorted({str(m.message) for m in w})


# -- the PyTorch reference -------------------------------------------------------------


def torch_generator(G, torch, dtype):
    """``G`` as a ``torch.nn.Sequential``: Linear + ReLU layers, then phi."""
    nn = torch.nn
    act = G.activation

    class PLU(nn.Module):
        """plu(u) = max(alpha (u + c) - c, min(alpha (u - c) + c, u)) (Nicolae 2018)."""

        def __init__(self, alpha, c):
            super().__init__()
            self.alpha, self.c = alpha, c

        def forward(self, u):
            a, c = self.alpha, self.c
            return torch.maximum(a * (u + c) - c, torch.minimum(a * (u - c) + c, u))

    layers = []
    for i, (W, b) in enumerate(zip(G.weights, G.biases)):
        lin = nn.Linear(W.shape[1], W.shape[0], dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(np.array(W), dtype=dtype))
            lin.bias.copy_(torch.tensor(np.array(b), dtype=dtype))
        layers.append(lin)
        if i < len(G.weights) - 1:
            layers.append(nn.ReLU())
    if act.name == "plu":
        layers.append(PLU(act.slope, act.c))
    elif act.name == "tanh":
        layers.append(nn.Tanh())
    elif act.name != "identity":
        raise SystemExit(
            f"the torch reference supports plu, tanh and identity outputs, not {act.name}"
        )
    model = nn.Sequential(*layers)
    model.requires_grad_(False)
    return model.eval()


def run_torch(G, X, args, stream):
    """CSGM-style inversion: Adam on sum_rows ||G(z) - x||^2 over all codes at once."""
    import torch

    torch.set_num_threads(args.torch_threads)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.torch_dtype]
    checkpoints = sorted(
        {c for c in (100, 300, 1000, 2000, 3000, 5000, 10000, 20000) if c < args.torch_iter}
        | {args.torch_iter}
    )
    trace = []
    t0 = time.perf_counter()
    model = torch_generator(G, torch, dtype)
    x = torch.as_tensor(np.asarray(X), dtype=dtype)
    gen = torch.Generator().manual_seed(args.seed + 1)
    z = torch.randn(x.shape[0], G.n_latent, generator=gen, dtype=dtype).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=args.torch_lr)
    t_eval = 0.0
    for it in range(1, args.torch_iter + 1):
        opt.zero_grad(set_to_none=True)
        loss = ((model(z) - x) ** 2).sum()
        loss.backward()
        opt.step()
        if it in checkpoints:
            te = time.perf_counter()
            with torch.no_grad():
                xh = model(z).double().numpy()
            ref = np.asarray(X, dtype=np.float64)
            with np.errstate(divide="ignore"):
                snr = 10 * np.log10(np.sum(ref**2, 1) / np.sum((ref - xh) ** 2, 1))
            trace.append(
                {
                    "iter": it,
                    "elapsed_s": time.perf_counter() - t0 - t_eval,
                    "loss": float(loss.detach()),
                    "image_snr_median_db": float(np.median(np.minimum(snr, CAP))),
                    "frac_image_ge_60db": float(np.mean(snr >= GOOD_DB)),
                }
            )
            t_eval += time.perf_counter() - te
            stream(
                f"  torch Adam iter {it:>6}: loss {trace[-1]['loss']:.3e}, median image SNR "
                f"{trace[-1]['image_snr_median_db']:.1f} dB, >= 60 dB: {100 * trace[-1]['frac_image_ge_60db']:.0f} %, "
                f"{trace[-1]['elapsed_s']:.1f} s"
            )
    Zh = z.detach().double().numpy()
    dt = time.perf_counter() - t0 - t_eval  # the checkpoint evaluations are not counted
    info = {
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": args.torch_dtype,
        "lr": args.torch_lr,
        "iterations": args.torch_iter,
        "init": f"z0 ~ N(0, I), torch.Generator seed {args.seed + 1}",
        "loss": "sum over samples of ||G(z) - x||^2, Adam (betas 0.9, 0.999), constant lr",
        "trace": trace,
        "checkpoint_eval_s_excluded": t_eval,
    }
    return Zh, dt, info


# -- report -----------------------------------------------------------------------------


def markdown(results, layers, hidden):
    cols = (
        ["method"]
        + [f"{k} SNR med [p10, p90]" for k in layers]
        + ["image >= 60 dB"]
        + [f"support err. {h}" for h in hidden]
        + ["time (s)"]
    )
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for label, r in results.items():
        if "snr" not in r:
            continue
        cells = [label]
        for k in layers:
            s = r["snr"][k]
            cells.append(f"{s['median']:.1f} [{s['p10']:.1f}, {s['p90']:.1f}]")
        cells.append(f"{100 * r['frac_image_ge_60db']:.1f} %")
        cells += [str(r["support_error_samples"][h]) for h in hidden]
        cells.append(f"{r['time_s']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--generator",
        default="fashion-mnist-fc",
        help="pretrained name, a .npz file, or 'random' (development)",
    )
    p.add_argument("--n-signals", type=int, default=512)
    p.add_argument(
        "--seed", type=int, default=0, help="seed of z ~ N(0, I) (numpy.random.default_rng)"
    )
    p.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="dtype of the signals given to skinvert",
    )
    p.add_argument(
        "--gd-iter",
        type=int,
        default=2000,
        help="skinvert gradient-descent iterations (paper: 10000)",
    )
    p.add_argument(
        "--methods", default="oracle,lp,lbp,gd,torch", help="subset of oracle,lp,lbp,gd,torch"
    )
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch Adam reference")
    p.add_argument("--torch-iter", type=int, default=10000)
    p.add_argument(
        "--torch-lr",
        type=float,
        default=1e-2,
        help="Adam learning rate (default 1e-2; 5e-2 converges faster but then drifts away, see the README)",
    )
    p.add_argument("--torch-dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--json", default=result_path("trained_generator.json"))
    args = p.parse_args(argv)

    def stream(line=""):
        print(line, flush=True)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = set(methods) - {"oracle", "lp", "lbp", "gd", "torch"}
    if bad:
        p.error(f"unknown methods {sorted(bad)}")
    if args.no_torch and "torch" in methods:
        methods.remove("torch")
    if "torch" in methods:
        try:
            import torch  # noqa: F401
        except ImportError:
            stream("torch is not importable: skipping the PyTorch reference")
            methods.remove("torch")

    G, desc = get_generator(args.generator, args.seed)
    rng = np.random.default_rng(args.seed)
    Z = rng.standard_normal((args.n_signals, G.n_latent))
    X = G.forward(Z).astype(args.dtype)
    S = G.supports(Z)
    hidden = [f"x{i}" for i in range(1, G.n_layers + 1)]
    layers = ["z"] + hidden + ["image"]
    sizes = {
        h: {
            "median": float(np.median(s.sum(1))),
            "min": int(s.sum(1).min()),
            "max": int(s.sum(1).max()),
        }
        for h, s in zip(hidden, S)
    }
    stream(f"generator: {desc}, layer sizes {G.layer_sizes}, output {G.activation!r}")
    stream(
        f"{args.n_signals} noiseless signals G(z), z ~ N(0, I) (seed {args.seed}); support sizes {sizes}"
    )

    results = {}
    plan = [
        ("oracle", "Oracle (true supports)", lambda: OracleInverter(G)),
        ("lp", "Latent-Pursuit", lambda: LatentPursuitInverter(G)),
        ("lbp", "Layered BP", lambda: LayeredBPInverter(G)),
        (
            "gd",
            f"Gradient descent ({args.gd_iter} it.)",
            lambda: GradientDescentInverter(
                G,
                random_state=args.seed,
                transform_max_iter=args.gd_iter,
                learning_rate=0.1,
                momentum=0.9,
                decay=1e-3,
            ),
        ),
    ]
    for key, label, make in plan:
        if key not in methods:
            continue
        Zh, dt, caught = run_skinvert(label, make(), X, S if key == "oracle" else None)
        r = {"time_s": dt, **evaluate(G, Z, S, Zh), "warnings": caught}
        results[label] = r
        stream(
            f"{label:<28} z {r['snr']['z']['median']:7.1f} dB, image {r['snr']['image']['median']:7.1f} dB, "
            f">= 60 dB {100 * r['frac_image_ge_60db']:5.1f} %, support errors {r['support_error_samples']}, "
            f"{dt:8.2f} s{'  (warnings: ' + '; '.join(caught) + ')' if caught else ''}"
        )
    torch_label = None
    if "torch" in methods:
        torch_label = (
            f"PyTorch Adam ({args.torch_iter} it., lr {args.torch_lr:g}, {args.torch_dtype})"
        )
        stream(f"{torch_label}: running ...")
        Zh, dt, info = run_torch(G, X, args, stream)
        r = {"time_s": dt, **evaluate(G, Z, S, Zh), "torch": info}
        results[torch_label] = r
        stream(
            f"{torch_label} z {r['snr']['z']['median']:7.1f} dB, image {r['snr']['image']['median']:7.1f} dB, "
            f">= 60 dB {100 * r['frac_image_ge_60db']:5.1f} %, support errors {r['support_error_samples']}, {dt:8.2f} s"
        )

    ratio = None
    if torch_label and "Latent-Pursuit" in results:
        ratio = results[torch_label]["time_s"] / results["Latent-Pursuit"]["time_s"]
    table = markdown(results, layers, hidden)
    stream()
    stream(table)
    stream()
    stream(
        f"SNR in dB of G(z_hat)'s layers vs the truth (exact: capped at {CAP:.0f} dB); support err.: samples "
        f"(of {args.n_signals}) whose support of G(z_hat) differs from the true one; time: fit + transform."
    )
    if ratio is not None:
        stream(f"speed ratio torch Adam / Latent-Pursuit wall time: {ratio:.1f}x")

    try:
        import torch as _t

        torch_version = _t.__version__
    except ImportError:
        torch_version = None
    out = {
        "meta": {
            "script": "benchmarks/trained_generator.py",
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "generator": desc,
            "weights_sha256": (
                sha256(args.generator)
                if args.generator.endswith((".npz", ".safetensors"))
                else sha256(WEIGHTS)
                if "fashion" in args.generator and os.path.exists(WEIGHTS)
                else None
            ),
            "layer_sizes": G.layer_sizes,
            "output_activation": repr(G.activation),
            "n_signals": args.n_signals,
            "seed": args.seed,
            "signal_dtype": args.dtype,
            "gd_iter": args.gd_iter,
            "support_sizes": sizes,
            "skinvert": skinvert.__version__,
            "numpy": np.__version__,
            "torch": torch_version,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} logical cores (shared with other jobs)",
            "snr_cap_db": CAP,
            "speed_ratio_torch_over_latent_pursuit": ratio,
        },
        "results": results,
        "markdown": table,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    stream(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
