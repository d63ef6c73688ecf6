"""Low-rank updates of the single-precision maps ``A_S`` when a few hidden units flip.

The polish (:func:`~skinvert.algorithms.polish.polish_batch`) rebuilds the
map ``A_S = W_L M_L W_{L-1} ... M_1 W_0`` of Algorithm 1 after every
accepted step that changes a row's supports, about 0.19 ms per row of a
20-128-392-784 generator: most of a polish from a rough start. Such a step
mostly flips a few units: on the polish of the hybrid's linear start (512
noisy signals of a saturating tanh generator), 5 of the 128 units of the
first hidden layer and 16 of the 392 of the second (medians).

With the pre-mask maps ``U_1 = W_0``, ``U_{i+1} = W_i M_i U_i`` (so
``A_S = U_{L+1}``) and new masks ``M_i' = M_i + D_i`` (``D_i`` diagonal, +-1
on the flipped units ``F_i``),

    U_{i+1}' - U_{i+1} = W_i (M_i' (U_i' - U_i) + D_i U_i),

so every change is of rank ``r_{i+1} = r_i + |F_i|`` and is carried as a
product ``L_i R_i``: ``L_{i+1} = [W_i M_i' L_i | W_i[:, F_i] D_i]``,
``R_{i+1} = [R_i ; U_i[F_i, :]]``. A row costs ``sum_i n_{i+1} n_i r_i``
(the products with ``W_i``) plus ``n r n_0`` (the final ``L R``) instead of
``sum_i n_{i+1} n_i n_0``; rows where that is not clearly less are rebuilt.

Every product of a row has the shapes of its own flip counts, padded to
powers of two (:func:`_bucket`), and rows are updated in groups of equal
shapes: a row's map does not depend on the rows updated with it (as
:func:`~skinvert.algorithms.polish.single_precision_map`'s per-row products).
"""

import numpy as np

from .._array_api import _is_numpy, device, to_numpy
from .._linalg import padded_indices, scatter_rows

__all__ = ["transposed", "updated_maps"]

#: A row takes the low-rank update when its cost is below this fraction of
#: a rebuild's (the update also gathers columns and adds to the map).
UPDATE_MAX_COST = 0.5


def _bucket(counts):
    """Flip counts (int array) padded to 0 or the next power of two."""
    c = np.asarray(counts, dtype=np.int64)
    return np.where(c > 0, 2 ** np.ceil(np.log2(np.maximum(c, 1))).astype(np.int64), 0)


def _costs(weights32, padded):
    """Per row: the update's multiply-adds and a rebuild's, from the padded
    flip counts (rows, L)."""
    sizes = [int(W.shape[0]) for W in weights32]  # n_1 .. n_{L+1}
    n0 = int(weights32[0].shape[1])
    rebuild = sum(sizes[i + 1] * sizes[i] for i in range(len(sizes) - 1)) * n0
    r = np.zeros(padded.shape[0], dtype=np.int64)
    cost = np.zeros(padded.shape[0], dtype=np.int64)
    for i in range(padded.shape[1]):  # layer i + 1: product with W_{i+1} (n_{i+2} x n_{i+1})
        cost += sizes[i + 1] * sizes[i] * r  # W_{i+1} (M' L) on the rank so far
        r = r + padded[:, i]
        cost += sizes[i + 1] * r * n0  # U' = U + L R (the last: A' = A + L R)
    return cost, rebuild


def _flips(old, new, xp):
    """Per layer, the flipped units of every row, ``(J, sign)``: indices
    (B, q) padded with 0 (q the largest count) and their signs (+1 on, -1
    off; 0 on the padding)."""
    out = []
    for a, b in zip(old, new, strict=True):
        J, valid = padded_indices(a != b, xp)
        sign = xp.take_along_axis(b, J, axis=1) - xp.take_along_axis(a, J, axis=1)
        out.append((J, xp.astype(sign * xp.astype(valid, sign.dtype), xp.float32)))
    return out


def _padded_cols(a, p, xp):
    """``a`` (g, q) cut or zero-padded to ``p`` columns."""
    q = a.shape[1]
    if q >= p:
        return a[:, :p]
    return xp.concat([a, xp.zeros((a.shape[0], p - q), dtype=a.dtype, device=device(a))], axis=1)


def _group_deltas(U, rows, new, flips, weights32, weights32_t, padded, xp):
    """The changes of the pre-mask maps (``U_2..U_L``) and of the map of the
    rows ``rows`` (all with the padded flip counts ``padded`` (L,)), as
    ``[(L_i, R_i)]``, i = 2..L+1 (None: no change)."""
    f32 = xp.float32
    g = rows.shape[0]
    n0 = weights32[0].shape[1]
    Lf = Rf = None
    deltas = []
    for i, M_new in enumerate(new):
        W = weights32[i + 1]  # (n_{i+2}, n_{i+1})
        left, right = [], []
        if Lf is not None:
            left.append(xp.matmul(W, xp.astype(M_new, f32)[:, :, None] * Lf))
            right.append(Rf)
        p = int(padded[i])
        if p:
            J, sign = (_padded_cols(a, p, xp) for a in flips[i])
            flat = xp.reshape(J, (-1,))
            cols = xp.reshape(xp.take(weights32_t[i + 1], flat, axis=0), (g, p, W.shape[0]))
            left.append(xp.matrix_transpose(cols * sign[:, :, None]))
            if i == 0:  # U_1 = W_0 for every row
                gathered = xp.take(weights32[0], flat, axis=0)
            else:
                Ui = U[i - 1]
                base = xp.repeat(rows * Ui.shape[1], p)
                gathered = xp.take(xp.reshape(Ui, (-1, n0)), flat + base, axis=0)
            right.append(xp.reshape(gathered, (g, p, n0)))
        if left:
            Lf = left[0] if len(left) == 1 else xp.concat(left, axis=2)
            Rf = right[0] if len(right) == 1 else xp.concat(right, axis=1)
        deltas.append(None if Lf is None else (Lf, Rf))
    return deltas


def _add_rows(full, rows, delta, xp):
    """``full`` with ``delta`` added to its rows ``rows`` (in place on NumPy)."""
    if _is_numpy(xp):
        full[rows] += delta
        return full
    return _put_rows(full, rows, xp.take(full, rows, axis=0) + delta, xp)


def _put_rows(full, rows, part, xp):
    """``full`` with its rows ``rows`` replaced by ``part`` (in place on NumPy)."""
    if _is_numpy(xp):
        full[rows] = part
        return full
    everyone = xp.arange(full.shape[0], dtype=rows.dtype, device=device(full))
    mask = xp.any(everyone[:, None] == rows[None, :], axis=1)
    order = xp.argsort(rows)  # scatter_rows fills the rows in increasing order
    return scatter_rows(full, xp.take(part, order, axis=0), mask, xp)


def updated_maps(A, U, rows, old_masks, new_masks, weights32, xp, rebuild, weights32_t=None):
    """The single-precision maps ``A`` (and pre-mask maps ``U``) after the
    supports of the rows ``rows`` changed.

    Parameters
    ----------
    A : array (B, n, n_0)
        Maps (float32); rows ``rows`` on ``old_masks``. Updated in place on
        NumPy.
    U : list of arrays (B, n_i, n_0), i = 2..L
        The pre-mask maps ``U_i`` of the hidden layers 2..L (likewise).
    rows : int array (R,)
        The rows whose supports changed (in ``xp``).
    old_masks, new_masks : lists of float 0/1 arrays (R, n_i), i = 1..L
        Their supports before and after.
    weights32 : list of arrays
        ``W_0..W_L`` in float32.
    rebuild : callable
        ``rebuild(masks) -> (A, U)`` for rows whose update would cost about
        as much (:data:`UPDATE_MAX_COST`).
    weights32_t : list of arrays or None
        Their transposes, C-contiguous (computed when None).

    Returns
    -------
    A, U
    """
    if weights32_t is None:
        weights32_t = transposed(weights32, xp)
    counts = np.stack(
        [to_numpy(xp.sum(xp.astype(a != b, xp.int32), axis=1), xp)
         for a, b in zip(old_masks, new_masks, strict=True)],
        axis=1,
    )
    padded = _bucket(counts)
    cost, full = _costs(weights32, padded)
    cheap = cost < UPDATE_MAX_COST * full
    dev = device(A)
    keys = [(None, ~cheap)] + [
        (key, cheap & np.all(padded == key, axis=1)) for key in np.unique(padded[cheap], axis=0)
    ]
    flips = _flips(old_masks, new_masks, xp) if cheap.any() else None
    updates = []  # (rows of the group, deltas) applied after every group read U
    for key, sel in keys:
        if not sel.any():
            continue
        sub = xp.asarray(np.flatnonzero(sel), device=dev)
        at = xp.take(rows, sub, axis=0)
        on = [xp.take(m, sub, axis=0) for m in new_masks]
        if key is None:
            A_g, U_g = rebuild(on)
            A = _put_rows(A, at, A_g, xp)
            U = [_put_rows(u, at, v, xp) for u, v in zip(U, U_g)]
            continue
        fl = [tuple(xp.take(a, sub, axis=0) for a in f) for f in flips]
        updates.append((at, _group_deltas(U, at, on, fl, weights32, weights32_t, key, xp)))
    for at, deltas in updates:
        targets = U + [A]
        for j, d in enumerate(deltas):
            if d is not None:
                targets[j] = _add_rows(targets[j], at, xp.matmul(*d), xp)
        U, A = targets[:-1], targets[-1]
    return A, U


def transposed(weights32, xp):
    """C-contiguous transposes of the weights (their columns gathered as rows)."""
    return [xp.reshape(xp.reshape(xp.matrix_transpose(W), (-1,)), (W.shape[1], W.shape[0]))
            for W in weights32]
