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
    forward_preactivations,
    host_block_rows,
    matvec,
    row_blocks,
    scatter_rows,
    supported_affine_maps,
)
from .polish import (
    _even_rows,
    _hidden,
    _single_left_matmul,
    forward_loss,
    output_delta,
    output_gradient,
    output_jacobian,
    polish_batch,
)

__all__ = ["boundary_starts", "search_neighbours"]


def boundary_starts(Z, Y, obs, weights, biases, activation, xp, *, noise_std, c,
                    measurement=None, gamma=0.0, max_per_layer=8, gram=None, return_gram=False):
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
        signals of a saturating tanh generator: 0.18 -> 0.08 s). With dense
        layers in double precision the units' standard deviations come from
        single-precision maps of the hidden layers and the output layer's
        forward pass runs only for those rows (0.070 -> 0.048-0.064 s, the
        same starts to 1.6e-15 in four runs); the chosen units' rows of
        their maps, which the reflections use, are exact.

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
        found, full = _boundary_block(Z, Y, obs, weights, biases, activation, xp, gram=gram,
                                      **kw)
        starts = [(rows, z) for _, rows, z in found]
        return (starts, full) if return_gram else starts
    merged, grams = {}, []
    for sl in blocks:
        found, part = _boundary_block(
            Z[sl, ...], Y[sl, ...], obs[sl, ...], weights, biases, activation, xp,
            gram=None if gram is None else gram[sl, ...], **kw
        )
        grams.append(part)
        for key, rows, z in found:
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
    return (starts, xp.concat(grams, axis=0)) if return_gram else starts


def _boundary_block(Z, Y, obs, weights, biases, activation, xp, *, noise_std, c,
                    measurement, gamma, max_per_layer, gram):
    """:func:`boundary_starts` on one block of rows, each start keyed by
    ``(layer, rank)``; also returns the rows' ``J^T J``."""
    B, n0 = Z.shape
    known = (xp.zeros((B,), dtype=xp.bool, device=device(Z)) if gram is None
             else xp.all(xp.isfinite(gram), axis=(1, 2)))
    exact_rows = None
    if measurement is None and Z.dtype == xp.float64 and len(weights) > 1:
        # Dense layers in double precision: the hidden pre-activations by the
        # forward pass (the output layer only for the rows whose J^T J is not
        # known), every hidden layer's map in single precision for the
        # units' standard deviations (a threshold), and the rows of the
        # chosen units' maps exactly (the starts' reflections).
        def hidden(X):
            pre, last = forward_preactivations(X, weights, biases, xp)
            return (*pre, last)

        *pre, last = _even_rows(hidden, (Z,), xp)
        masks = [xp.astype(u > 0, Z.dtype) for u in pre]
        f32 = xp.float32
        maps32 = supported_affine_maps(
            [xp.astype(W, f32) for W in weights[:-1]], [xp.astype(v, f32) for v in biases[:-1]],
            [xp.astype(m, f32) for m in masks[:-1]], xp, n_samples=B,
        )
        layers = [(A, u) for (A, _), u in zip(maps32, pre, strict=True)]
        exact_rows = masks
        if not bool(xp.all(known)):
            # The output's Jacobian of the rows whose J^T J is not known, from
            # the single-precision map.
            need = ~known
            idx = compress_rows(need, xp)
            U = _even_rows(lambda x: x @ weights[-1].T + biases[-1],
                           (xp.take(last, idx, axis=0),), xp)
            A_L = (xp.astype(xp.take(masks[-1], idx, axis=0), f32)[:, :, None]
                   * xp.take(maps32[-1][0], idx, axis=0))
            A_out = xp.astype(_single_left_matmul(xp.astype(weights[-1], f32), A_L, xp), Z.dtype)
            J = output_jacobian(A_out, U, activation, xp, measurement,
                                xp.take(obs, idx, axis=0))
            part = xp.matmul(xp.matrix_transpose(J), J)
            # (Without a given gram every row is built.)
            gram = part if gram is None else scatter_rows(gram, part, need, xp)
    else:
        _, U, masks = forward_loss(Z, Y, obs, weights, biases, activation, xp,
                                   measurement=measurement, gamma=gamma)
        maps = supported_affine_maps(weights, biases, masks, xp, n_samples=B)
        A_out = maps.pop()[0]
        J = output_jacobian(A_out, U, activation, xp, measurement, obs)
        computed = xp.matmul(xp.matrix_transpose(J), J)
        gram = computed if gram is None else xp.where(known[:, None, None], gram, computed)
        layers = [(A, matvec(A, Z, xp) + c) for A, c in maps]
    eye = xp.eye(n0, dtype=Z.dtype, device=device(Z))
    scale = xp.max(xp.linalg.diagonal(gram), axis=1)
    jitter = n0 * float(xp.finfo(Z.dtype).eps) * xp.where(scale > 0, scale, xp.ones_like(scale))
    cov = xp.linalg.inv(gram + (gamma + jitter)[:, None, None] * eye)  # (J^T J)^-1
    starts = []
    for i, (A_i, u) in enumerate(layers):  # the hidden layers i = 1..L; u: pre-activations
        cov_i = xp.astype(cov, A_i.dtype)
        var = noise_std**2 * xp.sum(xp.matmul(A_i, cov_i) * A_i, axis=2)
        norm2 = xp.sum(A_i * A_i, axis=2)
        sd = xp.astype(xp.sqrt(xp.clip(var, min=0.0)), u.dtype)
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
            if exact_rows is None:
                a = xp.take(xp.reshape(A_i, (B * n_i, n0)), flat, axis=0)
            else:  # the unit's row of its layer's map, in double precision
                a = _unit_map_rows(i, k, [xp.take(m, sub, axis=0) for m in exact_rows],
                                   weights, xp)
            uk = xp.take(xp.reshape(u, (B * n_i,)), flat, axis=0)
            z = xp.take(Z, sub, axis=0) - (2.0 * uk / xp.sum(a * a, axis=1))[:, None] * a
            starts.append(((i, j), rows, z))
    return starts, gram


def _unit_map_rows(layer, units, masks, weights, xp):
    """Row ``units[s]`` of the map ``z -> u_layer`` (the pre-activation of
    hidden layer ``layer``) on the supports ``masks[s]`` of the layers below,
    for every s: ``W_j[k, :]`` back through ``M_{j-1} W_{j-1} ... M_0 W_0``."""
    a = xp.take(weights[layer], units, axis=0)
    for i in range(layer - 1, -1, -1):
        a = _even_rows(lambda x, m, W=weights[i]: (x * m) @ W, (a, masks[i]), xp)
    return a


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

    With one screening step (dense layers, no measurement), a start whose
    supports differ from its row's in one unit takes its step without a map
    (:func:`_updated_screen`: its ``J^T J`` from the row's by the rank-one
    change of the map; 87-88 % of the starts on 512 noisy signals of a
    saturating tanh generator at 1e-2). Against screening every start by a
    polish step, on the same ten runs: the same largest error to the
    Oracle's and no row beyond 3x in all, the RMS latent error the same in
    eight and 1.0206 -> 1.0199, 1.0284 -> 1.0216x the Oracle's in two; 0-3
    rows moved differently (the starts' screened losses within 2.5e-7,
    relative median, of their polish step's; the screening decisions
    differed only where both were within 5e-5 of the row's loss); the
    hybrid 0.94-0.96x its time (paired, at 1e-2).

    Returns
    -------
    Z : array of shape (B, n_0)
    loss : array of shape (B,)
    moved : bool array of shape (B,)
        The rows that took a neighbour's estimate.
    """
    B = Z.shape[0]
    moved = xp.zeros((B,), dtype=xp.bool, device=device(Z))
    starts, gram = boundary_starts(Z, Y, obs, weights, biases, activation, xp,
                                   noise_std=noise_std, c=c, measurement=measurement,
                                   gamma=gamma, gram=gram, return_gram=True)
    if not starts:
        return Z, loss, moved
    rows = xp.concat([compress_rows(r, xp) for r, _ in starts])
    Z0 = xp.concat([z for _, z in starts], axis=0)
    kw = {"measurement": measurement, "gamma": gamma}
    net = (weights, biases, activation, xp)
    Ys, Os = xp.take(Y, rows, axis=0), xp.take(obs, rows, axis=0)
    def chunked(Z_, Y_, O_, max_iter):
        # polish_batch over at most B rows at a time (row_blocks: slices
        # within bounds, which the array API requires).
        parts = [
            polish_batch(Z_[sl, :], Y_[sl, :], O_[sl, :], *net, **kw, max_iter=max_iter,
                         tol=tol)[:2]
            for sl in row_blocks(Z_.shape[0], B)
        ]
        return xp.concat([p[0] for p in parts], axis=0), xp.concat([p[1] for p in parts])

    if screen_iter == 1 and measurement is None and biases is not None:
        # One step from each start one unit away with its J^T J from its
        # row's (_updated_screen); the others take the polish's step.
        Zs, ls, fast = _updated_screen(Z, rows, Z0, Ys, Os, gram, net, gamma, B)
        slow = ~fast
        if bool(xp.any(slow)):
            idx = compress_rows(slow, xp)
            Zp, lp_ = chunked(xp.take(Z0, idx, axis=0), xp.take(Ys, idx, axis=0),
                              xp.take(Os, idx, axis=0), 1)
            Zs, ls = scatter_rows(Zs, Zp, slow, xp), scatter_rows(ls, lp_, slow, xp)
    else:
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


def _updated_screen(Z, rows, Z0, Y, obs, gram, net, gamma, chunk):
    """One Gauss-Newton step (Algorithm 1's, on the start's supports) from
    each start ``Z0`` of the rows ``rows`` of ``Z``, with its ``J^T J`` from
    its row's ``gram`` (:func:`_flipped_unit_gram`: a start one hidden unit
    away) and its gradient exact (back-propagation at the start, on its
    supports); taken where it lowers the loss, as
    :func:`~skinvert.algorithms.polish.polish_batch`'s first step is
    (ridge ``gamma``, no damping). In chunks of ``chunk`` starts.

    Returns ``(Zs, loss, fast)``; ``fast`` (S,) marks the starts done so
    (one flipped unit, a finite ``G``); the others' entries are those of
    their start, for the caller to screen otherwise.
    """
    xp = net[3]
    parts = [_updated_screen_chunk(Z, rows[sl], Z0[sl, :], Y[sl, :], obs[sl, :], gram, net, gamma)
             for sl in row_blocks(Z0.shape[0], chunk)]
    return tuple(xp.concat([p[i] for p in parts], axis=0) for i in range(3))


def _updated_screen_chunk(Z, rows, Z0, Y, obs, gram, net, gamma):
    """:func:`_updated_screen` on one chunk of starts."""
    weights, biases, activation, xp = net
    dt = Z0.dtype
    l0, U0, masks0 = forward_loss(Z0, Y, obs, weights, biases, activation, xp, gamma=gamma)
    M, fast = _flipped_unit_gram(xp.take(Z, rows, axis=0), Z0, masks0, obs,
                                xp.take(gram, rows, axis=0), net)
    fast = fast & xp.isfinite(l0)
    # The exact gradient at the start, on its own supports.
    g = output_gradient(output_delta(U0, Y, obs, activation, xp), weights, masks0, xp, biases)
    if gamma:
        g = g - gamma * Z0
    k = M.shape[1]
    eye = xp.eye(k, dtype=dt, device=device(Z0))
    scale = xp.max(xp.linalg.diagonal(M), axis=1)
    jitter = k * float(xp.finfo(dt).eps) * xp.where(scale > 0, scale, xp.ones_like(scale))
    M = M + (gamma + jitter)[:, None, None] * eye
    # Starts not done here solve with the identity (the caller screens them).
    M = xp.where(fast[:, None, None], M, eye)
    dZ = xp.linalg.solve(M, g[:, :, None])[:, :, 0]
    Zn = Z0 + xp.where(fast[:, None], dZ, xp.zeros_like(dZ))
    ln, _, _ = forward_loss(Zn, Y, obs, weights, biases, activation, xp, gamma=gamma)
    ok = fast & (ln <= l0) & xp.isfinite(ln)
    return xp.where(ok[:, None], Zn, Z0), xp.where(ok, ln, l0), fast


def _flipped_unit_gram(Z, Z0, masks0, obs, gram, net):
    """``J^T J`` at starts ``Z0`` one hidden unit away from codes ``Z``, from theirs.

    ``Z`` (S, n_0): a code per start (its row's), with ``J^T J`` ``gram``
    (S, n_0, n_0) (``J = diag(obs * phi'(u(z))) A_S``, dense layers);
    ``masks0`` the hidden supports at ``Z0``. Where they differ from those
    of ``Z`` in exactly one unit ``k`` of hidden layer ``j`` (sign ``s``:
    +1 on at ``Z0``, -1 off), the map is ``A' = A + s v a^T``, with ``a``
    the unit's row of the map of its layer's pre-activation and ``v = W_L
    M_{L-1} W_{L-1} ... M_{j+1} W_{j+1}[:, k]`` on the supports of ``Z`` (the
    output's change per unit of the unit's output), so

        A'^T D^2 A' = G + s (p a^T + a p^T) + (v^T D^2 v) a a^T,

    ``p = A^T D^2 v`` (back-propagation of ``D^2 v``), with ``D`` the
    output's ``obs * phi'`` at ``Z`` (exact for a piecewise-linear phi; for
    tanh or sigmoid the start is within the noise of ``Z``). A start costs
    ``O(sum_i n_i n_{i+1})``, its map ``O(n_0 sum_i n_i n_{i+1})``.

    Returns
    -------
    gram : array of shape (S, n_0, n_0)
        Meaningful where ``ok``.
    ok : bool array of shape (S,)
        One flipped unit and a finite ``gram``.
    """
    weights, biases, activation, xp = net
    S, n0 = Z0.shape
    dt, dev = Z0.dtype, device(Z0)
    U, masks = _hidden(Z, weights, biases, xp)
    flips = [xp.astype(m0 != m, xp.int32) for m0, m in zip(masks0, masks, strict=True)]
    counts = [xp.sum(f, axis=1) for f in flips]
    total = counts[0]
    for c in counts[1:]:
        total = total + c
    ok = (total == 1) & xp.all(xp.isfinite(gram), axis=(1, 2))
    d = activation.derivative(U, xp) * obs
    a = xp.zeros((S, n0), dtype=dt, device=dev)
    v = xp.zeros((S, d.shape[1]), dtype=dt, device=dev)
    sign = xp.zeros((S,), dtype=dt, device=dev)
    L = len(masks)
    for j in range(L):  # the starts whose flipped unit is in hidden layer j
        on = ok & (counts[j] == 1)
        if not bool(xp.any(on)):
            continue
        sub = compress_rows(on, xp)
        k = xp.argmax(xp.take(flips[j], sub, axis=0), axis=1)
        now = xp.take_along_axis(xp.take(masks0[j], sub, axis=0), k[:, None], axis=1)[:, 0]
        sign = scatter_rows(sign, 2.0 * now - 1.0, on, xp)
        ms = [xp.take(m, sub, axis=0) for m in masks]
        a = scatter_rows(a, _unit_map_rows(j, k, ms, weights, xp), on, xp)
        # v: column k of W_{j+1}, forward through M_{j+1} W_{j+2} ... to the output.
        vk = xp.take(xp.matrix_transpose(weights[j + 1]), k, axis=0)
        for i in range(j + 1, L):
            vk = _even_rows(lambda x, m, W=weights[i + 1]: (x * m) @ W.T, (vk, ms[i]), xp)
        v = scatter_rows(v, vk, on, xp)
    dv = d * v
    p = output_gradient(d * dv, weights, masks, xp, biases)
    q = xp.sum(dv * dv, axis=1)
    pa = p[:, :, None] * a[:, None, :]
    G = xp.where(ok[:, None, None], gram, xp.zeros_like(gram))
    return (G + sign[:, None, None] * (pa + xp.matrix_transpose(pa))
            + q[:, None, None] * (a[:, :, None] * a[:, None, :])), ok
