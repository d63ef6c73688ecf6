"""Batched linear-algebra kernels shared by the algorithms.

All functions take the array namespace ``xp`` and work on a batch of problems
stacked along the first axis (one per sample). Per-sample supports are float
masks (1 on the support, 0 off it) applied elementwise, so no kernel loops over
samples and every kernel runs on NumPy, CuPy, torch or array-api-strict alike.
"""

import functools
from numbers import Real

import numpy as np

from ._array_api import _is_numpy, device, single_threaded_blas

__all__ = [
    "HOST_BLOCK_BYTES",
    "ROW_PRODUCT_TABLE_MAX",
    "batched_lstsq",
    "compress_rows",
    "concat_blocks",
    "downdated_solve",
    "factors_gram",
    "forward_preactivations",
    "gram_eigen_factors",
    "gram_eigh",
    "gram_inverse",
    "host_block_rows",
    "lstsq_factors",
    "lstsq_solve",
    "matvec",
    "mixed_factors",
    "normal_equation_factors",
    "refined_lstsq",
    "rmatvec",
    "row_blocks",
    "row_weighted_gram",
    "scatter_rows",
    "shared_left_matmul",
    "supported_affine_map",
    "supported_affine_maps",
    "supported_lstsq",
]


def matvec(A, x, xp):
    """``A @ x`` for a batch: A (B, m, k) or (m, k), x (B, k) -> (B, m)."""
    if A.ndim == 2:
        return x @ A.T
    return (A @ x[:, :, None])[:, :, 0]


def rmatvec(A, r, xp):
    """``A^T @ r`` for a batch: A (B, m, k) or (m, k), r (B, m) -> (B, k)."""
    if A.ndim == 2:
        return r @ A
    return (r[:, None, :] @ A)[:, 0, :]


def _eps(dtype, xp):
    return float(xp.finfo(dtype).eps)


def batched_lstsq(A, b, xp, *, ridge=0.0, z=None, rcond=None, damping=0.0):
    """Solve ``min_x ||A x - b||^2 + ridge ||x + z||^2 + damping ||x||^2`` for every problem.

    Parameters
    ----------
    A : array of shape (B, m, k)
    b : array of shape (B, m)
    ridge : float or array of shape (B,), default=0.0
        Tikhonov weight (the paper's gamma in eq. 16); with ``z`` the penalty
        is on ``x + z`` (used for steps ``x = dz`` from a current point ``z``:
        the ridge is on the new point).
    z : array of shape (B, k) or None
    rcond : float or None
        Singular values below ``rcond * s_max`` are treated as zero (minimum-
        norm solution). Default ``max(m, k) * eps``.
    damping : float or array of shape (B,), default=0.0
        Levenberg-Marquardt damping: a penalty on the step ``x`` itself, so
        a larger damping gives a shorter step from ``z`` (towards gradient
        descent), never a step towards ``-z``.

    Returns
    -------
    x : array of shape (B, k)

    Notes
    -----
    Computed through the thin SVD ``A = U S V^T``:
    ``x = V (S^2 + ridge + damping)^+ (S U^T b - ridge V^T z)``, which does not square
    the condition number (unlike the normal equations) and returns the
    minimum-norm solution of rank-deficient problems (a finite answer where
    the latent code is not unique, e.g. s_1 < n_0). The two halves are
    :func:`lstsq_factors` (the SVD) and :func:`lstsq_solve` (any ridge), so
    a caller that changes only the ridge or the damping (Levenberg-Marquardt
    after a rejected step) reuses the SVD.
    """
    return lstsq_solve(lstsq_factors(A, b, xp, rcond=rcond), xp, ridge=ridge, z=z,
                       damping=damping)


def refined_lstsq(A, b, xp, *, ridge=0.0, steps=2):
    """:func:`batched_lstsq` from the normal equations' factors, refined.

    Solves ``min_x ||A x - b||^2 + ridge ||x||^2`` for every problem through
    :func:`lstsq_factors` with ``gram=True`` (the eigendecomposition of
    ``A^T A`` on rows whose condition number is below ``1e4``, the SVD on
    the others), then ``steps`` steps of iterative refinement: the residual
    ``b - A x`` is recomputed and the correction solved with the same
    factors. Each step shrinks the normal equations' error (at most
    ``cond(A)^2 eps`` relative) by that factor again, so two steps give the
    SVD's answer to rounding, at the cost of products with ``A`` instead of
    an SVD of every tall ``A`` (512 clean ``fashion-mnist-fc`` rows through
    Algorithm 1: the SVDs were a quarter of the Oracle's time).
    Double precision only; other dtypes take :func:`batched_lstsq`.
    """
    if A.dtype != xp.float64 or A.shape[1] < A.shape[2]:
        return batched_lstsq(A, b, xp, ridge=ridge)
    S, Vt, Utb, keep = lstsq_factors(A, b, xp, gram=True)
    x = lstsq_solve((S, Vt, Utb, keep), xp, ridge=ridge)
    inv_s = 1.0 / xp.where(S > 0, S, xp.ones_like(S))
    for _ in range(steps):
        r = b - matvec(A, x, xp)
        Utr = matvec(Vt, rmatvec(A, r, xp), xp) * inv_s
        x = x + lstsq_solve((S, Vt, Utr, keep), xp, ridge=ridge, z=x)
    return x


def lstsq_factors(A, b, xp, *, rcond=None, gram=False):
    """The SVD half of :func:`batched_lstsq`: ``(S, Vt, U^T b, keep)``, with
    ``keep`` the singular values above ``rcond * s_max``.

    ``gram=True`` (double precision; a step of an iteration that recomputes
    its residual exactly, such as Gauss-Newton): the same factors from the
    eigendecomposition of ``A^T A = V S^2 V^T`` (``U^T b = S^-1 V^T A^T b``),
    about 5x faster than the SVD of a tall ``A``, on the rows whose
    condition number is below ``1e4`` (the normal equations then lose at
    most ``1e8 eps`` of the step, relative); the other rows (and single
    precision) take the SVD.
    """
    if gram and A.dtype == xp.float64 and A.shape[1] >= A.shape[2]:
        return _gram_factors(A, b, xp, rcond)
    B, m, k = A.shape
    if m < k:  # pad rows so that the thin SVD has a full V
        A = xp.concat([A, xp.zeros((B, k - m, k), dtype=A.dtype, device=_dev(A))], axis=1)
        b = xp.concat([b, xp.zeros((B, k - m), dtype=b.dtype, device=_dev(b))], axis=1)
        m = k
    if rcond is None:
        rcond = max(m, k) * _eps(A.dtype, xp)
    with single_threaded_blas(xp):
        U, S, Vt = xp.linalg.svd(A, full_matrices=False)
    smax = xp.max(S, axis=1, keepdims=True)
    return S, Vt, rmatvec(U, b, xp), S > rcond * smax


def _gram_factors(A, b, xp, rcond):
    """:func:`lstsq_factors` by the eigendecomposition of ``A^T A`` where it is
    well conditioned, the SVD elsewhere."""
    At = xp.matrix_transpose(A)
    factors, ok = gram_eigen_factors(xp.matmul(At, A), matvec(At, b, xp), xp, min_eig=1e-8)
    if bool(xp.all(ok)):
        return factors
    bad = ~ok
    sub = compress_rows(bad, xp)
    fix = lstsq_factors(xp.take(A, sub, axis=0), xp.take(b, sub, axis=0), xp, rcond=rcond)
    return tuple(scatter_rows(f, g, bad, xp) for f, g in zip(factors, fix))


def gram_eigh(gram, xp, *, min_eig):
    """``(lam, V, ok)``: the eigendecomposition ``A^T A = V diag(lam) V^T``
    of every row's ``gram``, and ``ok`` (B,), the rows whose smallest
    eigenvalue is above ``min_eig`` times the largest."""
    with single_threaded_blas(xp):
        lam, V = xp.linalg.eigh(gram)
    top = xp.max(lam, axis=1, keepdims=True)
    return lam, V, xp.all(lam > min_eig * top, axis=1) & (top[:, 0] > 0)


def gram_eigen_factors(gram, Atb, xp, *, min_eig):
    """:func:`lstsq_factors`' ``(S, Vt, U^T b, keep)`` from ``A^T A`` and ``A^T b``.

    The eigendecomposition ``A^T A = V S^2 V^T`` (:func:`gram_eigh`) gives
    ``U^T b = S^-1 V^T A^T b``. Also returns ``ok`` (B,): the rows whose
    smallest eigenvalue is above ``min_eig`` times the largest, where these
    factors are accurate enough for the caller (the others need another
    method).
    """
    lam, V, ok = gram_eigh(gram, xp, min_eig=min_eig)
    S = xp.sqrt(xp.clip(lam, min=0.0))
    Vt = xp.matrix_transpose(V)
    Utb = matvec(Vt, Atb, xp) / xp.where(S > 0, S, xp.ones_like(S))
    keep = xp.ones(S.shape, dtype=xp.bool, device=_dev(S))
    return (S, Vt, Utb, keep), ok


def normal_equation_factors(gram, Atb, xp, *, max_cond):
    """Factors of the normal equations ``(A^T A, A^T b)`` for :func:`lstsq_solve`.

    Each :func:`lstsq_solve` then solves ``(A^T A + (ridge + damping) I) x =
    A^T b - ridge z`` by LU (one batched solve of the small ``k x k``
    systems), where :func:`gram_eigen_factors` decomposes every ``A^T A``
    once (``eigh``: 12x the cost of an LU solve of a batch of 20 x 20
    systems, 6x that of their inverse, measured single-threaded). For a
    solver that recomputes its residual exactly and only needs each step
    to a few digits (the mixed-precision Gauss-Newton steps of the polish).

    Also returns ``ok`` (B,): the rows whose 1-norm condition number
    ``||A^T A||_1 ||(A^T A)^-1||_1`` is below ``max_cond`` (from the
    inverse of ``A^T A`` plus a jitter of ``k eps`` times its largest
    diagonal entry, so that singular rows are flagged, not raised). As
    ``cond_2 <= cond_1`` for a symmetric matrix, these rows meet
    ``lambda_min > lambda_max / max_cond``; the others need another method.
    """
    _, ok = gram_inverse(gram, xp, max_cond=max_cond)
    return (gram, Atb), ok


def gram_inverse(gram, xp, *, max_cond):
    """``(inv, ok)``: the inverse of every row's ``A^T A`` (plus a jitter of
    ``k eps`` times its largest diagonal entry, so that singular rows are
    flagged, not raised) and ``ok`` (B,), the rows whose 1-norm condition
    number ``||A^T A||_1 ||(A^T A)^-1||_1`` is below ``max_cond``: as
    ``cond_2 <= cond_1`` for a symmetric matrix, these rows meet
    ``lambda_min > lambda_max / max_cond``."""
    k = gram.shape[-1]
    dt = gram.dtype
    scale = xp.max(xp.linalg.diagonal(gram), axis=1)
    safe = xp.where(scale > 0, scale, xp.ones_like(scale))
    eye = xp.eye(k, dtype=dt, device=_dev(gram))
    with single_threaded_blas(xp):
        inv = xp.linalg.inv(gram + (k * _eps(dt, xp) * safe)[:, None, None] * eye)
    norm1 = xp.max(xp.sum(xp.abs(gram), axis=1), axis=1)
    inv_norm1 = xp.max(xp.sum(xp.abs(inv), axis=1), axis=1)
    ok = (scale > 0) & (norm1 * inv_norm1 < max_cond) & xp.all(xp.isfinite(inv), axis=(1, 2))
    return inv, ok


def _normal_equation_solve(gram, Atb, xp, lam, z, damping):
    """``(A^T A + (lam + damping) I) x = A^T b - lam z`` (``lam``, ``damping``:
    scalars or one per row)."""
    k = Atb.shape[1]
    eye = xp.eye(k, dtype=gram.dtype, device=_dev(gram))
    shift = lam + damping
    M = gram + (shift[:, None, None] if not isinstance(shift, Real) else shift) * eye
    rhs = Atb
    if z is not None and not (isinstance(lam, Real) and lam == 0):
        rhs = rhs - (lam if isinstance(lam, Real) else lam[:, None]) * z
    with single_threaded_blas(xp):
        return xp.linalg.solve(M, rhs[:, :, None])[:, :, 0]


def mixed_factors(gram, Atb, by_gram, xp, svd=None):
    """The seven arrays of :func:`lstsq_solve` for rows factored either way.

    ``(gram, Atb)``: :func:`normal_equation_factors` of every row, used on
    the rows ``by_gram``; ``svd``: :func:`lstsq_factors`' four arrays of the
    other rows, in order (None when every row is ``by_gram``). The unused
    slots get the identity (``A^T A``, so that the batched solve stays
    non-singular) and zeros (the SVD's).
    """
    B, k = Atb.shape
    dt, dev = Atb.dtype, _dev(Atb)
    parts = (
        xp.zeros((B, k), dtype=dt, device=dev),
        xp.zeros((B, k, k), dtype=dt, device=dev),
        xp.zeros((B, k), dtype=dt, device=dev),
        xp.zeros((B, k), dtype=xp.bool, device=dev),
    )
    if svd is not None:
        other = ~by_gram
        gram = xp.where(other[:, None, None], xp.eye(k, dtype=dt, device=dev), gram)
        parts = tuple(scatter_rows(f, e, other, xp) for f, e in zip(parts, svd))
    return (gram, Atb, *parts, by_gram)


def factors_gram(factors, xp):
    """``A^T A`` of every row from the factors :func:`lstsq_solve` takes
    (:func:`lstsq_factors`' four arrays or :func:`mixed_factors`' seven)."""
    gram = by_gram = None
    if len(factors) == 7:
        gram, _, *factors, by_gram = factors
    S, Vt, _, _ = factors
    svd = xp.matmul(xp.matrix_transpose(Vt), (S * S)[:, :, None] * Vt)
    return svd if gram is None else xp.where(by_gram[:, None, None], gram, svd)


def lstsq_solve(factors, xp, *, ridge=0.0, z=None, damping=0.0):
    """The solve half of :func:`batched_lstsq` from :func:`lstsq_factors`.

    ``factors`` may also be :func:`normal_equation_factors`' ``(A^T A,
    A^T b)``, or :func:`mixed_factors`' seven arrays ``(A^T A, A^T b, S,
    Vt, U^T b, keep, by_gram)`` of rows factored either way: ``by_gram``
    (B,) marks the rows solved from the normal equations, the others take
    the SVD factors.
    """
    if len(factors) == 2:
        return _normal_equation_solve(*factors, xp, ridge, z, damping)
    if len(factors) == 7:
        gram, Atb, *svd, by_gram = factors
        x = _normal_equation_solve(gram, Atb, xp, ridge, z, damping)
        if bool(xp.all(by_gram)):
            return x
        return xp.where(by_gram[:, None], x,
                        lstsq_solve(tuple(svd), xp, ridge=ridge, z=z, damping=damping))
    S, Vt, Utb, keep = factors

    def per_row(w):  # a scalar, or one weight per row against the (B, k) factors
        return w if isinstance(w, Real) else w[:, None]

    num = S * Utb
    lam = per_row(ridge)
    if z is not None and not (isinstance(ridge, Real) and ridge == 0):
        num = num - lam * matvec(Vt, z, xp)
    den = S * S + lam + per_row(damping)
    safe = keep | (den > 0)
    coef = xp.where(safe, num / xp.where(safe, den, xp.ones_like(den)), xp.zeros_like(num))
    if isinstance(ridge, Real) and ridge == 0:
        coef = xp.where(keep, coef, xp.zeros_like(coef))
    return rmatvec(Vt, coef, xp)


def _dev(x):
    return device(x)


def supported_lstsq(W, target, xp, *, row_weight=None, col_mask=None, ridge=0.0):
    """Least squares on per-sample row weights and column supports (normal equations).

    Solves, for each row ``t`` of ``target``,
    ``min_x || w * (W x - t) ||^2 + ridge ||x||^2`` subject to ``x_j = 0`` off
    the column support, where ``w`` is the sample's row weight (1 on the
    observed / supported rows, 0 elsewhere).

    Parameters
    ----------
    W : array of shape (m, k)
        Shared matrix.
    target : array of shape (B, m)
    row_weight : array of shape (B, m) or None
        Per-sample 0/1 (or positive) row weights; None means all ones, in
        which case the Gram matrix ``W^T W`` is computed once for the batch.
    col_mask : array of shape (B, k) or None
        Per-sample 0/1 column support; None means every column.
    ridge : float
        Tikhonov weight (gamma of eq. 16).

    Returns
    -------
    x : array of shape (B, k), zero off the column support.

    Notes
    -----
    The normal equations of the supported problem are
    ``(M G M + diag(1 - M) + ridge I) x = M W^T diag(w^2) t`` with
    ``G = W^T diag(w^2) W`` and ``M = diag(col_mask)``: the identity block on
    the off-support keeps every system non-singular and forces ``x = 0`` there.
    A relative jitter of ``k * eps * max diag(G)`` keeps rank-deficient
    systems solvable; it is far below the accuracy the problems need.
    """
    B = target.shape[0]
    m, k = W.shape
    dt = target.dtype
    if row_weight is None:
        G = (W.T @ W)[None, :, :]
        rhs = target @ W
    else:
        w2 = row_weight * row_weight
        G = row_weighted_gram(W, w2, xp)  # (B, k, k)
        rhs = (w2 * target) @ W
    eye = xp.eye(k, dtype=dt, device=_dev(target))
    diagG = xp.linalg.diagonal(G)
    scale = xp.max(diagG, axis=-1)  # (1,) or (B,)
    jitter = k * _eps(dt, xp) * xp.where(scale > 0, scale, xp.ones_like(scale))
    if col_mask is None:
        H = G + (ridge + jitter)[:, None, None] * eye
    else:
        Mc = col_mask
        H = Mc[:, :, None] * G * Mc[:, None, :]
        H = H + (1.0 - Mc)[:, :, None] * eye + (ridge + jitter)[:, None, None] * eye
        rhs = Mc * rhs
    if H.shape[0] != B:
        H = xp.broadcast_to(H, (B, k, k))
    with single_threaded_blas(xp):
        x = xp.linalg.solve(H, rhs[:, :, None])[:, :, 0]
    if col_mask is not None:
        x = col_mask * x
    return x


def padded_indices(mask, xp):
    """Padded indices of the True entries of every row of ``mask`` (B, m).

    Returns ``J`` (B, q) and ``valid`` (B, q), q the largest count (at least
    1); ``J`` is arbitrary where ``valid`` is False.
    """
    count = xp.sum(xp.astype(mask, xp.int32), axis=1)
    q = max(int(xp.max(count)), 1) if mask.shape[0] else 1
    order = xp.argsort(xp.astype(~mask, xp.int32), axis=1, stable=True)
    J = order[:, :q]
    valid = xp.arange(q, device=_dev(mask))[None, :] < count[:, None]
    return J, valid


def gathered_block(G, J, xp):
    """``G[b][J[b]][:, J[b]]`` for every row: G (k, k) shared or (B, k, k),
    J (B, q) -> (B, q, q), by one flat gather of the ``B q^2`` entries."""
    k = G.shape[-1]
    B, q = J.shape
    flat = J[:, :, None] * k + J[:, None, :]
    if G.ndim == 3:
        flat = flat + xp.reshape(xp.arange(B, dtype=J.dtype, device=_dev(J)), (B, 1, 1)) * (k * k)
    return xp.reshape(xp.take(xp.reshape(G, (-1,)), xp.reshape(flat, (-1,)), axis=0), (B, q, q))


def plus_diagonal(G, d, xp):
    """``G + diag(d)`` for a stack G (B, k, k) and d (B,): a new array (on
    NumPy one copy with ``d`` added in place on its diagonal, where the
    generic ``G + d I`` allocates two stacks: 67 MB each for 512 rows of a
    128-unit layer)."""
    if _is_numpy(xp):
        B, k = G.shape[0], G.shape[-1]
        out = np.array(G, copy=True)
        out.reshape(B, k * k)[:, :: k + 1] += np.asarray(d)[:, None]
        return out
    eye = xp.eye(G.shape[-1], dtype=G.dtype, device=_dev(G))
    return G + d[:, None, None] * eye


def scatter_columns(values, J, k, xp):
    """(B, k) zeros with ``values`` (B, q) put in the columns ``J`` (B, q),
    distinct within each row (as :func:`padded_indices` gives them)."""
    B, q = J.shape
    if _is_numpy(xp):  # the same array, by one assignment
        out = np.zeros((B, k), dtype=values.dtype)
        np.put_along_axis(out, J, values, axis=1)
        return out
    E = xp.astype(xp.arange(k, device=_dev(J))[None, None, :] == J[:, :, None], values.dtype)
    return (values[:, None, :] @ E)[:, 0, :]


#: On NumPy, kernels that build a stack of per-row matrices work on blocks of
#: rows whose stack stays within this many bytes (:func:`host_block_rows`).
HOST_BLOCK_BYTES = 8 * 2**20


def host_block_rows(xp, dtype, row_elements, minimum=16):
    """Rows per block of a per-row stack of ``row_elements`` entries of
    ``dtype`` each (None: one block).

    On NumPy a stack larger than the C allocator's mmap threshold (32 MiB in
    glibc) is returned to the system when freed and page-faulted afresh at
    each allocation; blocks of at most :data:`HOST_BLOCK_BYTES` are reused
    from the heap (512 clean ``fashion-mnist-fc`` rows through Algorithm 1:
    2.2-3.2 s in one block, 1.4-2.2 s of it system time, 0.6 s in blocks of
    64). Other namespaces (a GPU's memory pool) take one block.
    """
    if not _is_numpy(xp):
        return None
    row_bytes = int(row_elements) * np.dtype(dtype).itemsize
    return max(minimum, HOST_BLOCK_BYTES // max(row_bytes, 1))


def row_blocks(n, rows):
    """Slices of consecutive blocks of at most ``rows`` of ``n`` rows (one
    slice when ``rows`` is None)."""
    if rows is None or n <= rows:
        return [slice(0, n)]
    return [slice(i, min(i + rows, n)) for i in range(0, n, rows)]


def concat_blocks(parts, xp):
    """The blocks' outputs (tuples of arrays) joined position by position."""
    if len(parts) == 1:
        return parts[0]
    return tuple(xp.concat([p[j] for p in parts]) for j in range(len(parts[0])))


def downdated_solve(W, H, x0, drop, xp):
    """Solve ``(W^T W - W_D^T W_D) x = r`` per row from one shared factorization.

    ``D`` is the row's (small) set of dropped rows of ``W`` (``drop`` (B, m)
    bool); ``H = W (W^T W)^-1`` (m, k) and ``x0 = (W^T W)^-1 r`` (B, k) come
    from the shared factorization. By the Woodbury identity, with
    ``S = I - H_D W_D^T`` (q x q, q = |D|),

        x = x0 + H_D^T S^-1 (W_D x0),

    so a row costs ``O(q k + q^3)`` instead of the ``O(m k^2 + k^3)`` of its
    own Gram matrix and factorization. ``S`` is singular exactly when the
    downdated Gram matrix is: callers check the solution (e.g. its KKT
    conditions) rather than trust it.

    Returns
    -------
    x : array (B, k)
    WD : array (B, q, k)
        The dropped rows ``W_D`` (zero-padded), for the caller's residuals
        ``(W^T W - W_D^T W_D) x = W^T W x - W_D^T (W_D x)``.
    """
    dt = x0.dtype
    J, valid = padded_indices(drop, xp)
    q = J.shape[1]
    WD, HD = _gathered_rows(W, J, valid, xp), _gathered_rows(H, J, valid, xp)
    # A relative jitter keeps an exactly singular S (a downdate that leaves
    # the rows rank-deficient) solvable; such a row's answer fails the
    # caller's check.
    eye = xp.eye(q, dtype=dt, device=_dev(x0))
    S = (1.0 + q * _eps(dt, xp)) * eye - HD @ xp.permute_dims(WD, (0, 2, 1))
    v = matvec(WD, x0, xp)
    with single_threaded_blas(xp):
        t = xp.linalg.solve(S, v[:, :, None])[:, :, 0]
    return x0 + rmatvec(HD, t, xp), WD


def shared_left_matmul(W, A, xp):
    """``W @ A[b]`` for every b: W (m, k) shared, A (B, k, p) -> (B, m, p).

    Written as one large GEMM, ``W @ [A_1 ... A_B]`` on the (k, B p)
    concatenation, instead of B skinny products (about 10x faster on NumPy).
    """
    B, k, p = A.shape
    flat = xp.reshape(xp.permute_dims(A, (1, 0, 2)), (k, B * p))
    out = xp.permute_dims(xp.reshape(W @ flat, (W.shape[0], B, p)), (1, 0, 2))
    if _is_numpy(xp):
        # A C-ordered copy: every later product, scaling and row gather of
        # the (B, m, p) stack runs about 1.3-2x faster than on the view.
        return np.ascontiguousarray(out)
    return out


#: Largest ``m k^2`` (entries of the full table of row outer products of an
#: (m, k) matrix) for which :func:`row_weighted_gram` builds the table and
#: forms every row's Gram matrix by one GEMM over the whole batch.
ROW_PRODUCT_TABLE_MAX = 2**24


def row_weighted_gram(W, w, xp, shared=None):
    """Per-row Gram matrices ``W^T diag(w_b) W``: W (m, k), w (B, m) -> (B, k, k).

    ``shared``: ``W^T W`` when the caller has it (blocks of rows of one
    batch), for the rows that drop fewer entries than they keep.

    When the table of row outer products is small enough (``m k^2 <=
    ROW_PRODUCT_TABLE_MAX``),
    all the Gram matrices come from one GEMM, ``w @ P``, with ``P`` the
    table of the ``k (k + 1) / 2`` upper-triangular products
    ``W[r, i] W[r, j]`` (i <= j) of every row ``r``, then mirrored: half the
    FLOPs of the full ``k^2`` table, which was also built through an
    ``(m, k, k)`` temporary (392 x 128 hidden layer, 171 rows: 0.053 s ->
    0.017 s on one thread). Otherwise a batched product over the fewest
    rows: the shared ``W^T W`` less each row's dropped rows (0/1 weights
    dropping fewer rows than they keep), or the weighted rows gathered
    (when at most 3/4 of the rows carry a weight), or all ``m`` rows.
    """
    m, k = W.shape
    B = w.shape[0]
    if m * k * k <= ROW_PRODUCT_TABLE_MAX:
        Wt = xp.matrix_transpose(W)
        P = xp.concat([Wt[i : i + 1, :] * Wt[i:, :] for i in range(k)], axis=0)  # (T, m)
        upper = w @ xp.matrix_transpose(P)  # (B, T)
        return xp.reshape(xp.take(upper, _mirror_index(k, xp, _dev(w)), axis=1), (B, k, k))
    # Per-row products over the fewest rows: the rows with a weight,
    # gathered, or (0/1 weights) the shared W^T W less the dropped rows:
    # q k^2 per row instead of m k^2, q the larger count over the batch
    # (inpainting's half-missing images, 512 rows of a 784 x 392 image
    # layer: 3.05 -> 1.46 s in cProfile, see benchmarks/README).
    keep, drop = padded_indices(w != 0, xp), None
    if bool(xp.all((w == 0) | (w == 1))):
        drop = padded_indices(w == 0, xp)
    if drop is not None and drop[0].shape[1] < keep[0].shape[1]:
        WD = _gathered_rows(W, *drop, xp)
        K = xp.matrix_transpose(W) @ W if shared is None else shared
        return K[None, :, :] - xp.matrix_transpose(WD) @ WD
    if 4 * keep[0].shape[1] <= 3 * m:
        J, valid = keep
        wJ = xp.take_along_axis(w, J, axis=1) * xp.astype(valid, w.dtype)
        WJ = _gathered_rows(W, J, valid, xp)
        return xp.matrix_transpose(WJ) @ (wJ[:, :, None] * WJ)
    return W.T @ (w[:, :, None] * W)


def _gathered_rows(W, J, valid, xp):
    """The rows ``J`` (B, q) of ``W`` per batch row, zero where not ``valid``."""
    B, q = J.shape
    rows = xp.reshape(xp.take(W, xp.reshape(J, (-1,)), axis=0), (B, q, W.shape[1]))
    return rows * xp.astype(valid, W.dtype)[:, :, None]


def _mirror_index(k, xp, dev):
    """For entry ``(i, j)`` of a k x k matrix (row-major), the position of
    ``(min(i, j), max(i, j))`` among the upper-triangular entries listed row
    by row (computed once per ``k``)."""
    return xp.asarray(_mirror_positions(k), device=dev)


@functools.lru_cache(maxsize=16)
def _mirror_positions(k):
    r = np.arange(k)
    i, j = np.minimum.outer(r, r), np.maximum.outer(r, r)
    pos = (i * k - i * (i - 1) // 2 + (j - i)).reshape(-1)
    return pos


def supported_affine_map(weights, biases, masks, xp, *, n_samples):
    """The per-sample affine map ``z -> A z + c`` of the output pre-activation.

    For codes whose hidden layers have supports ``masks`` (float 0/1 arrays of
    shape (B, n_i), i = 1..L), the pre-activation of the output layer is
    ``W_L D_L (W_{L-1} ... D_1 (W_0 z + b_0) ... + b_{L-1}) + b_L = A z + c``
    with ``D_i = diag(mask_i)``: the row-supported product of Algorithm 1.

    Returns
    -------
    A : array of shape (B, n, n_0)
    c : array of shape (B, n)
    """
    return supported_affine_maps(weights, biases, masks, xp, n_samples=n_samples)[-1]


def supported_affine_maps(weights, biases, masks, xp, *, n_samples):
    """Every layer's map of :func:`supported_affine_map`, built in one pass.

    Returns
    -------
    maps : list of ``(A_i, c_i)``, i = 1..L+1
        ``u_i = A_i z + c_i`` of shape (B, n_i, n_0) and (B, n_i): the
        pre-activations of the hidden layers on the supports ``masks`` of
        the layers below them, and last the output's.
    """
    A = xp.broadcast_to(weights[0][None, :, :], (n_samples,) + tuple(weights[0].shape))
    c = xp.broadcast_to(biases[0][None, :], (n_samples, biases[0].shape[0]))
    maps = [(A, c)]
    for W, b, M in zip(weights[1:], biases[1:], masks, strict=True):
        A = shared_left_matmul(W, M[:, :, None] * A, xp)
        c = (M * c) @ W.T + b
        maps.append((A, c))
    return maps


def finite_or(x, value, xp):
    """Replace NaN (and inf) entries of ``x`` by ``value``."""
    return xp.where(xp.isfinite(x), x, xp.full_like(x, value))


def row_norm(x, xp):
    """Euclidean norm of every row."""
    return xp.sqrt(xp.sum(x * x, axis=1))


def forward_preactivations(Z, weights, biases, xp):
    """Pre-activations ``u_i = W_{i-1} x_{i-1} + b_{i-1}`` of the hidden layers of ``G(Z)``.

    The forward pass of eq. 3 up to the last hidden layer, batched over
    rows (``x_0 = z``, ``x_i = ReLU(u_i)``).

    Returns
    -------
    pre : list of arrays of shape (B, n_i), i = 1..L
    x_L : array of shape (B, n_L)
        The last hidden layer (``Z`` itself when the generator has none).
    """
    pre = []
    x = Z
    for W, b in zip(weights[:-1], biases[:-1], strict=True):
        u = x @ W.T + b
        pre.append(u)
        x = xp.clip(u, min=0.0)
    return pre, x


# -- row gather / scatter: the rows of a batch still being solved -------------


def compress_rows(mask, xp):
    """Indices of the rows where ``mask`` holds, for ``xp.take``."""
    if _is_numpy(xp):  # the same indices, without the generic sort
        return xp.asarray(np.flatnonzero(mask))
    idx = xp.arange(mask.shape[0], device=_dev(mask))
    return _compress(idx, mask, xp)


def scatter_rows(full, part, mask, xp):
    """``full`` with its rows where ``mask`` holds replaced, in order, by ``part``.

    ``part`` holds either every row (then a masked select) or only the rows
    where ``mask`` holds (as gathered by :func:`compress_rows`).
    """
    m = xp.reshape(mask, (mask.shape[0],) + (1,) * (full.ndim - 1))
    if part.shape[0] == full.shape[0]:
        return xp.where(m, part, full)
    if _is_numpy(xp):  # the same array, by a copy and a masked assignment
        out = xp.asarray(full, copy=True)
        out[mask] = part
        return out
    pos = xp.cumulative_sum(xp.astype(mask, xp.int64)) - 1
    pos = xp.clip(pos, 0, max(part.shape[0] - 1, 0))
    expanded = xp.take(part, pos, axis=0)
    return xp.where(m, expanded, full)


def _compress(idx, mask, xp):
    """The entries of ``idx`` where ``mask`` holds (namespace-generic)."""
    pos = xp.cumulative_sum(xp.astype(mask, xp.int64)) - 1
    n = int(xp.sum(xp.astype(mask, xp.int64)))
    # order[k] = the k-th True position: sort so that True entries come first.
    key = xp.where(mask, pos, xp.full_like(pos, idx.shape[0] + 1))
    order = xp.argsort(key, stable=True)
    return xp.take(idx, order[:n], axis=0)
