"""The paper's first-order solvers, as written: ``solver="paper"``.

- Algorithm 3: FISTA on eq. 8 through phi, for the image layer;
- Algorithm 4: linearized ADMM (eqs. 13-15) on eq. 9, for the middle layers;
- eq. 18: the same iteration with the ridge ``gamma`` for z (eq. 16);
- for Layered BP (Algorithm 2): FISTA on each lasso, least squares for z.

Every stage runs at most ``max_iter`` iterations; rows whose relative step
falls below ``tol`` stop. Supports are decided with ``support_tol`` (an
entry is in the support when it exceeds ``support_tol`` times the largest
entry of its layer), then the debiasing of Algorithm 5 runs as in the exact
path.
"""

from .._array_api import device
from .._linalg import row_norm
from .oracle import inverse_target
from .sparse_coding import fista, masked_gram_solve

__all__ = ["paper_pursuit"]


def _lmax(W, xp):
    return float(xp.max(xp.linalg.eigvalsh(W.T @ W)))


def _max_slope(activation):
    if activation.name == "leaky_relu":
        return max(1.0, activation.slope)
    if activation.name == "plu":
        return max(1.0, activation.slope)
    return 1.0


def _lam_col(lam):
    return lam if isinstance(lam, (int, float)) else lam[:, None]


def fista_image_layer(Y, obs, W, b, activation, lam, xp, *, max_iter, tol):
    """Algorithm 3: ``min 1/2 ||obs (y - phi(W x + b))||^2 + lam 1^T x``, ``x >= 0``.

    Step ``mu = 1 / (lambda_max(W^T W) max phi'^2)``, inside the range
    ``(0, 2 / ell)`` the algorithm requires for phi with ``|phi''| (phi - y)``
    small; each row stops when its step is below ``tol (1 + ||x||)``.
    """
    B, k = Y.shape[0], W.shape[1]
    mu = 1.0 / (_lmax(W, xp) * _max_slope(activation) ** 2)
    x = xp.zeros((B, k), dtype=Y.dtype, device=device(Y))
    u_prev = x
    t = 1.0
    lam_c = _lam_col(lam)
    done = xp.zeros((B,), dtype=xp.bool, device=device(Y))
    for _ in range(max_iter):
        pre = x @ W.T + b
        g = (obs * (activation(pre, xp) - Y) * activation.derivative(pre, xp)) @ W
        u = xp.clip(x - mu * (g + lam_c), min=0.0)
        u = xp.where(done[:, None], u_prev, u)
        t_new = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
        x = u + ((t - 1.0) / t_new) * (u - u_prev)
        done = done | (row_norm(u - u_prev, xp) <= tol * (1.0 + row_norm(u_prev, xp)))
        u_prev, t = u, t_new
        if bool(xp.all(done)):
            break
    return u_prev, done


def linearized_admm(W, b, target, rows, lam, rho, xp, *, gamma=None, max_iter, tol):
    """Algorithm 4 (eqs. 13-15), or with ``gamma`` the z-step of eq. 18.

    Solves eq. 9, ``min 1/2 ||x_{i+1}^S - W^S x - b^S||^2 + lam 1^T x`` subject
    to ``x >= 0`` and ``W^{S^c} x + b^{S^c} <= 0`` (``rows`` = 1 on S), with the
    auxiliary ``a = W^{S^c} x + b^{S^c}``, multiplier ``u`` and
    ``alpha + beta = lambda_max(W^T W) max(1, rho)`` (a bound of eq. 12).
    With ``gamma`` (z-step, eq. 16) the x-update is eq. 18 (no sign
    constraint, no l1 term).
    """
    B, k = target.shape[0], W.shape[1]
    ab = _lmax(W, xp) * max(1.0, rho)
    off = 1.0 - rows
    x = xp.zeros((B, k), dtype=target.dtype, device=device(target))
    a = xp.zeros_like(target)
    u = xp.zeros_like(target)
    lam_c = _lam_col(lam)
    done = xp.zeros((B,), dtype=xp.bool, device=device(target))
    for _ in range(max_iter):
        Wx = x @ W.T + b
        grad = (rows * (Wx - target)) @ W + rho * ((off * (Wx - a - u)) @ W)
        if gamma is None:
            x_new = xp.clip(x - (grad + lam_c) / ab, min=0.0)
        else:
            x_new = (ab * x - grad) / (ab + gamma)
        x_new = xp.where(done[:, None], x, x_new)
        Wx = x_new @ W.T + b
        a = off * (-xp.clip(u - Wx, min=0.0))
        u = off * (u + a - Wx)
        done = done | (row_norm(x_new - x, xp) <= tol * (1.0 + row_norm(x, xp)))
        x = x_new
        if bool(xp.all(done)):
            break
    return x, done


def paper_pursuit(Y, obs, weights, biases, activation, xp, opts):
    """Latent-Pursuit / Layered BP with the paper's first-order solvers."""
    from .latent_pursuit import PursuitResult, _debias, _lam, _support

    res = PursuitResult()
    L = len(weights) - 1
    dt = Y.dtype
    it = {"max_iter": opts.max_iter, "tol": opts.tol}
    if opts.nonneg:
        if L == 0:
            U, rows = inverse_target(Y, obs, activation, xp)
            z, conv = linearized_admm(
                weights[0], biases[0], U, rows, 0.0, 0.0, xp,
                gamma=opts.gamma, **it,
            )
            res.count("z (linearized ADMM)", conv, xp)
            res.z = z
            return _debias(res, Y, obs, weights, biases, activation, xp, opts)
        x, conv = fista_image_layer(
            Y, obs, weights[L], biases[L], activation, _lam(opts, L - 1), xp, **it
        )
        res.count(f"layer {L} (FISTA)", conv, xp)
    else:
        U, w = inverse_target(Y, obs, activation, xp)
        W, b = weights[L], biases[L]
        G = W.T @ (w[:, :, None] * W)
        r = (w * (U - b)) @ W
        x0 = xp.zeros((Y.shape[0], W.shape[1]), dtype=dt, device=device(Y))
        x, _, conv = fista(
            G, r, _lam(opts, L - 1) if L else 0.0, x0, xp, nonneg=False,
            lipschitz=_lmax(W, xp), **it,
        )
        res.count(f"layer {L} (FISTA)", conv, xp)
    hidden = [x]
    S = _support(x, opts.support_tol, xp, opts.nonneg)
    supports = [S]
    for i in range(L - 1, -1, -1):
        rows = xp.astype(S, dt)
        W, b = weights[i], biases[i]
        target = hidden[0] * rows
        if opts.nonneg:
            rho = opts.rho[min(i, len(opts.rho) - 1)]
            lam = 0.0 if i == 0 else _lam(opts, i - 1)
            x, conv = linearized_admm(
                W, b, target, rows, lam, rho, xp, gamma=opts.gamma if i == 0 else None, **it
            )
            res.count("z (eq. 18)" if i == 0 else f"layer {i} (linearized ADMM)", conv, xp)
        elif i == 0:
            ones = xp.ones((target.shape[0], W.shape[1]), dtype=dt, device=device(target))
            G = W.T @ (rows[:, :, None] * W)
            x = masked_gram_solve(G, (rows * (target - b)) @ W, ones, xp)
        else:
            G = W.T @ (rows[:, :, None] * W)
            r = (rows * (target - b)) @ W
            x0 = xp.zeros((target.shape[0], W.shape[1]), dtype=dt, device=device(target))
            x, _, conv = fista(
                G, r, _lam(opts, i - 1), x0, xp, nonneg=False, lipschitz=_lmax(W, xp), **it
            )
            res.count(f"layer {i} (FISTA)", conv, xp)
        if i == 0:
            res.z = x
            break
        hidden.insert(0, x)
        S = _support(x, opts.support_tol, xp, opts.nonneg)
        supports.insert(0, S)
    res.hidden, res.supports = hidden, supports
    return _debias(res, Y, obs, weights, biases, activation, xp, opts)
