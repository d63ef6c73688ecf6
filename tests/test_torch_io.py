"""skinvert.io.from_torch: equality with the torch forward pass, and clear errors."""

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from skinvert import ReLUGenerator  # noqa: E402
from skinvert.io import from_torch  # noqa: E402
from skinvert.io._torch import PLU  # noqa: E402

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}

FINAL = {
    "tanh": lambda: nn.Tanh(),
    "sigmoid": lambda: nn.Sigmoid(),
    "identity": lambda: nn.Identity(),
    "none": None,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "plu": lambda: PLU(alpha=0.1, c=1.0),
}


def _randomize_bn(bn, gen):
    """Non-trivial running statistics and affine parameters."""
    n = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(0.5 * torch.randn(n, generator=gen))
        bn.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=gen))
        if bn.affine:
            bn.weight.copy_(0.5 + torch.rand(n, generator=gen))
            bn.bias.copy_(0.3 * torch.randn(n, generator=gen))


def make_net(sizes, final="tanh", bias=True, batchnorm=True, affine=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(sizes) - 2:
            if batchnorm:
                bn = nn.BatchNorm1d(b, affine=affine)
                _randomize_bn(bn, gen)
                layers.append(bn)
            layers.append(nn.ReLU())
    if FINAL[final] is not None:
        layers.append(FINAL[final]())
    return nn.Sequential(*layers).eval()


def _compare(net, dtype, n0, seed=1):
    net = net.to(dtype)
    G = from_torch(net)
    z = torch.randn(64, n0, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    with torch.no_grad():
        ref = net(z).numpy()
    out = G.forward(z.numpy())
    assert out.dtype == ref.dtype
    assert G.dtype == (np.float32 if dtype == torch.float32 else np.float64)
    return float(np.max(np.abs(out - ref)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("final", sorted(FINAL))
def test_from_torch_matches_forward(final, bias, dtype):
    sizes = [6, 24, 40, 50]
    net = make_net(sizes, final=final, bias=bias, seed=2 * sorted(FINAL).index(final) + int(bias))
    assert _compare(net, dtype, sizes[0]) <= TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_paper_architecture_matches(dtype):
    sizes = [20, 128, 392, 784]
    net = make_net(sizes, final="plu", seed=3)
    assert _compare(net, dtype, 20) <= TOL[dtype]


def test_half_precision_becomes_float32():
    net = make_net([5, 16, 12], final="tanh", seed=6).to(torch.bfloat16)
    G = from_torch(net)
    assert G.dtype == np.float32
    # The bf16 values, exactly, in float32: equal to the float32 copy of the net.
    assert _compare(net.float(), torch.float32, 5) <= 1e-5
    np.testing.assert_array_equal(G.weights[0], from_torch(net.float()).weights[0])


def test_batchnorm_statistics_are_used():
    # Trivial statistics would hide a wrong fold; check BN really matters here.
    net = make_net([5, 16, 12], final="identity", seed=4)
    plain = nn.Sequential(net[0], net[2], net[3]).eval()
    z = torch.randn(8, 5, dtype=torch.float64)
    net, plain = net.double(), plain.double()
    G = from_torch(net)
    with torch.no_grad():
        assert not torch.allclose(net(z), plain(z))
        np.testing.assert_allclose(G.forward(z.numpy()), net(z).numpy(), atol=1e-12)


def test_batchnorm_without_affine_and_double_eps():
    net = make_net([5, 16, 12], final="tanh", affine=False, seed=5)
    net[1].eps = 1e-2
    assert _compare(net, torch.float64, 5) <= 1e-10


def test_layout_and_activation_metadata():
    G = from_torch(make_net([4, 10, 12], final="leaky_relu"))
    assert isinstance(G, ReLUGenerator)
    assert G.layer_sizes == [4, 10, 12]
    assert G.activation.name == "leaky_relu" and G.activation.slope == pytest.approx(0.2)
    G = from_torch(make_net([4, 10, 12], final="plu"))
    assert G.activation.params() == {"slope": 0.1, "c": 1.0}
    G = from_torch(make_net([4, 10, 12], final="none"))
    assert G.activation.name == "identity"
    assert from_torch(make_net([4, 10, 12], final="sigmoid")).activation.name == "sigmoid"


def test_single_linear_layer_and_nested_sequential():
    lin = nn.Linear(3, 7)
    G = from_torch(nn.Sequential(lin, nn.Tanh()))
    assert G.layer_sizes == [3, 7] and G.n_layers == 0
    nested = nn.Sequential(
        nn.Sequential(nn.Linear(3, 9), nn.BatchNorm1d(9), nn.ReLU()),
        nn.Sequential(nn.Linear(9, 11), nn.Sigmoid()),
    ).eval()
    _randomize_bn(nested[0][1], torch.Generator().manual_seed(0))
    assert _compare(nested, torch.float64, 3) <= 1e-10


def test_module_exposing_a_sequential():
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.latent_dim = 6
            self.main = make_net([6, 20, 30], final="plu", seed=7)

        def forward(self, z):
            return self.main(z)

    model = Wrapper().eval()
    assert _compare(model, torch.float32, 6) <= 1e-5
    assert from_torch(model).layer_sizes == [6, 20, 30]


def test_duck_typed_plu():
    class PLU(nn.Module):  # a user's own PLU with the same parameter names
        def __init__(self):
            super().__init__()
            self.alpha, self.c = 0.2, 0.5

        def forward(self, u):
            a, c = self.alpha, self.c
            return torch.maximum(a * (u + c) - c, torch.minimum(a * (u - c) + c, u))

    net = nn.Sequential(nn.Linear(4, 9), nn.ReLU(), nn.Linear(9, 10), PLU()).eval()
    assert _compare(net, torch.float64, 4) <= 1e-10
    assert from_torch(net).activation.params() == {"slope": 0.2, "c": 0.5}


def test_plu_module_matches_activation():
    from skinvert.activations import Activation

    u = torch.linspace(-4, 4, 101, dtype=torch.float64)
    ref = Activation("plu", slope=0.1, c=1.0)(u.numpy(), np)
    np.testing.assert_allclose(PLU(0.1, 1.0)(u).numpy(), ref, atol=1e-15)
    with pytest.raises(ValueError, match="alpha"):
        PLU(alpha=0.0)


# -- errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", [nn.Conv1d(1, 1, 1), nn.Dropout(0.1), nn.GELU(), nn.Softplus()],
    ids=lambda m: type(m).__name__,
)
def test_unsupported_module_is_named(bad):
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), bad, nn.Linear(8, 5)).eval()
    with pytest.raises(TypeError, match=rf"{type(bad).__name__} at index 2"):
        from_torch(net)


def test_train_mode_batchnorm_raises():
    net = make_net([4, 8, 5], final="tanh")
    net.train()
    with pytest.raises(ValueError, match=r"BatchNorm1d at index 1.*module\.eval\(\)"):
        from_torch(net)


def test_batchnorm_not_after_linear_raises():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 5)).eval()
    with pytest.raises(ValueError, match=r"BatchNorm1d at index 2 must directly follow a Linear"):
        from_torch(net)
    net = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 8), nn.Tanh()).eval()
    with pytest.raises(ValueError, match="must directly follow a Linear"):
        from_torch(net)
    net = nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)
    ).eval()
    with pytest.raises(ValueError, match="index 2 must directly follow"):
        from_torch(net)


def test_batchnorm_without_running_stats_raises():
    net = nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8, track_running_stats=False), nn.ReLU(),
        nn.Linear(8, 3),
    ).eval()
    with pytest.raises(ValueError, match="running statistics"):
        from_torch(net)


@pytest.mark.parametrize(
    "layers, match",
    [
        (lambda: [nn.Linear(4, 8), nn.ReLU()], "ends with a ReLU"),
        (lambda: [nn.ReLU(), nn.Linear(4, 8)], "must follow a Linear"),
        (lambda: [nn.Identity()], "no Linear"),
        (lambda: [nn.Linear(4, 8), nn.ReLU(), nn.Linear(7, 3)], "expects inputs of size 7"),
    ],
    ids=["relu-end", "relu-first", "no-linear", "shape"],
)
def test_bad_layer_order_raises(layers, match):
    with pytest.raises(ValueError, match=match):
        from_torch(nn.Sequential(*layers()).eval())


@pytest.mark.parametrize(
    "layers, match",
    [
        (lambda: [nn.Linear(4, 8), nn.Tanh(), nn.ReLU(), nn.Linear(8, 3)],
         r"ReLU at index 2 follows the output activation \(Tanh at index 1\)"),
        (lambda: [nn.Linear(4, 8), nn.LeakyReLU(), nn.Linear(8, 3)],
         r"Linear at index 2 .*LeakyReLU at index 1.*hidden activations must be ReLU"),
        (lambda: [nn.Linear(4, 8), nn.Sigmoid(), nn.Unflatten(1, (2, 2, 2)),
                  nn.ConvTranspose2d(2, 1, 3)], "hidden activations must be ReLU"),
    ],
    ids=["after-final", "leaky-hidden", "sigmoid-hidden-conv"],
)
def test_hidden_activation_other_than_relu_raises(layers, match):
    with pytest.raises(TypeError, match=match):
        from_torch(nn.Sequential(*layers()).eval())


def test_linear_maps_without_relu_form_one_layer():
    from skinvert.operators import Composite, Dense

    net = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(),
                        nn.Linear(16, 10), nn.Tanh())
    _randomize_bn(net[2], torch.Generator().manual_seed(0))
    net = net.eval().double()
    G = from_torch(net)
    assert G.layer_sizes == [4, 16, 10]
    assert isinstance(G.layers[0], Composite) and type(G.layers[1]) is Dense
    z = torch.randn(8, 4, dtype=torch.float64)
    with torch.no_grad():
        ref = net(z).numpy()
    np.testing.assert_allclose(G.forward(z.numpy()), ref, rtol=0, atol=1e-10)


def test_not_a_module_or_no_sequential_raises():
    with pytest.raises(TypeError, match="nn.Module"):
        from_torch([nn.Linear(3, 4)])
    with pytest.raises(TypeError, match="no nn.Sequential"):
        from_torch(nn.Linear(3, 4))

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Sequential(nn.Linear(2, 3))
            self.b = nn.Sequential(nn.Linear(2, 3))

    with pytest.raises(TypeError, match="several nn.Sequential"):
        from_torch(Two())


def test_importing_skinvert_does_not_import_torch():
    code = (
        "import sys, skinvert, skinvert.io, skinvert.datasets;"
        "assert 'torch' not in sys.modules, 'torch imported';"
        "G = skinvert.datasets.load_pretrained_generator('digits-fc');"
        "assert 'torch' not in sys.modules, 'torch imported by loading'"
    )
    import os

    import skinvert

    root = os.path.dirname(os.path.dirname(os.path.abspath(skinvert.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# -- convolutional networks ----------------------------------------------------------


def _bn(kind, n, gen):
    bn = kind(n)
    _randomize_bn(bn, gen)
    return bn


CONV_NETS = {
    "dcgan": (None, lambda g: [
        nn.Linear(6, 4 * 3 * 3), _bn(nn.BatchNorm1d, 36, g), nn.ReLU(),
        nn.Unflatten(1, (4, 3, 3)),
        nn.ConvTranspose2d(4, 3, 4, 2, 1), _bn(nn.BatchNorm2d, 3, g), nn.ReLU(),
        nn.ConvTranspose2d(3, 1, 4, 2, 1), nn.Tanh()]),
    "upsample-conv-flatten-linear": (None, lambda g: [
        nn.Unflatten(1, (2, 3, 3)), nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(2, 4, 3, padding=1), _bn(nn.BatchNorm2d, 4, g), nn.ReLU(),
        nn.Conv2d(4, 2, 3, stride=2, padding=1, bias=False), nn.Flatten(),
        nn.Linear(18, 30), nn.Sigmoid()]),
    "conv-first": ((2, 5, 4), lambda g: [
        nn.Conv2d(2, 5, 3, padding=1), _bn(nn.BatchNorm2d, 5, g), nn.ReLU(),
        nn.ConvTranspose2d(5, 2, 3, stride=2, padding=1, output_padding=1),
        nn.LeakyReLU(0.2)]),
    "bn-after-unflatten": (None, lambda g: [
        nn.Linear(5, 3 * 4 * 4), nn.Unflatten(1, (3, 4, 4)), _bn(nn.BatchNorm2d, 3, g),
        nn.ReLU(), nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1),
        PLU(alpha=0.1, c=1.0)]),
    "bn-after-upsample": ((3, 3, 3), lambda g: [
        nn.ConvTranspose2d(3, 4, 2, stride=1), nn.Upsample(scale_factor=(2, 1)),
        _bn(nn.BatchNorm2d, 4, g), nn.ReLU(), nn.Conv2d(4, 3, 3), nn.Identity()]),
}


@pytest.mark.parametrize("name", sorted(CONV_NETS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_conv_round_trip_with_random_batchnorm(name, dtype):
    in_shape, make = CONV_NETS[name]
    torch.manual_seed(0)
    net = nn.Sequential(*make(torch.Generator().manual_seed(1))).eval().to(dtype)
    G = from_torch(net, in_shape=in_shape)
    n0 = G.n_latent
    z = torch.randn(16, n0, generator=torch.Generator().manual_seed(2), dtype=dtype)
    x = z if in_shape is None else z.reshape(16, *in_shape)
    with torch.no_grad():
        ref = net(x).reshape(16, -1).numpy()
    out = G.forward(z.numpy())
    assert out.dtype == ref.dtype and G.dtype == out.dtype
    np.testing.assert_allclose(out, ref, rtol=0, atol=TOL[dtype])
    assert not G.is_dense
    # the supports of the hidden layers are torch's ReLU outputs
    assert all(S.shape == (16, n) for S, n in zip(G.supports(z.numpy()), G.layer_sizes[1:-1],
                                                  strict=True))


def test_dcgan_like_module_imports_with_one_call(tmp_path):
    from skinvert import load_generator
    from skinvert.operators import Composite, ConvTranspose2d

    class Generator(nn.Module):
        def __init__(self, n0=16):
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(n0, 32 * 7 * 7), nn.BatchNorm1d(32 * 7 * 7), nn.ReLU(True),
                nn.Unflatten(1, (32, 7, 7)),
                nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.BatchNorm2d(16), nn.ReLU(True),
                nn.ConvTranspose2d(16, 1, 4, 2, 1), nn.Tanh())

        def forward(self, z):
            return self.net(z)

    g = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    module = Generator()
    for bn in (module.net[1], module.net[5]):
        _randomize_bn(bn, g)
    module = module.eval().double()
    G = from_torch(module)
    assert G.layer_sizes == [16, 1568, 3136, 784]
    assert isinstance(G.layers[1], Composite) and isinstance(G.layers[2], ConvTranspose2d)
    z = torch.randn(32, 16, generator=g, dtype=torch.float64)
    with torch.no_grad():
        ref = module(z).reshape(32, -1).numpy()
    np.testing.assert_allclose(G.forward(z.numpy()), ref, rtol=0, atol=1e-10)
    G.save(tmp_path / "dcgan.npz")
    assert load_generator(tmp_path / "dcgan.npz") == G
    assert "maps 3136 units to 784 outputs" in G.layerwise_obstacle()


@pytest.mark.parametrize(
    "layers, in_shape, exc, match",
    [
        (lambda: [nn.Conv2d(1, 2, 3), nn.Tanh()], None, ValueError,
         r"Conv2d at index 0 starts the network.*in_shape=\(1, H, W\)"),
        (lambda: [nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(8, 3)], (1, 4, 4), ValueError,
         r"Linear at index 2 gets per-sample shape \(2, 2, 2\): insert nn.Flatten"),
        (lambda: [nn.Linear(3, 8), nn.ReLU(), nn.ConvTranspose2d(2, 1, 3)], None, ValueError,
         r"ConvTranspose2d at index 2 takes 2 input channels.*nn.Unflatten"),
        (lambda: [nn.Conv2d(2, 2, 3, groups=2), nn.Tanh()], (2, 5, 5), ValueError, "groups=1"),
        (lambda: [nn.Conv2d(1, 1, 3, padding="same"), nn.Tanh()], (1, 5, 5), ValueError,
         "padding='same'"),
        (lambda: [nn.Unflatten(1, (1, 2, 2)), nn.Upsample(scale_factor=2, mode="bilinear"),
                  nn.Conv2d(1, 1, 3), nn.Tanh()], None, TypeError,
         r"Upsample at index 1 only with mode='nearest'"),
        (lambda: [nn.Conv2d(1, 2, 3), nn.Flatten(),
                  _bn(nn.BatchNorm1d, 8, torch.Generator().manual_seed(0)), nn.Tanh()],
         (1, 4, 4), ValueError, "mix the channels"),
        (lambda: [nn.Conv2d(1, 2, 3), nn.BatchNorm2d(3), nn.Tanh()], (1, 4, 4), ValueError,
         "has 3 features but the layer before it outputs 2 channels"),
        (lambda: [nn.Linear(3, 8), nn.ReLU(), nn.Conv1d(1, 1, 1)], None, TypeError,
         "Conv1d at index 2"),
    ],
    ids=["no-in-shape", "no-flatten", "no-unflatten", "groups", "same", "bilinear",
         "bn-mixing", "bn-channels", "conv1d"],
)
def test_bad_conv_networks_raise(layers, in_shape, exc, match):
    with pytest.raises(exc, match=match):
        from_torch(nn.Sequential(*layers()).eval(), in_shape=in_shape)


def test_train_mode_batchnorm2d_raises():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 1, 1))
    with pytest.raises(ValueError, match=r"BatchNorm2d at index 1 is in training mode"):
        from_torch(net.train(), in_shape=(1, 5, 5))
