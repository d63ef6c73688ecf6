"""Support statistics of a generator on random latent codes (used for provenance).

The paper's uniqueness argument (Theorem 1) needs, for ``z ~ N(0, I)``, hidden
supports that expand layer by layer (``n_0 <= s_1 <= ... <= s_L < n``) and
restricted matrices of full column rank: ``W_0`` on the active rows ``S_1``
(rank ``n_0``), ``W_i`` on rows ``S_{i+1}`` and columns ``S_i``, and ``W_L``
on the active columns ``S_L``. This module measures them.
"""

import numpy as np

__all__ = ["support_statistics"]


def _summary(values):
    v = np.asarray(values, dtype=np.float64)
    return {
        "min": float(v.min()),
        "median": float(np.median(v)),
        "max": float(v.max()),
    }


def support_statistics(generator, n_samples=512, random_state=0):
    """Measure the supports and restricted conditioning for ``z ~ N(0, I)``.

    Parameters
    ----------
    generator : ReLUGenerator
    n_samples : int, default=512
    random_state : int, default=0
        Seed of ``numpy.random.default_rng`` drawing the latent codes.

    Returns
    -------
    stats : dict
        ``layer_sizes``; ``support_sizes`` (one ``{min, median, max}`` per
        hidden layer, ``s_1 .. s_L``); ``frac_s1_ge_n0`` and
        ``frac_expanding`` (fraction of samples with ``n_0 <= s_1 <= ... <= s_L
        < n``); ``restricted`` (per layer ``i``: the name of the restricted
        matrix, min/median/max of its condition number, the fraction of samples
        where it has full column rank); ``output_linear_band`` (the fraction of
        output pre-activations ``u`` with ``|u| <= c`` for a PLU output, else
        ``None``); ``output_range`` (min and max of G(z)).
    """
    rng = np.random.default_rng(random_state)
    Ws = [np.asarray(W, dtype=np.float64) for W in generator.weights]
    bs = [np.asarray(b, dtype=np.float64) for b in generator.biases]
    Z = rng.standard_normal((n_samples, generator.n_latent))
    x = Z
    masks = []
    for W, b in zip(Ws[:-1], bs[:-1]):
        x = np.maximum(x @ W.T + b, 0.0)
        masks.append(x > 0)
    U = x @ Ws[-1].T + bs[-1]
    X = generator.activation(U, np)
    sizes = [m.sum(axis=1) for m in masks]
    n0, n = generator.n_latent, generator.n_output
    expanding = sizes[0] >= n0 if sizes else np.ones(n_samples, bool)
    for a, b_ in zip(sizes[:-1], sizes[1:]):
        expanding &= b_ >= a
    if sizes:
        expanding &= sizes[-1] < n

    restricted = []
    L = len(Ws) - 1
    for i, W in enumerate(Ws):
        conds, full = [], []
        for k in range(n_samples):
            rows = masks[i][k] if i < L else slice(None)
            cols = masks[i - 1][k] if i > 0 else slice(None)
            M = W[rows][:, cols]
            if M.size == 0:
                conds.append(np.inf)
                full.append(False)
                continue
            sv = np.linalg.svd(M, compute_uv=False)
            tol = max(M.shape) * np.finfo(np.float64).eps * sv[0]
            rank = int((sv > tol).sum())
            full.append(rank == M.shape[1])
            conds.append(sv[0] / sv[-1] if rank == M.shape[1] else np.inf)
        if i == 0:
            name = "W_0[S_1, :]"
        elif i == L:
            name = f"W_{L}[:, S_{L}]"
        else:
            name = f"W_{i}[S_{i + 1}, S_{i}]"
        restricted.append({
            "matrix": name,
            "cond": _summary(conds),
            "frac_full_column_rank": float(np.mean(full)),
        })

    act = generator.activation
    band = float(np.mean(np.abs(U) <= act.c)) if act.name == "plu" else None
    return {
        "n_samples": int(n_samples),
        "random_state": int(random_state),
        "layer_sizes": [int(s) for s in generator.layer_sizes],
        "support_sizes": [_summary(s) for s in sizes],
        "frac_s1_ge_n0": float(np.mean(sizes[0] >= n0)) if sizes else 1.0,
        "frac_expanding": float(np.mean(expanding)),
        "restricted": restricted,
        "output_linear_band": band,
        "output_range": [float(X.min()), float(X.max())],
    }
