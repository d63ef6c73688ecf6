"""The layer-generic kernels of skinvert.algorithms._network against torch autograd."""

import numpy as np
import pytest

from skinvert import make_random_generator
from skinvert._linalg import supported_affine_map
from skinvert.algorithms._network import (
    hidden_masks,
    masked_forward,
    masked_matvec,
    masked_rmatvec,
    network_affine_map,
    network_forward,
    network_loss_and_gradient,
    operator_norm_sq,
)
from skinvert.operators import Measurement

from .test_conv_generator import conv_generator, torch_forward

torch = pytest.importorskip("torch")
F = torch.nn.functional
TOL = 1e-10


def _torch_pre(params, z):
    """The output pre-activation of conv_generator's network, differentiable in z."""
    w0, b0, w1, b1, w2, b2 = (torch.from_numpy(np.asarray(p, np.float64)) for p in params)
    h1 = torch.relu(z @ w0.T + b0).reshape(-1, 4, 3, 3)
    h2 = torch.relu(F.conv_transpose2d(h1, w1, b1, stride=2, padding=1, output_padding=1))
    u = F.conv2d(F.interpolate(h2, scale_factor=2, mode="nearest"), w2, b2, padding=1)
    return u.reshape(z.shape[0], -1)


def _setup(seed=0, B=5):
    G, params = conv_generator(seed)
    Z = np.random.default_rng(seed + 10).standard_normal((B, G.n_latent))
    layers = G.bound_layers(np, dtype=np.float64)
    return G, params, Z, layers


def test_forward_returns_hidden_and_output_preactivations():
    G, params, Z, layers = _setup()
    pre, U = network_forward(Z, layers, np)
    X, hidden = G.forward(Z, return_hidden=True)
    np.testing.assert_allclose(np.tanh(U), X, rtol=0, atol=1e-14)
    for u, h in zip(pre, hidden, strict=True):
        np.testing.assert_array_equal(np.maximum(u, 0), h)
    np.testing.assert_allclose(U, _torch_pre(params, torch.from_numpy(Z)).numpy(), rtol=0,
                               atol=TOL)
    masks = hidden_masks(pre, np)
    assert all(M.dtype == np.float64 for M in masks)
    np.testing.assert_allclose(masked_forward(Z, layers, masks, np), U, rtol=0, atol=1e-13)


@pytest.mark.parametrize("measured", [False, True])
def test_loss_and_gradient_equal_torch_autograd(measured):
    G, params, Z, layers = _setup(seed=1)
    rng = np.random.default_rng(2)
    n = G.n_output
    A = rng.standard_normal((40, n)) / np.sqrt(n) if measured else None
    m = 40 if measured else n
    Y = rng.standard_normal((Z.shape[0], m)) * 0.3
    obs = (rng.random((Z.shape[0], m)) < 0.7).astype(np.float64)
    gamma = 0.3
    meas = Measurement(A, xp=np, dtype=np.float64) if measured else None
    loss, grad = network_loss_and_gradient(Z, Y, obs, layers, G.activation, np, gamma=gamma,
                                           measurement=meas)
    z = torch.from_numpy(Z).requires_grad_()
    out = torch.tanh(_torch_pre(params, z))
    if measured:
        out = out @ torch.from_numpy(A).T
    r = torch.from_numpy(obs) * (out - torch.from_numpy(Y))
    ref = 0.5 * (r * r).sum(1) + 0.5 * gamma * (z * z).sum(1)
    (g,) = torch.autograd.grad(ref.sum(), z)
    np.testing.assert_allclose(loss, ref.detach().numpy(), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(grad, g.numpy(), rtol=0, atol=TOL)
    # The loss alone (no back-propagation): the same loss, no gradient.
    alone, none = network_loss_and_gradient(Z, Y, obs, layers, G.activation, np, gamma=gamma,
                                            measurement=meas, gradient=False)
    assert none is None
    np.testing.assert_array_equal(alone, loss)


def test_affine_map_equals_torch_jacobian():
    G, params, Z, layers = _setup(seed=3, B=4)
    pre, U = network_forward(Z, layers, np)
    masks = hidden_masks(pre, np)
    J, c = network_affine_map(layers, masks, np, n_samples=Z.shape[0])
    assert J.shape == (4, G.n_output, G.n_latent) and c.shape == (4, G.n_output)
    for b in range(Z.shape[0]):
        ref = torch.autograd.functional.jacobian(
            lambda z: _torch_pre(params, z[None])[0], torch.from_numpy(Z[b]),
            vectorize=True, strategy="forward-mode")
        np.testing.assert_allclose(J[b], ref.numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(np.einsum("bnk,bk->bn", J, Z) + c, U, rtol=0, atol=TOL)
    # J and J^T without forming J
    V = np.random.default_rng(4).standard_normal(Z.shape)
    R = np.random.default_rng(5).standard_normal(U.shape)
    np.testing.assert_allclose(masked_matvec(V, layers, masks, np),
                               np.einsum("bnk,bk->bn", J, V), rtol=0, atol=TOL)
    np.testing.assert_allclose(masked_rmatvec(R, layers, masks, np),
                               np.einsum("bnk,bn->bk", J, R), rtol=0, atol=TOL)


@pytest.mark.parametrize("sizes", [[5, 30, 70, 120], [4, 9], [3, 12, 20]])
def test_affine_map_equals_supported_affine_map_on_dense_generators(sizes):
    G = make_random_generator(sizes, random_state=0)
    Z = np.random.default_rng(1).standard_normal((6, sizes[0]))
    layers = G.bound_layers(np, dtype=np.float64)
    pre, _ = network_forward(Z, layers, np)
    masks = hidden_masks(pre, np)
    J, c = network_affine_map(layers, masks, np, n_samples=6)
    A_ref, c_ref = supported_affine_map(G.weights, G.biases, masks, np, n_samples=6)
    np.testing.assert_allclose(J, A_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(c, c_ref, rtol=0, atol=1e-12)


def test_namespace_generic_and_float32():
    """array-api-strict proves no NumPy-only call hides in the kernels."""
    xps = pytest.importorskip("array_api_strict")
    G, _, Z, layers = _setup(seed=6, B=3)
    pre, U = network_forward(Z, layers, np)
    masks = hidden_masks(pre, np)
    J, c = network_affine_map(layers, masks, np, n_samples=3)
    Y, obs = np.tanh(U) + 0.1, np.ones_like(U)
    loss, grad = network_loss_and_gradient(Z, Y, obs, layers, G.activation, np, gamma=0.1)
    from sklearn.externals.array_api_compat import array_namespace

    xpt = array_namespace(torch.zeros(1))
    for xp, dtype, tol in ((xps, xps.float64, 1e-12), (xps, xps.float32, 1e-3),
                           (xpt, torch.float32, 1e-3)):
        L = G.bound_layers(xp, dtype=dtype)
        Zx = xp.asarray(Z, dtype=dtype)
        p, Ux = network_forward(Zx, L, xp)
        Mx = hidden_masks(p, xp)
        Jx, cx = network_affine_map(L, Mx, xp, n_samples=3)
        lx, gx = network_loss_and_gradient(Zx, xp.asarray(Y, dtype=dtype),
                                           xp.asarray(obs, dtype=dtype), L, G.activation, xp,
                                           gamma=0.1)
        for got, ref in ((Ux, U), (Jx, J), (cx, c), (lx, loss), (gx, grad)):
            assert got.dtype == dtype
            np.testing.assert_allclose(np.asarray(got), ref, rtol=tol, atol=tol)


def test_torch_forward_helper_matches():
    G, params, Z, _ = _setup()
    X, _ = torch_forward(params, Z)
    np.testing.assert_allclose(G.forward(Z), X, rtol=0, atol=1e-12)


# -- property: the fixed-support least squares is exact (Algorithm 1 on conv nets) ----------
from hypothesis import assume, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from skinvert import ReLUGenerator  # noqa: E402
from skinvert._linalg import batched_lstsq  # noqa: E402
from skinvert.operators import Composite, Conv2d, ConvTranspose2d, Dense, Reshape  # noqa: E402


@st.composite
def small_conv_generators(draw):
    """z -> Dense -> (C1, H, H) -> ConvTranspose2d -> (C2, ...) [-> Conv2d], identity output."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n0, c1, c2 = draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H = draw(st.integers(2, 4))
    k, s, p = draw(st.integers(1, 4)), draw(st.integers(1, 2)), draw(st.integers(0, 1))
    op = draw(st.integers(0, s - 1))
    assume((H - 1) * s - 2 * p + k + op >= 1)
    n1 = c1 * H * H
    layers = [
        Composite([Dense(rng.standard_normal((n1, n0)), rng.standard_normal(n1) * 0.3),
                   Reshape((n1,), (c1, H, H))]),
        ConvTranspose2d(rng.standard_normal((c1, c2, k, k)), rng.standard_normal(c2) * 0.3,
                        in_shape=(c1, H, H), stride=s, padding=p, output_padding=op),
    ]
    if draw(st.booleans()):
        shape = layers[-1].out_shape
        k2 = draw(st.integers(1, 3))
        layers.append(Conv2d(rng.standard_normal((draw(st.integers(1, 3)), shape[0], k2, k2)),
                             None,
                             in_shape=shape, padding=k2 // 2))
    G = ReLUGenerator.from_layers(layers, output_activation="identity")
    Z = rng.standard_normal((4, n0))
    return G, Z


@given(small_conv_generators())
def test_fixed_support_least_squares_recovers_z(case):
    """With the true supports fixed, ``min_z ||J z + c - x||`` returns z where J has full rank."""
    G, Z = case
    layers = G.bound_layers(np, dtype=np.float64)
    X = G.forward(Z)
    pre, _ = network_forward(Z, layers, np)
    masks = hidden_masks(pre, np)
    J, c = network_affine_map(layers, masks, np, n_samples=Z.shape[0])
    sv = np.linalg.svd(J, compute_uv=False)
    full = (sv[:, -1] > 1e-6 * sv[:, 0]) & (J.shape[1] >= J.shape[2])  # rank n_0
    assume(np.any(full))
    Z_hat = batched_lstsq(J, X - c, np)
    err = np.linalg.norm(Z_hat - Z, axis=1) / (1 + np.linalg.norm(Z, axis=1))
    assert np.all(err[full] < 1e-8), (err, sv[:, -1] / sv[:, 0])
    # and the estimate reproduces the signal on every row (full rank or not)
    np.testing.assert_allclose(G.forward(Z_hat[full]), X[full], rtol=0, atol=1e-8)


def test_operator_norm_sq_bounds_the_top_eigenvalue():
    G, _, _, layers = _setup(seed=9)
    for layer, W in zip(layers, G.weights, strict=True):
        exact = np.linalg.eigvalsh(W.T @ W)[-1]
        est = operator_norm_sq(layer, np, n_iter=200)
        assert exact <= est <= 1.011 * exact
