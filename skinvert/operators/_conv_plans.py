"""Index plans of the convolution operators: im2col and col2im as gathers.

A convolution ``w`` of shape ``(C_a, C_b, kh, kw)`` (torch's ``Conv2d`` layout:
``C_a`` output and ``C_b`` input channels) maps ``(C_b, H, W)`` to
``(C_a, H_o, W_o)``. Its two batched products, and those of the transposed
convolution (the same two maps swapped), are built from two kinds of plan,
all integer indices computed once on the host with NumPy:

``im2col`` (gather, then matmul)
    The input, stored batch-last ``(n_in, B)`` with one zero row appended, is
    gathered into ``(P, K, N B)`` (``xp.take`` along rows) and multiplied by a
    stack of ``P`` matrices ``(C_out, K)``. The direct convolution has
    ``P = 1``, ``K = C_in kh kw`` taps and ``N = H_o W_o`` pixels. The
    transposed convolution uses ``P = s_h s_w`` sub-pixel phases: the output
    pixels congruent modulo the stride see the same ``ceil(kh/s_h) ceil(kw/s_w)``
    kernel taps, so the zeros a strided scatter would insert are never
    multiplied; a last ``take`` puts the phases back in place.
``col2im`` (matmul, then gather-sum), transposed convolution only
    ``Q = W_q X`` with ``W_q`` of shape ``(C_out kh kw, C_in)`` (one matmul),
    then every output pixel sums its at most ``ceil(kh/s_h) ceil(kw/s_w)``
    entries of ``Q``, gathered through a padded index (scatter-add written as
    a gather, which the array API has).

The cheaper of the two (fewer gathered elements) serves each transposed map.
Only ``take``, ``matmul``, ``reshape``, ``concat``, ``sum`` and
``permute_dims`` touch the data, so every array API namespace works.
"""

import numpy as np

from .._array_api import as_namespace

__all__ = ["apply_plan", "bind_plan", "direct_plan", "transposed_plan"]


def direct_plan(w, in_hw, out_hw, stride, padding):
    """im2col plan of the convolution ``w`` (C_a, C_b, kh, kw): (C_b, *in_hw) -> (C_a, *out_hw)."""
    c_out, c_in, kh, kw = w.shape
    (H, W), (Ho, Wo), (sh, sw), (ph, pw) = in_hw, out_hw, stride, padding
    ih = np.arange(Ho)[None, :] * sh - ph + np.arange(kh)[:, None]  # (kh, Ho)
    iw = np.arange(Wo)[None, :] * sw - pw + np.arange(kw)[:, None]  # (kw, Wo)
    valid = ((ih >= 0) & (ih < H))[:, None, :, None] & ((iw >= 0) & (iw < W))[None, :, None, :]
    spatial = ih[:, None, :, None] * W + iw[None, :, None, :]  # (kh, kw, Ho, Wo)
    n_in = c_in * H * W
    idx = np.where(valid, np.arange(c_in)[:, None, None, None, None] * (H * W) + spatial, n_in)
    return {"kind": "im2col", "index_in": idx.reshape(-1),
            "weights": np.array(w.reshape(1, c_out, c_in * kh * kw)), "index_out": None,
            "dims": (1, c_in * kh * kw, Ho * Wo)}


def _phases_1d(length, src_length, k, s, p):
    """Sub-pixel phases of the transposed convolution along one axis.

    Output position ``i`` has phase ``f = (i + p) mod s``; it receives the taps
    ``u = f + j s`` (``j < ceil(k / s)``) from the source positions
    ``o = (i + p - u) / s``. Returns the source per (phase, tap, slot) (``-1``
    where there is none), the tap per (phase, tap) (``-1`` beyond the kernel)
    and each output position's phase and slot.
    """
    T, n_slots = -(-k // s), -(-length // s)
    f = np.arange(s)[:, None, None]
    j = np.arange(T)[None, :, None]
    m = np.arange(n_slots)[None, None, :]
    i = (f - p) % s + m * s
    u = f + j * s
    o = (i + p - f) // s - j
    ok = (i < length) & (u < k) & (o >= 0) & (o < src_length)
    pos = np.arange(length)
    phase = (pos + p) % s
    slot = (pos - (phase - p) % s) // s
    return np.where(ok, o, -1), np.where(u[:, :, 0] < k, u[:, :, 0], -1), phase, slot


def transposed_plan(w, in_hw, out_hw, stride, padding, kind=None):
    """Plan of the adjoint of the convolution ``w`` (C_a, C_b, kh, kw).

    It maps (C_a, *out_hw) to (C_b, *in_hw).

    ``kind`` None chooses between the phase ``"im2col"`` and the ``"col2im"``
    plan by the number of elements each materializes per sample.
    """
    c_a, c_b, kh, kw = w.shape
    (H, W), (Ho, Wo) = in_hw, out_hw
    oh, uh, fh, mh = _phases_1d(H, Ho, kh, stride[0], padding[0])
    ow, uw, fw, mw = _phases_1d(W, Wo, kw, stride[1], padding[1])
    (sh, Th, Nh), (sw, Tw, Nw) = oh.shape, ow.shape
    P, T, N = sh * sw, Th * Tw, Nh * Nw
    cost_im2col = P * c_a * T * N
    cost_col2im = c_b * kh * kw * Ho * Wo + c_b * H * W * T
    if kind is None:
        kind = "col2im" if cost_col2im <= cost_im2col else "im2col"
    if kind == "col2im":
        # source and tap of every (output pixel, tap), shape (H, Th) and (W, Tw)
        src_h, tap_h = oh[fh[:, None], np.arange(Th)[None, :], mh[:, None]], uh[fh]
        src_w, tap_w = ow[fw[:, None], np.arange(Tw)[None, :], mw[:, None]], uw[fw]
        ok = (src_h >= 0)[:, None, :, None] & (src_w >= 0)[None, :, None, :]  # (H, W, Th, Tw)
        row = (np.arange(c_b)[:, None, None, None, None] * kh + tap_h[:, None, :, None]) * kw
        row = row + tap_w[None, :, None, :]  # (c_b, H, W, Th, Tw)
        src = src_h[:, None, :, None] * Wo + src_w[None, :, None, :]
        n_q = c_b * kh * kw * Ho * Wo
        idx = np.where(ok, row * (Ho * Wo) + src, n_q)
        # one zero row appended to W_q makes the matmul write the zero block
        # that the padded index points at (no copy of Q to pad it)
        wq = np.transpose(w, (1, 2, 3, 0)).reshape(c_b * kh * kw, c_a)
        wq = np.concatenate([wq, np.zeros((1, c_a), dtype=w.dtype)])
        return {"kind": "col2im", "index": idx.reshape(-1), "taps": T, "c_in": c_a,
                "weights": wq}
    src = oh[:, None, None, :, None, :, None] * Wo + ow[None, :, None, None, :, None, :]
    ok = (oh >= 0)[:, None, None, :, None, :, None] & (ow >= 0)[None, :, None, None, :, None, :]
    chan = np.arange(c_a)[None, None, :, None, None, None, None] * (Ho * Wo)
    idx = np.where(ok, chan + src, c_a * Ho * Wo)  # (fh, fw, c_a, th, tw, nh, nw)
    tap_ok = (uh >= 0)[:, None, :, None] & (uw >= 0)[None, :, None, :]  # (sh, sw, Th, Tw)
    wt = w[:, :, np.maximum(uh, 0)[:, None, :, None], np.maximum(uw, 0)[None, :, None, :]]
    wt = np.where(tap_ok, wt, 0)  # (c_a, c_b, sh, sw, Th, Tw)
    weights = np.transpose(wt, (2, 3, 1, 0, 4, 5)).reshape(P, c_b, c_a * T)
    phase = fh[:, None] * sw + fw[None, :]
    slot = mh[:, None] * Nw + mw[None, :]
    out = ((phase[None] * c_b + np.arange(c_b)[:, None, None]) * N + slot[None]).reshape(-1)
    if np.array_equal(out, np.arange(out.size)):
        out = None
    return {"kind": "im2col", "index_in": idx.reshape(-1), "weights": weights,
            "index_out": out, "dims": (P, c_a * T, N)}


def bind_plan(plan, xp, dtype, device):
    """The plan with its arrays moved to ``xp`` (indices as integers, weights as ``dtype``)."""
    bound = dict(plan)
    for key, value in plan.items():
        if key == "weights":
            bound[key] = as_namespace(value, xp, dtype=dtype, device=device)
        elif isinstance(value, np.ndarray):
            bound[key] = as_namespace(value, xp, device=device)
    return bound


def _with_zero_row(xp, A, device):
    return xp.concat([A, xp.zeros((1, A.shape[1]), dtype=A.dtype, device=device)], axis=0)


def apply_plan(xp, plan, X, device):
    """Apply a bound plan to a batch: ``X`` (B, n_in) -> (B, n_out)."""
    B = X.shape[0]
    Xt = xp.permute_dims(X, (1, 0))  # batch-last: gathers copy whole rows
    if plan["kind"] == "im2col":
        P, K, N = plan["dims"]
        G = xp.take(_with_zero_row(xp, Xt, device), plan["index_in"], axis=0)
        C = plan["weights"].shape[1]
        Y = xp.reshape(xp.matmul(plan["weights"], xp.reshape(G, (P, K, N * B))), (P * C * N, B))
        if plan["index_out"] is not None:
            Y = xp.take(Y, plan["index_out"], axis=0)
    else:
        c_in, T = plan["c_in"], plan["taps"]
        Q = xp.matmul(plan["weights"], xp.reshape(Xt, (c_in, Xt.shape[0] // c_in * B)))
        G = xp.take(xp.reshape(Q, (Q.shape[0] * (Xt.shape[0] // c_in), B)), plan["index"], axis=0)
        Y = xp.sum(xp.reshape(G, (G.shape[0] // T, T, B)), axis=1)
    return xp.permute_dims(Y, (1, 0))
