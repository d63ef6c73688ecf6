"""Layered Basis-Pursuit (Algorithm 2) and its epsilon rule (Theorem 2).

Algorithm 2 runs the layer-wise loop of
:func:`~skinvert.algorithms.latent_pursuit.pursuit` with signed lassos, no
ReLU constraints and a plain least squares for z::

    x_L = argmin 1/2 ||phi^-1(y) - b_L - W_L x||^2 + lambda_L ||x||_1
    for i = L-1, ..., 1:
        x_i = argmin 1/2 ||x_{i+1}^{S_{i+1}} - b_i^{S_{i+1}} - W_i^{S_{i+1}} x||^2
              + lambda_i ||x||_1
    z = argmin ||x_1^{S_1} - b_0^{S_1} - W_0^{S_1} z||^2

with ``lambda_i`` fixed or from the noise bound (:class:`EpsilonRule`).
"""

from .._theory import BP_CONSTANT
from .latent_pursuit import pursuit
from .noise import SupportRule, support_mask

__all__ = ["EpsilonRule", "layered_bp"]


class EpsilonRule(SupportRule):
    """Algorithm 2's lambda schedule from a noise bound ``||e||_2 <= epsilon``.

    ``epsilon_{L+1} = ell * epsilon`` with ``ell`` the Lipschitz constant of
    phi^-1 over each sample's observed values; ``lambda_i = 2 epsilon_{i+1}``
    and, once ``x_i`` is estimated, ``epsilon_i = (3 + sqrt(1.5)) sqrt(s_i) /
    min_j ||w_{i,j}^{S_{i+1}}||_2 * epsilon_{i+1}`` (Theorem 2, eqs. 29-31),
    with ``s_i`` the size of the estimated support (per sample).
    """

    C = BP_CONSTANT

    def __init__(self, epsilon, support_tol, nonneg=False):
        super().__init__((0.0,), support_tol, nonneg)
        self.epsilon = epsilon
        self.eps = None

    def start(self, batch, U, w):
        xp = batch.xp
        rule = EpsilonRule(self.epsilon, self.support_tol, self.nonneg)
        act, Y, obs = batch.activation, batch.Y, batch.obs
        U = act.inverse(Y, xp)
        ok = (obs > 0) & ~xp.isnan(U)
        d = act.derivative(xp.where(ok, U, xp.zeros_like(U)), xp)
        inv = xp.where(ok, 1.0 / xp.where(d > 0, d, xp.ones_like(d)), xp.zeros_like(d))
        ell = xp.max(inv, axis=1)
        rule.eps = self.epsilon * ell  # (B,)
        return rule

    def lam(self, i):
        return 2.0 * self.eps

    def support(self, x, i, W, rows, xp, gram=None):
        S = support_mask(x, self.support_tol, xp, self.nonneg)
        W2 = W * W
        col_sq = xp.sum(W2, axis=0)[None, :] if rows is None else rows @ W2
        min_norm = xp.sqrt(xp.min(col_sq, axis=1))
        s = xp.sum(xp.astype(S, W.dtype), axis=1)
        tiny = xp.finfo(W.dtype).tiny
        self.eps = self.C * xp.sqrt(s) / xp.clip(min_norm, min=tiny) * self.eps
        return S


def layered_bp(batch, plan, rule, *, refinement, noise=None):
    """Algorithm 2 on a batch: :func:`~.latent_pursuit.pursuit` with signed
    lassos and no constraints (``rule``: fixed lambdas, an
    :class:`EpsilonRule` or a :class:`~.noise.NoiseRule`)."""
    return pursuit(
        batch,
        plan,
        rule,
        nonneg=False,
        constraints=False,
        gamma=0.0,
        refinement=refinement,
        noise=noise,
    )
