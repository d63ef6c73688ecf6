"""Gradient descent on ``1/2 ||G(z) - y||^2`` (eq. 1): the paper's baseline."""

from .._array_api import device, relu
from .._linalg import row_norm
from ._network import network_loss_and_gradient

__all__ = ["adam_descent", "gradient_lipschitz", "loss_and_gradient", "momentum_descent"]


def loss_and_gradient(
    Z, Y, obs, weights, biases, activation, xp, *, alpha=0.0, measurement=None, gradient=True
):
    """Per-row loss ``1/2 ||obs * (G(z) - y)||^2 + alpha/2 ||z||^2`` and its gradient.

    Back-propagation through eq. 3, batched over rows:
    ``delta_L = obs * (phi(u_L) - y) * phi'(u_L)``,
    ``g_i = delta_{i+1} W_i`` and ``delta_i = g_i * 1[u_i > 0]``.

    With a ``measurement`` (a :class:`~skinvert.operators.Measurement`
    ``A``) the loss is ``1/2 ||obs * (A G(z) - y)||^2`` (linear measurements,
    ``y`` of size m) and ``delta_L = A^T (obs * (A phi(u_L) - y)) * phi'(u_L)``.

    ``biases=None`` marks ``weights`` as the bound layers of a generator
    without dense matrices (``generator.bound_layers(...)``, e.g. a
    convolutional one): the gradient is then back-propagated through the
    layers' ``rmatmat`` (:func:`~skinvert.algorithms._network.network_loss_and_gradient`).

    With ``gradient=False`` only the loss is computed (``grad`` is None):
    the forward pass, without the back-propagation.

    Returns
    -------
    loss : array of shape (B,)
    grad : array of shape (B, n_0) or None
    """
    if biases is None:
        return network_loss_and_gradient(Z, Y, obs, weights, activation, xp, gamma=alpha,
                                         measurement=measurement, gradient=gradient)
    pre = []
    x = Z
    for W, b in zip(weights[:-1], biases[:-1]):
        u = x @ W.T + b
        pre.append(u)
        x = relu(u, xp)
    u = x @ weights[-1].T + biases[-1]
    out = activation(u, xp)
    if measurement is not None:
        out = measurement.forward(out)
    R = obs * (out - Y)
    loss = 0.5 * xp.sum(R * R, axis=1)
    if not gradient:
        return (loss + 0.5 * alpha * xp.sum(Z * Z, axis=1) if alpha else loss), None
    if measurement is not None:
        R = measurement.adjoint(R)
    delta = R * activation.derivative(u, xp)
    for W, u in zip(weights[:0:-1], pre[::-1]):
        delta = (delta @ W) * xp.astype(u > 0, delta.dtype)
    grad = delta @ weights[0]
    if alpha:
        loss = loss + 0.5 * alpha * xp.sum(Z * Z, axis=1)
        grad = grad + alpha * Z
    return loss, grad


def momentum_descent(
    Z0,
    Y,
    obs,
    weights,
    biases,
    activation,
    xp,
    *,
    learning_rate=0.1,
    momentum=0.9,
    decay=1e-3,
    alpha=0.0,
    max_iter=1000,
    tol=1e-8,
    callback=None,
    measurement=None,
):
    """Heavy-ball gradient descent with a decaying step, batched over rows.

    ``v <- momentum v - eta_k g(z)``, ``z <- z + v``, with
    ``eta_k = learning_rate_row / (1 + decay k)`` (the paper's "step size 1e-1
    that gradually decays", section 6.2).

    A row whose loss would increase rejects the step, resets its velocity and
    halves its own learning rate (a per-row safeguard against divergence);
    a row stops once its gradient norm is below ``tol`` (converged) or its
    learning rate has been halved below ``1e-12 * learning_rate`` (stalled).
    Stopped rows are frozen, so a row's iterates do not depend on the other
    rows of the batch. With a ``measurement`` ``A`` the loss is that of
    linear measurements, ``1/2 ||obs * (A G(z) - y)||^2`` (see
    :func:`loss_and_gradient`).

    Returns
    -------
    Z : array of shape (B, n_0)
    loss : array of shape (B,)
    n_iter : int
    converged : bool array of shape (B,)
    """
    Z = Z0
    loss, grad = loss_and_gradient(
        Z, Y, obs, weights, biases, activation, xp, alpha=alpha, measurement=measurement
    )
    V = xp.zeros_like(Z)
    lr = xp.full_like(loss, learning_rate)
    converged = row_norm(grad, xp) <= tol
    done = converged
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        step = lr / (1.0 + decay * (n_iter - 1))
        Vn = momentum * V - step[:, None] * grad
        Zn = Z + Vn
        ln, gn = loss_and_gradient(
            Zn, Y, obs, weights, biases, activation, xp, alpha=alpha, measurement=measurement
        )
        ok = (ln <= loss) & xp.isfinite(ln) & ~done
        okc = ok[:, None]
        Z = xp.where(okc, Zn, Z)
        V = xp.where(okc, Vn, xp.zeros_like(V))
        grad = xp.where(okc, gn, grad)
        loss = xp.where(ok, ln, loss)
        lr = xp.where(ok | done, lr, 0.5 * lr)
        converged = converged | (row_norm(grad, xp) <= tol)
        done = converged | (lr < 1e-12 * learning_rate)
        if callback is not None:
            callback(n_iter, loss, converged)
        if bool(xp.all(done)):
            break
    return Z, loss, n_iter, converged


def adam_descent(
    Z0,
    Y,
    obs,
    weights,
    biases,
    activation,
    xp,
    *,
    learning_rate=0.05,
    betas=(0.9, 0.999),
    decay=1e-3,
    alpha=0.0,
    max_iter=1000,
    tol=1e-8,
    callback=None,
    measurement=None,
):
    """Adam (Kingma & Ba, 2015) on the loss of eq. 1, batched over rows.

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
    ``z <- z - eta_k m_hat / (sqrt(v_hat) + eps)`` with bias-corrected
    moments and ``eta_k = learning_rate / (1 + decay k)``: the CSGM-style loop
    (Bora et al., 2017). Adam's step is about ``eta_k`` per coordinate
    whatever the gradient's scale, so ``learning_rate`` is in the units of z
    (z ~ N(0, I) for a generator trained on that prior). Adam is not
    monotone: each row returns its lowest-loss iterate. A row stops once its
    gradient norm is below ``tol``; stopped rows are frozen, so a row's
    iterates do not depend on the other rows of the batch.

    Returns
    -------
    Z : array of shape (B, n_0)
        The lowest-loss iterate of every row.
    loss : array of shape (B,)
    n_iter : int
    converged : bool array of shape (B,)
    """
    b1, b2 = betas
    Z = Z0
    kw = {"alpha": alpha, "measurement": measurement}
    loss, grad = loss_and_gradient(Z, Y, obs, weights, biases, activation, xp, **kw)
    best_Z, best_loss = Z, loss
    M = xp.zeros_like(Z)
    V = xp.zeros_like(Z)
    eps = 1e-8 if Z.dtype == xp.float64 else 1e-6
    done = row_norm(grad, xp) <= tol
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        step = learning_rate / (1.0 + decay * (n_iter - 1))
        live = ~done[:, None]
        M = xp.where(live, b1 * M + (1.0 - b1) * grad, M)
        V = xp.where(live, b2 * V + (1.0 - b2) * grad * grad, V)
        mhat = M / (1.0 - b1**n_iter)
        vhat = V / (1.0 - b2**n_iter)
        Z = xp.where(live, Z - step * mhat / (xp.sqrt(vhat) + eps), Z)
        loss, grad = loss_and_gradient(Z, Y, obs, weights, biases, activation, xp, **kw)
        better = (loss < best_loss) & xp.isfinite(loss)
        best_Z = xp.where(better[:, None], Z, best_Z)
        best_loss = xp.where(better, loss, best_loss)
        done = done | (row_norm(grad, xp) <= tol)
        if callback is not None:
            callback(n_iter, best_loss, done)
        if bool(xp.all(done)):
            break
    return best_Z, best_loss, n_iter, done


def gradient_lipschitz(weights, biases, activation, xp, Z, *, measurement=None, alpha=0.0,
                       quantile=1.0):
    """Estimate of the Lipschitz constant of the gradient of eq. 1 near the codes ``Z``.

    The Gauss-Newton part of the Hessian of ``1/2 ||A G(z) - y||^2`` is
    ``J^T J`` with ``J = A diag(phi'(u)) A_S`` the end-to-end Jacobian on the
    supports of ``z`` (Algorithm 1's row-supported product), so its largest
    eigenvalue ``||J||_2^2`` is the curvature a gradient step must resolve.
    Returned as the largest (``quantile=1``) or another quantile (e.g. the
    median, the typical curvature) of ``||J(z)||_2^2 + alpha`` over the
    probe codes ``Z`` (e.g. draws from the prior z ~ N(0, I)): a step
    ``c / L`` is then scaled to the generator and the measurement, not to
    one network.

    Returns
    -------
    L : float
    """
    from .polish import forward_loss, jacobian

    zero = xp.zeros((Z.shape[0], weights[-1].shape[0]), dtype=Z.dtype, device=device(Z))
    if measurement is not None:
        zero = measurement.forward(zero)
    _, U, masks = forward_loss(Z, zero, xp.ones_like(zero), weights, biases, activation, xp,
                               measurement=measurement)
    J = jacobian(U, masks, weights, biases, activation, xp, measurement=measurement)
    S = xp.linalg.svdvals(J)
    top = sorted(float(v) for v in _host(S[:, 0] ** 2, xp))
    k = min(len(top) - 1, max(0, round(quantile * (len(top) - 1))))
    return top[k] + float(alpha)


def _host(x, xp):
    from .._array_api import to_numpy

    return to_numpy(x, xp).ravel()
