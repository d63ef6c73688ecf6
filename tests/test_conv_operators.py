"""Convolutional layer operators against torch, their adjoints, and the shipped DCGAN."""

import itertools
import json
import os
import pickle

import numpy as np
import pytest

from skinvert.operators._conv import Conv2d, ConvTranspose2d
from skinvert.operators._conv_plans import apply_plan, bind_plan, transposed_plan
from skinvert.operators._reshape import Composite, Reshape, Upsample

torch = pytest.importorskip("torch")
F = torch.nn.functional

DATA = os.path.join(os.path.dirname(__file__), os.pardir, "skinvert", "datasets", "data")
DCGAN = os.path.join(DATA, "fashion_mnist_dcgan.safetensors")
TOL = 1e-10


def _bound(layer, dtype=np.float64):
    return layer.to_namespace(np, dtype=dtype)


def _conv_cases():
    for k, s, p, hw in itertools.product(range(1, 6), (1, 2), range(3), ((5, 7), (6, 6), (8, 3))):
        if hw[0] + 2 * p >= k and hw[1] + 2 * p >= k:
            yield k, s, p, hw


def _convT_cases():
    for k, s, p, op, hw in itertools.product(range(1, 6), (1, 2), range(3), (0, 1),
                                             ((5, 7), (4, 4), (1, 3))):
        if op < s and min((n - 1) * s - 2 * p + k + op for n in hw) >= 1:
            yield k, s, p, op, hw


CHANNELS = [(2, 3), (4, 1)]  # (C_in, C_out): both transposed plan kinds get chosen


def _torch_reference(fn, X, in_shape, R):
    """torch's output and its autograd adjoint (vector-Jacobian product with R)."""
    B = X.shape[0]
    x = torch.from_numpy(X).reshape(B, *in_shape).requires_grad_()
    y = fn(x).reshape(B, -1)
    (g,) = torch.autograd.grad(y, x, torch.from_numpy(R))
    return y.detach().numpy(), g.reshape(B, -1).numpy()


@pytest.mark.parametrize("k, s, p, hw", list(_conv_cases()))
@pytest.mark.parametrize("c_in, c_out", CHANNELS)
def test_conv2d_matches_torch(k, s, p, hw, c_in, c_out):
    rng = np.random.default_rng(k * 100 + s * 10 + p)
    w, b = rng.standard_normal((c_out, c_in, k, k)), rng.standard_normal(c_out)
    layer = _bound(Conv2d(w, b, in_shape=(c_in, *hw), stride=s, padding=p))
    X = rng.standard_normal((3, layer.n_in))
    R = rng.standard_normal((3, layer.n_out))
    wt = torch.from_numpy(w)
    ref, adj = _torch_reference(lambda x: F.conv2d(x, wt, stride=s, padding=p), X,
                                (c_in, *hw), R)
    assert layer.out_shape == (c_out, *F.conv2d(torch.zeros(1, c_in, *hw, dtype=wt.dtype), wt,
                                                stride=s, padding=p).shape[2:])
    np.testing.assert_allclose(layer.forward(X), ref + np.repeat(b, ref.shape[1] // c_out),
                               rtol=0, atol=TOL)
    np.testing.assert_allclose(layer.rmatmat(R), adj, rtol=0, atol=TOL)


@pytest.mark.parametrize("k, s, p, op, hw", list(_convT_cases()))
@pytest.mark.parametrize("c_in, c_out", CHANNELS)
def test_conv_transpose2d_matches_torch(k, s, p, op, hw, c_in, c_out):
    rng = np.random.default_rng(k * 1000 + s * 100 + p * 10 + op)
    w, b = rng.standard_normal((c_in, c_out, k, k)), rng.standard_normal(c_out)
    layer = _bound(ConvTranspose2d(w, b, in_shape=(c_in, *hw), stride=s, padding=p,
                                   output_padding=op))
    X = rng.standard_normal((3, layer.n_in))
    R = rng.standard_normal((3, layer.n_out))
    wt, bt = torch.from_numpy(w), torch.from_numpy(b)
    ref, adj = _torch_reference(
        lambda x: F.conv_transpose2d(x, wt, bt, stride=s, padding=p, output_padding=op),
        X, (c_in, *hw), R)
    assert ref.shape[1] == layer.n_out
    np.testing.assert_allclose(layer.forward(X), ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(layer.rmatmat(R), adj, rtol=0, atol=TOL)


@pytest.mark.parametrize("k, s, p, op, hw", list(_convT_cases())[::3])
def test_transposed_plan_kinds_agree(k, s, p, op, hw):
    """The sub-pixel im2col and the col2im plans compute the same map."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 2, k, k))
    out_hw = tuple((n - 1) * s - 2 * p + k + op for n in hw)
    X = rng.standard_normal((4, 3 * hw[0] * hw[1]))
    Y = [apply_plan(np, bind_plan(transposed_plan(w, out_hw, hw, (s, s), (p, p), kind),
                                  np, np.float64, None), X, None)
         for kind in ("im2col", "col2im")]
    ref = F.conv_transpose2d(torch.from_numpy(X).reshape(4, 3, *hw), torch.from_numpy(w),
                             stride=s, padding=p, output_padding=op)
    np.testing.assert_allclose(Y[0], ref.reshape(4, -1).numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(Y[1], Y[0], rtol=0, atol=TOL)


def test_rectangular_kernel_stride_padding_pairs():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2, 3, 5))
    kw = {"stride": (2, 1), "padding": (1, 2)}
    conv = _bound(Conv2d(w, in_shape=(2, 7, 6), **kw))
    X = rng.standard_normal((2, conv.n_in))
    ref = F.conv2d(torch.from_numpy(X).reshape(2, 2, 7, 6), torch.from_numpy(w), **kw)
    np.testing.assert_allclose(conv.matmat(X), ref.reshape(2, -1).numpy(), rtol=0, atol=TOL)
    wt = rng.standard_normal((2, 3, 3, 5))
    convT = _bound(ConvTranspose2d(wt, in_shape=(2, 4, 5), output_padding=(1, 0), **kw))
    X = rng.standard_normal((2, convT.n_in))
    ref = F.conv_transpose2d(torch.from_numpy(X).reshape(2, 2, 4, 5), torch.from_numpy(wt),
                             output_padding=(1, 0), **kw)
    np.testing.assert_allclose(convT.matmat(X), ref.reshape(2, -1).numpy(), rtol=0, atol=TOL)


def _layers():
    rng = np.random.default_rng(2)
    conv = Conv2d(rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3), in_shape=(2, 8, 6),
                  padding=1)
    convT = ConvTranspose2d(rng.standard_normal((3, 1, 4, 4)), [0.3], in_shape=(3, 8, 6),
                            stride=2, padding=1)
    up = Upsample(2, (2, 4, 3))
    return {
        "conv": conv,
        "convT": convT,
        "upsample": up,
        "upsample_pair": Upsample((1, 3), (2, 2, 2)),
        "reshape": Reshape((48,), (3, 4, 4)),
        "composite": Composite([Reshape((24,), (2, 4, 3)), up, conv, convT]),
    }


@pytest.mark.parametrize("name", list(_layers()))
def test_dot_test_and_to_dense(name):
    layer = _layers()[name]
    L = _bound(layer)
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((5, L.n_in)), rng.standard_normal((5, L.n_out))
    lhs, rhs = np.sum(L.matmat(X) * Y), np.sum(X * L.rmatmat(Y))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))
    A = layer.to_dense()
    assert A.shape == layer.shape == (L.n_out, L.n_in)
    np.testing.assert_allclose(L.matmat(X), X @ A.T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(L.forward(X), X @ A.T + layer.bias, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="max_elements"):
        layer.to_dense(max_elements=A.size - 1)


@pytest.mark.parametrize("name", list(_layers()))
@pytest.mark.parametrize("n_samples", [0, 1])
def test_small_batches(name, n_samples):
    layer = _layers()[name]
    L = _bound(layer)
    X = np.random.default_rng(10).standard_normal((n_samples, L.n_in))
    Y = L.forward(X)
    assert Y.shape == (n_samples, L.n_out) and L.rmatmat(Y).shape == (n_samples, L.n_in)
    np.testing.assert_allclose(Y, X @ layer.to_dense().T + layer.bias, rtol=0, atol=1e-12)


def test_upsample_and_composite_match_torch():
    rng = np.random.default_rng(4)
    conv = Conv2d(rng.standard_normal((2, 3, 3, 3)), rng.standard_normal(2),
                  in_shape=(3, 8, 15), padding=1)
    comp = Composite([Upsample((2, 3), (3, 4, 5)), conv])
    m = torch.nn.Sequential(torch.nn.Upsample(scale_factor=(2, 3), mode="nearest"),
                            torch.nn.Conv2d(3, 2, 3, padding=1)).double()
    with torch.no_grad():
        m[1].weight.copy_(torch.from_numpy(np.array(conv.weight)))
        m[1].bias.copy_(torch.from_numpy(np.array(conv.channel_bias)))
    X = rng.standard_normal((4, comp.n_in))
    R = rng.standard_normal((4, comp.n_out))
    ref, adj = _torch_reference(m, X, (3, 4, 5), R)
    L = _bound(comp)
    np.testing.assert_allclose(L.forward(X), ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(L.rmatmat(R), adj, rtol=0, atol=TOL)


def test_composite_bias_is_composed():
    """forward(x) = L2(L1 x + b1) + b2, not L2 L1 x + b1 + b2."""
    rng = np.random.default_rng(5)
    l1 = Conv2d(rng.standard_normal((2, 1, 3, 3)), [1.0, -2.0], in_shape=(1, 5, 5), padding=1)
    l2 = ConvTranspose2d(rng.standard_normal((2, 1, 2, 2)), [0.5], in_shape=(2, 5, 5), stride=2)
    comp = Composite([l1, l2])
    X = rng.standard_normal((3, comp.n_in))
    expected = _bound(l2).forward(_bound(l1).forward(X))
    np.testing.assert_allclose(_bound(comp).forward(X), expected, rtol=0, atol=TOL)
    np.testing.assert_allclose(comp.bias, _bound(l2).forward(_bound(l1).forward(X[:1] * 0))[0],
                               rtol=0, atol=TOL)


@pytest.mark.parametrize("name", list(_layers()))
def test_float32_preserved(name):
    layer = _layers()[name]
    L = layer.to_namespace(np, dtype=np.float32)
    X = np.random.default_rng(6).standard_normal((3, L.n_in)).astype(np.float32)
    Y = L.forward(X)
    assert Y.dtype == np.float32
    assert L.rmatmat(Y).dtype == np.float32
    np.testing.assert_allclose(Y, _bound(layer).forward(X.astype(np.float64)), rtol=0,
                               atol=1e-4)
    w32 = np.ones((1, 1, 2, 2), dtype=np.float32)
    assert Conv2d(w32, in_shape=(1, 3, 3)).dtype == np.float32


@pytest.mark.parametrize("name", list(_layers()))
def test_array_api_strict_matches_numpy(name):
    xps = pytest.importorskip("array_api_strict")
    layer = _layers()[name]
    rng = np.random.default_rng(7)
    X, R = rng.standard_normal((3, layer.n_in)), rng.standard_normal((3, layer.n_out))
    Ls, Ln = layer.to_namespace(xps, dtype=xps.float64), _bound(layer)
    Y, G = Ls.forward(xps.asarray(X)), Ls.rmatmat(xps.asarray(R))
    assert Y.dtype == xps.float64
    np.testing.assert_allclose(np.asarray(Y), Ln.forward(X), rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.asarray(G), Ln.rmatmat(R), rtol=0, atol=1e-13)


def test_torch_namespace_matches_numpy():
    from array_api_compat import array_namespace

    layer = _layers()["composite"]
    X = np.random.default_rng(8).standard_normal((3, layer.n_in))
    xt = array_namespace(torch.zeros(1))
    Y = layer.to_namespace(xt, dtype=torch.float64, device="cpu").forward(torch.from_numpy(X))
    assert isinstance(Y, torch.Tensor)
    np.testing.assert_allclose(Y.numpy(), _bound(layer).forward(X), rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", list(_layers()))
def test_pickle_and_equality(name):
    layer = _layers()[name]
    again = pickle.loads(pickle.dumps(layer))
    assert again == layer
    assert type(again) is type(layer) and again.shape == layer.shape
    X = np.random.default_rng(9).standard_normal((2, layer.n_in))
    np.testing.assert_array_equal(_bound(again).forward(X), _bound(layer).forward(X))


def test_equality_sees_the_configuration():
    w = np.ones((1, 1, 3, 3))
    a = Conv2d(w, in_shape=(1, 9, 9), stride=3, padding=0)
    b = Conv2d(w, in_shape=(1, 9, 9), stride=3, padding=1)
    assert a.out_shape == b.out_shape and a != b


def test_host_layer_refuses_products():
    with pytest.raises(RuntimeError, match="to_namespace"):
        Conv2d(np.ones((1, 1, 2, 2)), in_shape=(1, 3, 3)).matmat(np.ones((1, 9)))


W4 = np.ones((2, 3, 3, 3))


@pytest.mark.parametrize("make, exc, match", [
    (lambda: Conv2d(np.ones((2, 3, 3)), in_shape=(3, 5, 5)), ValueError, "4-D"),
    (lambda: Conv2d(W4, in_shape=(2, 5, 5)), ValueError, "3 input channels"),
    (lambda: Conv2d(W4, in_shape=(3, 5)), ValueError, r"\(C, H, W\)"),
    (lambda: Conv2d(W4, in_shape=(3, 5, 5), groups=3), ValueError, "groups=1"),
    (lambda: Conv2d(W4, in_shape=(3, 5, 5), dilation=2), ValueError, "dilation=1"),
    (lambda: Conv2d(W4, in_shape=(3, 5, 5), stride=0), ValueError, "stride"),
    (lambda: Conv2d(W4, in_shape=(3, 5, 5), stride=1.5), TypeError, "stride"),
    (lambda: Conv2d(W4, in_shape=(3, 5, 5), padding=(1, 2, 3)), TypeError, "padding"),
    (lambda: Conv2d(W4, [1.0], in_shape=(3, 5, 5)), ValueError, r"bias must have shape \(2,\)"),
    (lambda: Conv2d(W4, in_shape=(3, 1, 1)), ValueError, "larger than the padded input"),
    (lambda: Conv2d(W4 * np.nan, in_shape=(3, 5, 5)), ValueError, "non-finite"),
    (lambda: Conv2d(W4.astype(str), in_shape=(3, 5, 5)), TypeError, "real numbers"),
    (lambda: ConvTranspose2d(W4, in_shape=(3, 5, 5)), ValueError, "2 input channels"),
    (lambda: ConvTranspose2d(W4, in_shape=(2, 5, 5), groups=2), ValueError, "groups=1"),
    (lambda: ConvTranspose2d(W4, in_shape=(2, 5, 5), stride=2, output_padding=2), ValueError,
     "output_padding"),
    (lambda: ConvTranspose2d(W4, in_shape=(2, 1, 1), padding=2), ValueError, "not positive"),
    (lambda: Upsample(1.5, (1, 2, 2)), TypeError, "scale_factor"),
    (lambda: Upsample(2, (1, 2, 2), mode="bilinear"), ValueError, "nearest"),
    (lambda: Reshape((12,), (3, 5)), ValueError, "cannot map"),
    (lambda: Composite([Reshape((12,), (3, 4)), Reshape((4, 3), (12,))]), ValueError,
     "insert a Reshape"),
    (lambda: Composite([]), ValueError, "at least one"),
    (lambda: Composite([np.eye(3)]), TypeError, "not a layer"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


# -- the shipped convolutional generator ----------------------------------------------
def _dense(W, b):
    try:
        from skinvert.operators import Dense
    except ImportError:  # before the merge with the Dense layer: a 1x1 convolution
        n_out, n_in = W.shape
        conv = Conv2d(W[:, :, None, None], b, in_shape=(n_in, 1, 1))
        return Composite([Reshape((n_in,), (n_in, 1, 1)), conv, Reshape((n_out, 1, 1), (n_out,))])
    return Dense(W, b)


def load_dcgan_layers(path):
    """The shipped file as [first layer, ConvTranspose2d, ConvTranspose2d] and its metadata."""
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    arch = json.loads(meta["architecture"])
    layers = []
    for spec in arch["layers"]:
        W, b = tensors[spec["name"] + ".weight"], tensors[spec["name"] + ".bias"]
        if spec["type"] == "Linear":
            layer = _dense(W, b)
            if "then_reshape" in spec:
                layer = Composite([layer, Reshape(spec["out_shape"], spec["then_reshape"])])
        else:
            assert spec["type"] == "ConvTranspose2d"
            layer = ConvTranspose2d(W, b, in_shape=spec["in_shape"], stride=spec["stride"],
                                    padding=spec["padding"],
                                    output_padding=spec["output_padding"])
        layers.append(layer)
    return layers, tensors, arch


def test_shipped_dcgan_reproduces_the_torch_module():
    pytest.importorskip("safetensors")
    layers, tensors, arch = load_dcgan_layers(DCGAN)
    assert [layer.out_shape for layer in layers] == [(64, 7, 7), (32, 14, 14), (1, 28, 28)]
    assert arch["output_activation"] == "tanh" and arch["hidden_activation"] == "relu"
    bound = [layer.to_namespace(np, dtype=np.float32) for layer in layers]
    h = tensors["reference.z"]
    for i, layer in enumerate(bound):
        h = layer.forward(h)
        h = np.maximum(h, 0) if i < len(bound) - 1 else np.tanh(h)
    assert h.dtype == np.float32
    # reference.x: the eval-mode torch module with its batch-norm layers (not folded)
    np.testing.assert_allclose(h, tensors["reference.x"], rtol=0, atol=1e-5)
    with open(DCGAN[: -len(".safetensors")] + ".json") as fh:
        prov = json.load(fh)
    assert prov["seed"] == 0 and prov["command"].startswith("python tools/train_dcgan.py")
    assert os.path.getsize(DCGAN) < 4 * 2**20
