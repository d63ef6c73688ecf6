"""ReLUGenerator over convolutional layers: forward, files (format version 2), state."""

import json
import pickle

import numpy as np
import pytest

from skinvert import ReLUGenerator, load_generator
from skinvert.operators import (
    Composite,
    Conv2d,
    ConvTranspose2d,
    Dense,
    Reshape,
    Upsample,
)

torch = pytest.importorskip("torch")
F = torch.nn.functional


def conv_generator(seed=0, dtype=np.float64, activation="tanh"):
    """z (6) -> Dense 4x3x3 -> ConvT(4->3, k3 s2 p1 op1) 3x6x6 -> Up x2 + Conv2d(3->2, k3 p1)."""
    rng = np.random.default_rng(seed)
    w0, b0 = rng.standard_normal((36, 6)) / 2, rng.standard_normal(36) / 4
    w1, b1 = rng.standard_normal((4, 3, 3, 3)) / 3, rng.standard_normal(3) / 4
    w2, b2 = rng.standard_normal((2, 3, 3, 3)) / 4, rng.standard_normal(2) / 4
    layers = [
        Composite([Dense(w0.astype(dtype), b0), Reshape((36,), (4, 3, 3))]),
        ConvTranspose2d(w1.astype(dtype), b1, in_shape=(4, 3, 3), stride=2, padding=1,
                        output_padding=1),
        Composite([Upsample(2, (3, 6, 6)),
                   Conv2d(w2.astype(dtype), b2, in_shape=(3, 12, 12), padding=1)]),
    ]
    params = (w0, b0, w1, b1, w2, b2)
    return ReLUGenerator.from_layers(layers, output_activation=activation), params


def torch_forward(params, Z):
    w0, b0, w1, b1, w2, b2 = (torch.from_numpy(np.asarray(p, np.float64)) for p in params)
    z = torch.from_numpy(Z)
    h1 = torch.relu(z @ w0.T + b0).reshape(-1, 4, 3, 3)
    h2 = torch.relu(F.conv_transpose2d(h1, w1, b1, stride=2, padding=1, output_padding=1))
    u = F.conv2d(F.interpolate(h2, scale_factor=2, mode="nearest"), w2, b2, padding=1)
    B = Z.shape[0]
    return torch.tanh(u).reshape(B, -1).numpy(), [h1.reshape(B, -1).numpy(),
                                                   h2.reshape(B, -1).numpy()]


def test_forward_supports_and_sizes_match_torch():
    G, params = conv_generator()
    Z = np.random.default_rng(1).standard_normal((5, 6))
    X, hidden = G.forward(Z, return_hidden=True)
    ref, ref_hidden = torch_forward(params, Z)
    np.testing.assert_allclose(X, ref, rtol=0, atol=1e-12)
    for h, r in zip(hidden, ref_hidden, strict=True):
        np.testing.assert_allclose(h, r, rtol=0, atol=1e-12)
    assert [S.shape for S in G.supports(Z)] == [(5, 36), (5, 108)]
    assert G.layer_sizes == [6, 36, 108, 288]
    assert (G.n_latent, G.n_output, G.n_layers) == (6, 288, 2)
    assert not G.is_dense and G.fits_dense()
    # the dense matrices of the layers give the same map
    Ws, bs = G.weights, G.biases
    assert [W.shape for W in Ws] == [(36, 6), (108, 36), (288, 108)]
    D = ReLUGenerator(Ws, bs, output_activation="tanh")
    assert D.is_dense
    np.testing.assert_allclose(D.forward(Z), X, rtol=0, atol=1e-12)


def test_forward_float32_and_array_api_strict():
    xps = pytest.importorskip("array_api_strict")
    G, _ = conv_generator(dtype=np.float32)
    assert G.dtype == np.float32
    Z = np.random.default_rng(2).standard_normal((3, 6)).astype(np.float32)
    X = G.forward(Z)
    assert X.dtype == np.float32
    import sklearn

    with sklearn.config_context(array_api_dispatch=True):
        Xs = G.forward(xps.asarray(Z))
        Xt = G.forward(torch.from_numpy(Z))
    assert Xs.dtype == xps.float32 and Xt.dtype == torch.float32
    np.testing.assert_allclose(np.asarray(Xs), X, rtol=0, atol=1e-6)
    np.testing.assert_allclose(Xt.numpy(), X, rtol=0, atol=1e-6)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_round_trip(tmp_path, suffix, dtype):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    G, _ = conv_generator(dtype=dtype, activation=("plu", {"slope": 0.2, "c": 0.5}))
    path = tmp_path / f"conv{suffix}"
    G.save(path)
    H = load_generator(path)
    assert H == G and H.dtype == dtype
    assert [type(layer) for layer in H.layers] == [Composite, ConvTranspose2d, Composite]
    Z = np.random.default_rng(3).standard_normal((4, 6)).astype(dtype)
    np.testing.assert_array_equal(H.forward(Z), G.forward(Z))
    G2, _ = conv_generator(seed=5, dtype=dtype)
    assert G2 != G


def test_dense_generators_keep_format_version_1(tmp_path):
    rng = np.random.default_rng(0)
    G = ReLUGenerator([rng.standard_normal((5, 3)), rng.standard_normal((4, 5))])
    G.save(tmp_path / "g.npz")
    with np.load(tmp_path / "g.npz") as f:
        header = json.loads(str(f["__header__"]))
        assert sorted(f.files) == ["__header__", "bias_0", "bias_1", "weight_0", "weight_1"]
    assert header["version"] == 1 and header["n_weights"] == 2
    # Dense layers given to from_layers are written the same way
    H = ReLUGenerator.from_layers([Dense(G.weights[0]), Dense(G.weights[1])])
    H.save(tmp_path / "h.npz")
    assert load_generator(tmp_path / "h.npz") == H == G


def _rewrite(tmp_path, G, edit_header=None, edit_arrays=None, name="bad.npz"):
    """Save G, then rewrite its npz with a modified header / arrays."""
    G.save(tmp_path / "ok.npz")
    with np.load(tmp_path / "ok.npz") as f:
        header = json.loads(str(f["__header__"]))
        arrays = {k: f[k] for k in f.files if k != "__header__"}
    if edit_header:
        edit_header(header)
    if edit_arrays:
        edit_arrays(arrays)
    np.savez(tmp_path / name, __header__=np.array(json.dumps(header)), **arrays)
    return tmp_path / name


def _set(path, value):
    def edit(header):
        node = header
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


HOSTILE_HEADERS = [
    (_set(["layers", 1, "type"], "Pickle"), "unknown layer type"),
    (_set(["layers", 1, "config", "stride"], [0, 2]), "stride"),
    (_set(["layers", 1, "config", "stride"], [True, 2]), "stride"),
    (_set(["layers", 1, "config", "in_shape"], [4, 3]), "in_shape"),
    (_set(["layers", 1, "config", "in_shape"], [4, 2**20, 2**20]), "in_shape|index"),
    (_set(["layers", 1, "config", "output_padding"], [2, 1]), "output_padding"),
    (_set(["layers", 1, "config", "extra"], 1), "exactly the config keys"),
    (_set(["layers", 1, "config", "out_channels"], 5), "declares shape|do not chain"),
    (_set(["layers", 2, "layers", 0, "config", "scale_factor"], [2**14, 2**14]),
     "scale_factor|index"),
    (_set(["layers", 0, "layers", 1, "config", "out_shape"], [4, 10]), "differ in size"),
    (_set(["layers", 0, "layers", 1, "config", "in_shape"], [6, 6]), "takes shape"),
    (_set(["layers"], []), "non-empty list"),
    (_set(["layers"], {"a": 1}), "non-empty list"),
    (_set(["layers", 0], "Dense"), "must be an object"),
    (_set(["version"], 3), "newer skinvert"),
]


@pytest.mark.parametrize("edit, match", HOSTILE_HEADERS)
def test_hostile_headers_are_refused(tmp_path, edit, match):
    G, _ = conv_generator()
    path = _rewrite(tmp_path, G, edit_header=edit)
    with pytest.raises(ValueError, match=match):
        load_generator(path)


def test_deep_composites_are_refused(tmp_path):
    G, _ = conv_generator()

    def nest(header):
        rec = header["layers"][0]
        for _ in range(6):
            rec = {"type": "Composite", "config": {}, "layers": [rec]}
        header["layers"][0] = rec

    with pytest.raises(ValueError, match="nest deeper"):
        load_generator(_rewrite(tmp_path, G, edit_header=nest))


def test_hostile_arrays_are_refused(tmp_path):
    G, _ = conv_generator()

    def extra(arrays):
        arrays["layer_9.weight"] = np.ones(2)

    with pytest.raises(ValueError, match="unexpected arrays"):
        load_generator(_rewrite(tmp_path, G, edit_arrays=extra))

    def missing(arrays):
        del arrays["layer_1.bias"]

    with pytest.raises(ValueError, match="misses the array 'layer_1.bias'"):
        load_generator(_rewrite(tmp_path, G, edit_arrays=missing))

    def wrong_shape(arrays):
        arrays["layer_1.weight"] = np.ones((4, 3, 3, 2))

    with pytest.raises(ValueError, match="calls for"):
        load_generator(_rewrite(tmp_path, G, edit_arrays=wrong_shape))

    def non_finite(arrays):
        arrays["layer_1.weight"] = np.full((4, 3, 3, 3), np.nan)

    with pytest.raises(ValueError, match="layer_1 .ConvTranspose2d. is invalid.*non-finite"):
        load_generator(_rewrite(tmp_path, G, edit_arrays=non_finite))

    def objects(arrays):
        arrays["layer_1.bias"] = np.array([object()] * 3, dtype=object)

    with pytest.raises(ValueError, match="pickled objects"):
        load_generator(_rewrite(tmp_path, G, edit_arrays=objects))


def test_unknown_layer_type_cannot_be_saved(tmp_path):
    from skinvert.operators import Measurement

    class Odd(Reshape):
        pass

    G = ReLUGenerator.from_layers([Dense(np.ones((4, 2))), Odd((4,), (4,))],
                                  output_activation="identity")
    with pytest.raises(TypeError, match="Cannot write a Odd layer"):
        G.save(tmp_path / "odd.npz")
    assert Measurement  # the measurement is not a generator layer


def test_weights_of_a_layer_too_large_raise_naming_it():
    w = np.ones((1, 1, 3, 3)) / 9
    big = Conv2d(w, in_shape=(1, 100, 100), padding=1)  # 10^4 x 10^4 > 2**26
    G = ReLUGenerator.from_layers([Composite([Dense(np.ones((10_000, 2))),
                                              Reshape((10_000,), (1, 100, 100))]), big])
    with pytest.raises(ValueError, match=r"layers\[1\] \(Conv2d.*too large for a dense"):
        G.weights  # noqa: B018
    assert not G.fits_dense()
    assert "does not fit in memory" in G.layerwise_obstacle()
    X = G.forward(np.ones((2, 2)))  # matrix-free forward still works
    assert X.shape == (2, 10_000)


def test_layerwise_obstacle_names_the_contracting_layer():
    G, _ = conv_generator()
    assert G.layerwise_obstacle() is None  # 6 -> 36 -> 108 -> 288 expands
    rng = np.random.default_rng(0)
    H = ReLUGenerator.from_layers([
        Dense(rng.standard_normal((40, 4))),
        Composite([Reshape((40,), (10, 2, 2)),
                   Conv2d(rng.standard_normal((2, 10, 1, 1)), in_shape=(10, 2, 2))]),
    ])
    msg = H.layerwise_obstacle()
    assert msg.startswith("layers[1] (Composite") and "maps 40 units to 8 outputs" in msg


def test_pickle_and_skops_state():
    G, _ = conv_generator()
    H = pickle.loads(pickle.dumps(G))
    assert H == G and not H.is_dense
    Z = np.random.default_rng(4).standard_normal((3, 6))
    np.testing.assert_array_equal(H.forward(Z), G.forward(Z))
    sio = pytest.importorskip("skops.io")
    from skinvert import SKOPS_TRUSTED_TYPES

    K = sio.loads(sio.dumps(G), trusted=list(SKOPS_TRUSTED_TYPES))
    assert K == G
    state = G.__getstate__()
    state["layers"] = state["layers"][::-1]
    with pytest.raises(ValueError, match="do not chain"):
        ReLUGenerator.__new__(ReLUGenerator).__setstate__(state)


def test_parameter_free_layers_do_not_set_the_dtype():
    w = np.ones((3, 2), dtype=np.float32)
    G = ReLUGenerator.from_layers([Dense(w), Reshape((3,), (3, 1, 1)),
                                   Composite([Upsample(2, (3, 1, 1)), Reshape((3, 2, 2), (12,))])],
                                  output_activation="identity")
    assert G.dtype == np.float32
    assert G.forward(np.ones((1, 2), np.float32)).dtype == np.float32


# -- invertibility_report on convolutional generators ---------------------------------


def test_invertibility_report_is_exact_where_the_dense_matrices_fit():
    from skinvert.analysis import invertibility_report

    G, _ = conv_generator(seed=7)
    D = ReLUGenerator(G.weights, G.biases, output_activation="tanh")
    Z = np.random.default_rng(8).standard_normal((6, 6))
    rc = invertibility_report(G, Z, epsilon=0.01, noise_std=0.01)
    rd = invertibility_report(D, Z, epsilon=0.01, noise_std=0.01)
    for key in rd.status:
        np.testing.assert_array_equal(rc.status[key], rd.status[key])
        np.testing.assert_array_equal(rc.estimated[key], rd.estimated[key])
    for key, value in rd.quantities.items():
        np.testing.assert_allclose(rc.quantities[key], value, rtol=1e-12, atol=1e-12,
                                   err_msg=key)
    assert rc.notes == rd.notes and "not computed" not in str(rc)


def test_invertibility_report_labels_wide_layers():
    from skinvert.analysis import UNKNOWN, VIOLATED, invertibility_report

    G, _ = conv_generator(seed=7)  # sizes [6, 36, 108, 288]
    Z = np.random.default_rng(8).standard_normal((6, 6))
    full = invertibility_report(G, Z, epsilon=0.01, noise_std=0.01)
    rep = invertibility_report(G, Z, epsilon=0.01, noise_std=0.01, max_gram_columns=40)
    # layer 2 (108 columns) is too wide for the Gram matrices: labelled, NaN, unknown or sized
    assert rep.notes["theorem2_at_support"][2].startswith("not computed: n_2 = 108 columns")
    assert np.all(np.isnan(rep.coherence[:, 2])) and np.all(rep.rank[:, 2] == -1)
    assert np.all(rep.status["theorem2_at_support"][:, 2] == UNKNOWN)
    np.testing.assert_array_equal(rep.rank_upper[:, 2], np.minimum(288, 108))
    # what the sizes prove agrees with the exact report
    exact_t1 = full.status["theorem1_at_support"][:, 2]
    sized_t1 = rep.status["theorem1_at_support"][:, 2]
    assert np.all((sized_t1 == UNKNOWN) | (sized_t1 == exact_t1))
    # the narrow layers are computed exactly, as in the full report
    for j in (0, 1):
        np.testing.assert_array_equal(rep.rank[:, j], full.rank[:, j])
        np.testing.assert_allclose(rep.coherence[:, j], full.coherence[:, j], rtol=1e-12)
    np.testing.assert_allclose(rep.min_column_norm, full.min_column_norm, rtol=1e-12)
    # a contracting wide layer: rank <= rows < columns is proved
    H = ReLUGenerator.from_layers([Dense(np.random.default_rng(0).standard_normal((50, 3))),
                                   Dense(np.random.default_rng(1).standard_normal((20, 50)))])
    r = invertibility_report(H, np.random.default_rng(2).standard_normal((5, 3)),
                             max_gram_columns=10)
    assert np.all(r.status["theorem1_at_support"][:, 1] == VIOLATED)
    assert np.all(r.lambda_min[:, 1][r.sparsity[:, 0] > 20] == 0)


def test_invertibility_report_refuses_layers_too_large_for_dense():
    from skinvert.analysis import invertibility_report

    big = Conv2d(np.ones((1, 1, 3, 3)) / 9, in_shape=(1, 100, 100), padding=1)
    G = ReLUGenerator.from_layers([Composite([Dense(np.ones((10_000, 2))),
                                              Reshape((10_000,), (1, 100, 100))]), big])
    with pytest.raises(ValueError, match=r"needs every layer's dense matrix: layers\[1\]"):
        invertibility_report(G, np.ones((2, 2)))
