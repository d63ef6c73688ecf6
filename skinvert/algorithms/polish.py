"""Exact polish: Algorithm 1 through the whole network, alternated with support refresh.

The Oracle (Algorithm 1) solves ``min_z 1/2 ||y - phi(A_S z + c_S)||^2`` on
*known* supports ``S``. The polish runs it on the supports of its own current
estimate: at ``z_k`` the hidden supports ``S(z_k)`` fix the affine map
``u = A_S z + c_S`` of the output pre-activation, one Gauss-Newton step
(after a rejected one, a point on the ridge path towards the prior mean) is
taken on that fixed-support problem, accepted
only if it lowers the loss *through the real network*, and the supports are
refreshed at the new point. Rows stop when the supports are a fixed point and
the step is below rounding (or the loss stops decreasing). This generalises
Algorithm 1 to a start whose supports are wrong (the paper's section 6.1
outlook: a hybrid of gradient descent and the layered approach): for a
piecewise-linear phi without noise, a start inside the true support region
(and on the right pieces of phi) is mapped to the exact z by one Gauss-Newton
step, and every other accepted step moves to another support region.
"""

from .._array_api import _is_numpy, device
from .._linalg import compress_rows as _compress_rows
from .._linalg import (
    concat_blocks,
    factors_gram,
    gram_inverse,
    host_block_rows,
    lstsq_factors,
    lstsq_solve,
    matvec,
    mixed_factors,
    normal_equation_factors,
    rmatvec,
    row_blocks,
    row_norm,
    shared_left_matmul,
    supported_affine_map,
)
from .._linalg import scatter_rows as _scatter_rows
from ._map_updates import transposed, updated_maps
from ._network import hidden_masks, masked_rmatvec, network_affine_map, network_forward

__all__ = [
    "affine_map",
    "forward_loss",
    "fixed_support_output",
    "jacobian",
    "mixed_refinement",
    "output_jacobian",
    "polish_batch",
    "step_factors",
]


def _hidden(Z, weights, biases, xp):
    """Output pre-activation ``u_L`` and the float 0/1 supports of layers 1..L.

    ``biases=None``: ``weights`` are bound layers (a non-dense generator).
    Dense layers are computed on an even number of rows (:func:`_even_rows`),
    so that a row's forward pass, hence its polish, does not depend on the
    rows live with it.
    """
    if biases is None:
        pre, U = network_forward(Z, weights, xp)
        return U, hidden_masks(pre, xp)

    def forward(X):
        masks = []
        x = X
        for W, b in zip(weights[:-1], biases[:-1]):
            u = x @ W.T + b
            m = xp.astype(u > 0, X.dtype)
            masks.append(m)
            x = u * m
        return (x @ weights[-1].T + biases[-1], *masks)

    U, *masks = _even_rows(forward, (Z,), xp)
    return U, masks


def affine_map(weights, biases, masks, xp, *, n_samples):
    """``A_S`` (B, n, n_0) and ``c_S`` (B, n) of Algorithm 1 on the supports ``masks``.

    Dense weights: :func:`~skinvert._linalg.supported_affine_map`. Bound
    layers (``biases=None``): :func:`~skinvert.algorithms._network.network_affine_map`
    in chunks of rows, so that the stacked hidden layer it builds holds at
    most ``2**24`` entries (``B n_0 max_i n_i`` otherwise).
    """
    if biases is not None:
        return supported_affine_map(weights, biases, masks, xp, n_samples=n_samples)
    n0 = weights[0].shape[1]
    widest = max(layer.shape[0] for layer in weights)
    step = max(1, (1 << 24) // (n0 * widest))
    if n_samples <= step:
        return network_affine_map(weights, masks, xp, n_samples=n_samples)
    parts = []
    for lo in range(0, n_samples, step):
        hi = min(n_samples, lo + step)
        sub = [m[lo:hi, ...] for m in masks]
        parts.append(network_affine_map(weights, sub, xp, n_samples=hi - lo))
    return (xp.concat([p[0] for p in parts], axis=0),
            xp.concat([p[1] for p in parts], axis=0))


def forward_loss(Z, Y, obs, weights, biases, activation, xp, *, measurement=None, gamma=0.0):
    """Per-row loss ``1/2 ||obs * (A G(z) - y)||^2 + gamma/2 ||z||^2`` (eq. 1).

    ``A`` is the identity without a ``measurement``. Returns ``(loss, U, masks)``:
    the loss (B,), the output pre-activation ``u_L`` (B, n) and the hidden
    supports (float 0/1, one (B, n_i) array per hidden layer).
    """
    U, masks = _hidden(Z, weights, biases, xp)
    out = activation(U, xp)
    if measurement is not None:
        out = measurement.forward(out)
    R = obs * (out - Y)
    loss = 0.5 * xp.sum(R * R, axis=1)
    if gamma:
        loss = loss + 0.5 * gamma * xp.sum(Z * Z, axis=1)
    return loss, U, masks


def jacobian(U, masks, weights, biases, activation, xp, *, measurement=None, obs=None):
    """End-to-end Jacobian ``diag(obs) A diag(phi'(u)) A_S`` of the output at fixed supports.

    ``A_S`` is the row-supported product of Algorithm 1
    (:func:`~skinvert._linalg.supported_affine_map`; with ``biases=None``,
    ``weights`` are bound layers and it is
    :func:`~skinvert.algorithms._network.network_affine_map`). Returns (B, m, n_0).
    """
    A_S, _ = affine_map(weights, biases, masks, xp, n_samples=U.shape[0])
    return output_jacobian(A_S, U, activation, xp, measurement, obs)


def output_jacobian(A_S, U, activation, xp, measurement, obs):
    """``diag(obs) A diag(phi'(u)) A_S`` from the affine map ``A_S`` of the
    output pre-activation ``U`` (``A``: the ``measurement``, or none)."""
    J = activation.derivative(U, xp)[:, :, None] * A_S
    if measurement is not None:
        J = measurement.columns(J)
    if obs is not None:
        J = obs[:, :, None] * J
    return J


def step_factors(A_S, U, Y, obs, activation, xp, measurement=None):
    """The factors of a Gauss-Newton step at the output pre-activation ``U``.

    :func:`~skinvert._linalg.lstsq_factors` (``gram=True``) of the Jacobian
    :func:`output_jacobian` and the residual ``obs * (y - A phi(u))``, and
    the scale of ``J^T J`` (its largest diagonal entry) that the
    Levenberg-Marquardt damping is relative to. Each step recomputes its
    residual, so the normal equations' error (``cond(J)^2 eps`` relative, on
    the rows they take; the SVD on the others) is corrected by the next.
    Shared by the polish and Algorithm 1 (the Oracle).
    """
    J = output_jacobian(A_S, U, activation, xp, measurement, obs)
    out = activation(U, xp)
    if measurement is not None:
        out = measurement.forward(out)
    factors = lstsq_factors(J, obs * (Y - out), xp, gram=True)
    return factors, xp.max(xp.sum(J * J, axis=1), axis=1)


def _even_rows(f, arrays, xp):
    """``f(*arrays)`` for a row-wise chain of products, run on an even number of rows.

    OpenBLAS's gemm computes the last row of an odd number of rows with its
    one-row kernel, summed in another order than the same row in a pair: a
    row's result would depend on the rows computed with it (measured: the
    last row of every odd-sized product of 2..39 rows differs in the last
    bits). An odd count is padded with a copy of the first row, so every row
    goes through the pair kernels. ``f`` returns an array or a tuple of
    arrays, each with a row per input row.
    """
    B = arrays[0].shape[0]
    if B % 2 == 0:
        return f(*arrays)
    out = f(*(xp.concat([a, a[:1, ...]]) for a in arrays))
    if isinstance(out, tuple):
        return tuple(o[:B, ...] for o in out)
    return out[:B, ...]


def single_precision_map(weights32, masks, xp, *, n_samples, pre_masks=False):
    """``A_S`` of :func:`affine_map` (dense layers) in single precision, row by row.

    ``weights32``: the generator's ``W_0..W_L`` in float32; ``masks`` the
    supports of ``n_samples`` rows. On NumPy each row's map is its own
    batched product (``matmul`` of the shared ``W_i`` with the row's stack),
    so a row's map does not depend on the rows built with it (one large
    single-precision GEMM over the concatenated rows does: OpenBLAS's
    kernels split the columns by the batch size). Other namespaces take that
    one GEMM (:func:`~skinvert._linalg.shared_left_matmul`), which does not
    copy the shared ``W_i`` per row. Returns (n_samples, n, n_0); with
    ``pre_masks``, also the list of the pre-mask maps ``U_i = W_{i-1} M_{i-1}
    ... M_1 W_0`` of the hidden layers 2..L (for
    :func:`~skinvert.algorithms._map_updates.updated_maps`).
    """
    f32 = xp.float32
    A = xp.broadcast_to(weights32[0][None, :, :], (n_samples,) + tuple(weights32[0].shape))
    pre = []
    for W, M in zip(weights32[1:], masks, strict=True):
        A = _single_left_matmul(W, xp.astype(M, f32)[:, :, None] * A, xp)
        pre.append(A)
    return (A, pre[:-1]) if pre_masks else A


def _single_left_matmul(W, A, xp):
    """``W @ A[b]`` for every b in single precision: per row on NumPy (see
    :func:`single_precision_map`), one GEMM elsewhere."""
    return xp.matmul(W, A) if _is_numpy(xp) else shared_left_matmul(W, A, xp)


def output_gradient(delta, weights, masks, xp, biases=()):
    """``A_S^T delta`` for every row: back-propagation of ``delta`` (B, n)
    through the layers on the supports ``masks``, in their precision.

    Dense ``weights`` run on an even number of rows (see :func:`_even_rows`);
    ``biases=None`` marks ``weights`` as bound layers
    (:func:`~skinvert.algorithms._network.masked_rmatvec`).
    """
    if biases is None:
        return masked_rmatvec(delta, weights, masks, xp)

    def back(D, *Ms):
        for W, M in zip(weights[:0:-1], Ms[::-1], strict=True):
            D = (D @ W) * M
        return D @ weights[0]

    return _even_rows(back, (delta, *masks), xp)


#: Mixed-precision steps are taken on rows whose ``J^T J`` (from the
#: single-precision map) has its smallest eigenvalue above this fraction of
#: its largest (``cond(J) < 316``): a step then solves the Gauss-Newton
#: system to about ``cond(J)^2 eps_32 < 1e-2`` relative, and the exact
#: gradient corrects that at the next step. Other rows take double precision.
#: (:func:`mixed_step_factors` and :func:`mixed_refinement` test the 1-norm
#: condition number of ``J^T J`` against its inverse, which bounds the
#: 2-norm one from above: :func:`~skinvert._linalg.gram_inverse`.)
MIXED_MIN_EIG = 1e-5
#: The polish's step tolerance on noisy signals (the hybrid with
#: ``noise_std``, Latent-Pursuit's noisy start): the noise puts the codes'
#: error at 1e-3..1e-2 of ||z||, far above rounding.
NOISY_TOL = 1e-6


def mixed_step_factors(A32, U, Y, obs, masks, weights, activation, xp, measurement=None,
                       measurement32=None, biases=(), coarse=None):
    """:func:`step_factors` with ``J^T J`` from a single-precision map.

    The Gauss-Newton system ``J^T J dz = J^T r`` takes its matrix from
    ``A_S`` in float32 (:func:`single_precision_map`: half the cost of
    the double-precision map, which is most of a polish step) and its
    right-hand side, the gradient ``J^T r``, in double precision by
    back-propagation (:func:`output_gradient`; ``biases=None``: bound
    layers, whose map comes from their float32 copies). The fixed points are
    those of the double-precision iteration (``J^T r = 0``); the matrix's
    error (``cond(J)^2 eps_32``, relative) only slows the convergence by
    that factor per step, as in mixed-precision iterative refinement.
    A ``measurement`` must be dense, ``measurement32`` its matrix in
    float32 (applied row by row, like the map).

    ``coarse`` (bool, (B,), or None): rows whose gradient may come from the
    single-precision map too, ``A_S^T delta`` in float32 (``n n_0``
    multiply-adds a row against the back-propagation's ``sum_i n_{i+1}
    n_i`` in double precision): for steps far from the fixed point, whose
    error the next steps correct (:data:`COARSE_STEP`).

    Returns
    -------
    factors
        :func:`~skinvert._linalg.normal_equation_factors`' ``(J^T J, J^T
        r)``: each step is one batched LU solve of the ``n_0 x n_0``
        systems, with the ridge of that step (an eigendecomposition of
        every ``J^T J``, reused across the ridges of rejected steps, cost
        12x an LU solve: 8-10 % of the hybrid's time on 512 noisy signals
        of a saturating tanh generator).
    scale
        As :func:`step_factors`.
    ok : bool array of shape (B,)
        The rows whose ``J^T J`` is well enough conditioned
        (:data:`MIXED_MIN_EIG`); the others need :func:`step_factors`.
    """
    dt, f32 = U.dtype, xp.float32
    d = activation.derivative(U, xp)
    if measurement is None:
        J = xp.astype(d * obs, f32)[:, :, None] * A32
    else:
        J = xp.astype(obs, f32)[:, :, None] * _single_left_matmul(
            measurement32, xp.astype(d, f32)[:, :, None] * A32, xp
        )
    delta = output_delta(U, Y, obs, activation, xp, measurement, d)
    gram = xp.astype(xp.matmul(xp.matrix_transpose(J), J), dt)
    if coarse is None or not bool(xp.any(coarse)):
        g = output_gradient(delta, weights, masks, xp, biases)
    else:
        g = xp.astype(rmatvec(A32, xp.astype(delta, f32), xp), dt)
        if not bool(xp.all(coarse)):
            fine = ~coarse
            idx = _compress_rows(fine, xp)
            g = _scatter_rows(g, output_gradient(xp.take(delta, idx, axis=0), weights,
                                                 [xp.take(m, idx, axis=0) for m in masks], xp,
                                                 biases), fine, xp)
    factors, ok = normal_equation_factors(gram, g, xp, max_cond=1.0 / MIXED_MIN_EIG)
    return factors, xp.max(xp.linalg.diagonal(gram), axis=1), ok


def output_delta(U, Y, obs, activation, xp, measurement=None, d=None):
    """The residual pulled back to the output pre-activation, ``J^T r`` before
    the map: ``phi'(u) * obs * (obs * (y - phi(u)))``, or through a
    ``measurement`` ``phi'(u) * A^T (obs * (y - A phi(u)))`` (``d``:
    ``phi'(u)`` when already computed). :func:`output_gradient` maps it to z."""
    if d is None:
        d = activation.derivative(U, xp)
    out = activation(U, xp)
    if measurement is None:
        return d * obs * (obs * (Y - out))
    return d * measurement.adjoint(obs * (Y - measurement.forward(out)))


def fixed_support_output(Z, weights, biases, masks, xp):
    """The output pre-activation ``A_S z + c_S`` on the fixed supports
    ``masks`` (dense layers), by the forward pass, on an even number of rows
    (:func:`_even_rows`)."""

    def forward(X, *Ms):
        x = X
        for W, b, M in zip(weights[:-1], biases[:-1], Ms, strict=True):
            x = M * (x @ W.T + b)
        return x @ weights[-1].T + biases[-1]

    return _even_rows(forward, (Z, *masks), xp)


def mixed_refinement(Z0, Y, obs, weights, biases, activation, masks, xp, *, max_steps=4):
    """Gauss-Newton on fixed supports, in mixed precision, from codes that already fit y.

    For the debiasing (Algorithm 1 on the estimated supports) of rows a
    pursuit recovered to about ``sqrt(eps)`` or better (noiseless signals:
    1e-12..1e-10), with a smooth phi (tanh, sigmoid) in double precision and
    dense layers. The Jacobian ``J`` of the output on the supports comes
    from the single-precision map (:func:`single_precision_map`; the
    double-precision map is most of Algorithm 1's cost), the residual ``r``
    from one double-precision forward pass. Each step solves ``J^T J dz =
    J^T r`` (``J^T J`` inverted once: its 1-norm condition number is the
    test of the rows taken, :func:`~skinvert._linalg.gram_inverse`, where an
    eigendecomposition of every row's ``J^T J`` took 3x as long: 21.7
    against 7.1 ms for 512 20 x 20 matrices), adds ``dz``
    to z and ``-J dz`` to ``r`` in double precision: mixed-precision
    iterative refinement, whose error
    shrinks by about ``cond(J)^2 eps_32`` per step (below 6e-3 on the rows
    taken, :data:`MIXED_MIN_EIG`). After the first step (the size of the
    pursuit's error) the residual is recomputed by a forward pass; the later
    steps are so small that the single-precision ``J`` moves ``r`` by
    ``eps_32 |J dz|``, below double rounding of y, and the linearization by
    ``O(|dz|^2)``: the steps reach the double-precision fixed point to
    rounding. A row stops when its step
    is at rounding (at most ``max_steps``).

    Returns
    -------
    Z : array of shape (B, n_0)
    ok : bool array of shape (B,)
        The rows taken (``J^T J`` well conditioned); the others keep ``Z0``.
    """
    f32, dt = xp.float32, Z0.dtype
    eps = float(xp.finfo(dt).eps)
    A32 = single_precision_map([xp.astype(W, f32) for W in weights], masks, xp,
                               n_samples=Z0.shape[0])
    U = fixed_support_output(Z0, weights, biases, masks, xp)
    r = obs * (Y - activation(U, xp))
    J = xp.astype(activation.derivative(U, xp) * obs, f32)[:, :, None] * A32
    gram = xp.astype(xp.matmul(xp.matrix_transpose(J), J), dt)
    inv, ok = gram_inverse(gram, xp, max_cond=1.0 / MIXED_MIN_EIG)
    inv = xp.where(ok[:, None, None], inv, xp.zeros_like(inv))
    Z, live = Z0, ok
    for step in range(max_steps):
        if step == 1:
            # The first step is the size of the pursuit's error (up to 1e-10
            # relative); its single-precision J dz would leave eps_32 of it
            # in r: the residual of its result is recomputed exactly.
            r = obs * (Y - activation(fixed_support_output(Z, weights, biases, masks, xp), xp))
        g = xp.astype(rmatvec(J, xp.astype(r, f32), xp), dt)
        dz = matvec(inv, g, xp) * xp.astype(live, dt)[:, None]
        Z = Z + dz
        r = r - xp.astype(matvec(J, xp.astype(dz, f32), xp), dt)
        live = live & (row_norm(dz, xp) > eps * row_norm(Z, xp))
        if not bool(xp.any(live)):
            break
    return Z, ok


def polish_batch(
    Z0, Y, obs, weights, biases, activation, xp, *, measurement=None, gamma=0.0,
    max_iter=50, tol=None, return_gram=False,
):
    """Fixed-support Gauss-Newton / Levenberg-Marquardt with support refresh, batched.

    Parameters
    ----------
    Z0 : array of shape (B, n_0)
        Starting codes (any estimate).
    Y : array of shape (B, m)
        Signals (m = n) or measurements, missing entries set to any finite value.
    obs : array of shape (B, m)
        1.0 on observed entries, 0.0 on missing ones.
    weights, biases : lists of arrays
        ``W_0..W_L`` and ``b_0..b_L`` in ``xp``.
    activation : Activation
        phi (identity, leaky-ReLU, PLU, tanh, sigmoid).
    measurement : Measurement or None
        ``y = A G(z)``: the residual and the Jacobian go through ``A``.
    gamma : float, default=0.0
        Ridge weight on z (eq. 16's prior).
    max_iter : int, default=50
        Gauss-Newton steps (each with a support refresh) per row.
    tol : float or None
        A row stops when its step is below ``tol * (1 + ||z||)`` on a support
        fixed point. None: ``sqrt(eps)``, and a mixed-precision row (below)
        steps on while its steps contract, down to rounding (noiseless codes
        exact); a given ``tol`` stops it there (e.g. 1e-6 where noise
        limits the accuracy far above rounding: the hybrid with
        ``noise_std``).
    return_gram : bool, default=False
        Also return each row's ``J^T J`` (below).

    Returns
    -------
    Z : array of shape (B, n_0)
    loss : array of shape (B,)
        The loss of eq. 1 at ``Z`` (never above that of ``Z0``).
    n_iter : array of shape (B,)
        Steps taken per row.
    fixed_point : bool array of shape (B,)
        The supports of ``Z`` are those its last step was computed on and the
        row stopped (step below ``tol``, zero loss or no further decrease).
    gram : array of shape (B, n_0, n_0)
        With ``return_gram``: ``J^T J`` of the last step of the rows that
        reached a fixed point (its supports are those of ``Z``; ``z`` moved
        by at most ``tol (1 + ||z||)`` since), NaN on the others. (The
        hybrid's boundary search takes it as the covariance of the
        estimate instead of rebuilding every row's map.)

    Notes
    -----
    At ``z`` with supports ``S = S(z)`` the output is ``A phi(A_S z + c_S)``;
    the step solves
    ``min_dz ||J dz - r||^2 + (gamma + mu) ||z + dz||^2``
    with ``J = diag(obs) A diag(phi'(u)) A_S``, ``r = obs * (y - A phi(u))``
    (:func:`~skinvert._linalg.batched_lstsq`, SVD based, so rank-deficient
    rows get the minimum-norm step). ``mu`` starts at 0 (a pure Gauss-Newton
    step: exact for a piecewise-linear phi on the right support region, in
    double precision; see below for the mixed-precision steps) and
    is multiplied by 10 after a step the real loss rejects, by 0.1 after an
    accepted one, so each row's loss decreases monotonically. Rows are
    independent: a row's iterates do not depend on the rest of the batch.

    After a rejected step, ``mu`` is a ridge on the new point ``z + dz``,
    not a Levenberg-Marquardt damping of the step (``mu ||dz||^2``, as in
    the Oracle's Algorithm 1): the trial points run along the ridge path
    from the Gauss-Newton point towards the prior mean ``z = 0``, and are
    rarely accepted, so a row whose Gauss-Newton step leaves its region for
    a worse one mostly stops there and the hybrid moves on to its next
    start. The damping was measured worse here: damped steps crawl across
    support regions (compressed sensing, tanh ``fashion-mnist-fc``, m = 40,
    128 signals, two draws of ``A``: the hybrid took 1.5-1.6x the time,
    99.2 / 97.7 % exact against 97.7 / 98.4 %; in the second draw 230 of
    383 polishes ran all 50 steps), and on 512 noisy signals of a saturating tanh generator (4
    draws x noise 1e-3, 1e-2) they left one row 5x the Oracle's error in 2
    of 8 runs, by reaching a wrong support region that fits the noise (none
    with the ridge path).

    In double precision (and with a dense measurement, if any), the steps
    are mixed-precision (:func:`mixed_step_factors`): ``J^T J`` comes
    from the map ``A_S`` built in single precision (dense layers: row by
    row, :func:`single_precision_map`; bound layers: through their float32
    copies), and the gradient ``J^T r`` in double precision by
    back-propagation (:func:`output_gradient`). The fixed
    points, where that gradient vanishes, are the double-precision ones:
    the single-precision matrix only multiplies each step's error by
    ``cond(J)^2 eps_32`` (rows with ``cond(J) >= 316`` take double
    precision), and below ``tol`` a row steps on while its steps still
    contract, so noiseless codes are recovered to rounding. This holds for
    a piecewise-linear phi too: one double-precision step lands on the
    fixed-support minimum, a mixed-precision one within ``cond(J)^2
    eps_32`` of it and the next steps on rounding, while the steps that
    cross support regions, most of a polish from a rough start, cost half
    (512 signals of ``fashion-mnist-fc`` at noise 1e-2, the polish of the
    hybrid's linear start: 1.61-1.82 s -> 1.13-1.24 s, 8.4 -> 9.3 steps per
    row, the same loss to 7 digits; 128 clean signals without the pursuit
    start, and through 150 Gaussian measurements: every row exact, largest
    relative error 8.4e-16 -> 1.1e-15 and 6.1e-13 -> 1.8e-15). Measured on 512 noisy signals of a
    saturating tanh generator (the hybrid, paired runs, 2 draws x 2 noise
    levels): the hybrid took 0.76-0.89 of its time, with the same errors
    to the printed digits (11.8 steps of the winning polish per row against
    11.0); on the convolutional ``fashion-mnist-dcgan`` (64 signals at
    noise 1e-2) 0.60-0.61, the same RMS error.
    """
    kw = {"measurement": measurement, "gamma": gamma, "max_iter": max_iter, "tol": tol,
          "return_gram": return_gram}
    # Blocks of rows: the (rows, m, n_0) Jacobians (host_block_rows).
    m = max(Y.shape[1], weights[-1].shape[0])
    rows = host_block_rows(xp, Z0.dtype, m * Z0.shape[1])
    parts = [
        _polish_block(
            Z0[sl, ...], Y[sl, ...], obs[sl, ...], weights, biases, activation, xp, **kw
        )
        for sl in row_blocks(Z0.shape[0], rows)
    ]
    return concat_blocks(parts, xp)


def _polish_block(
    Z0, Y, obs, weights, biases, activation, xp, *, measurement, gamma, max_iter, tol,
    return_gram,
):
    """:func:`polish_batch` on one block of rows."""
    B = Z0.shape[0]
    dt = Z0.dtype
    dev = device(Z0)
    eps = float(xp.finfo(dt).eps)
    # The default tol: below sqrt(eps), mixed-precision rows step on to
    # rounding (noiseless codes exact); a given tol is where rows stop.
    to_rounding = tol is None
    if tol is None:
        tol = eps**0.5
    kw = {"measurement": measurement, "gamma": gamma}
    net = (weights, biases, activation, xp)
    Z = Z0
    loss, U, masks = forward_loss(Z, Y, obs, *net, **kw)
    mu = xp.zeros((B,), dtype=dt, device=dev)
    prev = xp.full((B,), float("inf"), dtype=dt, device=dev)  # last step's norm
    # The last accepted step was long (COARSE_STEP): the next gradient may be
    # single precision. True at the start (the step from Z0).
    far = xp.ones((B,), dtype=xp.bool, device=dev)
    done = ~xp.isfinite(loss)
    fixed = xp.zeros((B,), dtype=xp.bool, device=dev)
    n_iter = xp.zeros((B,), dtype=xp.int32, device=dev)
    cache = None  # _StepCache of the rows live in the previous step
    n0 = Z0.shape[1]
    gram = None
    if return_gram:
        gram = xp.full((B, n0, n0), float("nan"), dtype=dt, device=dev)
    # Mixed precision (mixed_step_factors): double precision, dense or bound
    # layers, and a dense measurement if any.
    low = None
    dense_meas = measurement is None or getattr(measurement, "A", None) is not None
    if dt == xp.float64 and dense_meas:
        f32 = xp.float32
        if biases is None:  # bound layers: their float32 copies
            low32 = [layer.to_namespace(xp, dtype=f32, device=layer.device) for layer in weights]
        else:
            low32 = [xp.astype(W, f32) for W in weights]
        low = (low32, None if measurement is None else xp.astype(measurement.A, f32))
    for _ in range(max_iter):
        live = ~done
        n_live = int(xp.sum(xp.astype(live, xp.int32)))
        if n_live == 0:
            break
        if n_live < B:
            sub = _compress_rows(live, xp)
            Z_, Y_, o_, U_, l_, mu_, prev_, far_ = (
                xp.take(a, sub, axis=0) for a in (Z, Y, obs, U, loss, mu, prev, far)
            )
            m_ = [xp.take(m, sub, axis=0) for m in masks]
        else:
            Z_, Y_, o_, U_, l_, mu_, prev_, far_, m_ = Z, Y, obs, U, loss, mu, prev, far, masks
        cache = _StepCache.update(cache, live, m_, U_, Y_, o_, net, measurement, low, far_)
        dZ = lstsq_solve(cache.factors, xp, ridge=gamma + mu_, z=Z_)
        Zn = Z_ + dZ
        ln, Un, mn = forward_loss(Zn, Y_, o_, *net, **kw)
        ok = (ln <= l_) & xp.isfinite(ln)
        same = xp.ones_like(ok)
        for a, b in zip(m_, mn):
            same = same & xp.all(a == b, axis=1)
        dn, zn = row_norm(dZ, xp), 1.0 + row_norm(Z_, xp)
        small = dn <= tol * zn
        small = small & ~cache.coarse  # never stop on a single-precision gradient
        if cache.low is not None and to_rounding:
            # A mixed-precision step leaves up to cond(J)^2 eps_32 of the
            # error, not the rounding of a Gauss-Newton step: below tol, a
            # row goes on while its accepted steps still contract (iterative
            # refinement), down to rounding; a rejected one that small has
            # reached the loss's rounding.
            small = small & (~ok | (dn <= 4.0 * eps * zn) | (dn >= 0.5 * prev_))
            prev_ = dn
        stalled = ok & (l_ - ln <= 4.0 * eps * l_)
        # Stop: a step below tol that keeps the supports (accepted or not:
        # more damping only shrinks it), no more decrease, or a zero loss.
        # A row whose ridge has grown past any useful step (MAX_RIDGE) is
        # stuck in a local minimum of the real loss: it stops too (not a
        # fixed point).
        scale = cache.scale
        # A rejected step on a single-precision gradient is retried at the
        # same point (same map, same ridge) with the double-precision one.
        again = ~ok & cache.coarse
        stuck = ~ok & ~again & (mu_ > 0.5 * MAX_RIDGE * scale)  # (0.5: the trial's rounding)
        stop = (small & same) | stalled | ((ln == 0) & ok) | stuck
        okc = ok[:, None]
        Z_ = xp.where(okc, Zn, Z_)
        U_ = xp.where(okc, Un, U_)
        # An accepted step moves z (new Jacobian); one that also keeps the
        # supports keeps A_S. A rejected one only raises the damping.
        cache.moved(ok | again, (ok & same) | again)
        m_ = [xp.where(okc, b, a) for a, b in zip(m_, mn)]
        l_ = xp.where(ok, ln, l_)
        far_ = ok & (dn > COARSE_STEP * zn)
        mu_ = xp.where(ok, 0.1 * mu_,
                       xp.where(again, mu_, xp.maximum(10.0 * mu_, 1e-6 * scale + eps)))
        Z = _scatter_rows(Z, Z_, live, xp)
        U = _scatter_rows(U, U_, live, xp)
        masks = [_scatter_rows(a, b, live, xp) for a, b in zip(masks, m_)]
        loss = _scatter_rows(loss, l_, live, xp)
        mu = _scatter_rows(mu, mu_, live, xp)
        prev = _scatter_rows(prev, prev_, live, xp)
        far = _scatter_rows(far, far_, live, xp)
        n_iter = n_iter + xp.astype(live, xp.int32)
        settled = stop & same & ~stuck  # (the live rows at a fixed point)
        at_fixed = _scatter_rows(fixed, settled, live, xp)  # (B,)
        if gram is not None and bool(xp.any(settled)):
            sel = _compress_rows(settled, xp)
            part = factors_gram(tuple(xp.take(f, sel, axis=0) for f in cache.factors), xp)
            gram = _scatter_rows(gram, part, at_fixed & ~fixed, xp)
        fixed = fixed | at_fixed
        done = done | _scatter_rows(done, stop, live, xp)
    if gram is not None:
        return Z, loss, n_iter, fixed & done, gram
    return Z, loss, n_iter, fixed & done


#: A row whose last accepted step was longer than this, relative to ``1 +
#: ||z||``, takes its next gradient in single precision
#: (:func:`mixed_step_factors`' ``coarse``): the step is then far from the
#: fixed point, and its error (the single-precision gradient's, about that
#: of the single-precision ``J^T J`` the step already has) is corrected by
#: the next steps, which take the double-precision gradient as they get
#: short; a row never stops on a coarse step. Measured on the hybrid (512
#: noisy signals of a saturating tanh generator at 1e-2): 799 of its 4266
#: row factorizations took the double-precision gradient, the transform
#: 0.90x its time (paired), the same errors.
COARSE_STEP = 1e-3

#: A row whose step on the ridge path with ``mu`` at this multiple of the
#: scale of ``J^T J`` (its largest diagonal entry) is rejected stops (stuck).
#: The trials run ``mu = 0, 1e-6, 1e-5, ..., 1`` times the scale. Measured
#: on the hybrid (512 noisy signals of a saturating tanh generator at 1e-3
#: and 1e-2, 512 of ``fashion-mnist-fc`` at 1e-2, 128 noiseless signals of
#: each): a step after rejections was accepted at most at ``mu = 0.1``
#: times the scale, never beyond; the bound was ``1e10`` (17 trials, the
#: last nine of them only rejected, each an iteration of the batch).
MAX_RIDGE = 1.0


class _StepCache:
    """What :func:`polish_batch` keeps between steps for its live rows.

    The affine map ``A_S`` of each row (rebuilt only where an accepted step
    changed the supports: it is most of a step's cost; dense
    single-precision maps are updated instead by low-rank terms for the
    flipped units, :func:`~skinvert.algorithms._map_updates.updated_maps`,
    where that costs less than half a rebuild) and the factors of
    its step (:func:`step_factors`; rebuilt only where an accepted step
    moved z: a rejected Levenberg-Marquardt step changes only the damping).

    With ``low`` (the weights, or bound layers, and the dense measurement's
    matrix in float32, for a double-precision polish) the maps are kept in
    single precision and the factors are :func:`mixed_step_factors`. The
    rows whose ``J^T J`` is too ill-conditioned for that (``exact``: from
    the start those with fewer observed equations than unknowns, then every
    row that failed once) take :func:`step_factors` of their
    double-precision map, and no single-precision map is built for them; a
    block where every row has too few equations (fewer measurements than
    unknowns) is polished in double precision.
    """

    def __init__(self, live, A_S, factors, scale, xp, low=None, exact=None, pre=None,
                 masks=None):
        self.live, self.A_S, self.factors, self.scale = live, A_S, factors, scale
        self.low, self.exact = low, exact
        # Dense single-precision maps: the pre-mask maps and the supports
        # they were built on, for their low-rank updates (updated_maps).
        self.pre, self.masks = pre, masks
        self.low_t = None  # the float32 weights transposed (updated_maps)
        self.coarse = None  # rows whose factors have a single-precision gradient
        n = scale.shape[0]
        self.A_ok = xp.ones((n,), dtype=xp.bool, device=device(scale))
        self.f_ok = xp.ones_like(self.A_ok)

    def moved(self, moved, same_supports):
        """Rows whose accepted step moved z (``moved``), keeping their supports or not."""
        self.f_ok = ~moved
        self.A_ok = ~moved | same_supports

    @staticmethod
    def _build(weights, biases, masks, xp, low, n_samples, exact=None):
        """``(maps, pre)``: the maps of ``n_samples`` rows with supports
        ``masks`` (single precision with ``low``; zero on the rows ``exact``,
        which never use theirs) and, for dense single-precision maps, the
        pre-mask maps of :func:`single_precision_map` (None otherwise)."""
        if low is None:
            return affine_map(weights, biases, masks, xp, n_samples=n_samples)[0], None
        if exact is not None and bool(xp.any(exact)):
            mixed = ~exact
            n_mixed = int(xp.sum(xp.astype(mixed, xp.int32)))
            part, pre = None, None
            if n_mixed:
                idx = _compress_rows(mixed, xp)
                part, pre = _StepCache._build(weights, biases,
                                              [xp.take(m, idx, axis=0) for m in masks], xp, low,
                                              n_mixed)
            first = low[0][0]
            dev = first.device if biases is None else device(first)
            n0 = weights[0].shape[1]

            def on_mixed_rows(a, n):  # (n_samples, n, n_0), zero on the rows exact
                full = xp.zeros((n_samples, n, n0), dtype=xp.float32, device=dev)
                return full if a is None else _scatter_rows(full, a, mixed, xp)

            if biases is not None:  # dense: the pre-mask maps of layers 2..L too
                pre = [on_mixed_rows(u, W.shape[1])
                       for W, u in zip(weights[2:], pre or [None] * (len(weights) - 2))]
            return on_mixed_rows(part, weights[-1].shape[0]), pre
        if biases is None:
            masks32 = [xp.astype(m, xp.float32) for m in masks]
            return affine_map(low[0], None, masks32, xp, n_samples=n_samples)[0], None
        return single_precision_map(low[0], masks, xp, n_samples=n_samples, pre_masks=True)

    @staticmethod
    def _factor(A_S, U, Y, obs, masks, net, measurement, low, coarse=None):
        """``(factors, scale, exact)`` of rows with maps ``A_S`` (see
        :meth:`_build`); ``exact`` marks the rows that took double precision
        (None without ``low``). ``coarse``: rows whose mixed-precision
        gradient may be single precision (:func:`mixed_step_factors`)."""
        weights, biases, activation, xp = net
        if low is None:
            return (*step_factors(A_S, U, Y, obs, activation, xp, measurement), None)
        (gram, g), scale, ok = mixed_step_factors(A_S, U, Y, obs, masks, weights, activation,
                                                  xp, measurement, low[1], biases, coarse)
        # The normal equations of the rows `ok`, the SVD factors
        # (step_factors) of the others: mixed_factors.
        bad = ~ok
        if not bool(xp.any(bad)):
            return mixed_factors(gram, g, ok, xp), scale, bad
        idx = _compress_rows(bad, xp)
        sub = [xp.take(m, idx, axis=0) for m in masks]
        A64, _ = affine_map(weights, biases, sub, xp, n_samples=idx.shape[0])
        exact, exact_scale = step_factors(
            A64, *(xp.take(a, idx, axis=0) for a in (U, Y, obs)), activation, xp, measurement
        )
        return (mixed_factors(gram, g, ok, xp, exact),
                _scatter_rows(scale, exact_scale, bad, xp), bad)

    @classmethod
    def update(cls, cache, live, masks, U, Y, obs, net, measurement, low=None, coarse=None):
        """The cache for the rows ``live`` (a mask over the batch; ``masks``,
        ``U``, ``Y``, ``obs`` are theirs), rebuilt where stale; ``coarse``
        (theirs too): rows that may take a single-precision gradient
        (kept as ``cache.coarse`` for the rows refactored, with their
        factors)."""
        weights, biases, activation, xp = net
        n = U.shape[0]
        if cache is None:
            exact = None
            if low is not None:  # fewer equations than unknowns: J is rank-deficient
                n_eq = xp.sum(xp.astype(obs > 0, xp.int32), axis=1)
                exact = n_eq < weights[0].shape[1]
                if bool(xp.all(exact)):  # e.g. fewer measurements than unknowns
                    low, exact = None, None
            A_S, pre = cls._build(weights, biases, masks, xp, low, n, exact)
            if low is None:
                coarse = None
            factors, scale, bad = cls._factor(A_S, U, Y, obs, masks, net, measurement, low,
                                              coarse)
            new = cls(live, A_S, factors, scale, xp, low, None if bad is None else exact | bad,
                      pre, None if pre is None else masks)
            new.coarse = (xp.zeros((n,), dtype=xp.bool, device=device(U)) if coarse is None
                          else coarse & ~bad)
            return new
        if n < cache.scale.shape[0]:  # rows finished: drop them from the cache
            keep = _compress_rows(xp.take(live, _compress_rows(cache.live, xp), axis=0), xp)
            cache.A_S = xp.take(cache.A_S, keep, axis=0)
            cache.factors = tuple(xp.take(f, keep, axis=0) for f in cache.factors)
            cache.scale, cache.A_ok, cache.f_ok, cache.coarse = (
                xp.take(a, keep, axis=0)
                for a in (cache.scale, cache.A_ok, cache.f_ok, cache.coarse)
            )
            if cache.exact is not None:
                cache.exact = xp.take(cache.exact, keep, axis=0)
            if cache.pre is not None:
                cache.pre = [xp.take(u, keep, axis=0) for u in cache.pre]
                cache.masks = [xp.take(m, keep, axis=0) for m in cache.masks]
        cache.live = live
        if bool(xp.all(cache.f_ok)):
            return cache
        stale = ~cache.f_ok
        rows = _compress_rows(stale, xp)
        new_A = ~cache.A_ok
        if bool(xp.any(new_A)):
            idx = _compress_rows(new_A, xp)
            on = [xp.take(m, idx, axis=0) for m in masks]
            if cache.pre is not None:
                # Dense single-precision maps: low-rank updates by the flips.
                def rebuild(sub):
                    return cls._build(weights, biases, sub, xp, cache.low, sub[0].shape[0])

                if cache.low_t is None:
                    cache.low_t = transposed(cache.low[0], xp)
                cache.A_S, cache.pre = updated_maps(
                    cache.A_S, cache.pre, idx, [xp.take(m, idx, axis=0) for m in cache.masks], on,
                    cache.low[0], xp, rebuild, cache.low_t,
                )
                cache.masks = masks
            else:
                fresh, _ = cls._build(
                    weights, biases, on, xp, cache.low, idx.shape[0],
                    None if cache.exact is None else xp.take(cache.exact, idx, axis=0),
                )
                cache.A_S = _scatter_rows(cache.A_S, fresh, new_A, xp)
        sub = [xp.take(a, rows, axis=0) for a in (cache.A_S, U, Y, obs)]
        co = None if coarse is None or cache.low is None else xp.take(coarse, rows, axis=0)
        factors, scale, bad = cls._factor(*sub, [xp.take(m, rows, axis=0) for m in masks], net,
                                          measurement, cache.low, co)
        cache.coarse = _scatter_rows(
            cache.coarse, xp.zeros_like(stale) if co is None else co & ~bad, stale, xp
        )
        cache.factors = tuple(
            _scatter_rows(old, f, stale, xp) for old, f in zip(cache.factors, factors)
        )
        cache.scale = _scatter_rows(cache.scale, scale, stale, xp)
        if bad is not None:
            cache.exact = cache.exact | _scatter_rows(xp.zeros_like(stale), bad, stale, xp)
        cache.A_ok = xp.ones_like(cache.A_ok)
        cache.f_ok = xp.ones_like(cache.f_ok)
        return cache
