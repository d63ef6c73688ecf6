"""Neighbouring support regions of a noisy estimate: the units whose sign the noise leaves open.

With noise, the loss of eq. 1 can have its lowest minimum in one linear
region (a support pattern ``S_1..S_L``) and another, slightly higher, local
minimum in a region next to it: the two differ in hidden units whose
pre-activation at the estimate is within the noise of 0. The polish
(Algorithm 1 on the supports of its own iterate,
:func:`~skinvert.algorithms.polish.polish_batch`) cannot leave such a local
minimum: every step it takes stays on its side. Measured on the saturating
tanh generator of ``benchmarks/noise_saturating.py`` at noise 1e-2 (512
signals): one row in 512 ended 3.2x the Oracle's latent error from the true
region with a loss 0.55 chi-square standard deviations above the Oracle's,
and 56 rows were in a neighbouring region slightly off the Oracle's answer.

:func:`boundary_starts` finds, for every row, the hidden units ``k`` of layer
``i`` whose pre-activation ``u_ik = a_ik^T z + c_ik`` (``a_ik``: its row of
the layer's affine map on the current supports, Algorithm 1's
row-supported product up to layer i) is within ``c`` standard deviations of
0, the standard deviation being that of the estimate's noise,
``sigma^2 a_ik^T (J^T J)^-1 a_ik`` (Theorem 3's covariance with ``J`` the
Jacobian of the output at fixed supports), and returns the reflection of z
across that unit's boundary, ``z - 2 u_ik a_ik / ||a_ik||^2``: a start in
the region with unit k flipped. :func:`search_neighbours` polishes them and
keeps a start's result where it lowers the row's loss.
"""

from .._array_api import device
from .._linalg import (
    compress_rows,
    host_block_rows,
    matvec,
    row_blocks,
    scatter_rows,
    supported_affine_maps,
)
from .polish import _single_left_matmul, forward_loss, output_jacobian, polish_batch

__all__ = ["boundary_starts", "search_neighbours"]


def boundary_starts(Z, Y, obs, weights, biases, activation, xp, *, noise_std, c,
                    measurement=None, gamma=0.0, max_per_layer=8, gram=None):
    """Starts across the hidden-unit boundaries within ``c`` noise standard deviations of ``Z``.

    Parameters
    ----------
    Z : array of shape (B, n_0)
        The current estimates.
    Y, obs, weights, biases, activation, xp, measurement, gamma
        As in :func:`~skinvert.algorithms.polish.polish_batch` (dense
        weights: ``biases`` not None).
    noise_std : float
        Standard deviation of the noise on the observed entries.
    c : float
        The boundary's distance in standard deviations of the unit's
        pre-activation.
    max_per_layer : int, default=8
        At most this many units per row and layer, the closest to their
        boundary first (in standard deviations): bounds the time and memory
        when ``noise_std`` is far above the real noise, where every unit is
        in doubt.
    gram : array of shape (B, n_0, n_0) or None
        ``J^T J`` at ``Z`` where known (e.g. the polish's at its fixed
        point: :func:`~skinvert.algorithms.polish.polish_batch`'s
        ``return_gram``), NaN elsewhere: the output's map, most of this
        function's cost, is built only for the other rows (on 512 noisy
        signals of a saturating tanh generator: 0.18 -> 0.08 s).

    Returns
    -------
    starts : list of ``(rows, Z0)``
        ``rows`` a bool mask (B,) and ``Z0`` the start of each row where it
        holds (in order): the j-th doubtful unit of layer i, for every
        ``(i, j)`` that has one.
    """
    B, n0 = Z.shape
    kw = {"noise_std": noise_std, "c": c, "measurement": measurement, "gamma": gamma,
          "max_per_layer": max_per_layer}
    # Blocks of rows: every layer's (rows, n_i, n_0) map (host_block_rows).
    m = max(Y.shape[1], weights[-1].shape[0])
    per_row = (m + sum(w.shape[0] for w in weights)) * n0
    blocks = row_blocks(B, host_block_rows(xp, Z.dtype, per_row))
    if len(blocks) == 1:
        return [(rows, z) for _, rows, z in _boundary_block(
            Z, Y, obs, weights, biases, activation, xp, gram=gram, **kw)]
    merged = {}
    for sl in blocks:
        for key, rows, z in _boundary_block(
            Z[sl, ...], Y[sl, ...], obs[sl, ...], weights, biases, activation, xp,
            gram=None if gram is None else gram[sl, ...], **kw
        ):
            merged.setdefault(key, []).append((sl.start, sl.stop, rows, z))
    starts = []
    for key in sorted(merged):
        masks, zs, end = [], [], 0
        for a, b, rows, z in merged[key]:
            if a > end:
                masks.append(xp.zeros((a - end,), dtype=xp.bool, device=device(Z)))
            masks.append(rows)
            zs.append(z)
            end = b
        if end < B:
            masks.append(xp.zeros((B - end,), dtype=xp.bool, device=device(Z)))
        starts.append((xp.concat(masks), xp.concat(zs, axis=0)))
    return starts


def _boundary_block(Z, Y, obs, weights, biases, activation, xp, *, noise_std, c,
                    measurement, gamma, max_per_layer, gram):
    """:func:`boundary_starts` on one block of rows, each start keyed by
    ``(layer, rank)``."""
    B, n0 = Z.shape
    _, U, masks = forward_loss(Z, Y, obs, weights, biases, activation, xp,
                               measurement=measurement, gamma=gamma)
    known = (xp.zeros((B,), dtype=xp.bool, device=device(Z)) if gram is None
             else xp.all(xp.isfinite(gram), axis=(1, 2)))
    # One pass builds every hidden layer's map on the current supports; the
    # output's gives the Jacobian, only for the covariance (of the rows whose
    # J^T J is not known): in double precision, from the single-precision
    # map (most of the pass's cost) without a measurement.
    if measurement is None and Z.dtype == xp.float64 and len(weights) > 1:
        maps = supported_affine_maps(weights[:-1], biases[:-1], masks[:-1], xp, n_samples=B)
        if not bool(xp.all(known)):
            need = ~known
            idx = compress_rows(need, xp)
            f32 = xp.float32
            A_L = (xp.astype(xp.take(masks[-1], idx, axis=0), f32)[:, :, None]
                   * xp.astype(xp.take(maps[-1][0], idx, axis=0), f32))
            A_out = xp.astype(_single_left_matmul(xp.astype(weights[-1], f32), A_L, xp), Z.dtype)
            J = output_jacobian(A_out, xp.take(U, idx, axis=0), activation, xp, measurement,
                                xp.take(obs, idx, axis=0))
            part = xp.matmul(xp.matrix_transpose(J), J)
            # (Without a given gram every row is built.)
            gram = part if gram is None else scatter_rows(gram, part, need, xp)
    else:
        maps = supported_affine_maps(weights, biases, masks, xp, n_samples=B)
        A_out = maps.pop()[0]
        J = output_jacobian(A_out, U, activation, xp, measurement, obs)
        computed = xp.matmul(xp.matrix_transpose(J), J)
        gram = computed if gram is None else xp.where(known[:, None, None], gram, computed)
    eye = xp.eye(n0, dtype=Z.dtype, device=device(Z))
    scale = xp.max(xp.linalg.diagonal(gram), axis=1)
    jitter = n0 * float(xp.finfo(Z.dtype).eps) * xp.where(scale > 0, scale, xp.ones_like(scale))
    cov = xp.linalg.inv(gram + (gamma + jitter)[:, None, None] * eye)  # (J^T J)^-1
    starts = []
    for i, (A_i, c_i) in enumerate(maps):  # the hidden layers i = 1..L
        u = matvec(A_i, Z, xp) + c_i  # (B, n_i): the pre-activations of layer i
        var = noise_std**2 * xp.sum(xp.matmul(A_i, cov) * A_i, axis=2)
        norm2 = xp.sum(A_i * A_i, axis=2)
        sd = xp.sqrt(xp.clip(var, min=0.0))
        doubt = (xp.abs(u) < c * sd) & (norm2 > 0)
        count = xp.clip(xp.sum(xp.astype(doubt, xp.int32), axis=1), max=max_per_layer)
        # The doubtful units of each row first, the closest to 0 (in sd) first.
        tiny = float(xp.finfo(Z.dtype).smallest_normal)
        gap = xp.where(doubt, xp.abs(u) / xp.clip(sd, min=tiny), xp.full_like(u, float("inf")))
        order = xp.argsort(gap, axis=1, stable=True)
        n_i = u.shape[1]
        for j in range(int(xp.max(count)) if B else 0):
            rows = count > j
            sub = compress_rows(rows, xp)
            k = xp.take(order[:, j], sub, axis=0)
            flat = sub * n_i + k
            a = xp.take(xp.reshape(A_i, (B * n_i, n0)), flat, axis=0)
            uk = xp.take(xp.reshape(u, (B * n_i,)), flat, axis=0)
            nk = xp.take(xp.reshape(norm2, (B * n_i,)), flat, axis=0)
            z = xp.take(Z, sub, axis=0) - (2.0 * uk / nk)[:, None] * a
            starts.append(((i, j), rows, z))
    return starts


def search_neighbours(Z, loss, Y, obs, weights, biases, activation, xp, *, noise_std, c,
                      measurement=None, gamma=0.0, screen_iter=1, polish_max_iter=50,
                      tol=None, gram=None):
    """Rows of ``Z`` moved to a neighbouring support region where its minimum is lower.

    Every start of :func:`boundary_starts` takes ``screen_iter`` polish
    steps, in chunks of at most ``B`` starts (the memory of one polish of
    the batch); those that already lower their row's loss are polished to
    the end, and a row keeps the lowest loss (never higher than ``loss``).
    ``gram``: as in :func:`boundary_starts`.

    One screening step (``screen_iter=1``; until the eleventh session 2)
    was measured in the hybrid on 512 noisy signals (saturating tanh
    generator, 1e-3 and 1e-2 x 4 draws; ``fashion-mnist-fc``, 1e-2 x 2
    draws): the same worst row in all ten, the same RMS latent error in
    nine and 1.08 -> 1.03x the Oracle's in the tenth; 0-4 fewer rows of 512
    moved (18 on one ``fashion-mnist-fc`` draw), the search 0.29-0.36 ->
    0.21-0.24 s at 1e-2.

    Returns
    -------
    Z : array of shape (B, n_0)
    loss : array of shape (B,)
    moved : bool array of shape (B,)
        The rows that took a neighbour's estimate.
    """
    B = Z.shape[0]
    moved = xp.zeros((B,), dtype=xp.bool, device=device(Z))
    starts = boundary_starts(Z, Y, obs, weights, biases, activation, xp, noise_std=noise_std,
                             c=c, measurement=measurement, gamma=gamma, gram=gram)
    if not starts:
        return Z, loss, moved
    rows = xp.concat([compress_rows(r, xp) for r, _ in starts])
    Z0 = xp.concat([z for _, z in starts], axis=0)
    kw = {"measurement": measurement, "gamma": gamma}
    net = (weights, biases, activation, xp)
    Ys, Os = xp.take(Y, rows, axis=0), xp.take(obs, rows, axis=0)
    def chunked(Z_, Y_, O_, max_iter):
        # polish_batch over at most B rows at a time.
        parts = [
            polish_batch(Z_[a : a + B, :], Y_[a : a + B, :], O_[a : a + B, :], *net, **kw,
                         max_iter=max_iter, tol=tol)[:2]
            for a in range(0, Z_.shape[0], B)
        ]
        return xp.concat([p[0] for p in parts], axis=0), xp.concat([p[1] for p in parts])

    Zs, ls = chunked(Z0, Ys, Os, screen_iter)
    eps = float(xp.finfo(Z.dtype).eps)
    gain = ls < xp.take(loss, rows, axis=0) * (1.0 - 1e3 * eps)
    if bool(xp.any(gain)):
        sel = compress_rows(gain, xp)
        Zf, lf = chunked(xp.take(Zs, sel, axis=0), xp.take(Ys, sel, axis=0),
                         xp.take(Os, sel, axis=0), polish_max_iter)
        Zs = scatter_rows(Zs, Zf, gain, xp)
        ls = scatter_rows(ls, lf, gain, xp)
    # Each row keeps its best: one slice of starts per (layer, rank).
    lo = 0
    for r, z in starts:
        n = z.shape[0]
        zc, lc = Zs[lo : lo + n, :], ls[lo : lo + n]
        lo += n
        sub = compress_rows(r, xp)
        old = xp.take(loss, sub, axis=0)
        better = xp.isfinite(lc) & (lc < old * (1.0 - 1e3 * eps))
        Z = scatter_rows(Z, xp.where(better[:, None], zc, xp.take(Z, sub, axis=0)), r, xp)
        loss = scatter_rows(loss, xp.where(better, lc, old), r, xp)
        moved = moved | scatter_rows(moved, better, r, xp)
    return Z, loss, moved
