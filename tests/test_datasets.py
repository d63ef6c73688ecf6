"""The shipped pretrained generators, their provenance, and the IDX reader."""

import gzip
import json

import numpy as np
import pytest

from skinvert import ReLUGenerator
from skinvert.datasets import (
    list_pretrained_generators,
    load_idx,
    load_idx_images,
    load_pretrained_generator,
    pretrained_provenance,
    support_statistics,
)

EXPECTED = {
    "fashion-mnist-fc": [20, 128, 392, 784],
    "digits-fc": [8, 32, 64, 64],
}


def test_list_pretrained_generators():
    assert list_pretrained_generators() == sorted([*EXPECTED, "fashion-mnist-dcgan"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_pretrained_generator_loads(name):
    G = load_pretrained_generator(name)
    assert isinstance(G, ReLUGenerator)
    assert G.layer_sizes == EXPECTED[name]
    assert G.dtype == np.float32
    assert G.activation.name == "plu"
    assert G.activation.params() == {"slope": 0.1, "c": 1.0}
    Z = np.random.default_rng(0).standard_normal((64, G.n_latent)).astype(np.float32)
    X = G.forward(Z)
    assert X.shape == (64, G.n_output) and X.dtype == np.float32
    assert np.all(np.isfinite(X))
    # Images live in [-1, 1]; PLU's outer slope 0.1 lets the generator overshoot
    # a little (mostly the background, pushed below -1).
    assert -2.5 < X.min() and X.max() < 2.5
    assert np.mean(np.abs(X) <= 1.05) > 0.7
    assert 0.2 < np.mean(X <= -0.9) < 0.8  # dark background, bright object
    assert X.std() > 0.3  # not collapsed to a constant image
    assert np.abs(X - X.mean(axis=0)).mean() > 0.2  # samples differ from each other


def test_aliases_and_unknown_name():
    assert load_pretrained_generator("digits") == load_pretrained_generator("digits-fc")
    assert load_pretrained_generator("Fashion_MNIST_FC").layer_sizes == [20, 128, 392, 784]
    with pytest.raises(ValueError,
                       match="available: digits-fc, fashion-mnist-dcgan, fashion-mnist-fc"):
        load_pretrained_generator("mnist-conv")
    with pytest.raises(TypeError):
        load_pretrained_generator(3)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_provenance(name):
    prov = pretrained_provenance(name)
    for key in ("command", "seed", "epochs", "torch_version", "date", "data",
                "support_statistics"):
        assert key in prov
    assert prov["command"].startswith("python -m tools.train_fc_gan")
    assert prov["support_statistics"]["layer_sizes"] == EXPECTED[name]


def test_digits_supports_expand():
    G = load_pretrained_generator("digits-fc")
    stats = support_statistics(G, n_samples=256, random_state=1)
    n0 = G.n_latent
    assert stats["frac_s1_ge_n0"] >= 0.9
    s1, s2 = stats["support_sizes"]
    assert s1["median"] >= n0 and s2["median"] > s1["median"] and s2["median"] < G.n_output
    assert stats["restricted"][0]["frac_full_column_rank"] >= 0.9
    # Direct check against forward(return_hidden=True).
    Z = np.random.default_rng(2).standard_normal((256, n0))
    _, (x1, x2) = G.forward(Z, return_hidden=True)
    assert np.mean((x1 > 0).sum(1) >= n0) >= 0.9


def test_fashion_supports_match_provenance():
    G = load_pretrained_generator("fashion-mnist-fc")
    Z = np.random.default_rng(0).standard_normal((512, 20))
    s1, s2 = [m.sum(1) for m in G.supports(Z)]
    assert np.all(s1 >= 20)
    assert np.median(s2) > np.median(s1) and np.max(s2) < 784
    stats = pretrained_provenance("fashion-mnist-fc")["support_statistics"]
    assert stats["support_sizes"][0]["median"] == pytest.approx(np.median(s1))


# -- the convolutional generator -----------------------------------------------------


def _dcgan_reference():
    pytest.importorskip("safetensors")
    from importlib import resources

    from safetensors import safe_open

    ref = resources.files("skinvert.datasets").joinpath("data", "fashion_mnist_dcgan.safetensors")
    with resources.as_file(ref) as path, safe_open(path, framework="numpy") as fh:
        return fh.get_tensor("reference.z"), fh.get_tensor("reference.x")


def test_dcgan_loads_and_reproduces_the_torch_reference():
    from skinvert.operators import Composite, ConvTranspose2d, Dense, Reshape

    G = load_pretrained_generator("fashion-mnist-dcgan")
    assert load_pretrained_generator("dcgan") == G
    assert G.layer_sizes == [32, 3136, 6272, 784] and G.dtype == np.float32
    assert G.activation.name == "tanh" and not G.is_dense
    first, second, third = G.layers
    assert isinstance(first, Composite) and [type(c) for c in first.layers] == [Dense, Reshape]
    assert isinstance(second, ConvTranspose2d) and isinstance(third, ConvTranspose2d)
    assert [layer.out_shape for layer in G.layers] == [(64, 7, 7), (32, 14, 14), (1, 28, 28)]
    assert second.weight.shape == (64, 32, 4, 4) and second.stride == (2, 2)
    Z, X_ref = _dcgan_reference()  # the eval-mode torch module's outputs (batch-norm unfolded)
    X = G.forward(Z)
    assert X.dtype == np.float32
    np.testing.assert_allclose(X, X_ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(G.forward(Z.astype(np.float64)), X_ref, rtol=0, atol=1e-5)
    assert "maps 6272 units to 784 outputs" in G.layerwise_obstacle()


def test_dcgan_supports_and_provenance():
    prov = pretrained_provenance("fashion-mnist-dcgan")
    assert prov["seed"] == 0 and prov["command"].startswith("python tools/train_dcgan.py")
    G = load_pretrained_generator("fashion-mnist-dcgan")
    Z = np.random.default_rng(0).standard_normal((1000, 32)).astype(np.float32)
    fractions = [m.mean() for m in G.supports(Z)]
    stats = prov["support_statistics"]["hidden"]
    for frac, st in zip(fractions, stats, strict=True):
        assert frac == pytest.approx(st["mean_active_fraction"], abs=2e-3)
    # the per-layer statistics of support_statistics, in the fully connected schema
    per_layer = prov["support_statistics"]
    assert per_layer["layer_sizes"] == [32, 3136, 6272, 784]
    s1, s2 = [m.sum(1) for m in G.supports(Z.astype(np.float64))]
    assert per_layer["support_sizes"][0]["median"] == float(np.median(s1))
    assert per_layer["support_sizes"][1]["median"] == float(np.median(s2))
    assert [r["matrix"] for r in per_layer["restricted"]] == ["A_S,1", "A_S,2", "A_S"]
    assert all(r["frac_full_column_rank"] == 1.0 for r in per_layer["restricted"])


def test_support_statistics_of_a_convolutional_generator():
    # The end-to-end restricted maps A_S,i (z -> x_i on the supports, rows S_i) and
    # A_S, against Jacobians by central differences (exact: the pre-activations are
    # affine in z on a support region) restricted to the active units.
    from .test_conv_inversion import small_conv_generator

    G = small_conv_generator("identity")
    stats = support_statistics(G, n_samples=6, random_state=3)
    assert stats["layer_sizes"] == [8, 128, 512, 256]
    assert [r["matrix"] for r in stats["restricted"]] == ["A_S,1", "A_S,2", "A_S"]
    Z = np.random.default_rng(3).standard_normal((6, 8))
    _, hidden = G.forward(Z, return_hidden=True)
    masks = [h > 0 for h in hidden]
    assert [s["median"] for s in stats["support_sizes"]] == [
        float(np.median(m.sum(1))) for m in masks]
    assert stats["hidden"][1]["mean_active_fraction"] == pytest.approx(masks[1].mean())
    h = 1e-6
    conds = [[], [], []]
    for k in range(6):
        plus = G.forward(Z[k] + h * np.eye(8), return_hidden=True)
        minus = G.forward(Z[k] - h * np.eye(8), return_hidden=True)
        for i, (p, m) in enumerate(zip([*plus[1], plus[0]], [*minus[1], minus[0]])):
            J = ((p - m) / (2 * h)).T
            J = J[masks[i][k]] if i < 2 else J
            sv = np.linalg.svd(J, compute_uv=False)
            conds[i].append(sv[0] / sv[-1])
    for i, r in enumerate(stats["restricted"]):
        assert r["frac_full_column_rank"] == 1.0
        assert r["cond"]["median"] == pytest.approx(np.median(conds[i]), rel=1e-6)


def test_support_statistics_of_the_shipped_dcgan():
    stats = support_statistics(load_pretrained_generator("fashion-mnist-dcgan"), n_samples=4)
    assert stats["layer_sizes"] == [32, 3136, 6272, 784]
    assert stats["restricted"][-1]["frac_full_column_rank"] == 1.0
    assert 0.2 < stats["output_saturated_fraction"] < 0.6


def test_dcgan_file_is_read_with_the_generator_file_checks(tmp_path):
    """The shipped file's reader checks declared shapes against the architecture."""
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    from skinvert.datasets import _load_torch_layout

    arch = pretrained_provenance("fashion-mnist-dcgan")["architecture"]
    rng = np.random.default_rng(0)
    tensors = {
        "layer0.weight": rng.standard_normal((3136, 32)).astype(np.float32),
        "layer0.bias": np.zeros(3136, np.float32),
        "layer1.weight": rng.standard_normal((64, 32, 4, 4)).astype(np.float32),
        "layer1.bias": np.zeros(32, np.float32),
        "layer2.weight": rng.standard_normal((32, 1, 3, 3)).astype(np.float32),  # not 4x4
        "layer2.bias": np.zeros(1, np.float32),
    }
    path = str(tmp_path / "bad.safetensors")
    save_file(tensors, path, metadata={"architecture": json.dumps(arch)})
    with pytest.raises(ValueError, match="'layer2.weight' declares shape .32, 1, 3, 3."):
        _load_torch_layout(path, arch)
    tensors["layer2.weight"] = rng.standard_normal((32, 1, 4, 4)).astype(np.float32)
    tensors["payload"] = np.zeros(3, np.float32)
    save_file(tensors, path, metadata={"architecture": json.dumps(arch)})
    with pytest.raises(ValueError, match="unexpected arrays"):
        _load_torch_layout(path, arch)
    del tensors["payload"]
    save_file(tensors, path, metadata={"architecture": json.dumps(arch)})
    assert _load_torch_layout(path, arch).layer_sizes == [32, 3136, 6272, 784]


# -- IDX reader --------------------------------------------------------------


def _write_idx(path, array, code=0x08):
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    dt = {0x08: np.uint8, 0x0D: ">f4"}[code]
    data = header + np.ascontiguousarray(array, dtype=dt).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(data)


def test_load_idx_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=5, dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    floats = rng.standard_normal((2, 3)).astype(np.float32)
    _write_idx(tmp_path / "f.idx", floats, code=0x0D)
    np.testing.assert_array_equal(load_idx(tmp_path / "train-images-idx3-ubyte.gz"), imgs)
    np.testing.assert_array_equal(load_idx(tmp_path / "f.idx"), floats)
    X, y = load_idx_images(tmp_path, return_labels=True)
    np.testing.assert_array_equal(X, imgs)
    np.testing.assert_array_equal(y, labels)
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        load_idx_images(tmp_path, kind="test")


def test_load_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        load_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1]) + np.array([10], ">u4").tobytes() + b"abc")
    with pytest.raises(ValueError, match="header announces shape"):
        load_idx(short)


def test_provenance_files_are_json():
    from importlib import resources

    data = resources.files("skinvert.datasets").joinpath("data")
    names = {p.name for p in data.iterdir()}
    assert {"fashion_mnist_fc.npz", "digits_fc.npz", "PROVENANCE.md"} <= names
    for p in data.iterdir():
        if p.name.endswith(".json"):
            json.loads(p.read_text(encoding="utf-8"))
        if p.name.endswith(".npz"):
            assert len(p.read_bytes()) <= 2 * 1024 * 1024
