"""Layer-generic batched kernels of the generator: forward, loss, gradient, fixed-support maps.

Everything here uses only the bound layers' ``matmat`` / ``rmatmat`` /
``forward`` (see :class:`skinvert.operators.Layer`) and array API calls, so
the same code serves dense, convolutional and transposed-convolutional
generators in every namespace (NumPy, torch, CuPy, array-api-strict). Rows
are samples. ``layers`` is always ``generator.bound_layers(xp, dtype=...,
device=...)``: ``A_0, ..., A_L`` with biases ``b_0, ..., b_L``, and the
generator (paper, eq. 3) is

    u_1 = A_0 z + b_0,  x_i = ReLU(u_i),  u_{i+1} = A_i x_i + b_i,  G(z) = phi(u_{L+1})

``masks`` are float 0/1 arrays ``D_i`` of shape ``(B, n_i)``, ``i = 1..L`` (the
hidden supports ``S_i``), in the compute dtype. With the supports fixed, the
output pre-activation is affine in ``z`` (Algorithm 1's row-supported
product):

    u_{L+1} = A_L D_L (A_{L-1} ... D_1 (A_0 z + b_0) ... + b_{L-1}) + b_L = J z + c

:func:`network_affine_map` builds ``J`` and ``c`` (the layer-generic
:func:`skinvert._linalg.supported_affine_map`), :func:`masked_matvec` and
:func:`masked_rmatvec` apply ``J`` and ``J^T`` without forming it.

References
----------
Aberdam, Simon & Elad (2020), "When and how can deep generative models be
inverted?", eq. 1 (the loss), eq. 3 (the generator), Algorithm 1 (the Oracle).
"""

import numpy as np

from .._array_api import relu

__all__ = [
    "hidden_masks",
    "masked_forward",
    "masked_matvec",
    "masked_rmatvec",
    "network_affine_map",
    "network_forward",
    "network_loss_and_gradient",
    "operator_norm_sq",
]


def network_forward(Z, layers, xp):
    """The forward pass of eq. 3: hidden pre-activations and the output pre-activation.

    Parameters
    ----------
    Z : array of shape (B, n_0)
        Latent codes, one per row.
    layers : list of bound Layer
        ``generator.bound_layers(xp, dtype=Z.dtype, device=...)``.
    xp : namespace
        The array namespace of ``Z``.

    Returns
    -------
    pre : list of arrays of shape (B, n_i), i = 1..L
        ``u_i``; the hidden layers are ``x_i = ReLU(u_i)`` and their supports
        ``u_i > 0``.
    U : array of shape (B, n)
        ``u_{L+1}``, so that ``G(Z) = phi(U)``.
    """
    pre = []
    x = Z
    for layer in layers[:-1]:
        u = layer.forward(x)
        pre.append(u)
        x = relu(u, xp)
    return pre, layers[-1].forward(x)


def hidden_masks(pre, xp):
    """The supports ``D_i = 1[u_i > 0]`` as 0/1 arrays of the pre-activations' dtype."""
    return [xp.astype(u > 0, u.dtype) for u in pre]


def network_loss_and_gradient(Z, Y, obs, layers, activation, xp, *, gamma=0.0,
                              measurement=None, gradient=True):
    """Per-row loss of eq. 1 with a ridge, and its gradient by back-propagation.

    ``loss = 1/2 ||obs * (M phi(u_{L+1}(z)) - y)||^2 + gamma/2 ||z||^2`` (``M``
    the measurement, or the identity), back-propagated through ``rmatmat``:
    ``delta_{L+1} = M^T (obs * r) * phi'(u_{L+1})``,
    ``delta_i = (A_i^T delta_{i+1}) * 1[u_i > 0]``, ``grad = A_0^T delta_1 + gamma z``.

    Parameters
    ----------
    Z : array of shape (B, n_0)
    Y : array of shape (B, n) or (B, m)
        Targets; entries where ``obs`` is 0 are ignored (they must be finite:
        replace NaN by 0 first).
    obs : array of shape (B, n) or (B, m), or a Python float
        0/1 weights of the observed entries (``1.0``: all observed).
    layers : list of bound Layer
    activation : skinvert.activations.Activation
        phi.
    xp : namespace
    gamma : float, default=0.0
        Ridge weight on z (the inverters' ``gamma``).
    measurement : bound Measurement or None, default=None
        ``M`` with ``forward`` and ``adjoint``.
    gradient : bool, default=True
        False: the loss alone (the forward pass; ``grad`` is None).

    Returns
    -------
    loss : array of shape (B,)
    grad : array of shape (B, n_0) or None
    """
    pre, U = network_forward(Z, layers, xp)
    out = activation(U, xp)
    if measurement is not None:
        out = measurement.forward(out)
    R = obs * (out - Y)
    loss = 0.5 * xp.sum(R * R, axis=1)
    if not gradient:
        return (loss + 0.5 * gamma * xp.sum(Z * Z, axis=1) if gamma else loss), None
    if measurement is not None:
        R = measurement.adjoint(obs * R)
    else:
        R = obs * R
    delta = R * activation.derivative(U, xp)
    for layer, u in zip(layers[:0:-1], pre[::-1], strict=True):
        delta = layer.rmatmat(delta) * xp.astype(u > 0, delta.dtype)
    grad = layers[0].rmatmat(delta)
    if gamma:
        loss = loss + 0.5 * gamma * xp.sum(Z * Z, axis=1)
        grad = grad + gamma * Z
    return loss, grad


def masked_forward(Z, layers, masks, xp):
    """The output pre-activation ``J z + c`` of the fixed-support network.

    ``x_i = D_i * (A_{i-1} x_{i-1} + b_{i-1})`` with the given masks instead of
    ``ReLU`` (equal to :func:`network_forward` when ``masks`` are the supports
    of ``Z`` itself).

    Parameters
    ----------
    Z : array of shape (B, n_0)
    layers : list of bound Layer
    masks : list of arrays of shape (B, n_i), i = 1..L
    xp : namespace

    Returns
    -------
    U : array of shape (B, n)
    """
    x = Z
    for layer, M in zip(layers[:-1], masks, strict=True):
        x = M * layer.forward(x)
    return layers[-1].forward(x)


def masked_matvec(V, layers, masks, xp):
    """``J v`` for every row: the linear part of :func:`masked_forward` (no biases).

    Parameters
    ----------
    V : array of shape (B, n_0)
    layers : list of bound Layer
    masks : list of arrays of shape (B, n_i)
    xp : namespace

    Returns
    -------
    JV : array of shape (B, n)
    """
    x = V
    for layer, M in zip(layers[:-1], masks, strict=True):
        x = M * layer.matmat(x)
    return layers[-1].matmat(x)


def masked_rmatvec(R, layers, masks, xp):
    """``J^T r`` for every row: the adjoint of :func:`masked_matvec`.

    Parameters
    ----------
    R : array of shape (B, n)
    layers : list of bound Layer
    masks : list of arrays of shape (B, n_i)
    xp : namespace

    Returns
    -------
    JtR : array of shape (B, n_0)
    """
    g = layers[-1].rmatmat(R)
    for layer, M in zip(layers[-2::-1], masks[::-1], strict=True):
        g = layer.rmatmat(M * g)
    return g


def network_affine_map(layers, masks, xp, *, n_samples):
    """The per-sample affine map ``z -> J z + c`` of the output pre-activation.

    The layer-generic :func:`skinvert._linalg.supported_affine_map`: for
    codes whose hidden supports are ``masks``, ``u_{L+1} = J z + c`` with
    ``J = A_L D_L A_{L-1} ... D_1 A_0`` (Algorithm 1's row-supported product).
    ``J`` is built column by column in one batched pass: the ``n_0`` identity
    columns of every sample, stacked as ``B n_0`` rows, go through the layers'
    ``matmat`` with each sample's masks; ``c`` is :func:`masked_forward` at
    ``z = 0``.

    Parameters
    ----------
    layers : list of bound Layer
        ``generator.bound_layers(xp, dtype=..., device=...)``; the compute
        dtype and device of ``J`` are theirs.
    masks : list of arrays of shape (B, n_i), i = 1..L
        0/1 supports in the compute dtype (empty for a generator without a
        hidden layer).
    xp : namespace
    n_samples : int
        ``B`` (needed when there is no hidden layer).

    Returns
    -------
    J : array of shape (B, n, n_0)
    c : array of shape (B, n)

    Notes
    -----
    Peak memory is ``B n_0 max_i n_i`` entries (one stacked hidden layer):
    for 256 codes of a 32 -> 3136 -> 6272 -> 784 DCGAN that is 51 M entries
    (411 MB in float64); pass fewer rows at a time to bound it.
    """
    first = layers[0]
    n0, dtype, dev = first.n_in, first.compute_dtype, first.device
    B = int(n_samples)
    eye = xp.eye(n0, dtype=dtype, device=dev)
    E = xp.reshape(xp.broadcast_to(eye[None, :, :], (B, n0, n0)), (B * n0, n0))
    for layer, M in zip(layers[:-1], masks, strict=True):
        E = layer.matmat(E)
        n_i = E.shape[1]
        E = xp.reshape(xp.reshape(E, (B, n0, n_i)) * M[:, None, :], (B * n0, n_i))
    E = layers[-1].matmat(E)
    J = xp.permute_dims(xp.reshape(E, (B, n0, E.shape[1])), (0, 2, 1))
    c = masked_forward(xp.zeros((B, n0), dtype=dtype, device=dev), layers, masks, xp)
    return J, c


def operator_norm_sq(layer, xp, *, n_iter=50, seed=0):
    """``lambda_max(A^T A)`` of a bound layer by power iteration on ``rmatmat(matmat(.))``.

    The layer-generic replacement of ``eigvalsh(W.T @ W)[-1]`` (the step
    bounds of Algorithms 3-5 and of gradient descent) for layers without a
    dense matrix. Power iteration converges from below: the value returned is
    the last Rayleigh quotient times ``1.01``, a safe upper bound once the
    iteration has converged to 1 % (it does in a few dozen steps for
    convolutions, whose top singular values are well separated in practice;
    use :meth:`~skinvert.operators.Layer.to_dense` where it fits for an
    exact value).

    Parameters
    ----------
    layer : bound Layer
    xp : namespace
    n_iter : int, default=50
    seed : int, default=0
        Seed of the (host) random start vector.

    Returns
    -------
    value : float
    """
    v = np.random.default_rng(seed).standard_normal((1, layer.n_in))
    v = xp.asarray(v, dtype=layer.compute_dtype, device=layer.device)
    v = v / xp.sqrt(xp.sum(v * v))
    lam = 0.0
    for _ in range(n_iter):
        w = layer.rmatmat(layer.matmat(v))
        lam = float(xp.sum(v * w))
        norm = xp.sqrt(xp.sum(w * w))
        if float(norm) == 0.0:
            return 0.0
        v = w / norm
    return 1.01 * lam
