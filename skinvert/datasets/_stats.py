"""Support statistics of a generator on random latent codes (used for provenance).

The paper's uniqueness argument (Theorem 1) needs, for ``z ~ N(0, I)``, hidden
supports that expand layer by layer (``n_0 <= s_1 <= ... <= s_L < n``) and
restricted matrices of full column rank: ``W_0`` on the active rows ``S_1``
(rank ``n_0``), ``W_i`` on rows ``S_{i+1}`` and columns ``S_i``, and ``W_L``
on the active columns ``S_L``. This module measures them.

For a generator with convolutional (or other non-dense) layers the restricted
layer matrices are too large to factor per sample, and a contracting layer
(a DCGAN's last transposed convolution) cannot meet Corollary 1 anyway; the
quantity that decides exact inversion there is the end-to-end one of
Algorithm 1 (the Oracle) and of the hybrid's polish: the fixed-support map
``z -> x_i`` restricted to the active units, ``A_{S,i} = (D_i A_{i-1} ...
D_1 A_0)[S_i, :]`` of shape ``(s_i, n_0)``, and at the output
``A_S = A_L D_L ... D_1 A_0`` (``n x n_0``), which must have full column rank
``n_0``. It is built matrix-free through the layers' ``matmat``.
"""

import numpy as np

from .._array_api import single_threaded_blas

__all__ = ["support_statistics"]


def _summary(values):
    v = np.asarray(values, dtype=np.float64)
    return {
        "min": float(v.min()),
        "median": float(np.median(v)),
        "max": float(v.max()),
    }


def _rank_cond(M):
    """Numerical rank test (full column rank?) and condition number of ``M``."""
    if M.size == 0:
        return False, np.inf
    sv = np.linalg.svd(M, compute_uv=False)
    tol = max(M.shape) * np.finfo(np.float64).eps * sv[0]
    full = int((sv > tol).sum()) == M.shape[1]
    return full, (sv[0] / sv[-1] if full else np.inf)


def _layer_fractions(masks):
    """Per hidden layer: mean active fraction and the fraction of never-active units."""
    return [{"mean_active_fraction": float(m.mean()),
             "dead_units_fraction": float(np.mean(~m.any(axis=0)))} for m in masks]


def _end_to_end_restricted(generator, Z, masks, chunk=8):
    """Full-column-rank fraction and conditioning of ``A_{S,i}`` per layer and of ``A_S``.

    The maps are pushed through the bound float64 layers on the identity of
    ``R^{n_0}`` (``chunk`` samples at a time: ``chunk n_0`` rows per ``matmat``);
    zeroing the inactive rows keeps the singular values of the restricted map.
    """
    layers = generator.bound_layers(np, dtype=np.float64)
    n0 = generator.n_latent
    L = len(layers) - 1
    full = [[] for _ in range(L + 1)]
    conds = [[] for _ in range(L + 1)]
    eye = np.eye(n0)
    for lo in range(0, Z.shape[0], chunk):
        hi = min(Z.shape[0], lo + chunk)
        E = np.tile(eye, (hi - lo, 1))  # (chunk n_0, n_0): sample-major blocks
        for i, layer in enumerate(layers):
            E = layer.matmat(E)
            if i < L:
                E = E * np.repeat(masks[i][lo:hi], n0, axis=0)
            # (chunk, n_i, n_0), inactive rows zero: the singular values of A_{S,i}
            J = np.transpose(np.reshape(E, (hi - lo, n0, -1)), (0, 2, 1))
            # QR first: the singular values of R (n_0 x n_0) are those of J
            sv = np.linalg.svd(np.linalg.qr(J, mode="r"), compute_uv=False)
            rows = masks[i][lo:hi].sum(axis=1) if i < L else np.full(hi - lo, J.shape[1])
            tol = np.maximum(rows, n0) * np.finfo(np.float64).eps * sv[:, 0]
            ok = np.sum(sv > tol[:, None], axis=1) == n0
            full[i].extend(ok.tolist())
            conds[i].extend(np.where(ok, sv[:, 0] / np.where(ok, sv[:, -1], 1.0),
                                     np.inf).tolist())
    out = []
    for i in range(L + 1):
        name = f"A_S,{i + 1}" if i < L else "A_S"
        out.append({"matrix": name, "cond": _summary(conds[i]),
                    "frac_full_column_rank": float(np.mean(full[i]))})
    return out


def support_statistics(generator, n_samples=512, random_state=0):
    """Measure the supports and restricted conditioning for ``z ~ N(0, I)``.

    Parameters
    ----------
    generator : ReLUGenerator
        Any generator: fully connected (the layer matrices of Theorem 1) or
        with convolutional layers (the end-to-end maps of Algorithm 1).
    n_samples : int, default=512
        Number of latent codes drawn.
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
        ``None``); ``output_range`` (min and max of G(z)); ``hidden`` (per
        hidden layer: ``mean_active_fraction`` and ``dead_units_fraction``,
        the units never active on the samples); ``output_saturated_fraction``
        (tanh / sigmoid outputs within 1e-3 of their bounds, else ``None``).

        On a generator with non-dense layers (e.g. ``fashion-mnist-dcgan``)
        ``restricted`` holds the end-to-end maps of the module docstring
        instead of the layer matrices: ``A_S,i`` (``z -> x_i`` on the
        supports, rows ``S_i``) for every hidden layer, then ``A_S``.

    Examples
    --------
    >>> from skinvert.datasets import load_pretrained_generator, support_statistics
    >>> G = load_pretrained_generator("digits-fc")
    >>> stats = support_statistics(G, n_samples=64)
    >>> stats["layer_sizes"], stats["restricted"][0]["matrix"]
    ([8, 32, 64, 64], 'W_0[S_1, :]')
    """
    with single_threaded_blas(np):  # stacks of skinny factorizations: see its docstring
        return _statistics(generator, n_samples, random_state)


def _statistics(generator, n_samples, random_state):
    rng = np.random.default_rng(random_state)
    Z = rng.standard_normal((n_samples, generator.n_latent))
    if generator.is_dense:
        Ws = [np.asarray(W, dtype=np.float64) for W in generator.weights]
        bs = [np.asarray(b, dtype=np.float64) for b in generator.biases]
        x = Z
        masks = []
        for W, b in zip(Ws[:-1], bs[:-1]):
            x = np.maximum(x @ W.T + b, 0.0)
            masks.append(x > 0)
        U = x @ Ws[-1].T + bs[-1]
        restricted = _restricted_layers(Ws, masks, n_samples)
    else:
        layers = generator.bound_layers(np, dtype=np.float64)
        x = Z
        masks = []
        for layer in layers[:-1]:
            x = np.maximum(layer.forward(x), 0.0)
            masks.append(x > 0)
        U = layers[-1].forward(x)
        restricted = _end_to_end_restricted(generator, Z, masks)
    X = generator.activation(U, np)
    sizes = [m.sum(axis=1) for m in masks]
    n0, n = generator.n_latent, generator.n_output
    expanding = sizes[0] >= n0 if sizes else np.ones(n_samples, bool)
    for a, b_ in zip(sizes[:-1], sizes[1:]):
        expanding &= b_ >= a
    if sizes:
        expanding &= sizes[-1] < n
    act = generator.activation
    band = float(np.mean(np.abs(U) <= act.c)) if act.name == "plu" else None
    bounds = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}.get(act.name)
    saturated = None
    if bounds is not None:
        saturated = float(np.mean((X <= bounds[0] + 1e-3) | (X >= bounds[1] - 1e-3)))
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
        "hidden": _layer_fractions(masks),
        "output_saturated_fraction": saturated,
    }


def _restricted_layers(Ws, masks, n_samples):
    """The restricted layer matrices of Theorem 1 (dense generators)."""
    restricted = []
    L = len(Ws) - 1
    for i, W in enumerate(Ws):
        conds, full = [], []
        for k in range(n_samples):
            rows = masks[i][k] if i < L else slice(None)
            cols = masks[i - 1][k] if i > 0 else slice(None)
            f, c = _rank_cond(W[rows][:, cols])
            full.append(f)
            conds.append(c)
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
    return restricted
