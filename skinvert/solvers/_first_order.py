"""The paper's first-order solvers, as written (``solver="paper"``).

- :class:`FISTA`: Algorithm 3 on eq. 8 through phi for the image layer of
  Latent-Pursuit, and FISTA in Gram form on every lasso of Layered BP
  (Algorithm 2); Algorithm 2's final least squares is solved directly.
- :class:`LinearizedADMM`: Algorithm 4 (eqs. 9-15) on the middle layers of
  Latent-Pursuit, and eq. 18 (with the ridge ``gamma`` of eq. 16) for ``z``.

Every solve runs at most ``max_iter`` iterations; a row stops when its step
falls below ``tol (1 + ||x||)``. Supports are then decided by the driver with
``support_tol``, as for any solver.
"""

from numbers import Real

from .._array_api import device
from .._linalg import row_norm
from ._base import BaseLayerSolver, n_false
from ._lam import lam_col
from ._quadratic import fista, masked_gram_solve

__all__ = ["FISTA", "LinearizedADMM"]


def _max_slope(activation):
    if activation.name in ("leaky_relu", "plu"):
        return max(1.0, activation.slope)
    return 1.0


class FISTA(BaseLayerSolver):
    """FISTA (Beck & Teboulle 2009): the paper's Algorithm 3.

    On the image layer of Latent-Pursuit it minimises eq. 8 through phi,
    ``1/2 ||obs (y - phi(W x + b))||^2 + lam 1^T x`` over ``x >= 0``, with
    the step ``mu = 1 / (lambda_max(W^T W) max phi'^2)`` (inside the range
    ``(0, 2 / ell)`` Algorithm 3 requires). On the signed lassos of
    Algorithm 2 it runs in Gram form on ``phi^-1(y)`` (image layer) or on the
    rows ``S_{i+1}`` of the layer above; Algorithm 2's final least squares
    on ``z`` (no l1 term) is solved directly. It does not handle eq. 9's
    inequality constraints (use :class:`LinearizedADMM` or
    :class:`ActiveSet` there).

    Parameters
    ----------
    max_iter : int, default=1000
        Iterations per layer.
    tol : float, default=1e-10
        A row stops when its step is below ``tol (1 + ||x||)``.
    """

    handles_constraints = False

    def __init__(self, max_iter=1000, *, tol=1e-10):
        self.max_iter = max_iter
        self.tol = tol

    def label(self, p):
        return f"{p.name} (FISTA)"

    def _solve(self, p):
        xp = p.xp
        if p.kind == "image" and p.nonneg:
            x, conv = self._through_phi(p)
            return x, n_false(conv, xp)
        rows = p.rows
        if rows is None:
            rows = xp.ones_like(p.target)
        W = p.W
        G = W.T @ (rows[:, :, None] * W)
        r = (rows * (p.target - p.b)) @ W
        if p.ridge:
            G = G + p.ridge * xp.eye(W.shape[1], dtype=W.dtype, device=device(W))
        if p.kind == "latent" and not p.nonneg and p.lam == 0.0:
            # Algorithm 2's last step: a least squares, solved directly.
            ones = xp.ones((p.target.shape[0], W.shape[1]), dtype=W.dtype, device=device(W))
            return masked_gram_solve(G, r, ones, xp), 0
        x0 = xp.zeros(
            (p.target.shape[0], W.shape[1]), dtype=p.target.dtype, device=device(p.target)
        )
        x, _, conv = fista(
            G,
            r,
            p.lam,
            x0,
            xp,
            nonneg=p.nonneg,
            lipschitz=p.lipschitz + p.ridge,
            max_iter=self.max_iter,
            tol=self.tol,
        )
        return x, n_false(conv, xp)

    def _through_phi(self, p):
        """Algorithm 3: ``min 1/2 ||obs (y - phi(W x + b))||^2 + lam 1^T x``, ``x >= 0``."""
        xp, Y, obs, W, b, act = p.xp, p.Y, p.obs, p.W, p.b, p.activation
        B, k = Y.shape[0], W.shape[1]
        mu = 1.0 / (p.lipschitz * _max_slope(act) ** 2)
        x = xp.zeros((B, k), dtype=Y.dtype, device=device(Y))
        u_prev = x
        t = 1.0
        lam_c = lam_col(p.lam)
        done = xp.zeros((B,), dtype=xp.bool, device=device(Y))
        for _ in range(self.max_iter):
            pre = x @ W.T + b
            g = (obs * (act(pre, xp) - Y) * act.derivative(pre, xp)) @ W
            u = xp.clip(x - mu * (g + lam_c), min=0.0)
            u = xp.where(done[:, None], u_prev, u)
            t_new = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
            x = u + ((t - 1.0) / t_new) * (u - u_prev)
            done = done | (row_norm(u - u_prev, xp) <= self.tol * (1.0 + row_norm(u_prev, xp)))
            u_prev, t = u, t_new
            if bool(xp.all(done)):
                break
        return u_prev, done


class LinearizedADMM(BaseLayerSolver):
    """Linearized ADMM: the paper's Algorithm 4 (eqs. 9-15) and eq. 18.

    Solves eq. 9, ``min 1/2 ||x_{i+1}^S - W^S x - b^S||^2 + lam 1^T x``
    subject to ``x >= 0`` and ``W^{S^c} x + b^{S^c} <= 0``, with the
    auxiliary ``a = W^{S^c} x + b^{S^c}`` (eq. 10), the multiplier ``u`` and
    the step ``alpha + beta = lambda_max(W^T W) max(1, rho)`` (a bound of
    eq. 12): the x-update of eq. 13, the a-update of eq. 14 and the dual
    update of eq. 15. For ``z`` (eq. 16, no sign constraint, no l1 term,
    ridge ``gamma``) the x-update is eq. 18.

    Parameters
    ----------
    rho : float or sequence of float, default=1e-2
        ADMM penalty ``rho``; a sequence gives one per constrained unknown,
        ``rho[0]`` for ``z`` and ``rho[i]`` for ``x_i`` (the last value
        repeats).
    max_iter : int, default=1000
        Iterations per layer.
    tol : float, default=1e-10
        A row stops when its step is below ``tol (1 + ||x||)``.
    """

    handles_signed = True
    kinds = ("hidden", "latent")

    def __init__(self, rho=1e-2, *, max_iter=1000, tol=1e-10):
        self.rho = rho
        self.max_iter = max_iter
        self.tol = tol

    def _check(self, p):
        super()._check(p)
        if not p.nonneg and p.lam != 0.0:
            raise ValueError(
                "LinearizedADMM solves eq. 9 (x >= 0) and eq. 18 (z); it does not handle "
                f"Algorithm 2's signed lasso ({p.name}); use FISTA or ActiveSet."
            )

    def label(self, p):
        if p.kind == "latent":
            return "z (eq. 18)" if p.constraints else "z (linearized ADMM)"
        return f"{p.name} (linearized ADMM)"

    def _rho(self, i):
        rho = self.rho
        if isinstance(rho, Real):
            return float(rho)
        rho = tuple(rho)
        return float(rho[min(i, len(rho) - 1)])

    def _solve(self, p):
        xp = p.xp
        W, b, target = p.W, p.b, p.target
        rows = xp.ones_like(target) if p.rows is None else p.rows
        # Without eq. 9's inequalities (z from the image layer itself) the
        # auxiliary variable has no role: rho = 0.
        rho = self._rho(p.layer) if p.constraints else 0.0
        B, k = target.shape[0], W.shape[1]
        ab = p.lipschitz * max(1.0, rho)
        off = 1.0 - rows
        x = xp.zeros((B, k), dtype=target.dtype, device=device(target))
        a = xp.zeros_like(target)
        u = xp.zeros_like(target)
        lam_c = lam_col(p.lam)
        done = xp.zeros((B,), dtype=xp.bool, device=device(target))
        for _ in range(self.max_iter):
            Wx = x @ W.T + b
            grad = (rows * (Wx - target)) @ W + rho * ((off * (Wx - a - u)) @ W)
            if p.nonneg:
                x_new = xp.clip(x - (grad + lam_c) / ab, min=0.0)  # eq. 13
            else:
                x_new = (ab * x - grad) / (ab + p.ridge)  # eq. 18
            x_new = xp.where(done[:, None], x, x_new)
            Wx = x_new @ W.T + b
            a = off * (-xp.clip(u - Wx, min=0.0))  # eq. 14
            u = off * (u + a - Wx)  # eq. 15
            done = done | (row_norm(x_new - x, xp) <= self.tol * (1.0 + row_norm(x, xp)))
            x = x_new
            if bool(xp.all(done)):
                break
        return x, n_false(done, xp)
