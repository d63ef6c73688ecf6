"""
=====================================================================
When is a random ReLU generator invertible? (paper, Figure 4 style)
=====================================================================

Corollary 1 of Aberdam, Simon & Elad (2020) predicts, from the sparsity of
the hidden layer alone, whether the latent vector of a random two-layer
generator (eq. 19)

    x = G(z) = tanh(W_1 ReLU(W_0 z)),  z in R^{n_0},  x in R^n,

is the unique solution of the inversion problem: it needs
``n_0 <= s_1 < (n + 1) / 2`` with ``s_1 = ||ReLU(W_0 z)||_0 ~ n_1 / 2``.
This example sweeps the hidden size ``n_1``, computes the fraction of
samples meeting Corollary 1 (and Theorem 1 at the samples' own supports)
with :func:`skinvert.analysis.invertibility_report`, and plots it beside the
latent-recovery SNR an inverter actually achieves: Latent-Pursuit when
:class:`skinvert.LatentPursuitInverter` exists, gradient descent otherwise.
Below ``n_1 / 2 = n_0`` (dashed line) no algorithm can recover ``z``: the
first layer's equations are underdetermined. Above ``n_1 / 2 = n / 2``
(dotted line) Corollary 1 no longer *guarantees* uniqueness (``W_1``'s
spark caps the recoverable ``s_1``); layer-wise pursuits fail there while
gradient descent, which searches only the ``n_0``-dimensional latent space,
often still succeeds (the paper's third segment): the conditions are
sufficient, not necessary.

By default the sweep is a scaled-down Figure 4 (``n_0 = 20``, ``n = 125``,
16 signals per net, seconds); ``--paper`` runs the paper's sizes
(``n_0 = 100``, ``n = 625``, ``n_1`` from 50 to 1000; minutes), ``--quick``
a smoke run, and ``--out FILE`` saves the figure.
"""

import argparse
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np

import skinvert
from skinvert.analysis import invertibility_report


def make_inverter(generator, max_iter, which="auto"):
    """Latent-Pursuit if the package has it (or ``which`` asks), else gradient descent."""
    cls = getattr(skinvert, "LatentPursuitInverter", None)
    if which == "latent-pursuit" and cls is None:
        raise RuntimeError("skinvert.LatentPursuitInverter is not available.")
    if cls is not None and which != "gradient-descent":
        try:
            return "Latent-Pursuit", cls(generator, random_state=0)
        except TypeError:
            return "Latent-Pursuit", cls(generator)
    # The Oracle with true supports would not measure uniqueness: it is told
    # the answer's supports. Gradient descent is the algorithm-agnostic fallback.
    return "gradient descent", skinvert.GradientDescentInverter(
        generator, transform_max_iter=max_iter, random_state=0)


def snr_db(ref, est):
    err = np.sum((ref - est) ** 2, axis=1)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(np.sum(ref**2, axis=1) / err)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few sizes, few signals")
    p.add_argument("--paper", action="store_true", help="the paper's sizes (n0=100, n=625)")
    p.add_argument(
        "--n0", type=int, default=None, help="latent size (default 20; paper: 100 or 200)"
    )
    p.add_argument("--n", type=int, default=None, help="signal size (default 125; paper: 625)")
    p.add_argument("--n1", type=int, nargs="+", default=None, help="hidden sizes to sweep")
    p.add_argument("--n-signals", type=int, default=16, help="signals per network (paper: 512)")
    p.add_argument("--max-iter", type=int, default=600, help="gradient-descent iterations")
    p.add_argument("--inverter", choices=["auto", "latent-pursuit", "gradient-descent"],
                   default="auto", help="auto: Latent-Pursuit if available")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="figure file (default: none)")
    args, _ = p.parse_known_args(argv)
    if args.n0 is None:
        args.n0 = 100 if args.paper else 20
    if args.n is None:
        args.n = 625 if args.paper else 125
    if args.n1 is None:
        if args.paper:
            args.n1 = ([50, 150, 200, 250, 400, 700, 1000] if args.quick
                       else [50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 1000])
        else:
            args.n1 = [10, 20, 30, 40, 60, 80, 100, 125, 150, 200]
            if args.quick:
                args.n1 = args.n1[::2]
    if args.quick:
        args.n_signals = min(args.n_signals, 16)
        args.max_iter = min(args.max_iter, 300)

    rng = np.random.default_rng(args.seed)
    rows = []
    t0 = time.perf_counter()
    for n1 in args.n1:
        G = skinvert.make_random_generator([args.n0, n1, args.n], output_activation="tanh",
                                           random_state=args.seed + n1)
        Z = rng.standard_normal((args.n_signals, args.n0))
        rep = invertibility_report(G, Z, worst_case=False)
        name, est = make_inverter(G, args.max_iter, args.inverter)
        X = G.forward(Z)
        with warnings.catch_warnings():
            # where z is not unique the debiasing hits its iteration limit
            warnings.simplefilter("ignore")
            Zhat = est.fit(X).transform(X)
        snr = snr_db(Z, np.asarray(Zhat))
        rows.append({
            "n1": n1, "s1": np.median(rep.sparsity[:, 0]),
            "cor1": rep.fraction_met("corollary1"),
            "thm1": rep.fraction_met("theorem1_at_support"),
            "q": np.percentile(snr, [10, 25, 50, 75, 90])})
        r = rows[-1]
        print(f"n1={n1:5d}  median s1={r['s1']:6.1f}  Corollary 1 met {r['cor1']:6.1%}  "
              f"Theorem 1 (own supports) met {r['thm1']:6.1%}  median z-SNR {r['q'][2]:7.1f} dB")
    elapsed = time.perf_counter() - t0

    n1 = np.array([r["n1"] for r in rows])
    q = np.array([r["q"] for r in rows])
    q = np.clip(q, -20, 200)  # an exact recovery has infinite SNR
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    ax.fill_between(n1, q[:, 0], q[:, 4], alpha=0.15, color="C0", lw=0)
    ax.fill_between(n1, q[:, 1], q[:, 3], alpha=0.3, color="C0", lw=0)
    ax.plot(n1, q[:, 2], "o-", color="C0", label=f"{name}: median z-SNR")
    ax.set_xlabel("hidden layer size $n_1$")
    ax.set_ylabel("latent recovery SNR [dB]", color="C0")
    ax.axvline(2 * args.n0, ls="--", color="k", lw=1, label="$n_1/2 = n_0$")
    if args.n <= n1.max():
        ax.axvline(args.n, ls=":", color="k", lw=1, label="$n_1/2 = n/2$")
    ax2 = ax.twinx()
    ax2.plot(n1, [r["cor1"] for r in rows], "s-", color="C3", label="Corollary 1 met")
    ax2.plot(n1, [r["thm1"] for r in rows], "^--", color="C2",
             label="Theorem 1 at own supports met")
    ax2.set_ylim(-0.05, 1.05)
    ax2.set_ylabel("fraction of samples meeting the condition", color="C3")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=3,
              fontsize=8, frameon=False)
    ax.set_title(f"Uniqueness (Corollary 1) vs recovery: $n_0$={args.n0}, $n$={args.n}, "
                 f"{args.n_signals} signals per net", fontsize=10)
    fig.tight_layout()
    if args.out:
        fig.savefig(args.out, dpi=120)
        print(f"wrote {args.out}")
    print(f"{elapsed:.1f} s")
    return rows


if __name__ == "__main__":
    main()
    plt.show()
