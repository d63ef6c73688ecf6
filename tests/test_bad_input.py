"""Bad input gets a clear error naming what was expected; inputs are never modified."""

import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning

from skinvert import (
    GeneratorImputer,
    GradientDescentInverter,
    LatentPursuitInverter,
    LayeredBPInverter,
    OracleInverter,
    ReLUGenerator,
    load_generator,
    make_random_generator,
)
from skinvert.activations import ACTIVATIONS, Activation
from skinvert.inverters import DataRangeWarning

G = make_random_generator([3, 12, 30], random_state=0)
ESTIMATORS = [
    lambda: GradientDescentInverter(G, transform_max_iter=50, random_state=0),
    lambda: OracleInverter(G, transform_max_iter=5),
    lambda: LatentPursuitInverter(G),
    lambda: LayeredBPInverter(G),
]
ALL = ESTIMATORS + [lambda: GeneratorImputer(LatentPursuitInverter(G))]
IDS = ["gd", "oracle", "latent_pursuit", "layered_bp"]


def _X(n=5, seed=0):
    return G.forward(np.random.default_rng(seed).standard_normal((n, 3)))


@pytest.mark.parametrize("make", ALL, ids=IDS + ["imputer"])
@pytest.mark.parametrize(
    "X, match",
    [
        (np.full((2, 30), np.inf), "infinity|inf"),
        (np.full((2, 30), -np.inf), "infinity|inf"),
        (np.ones((2, 29)), "29 features.*30"),
        (np.ones((2, 31)), "31 features.*30"),
        (np.ones((2, 3, 30)), "3|dim"),
        (np.ones(30), "2D array"),
        (np.ones((0, 30)), "0 sample"),
        (np.array([["a"] * 30], dtype=object), "could not convert|Unable to convert|float"),
        (np.ones((2, 30), dtype=complex), "[Cc]omplex"),
    ],
)
def test_fit_rejects(make, X, match):
    with pytest.raises(ValueError, match=match):
        make().fit(X)


@pytest.mark.parametrize("make", ESTIMATORS, ids=IDS)
def test_transform_rejects(make):
    est = make().fit(_X())
    with pytest.raises(ValueError, match="inf"):
        est.transform(np.where(np.eye(2, 30) > 0, np.inf, 0.1))
    with pytest.raises(ValueError, match="inf"):
        est.transform(np.where(np.eye(2, 30) > 0, -np.inf, np.nan))
    with pytest.raises(ValueError, match="29 features"):
        est.transform(np.ones((2, 29)))
    with pytest.raises(ValueError, match="2D array"):
        est.transform(np.ones(30))
    with pytest.raises(ValueError, match="0 sample"):
        est.transform(np.ones((0, 30)))
    with pytest.raises(ValueError, match="could not convert|Unable to convert|float"):
        est.transform(np.array([["a"] * 30], dtype=object))
    with pytest.raises(ValueError, match="[Cc]omplex"):
        est.transform(np.ones((2, 30), dtype=complex))
    Xn = _X(3)
    Xn[1] = np.nan
    with pytest.raises(ValueError, match=r"1 row\(s\) of X have no observed entry.*row 1"):
        est.transform(Xn)
    with pytest.raises(ValueError, match="no observed entry"):
        est.score(Xn)
    with pytest.raises(ValueError, match="latent components|features"):
        est.inverse_transform(np.ones((2, 4)))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("make", ALL, ids=IDS + ["imputer"])
def test_inputs_not_modified_and_repeatable(make):
    X = _X(6)
    X[0, :5] = np.nan
    X.setflags(write=False)  # any in-place write would raise
    Xc = X.copy()
    est = make().fit(X)
    a = est.transform(X)
    b = est.transform(X)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(X, Xc)
    if hasattr(est, "score"):
        est.score(X)
    np.testing.assert_array_equal(X, Xc)


def test_unfitted_errors():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        OracleInverter(G).transform(_X())


def test_bad_parameters():
    with pytest.raises(ValueError, match="learning_rate"):
        GradientDescentInverter(G, learning_rate=-1).fit(_X())
    with pytest.raises(ValueError, match="method"):
        OracleInverter(G, method="svd").fit(_X())
    with pytest.raises(ValueError, match="generator"):
        OracleInverter("G").fit(_X())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_score_uses_observed_entries_only():
    X = _X(4)
    Xm = X.copy()
    Xm[:, :10] = np.nan
    est = GradientDescentInverter(G, transform_max_iter=100, random_state=0).fit(X)
    R = X - est.inverse_transform(est.transform(X))
    assert est.score(X) == pytest.approx(-np.mean(R**2), rel=1e-12)
    Rm = (Xm - est.inverse_transform(est.transform(Xm)))[:, 10:]
    assert est.score(Xm) == pytest.approx(-np.mean(Rm**2), rel=1e-12)


# -- generators that cannot be inverted ----------------------------------------------
W0 = np.random.default_rng(0).standard_normal((12, 3))
W1 = np.random.default_rng(1).standard_normal((30, 12))


@pytest.mark.parametrize(
    "weights, biases, match",
    [
        ([W0, W1.T], None, r"do not chain: weights\[1\] has shape \(12, 30\)"),
        ([W0, W1[:, :11]], None, "do not chain"),
        ([W0, np.where(W1 > 1, np.nan, W1)], None, r"weights\[1\] holds non-finite"),
        ([W0 * np.inf, W1], None, r"weights\[0\] holds non-finite"),
        ([W0, W1], [None, np.full(30, np.inf)], r"biases\[1\] holds non-finite"),
        ([np.zeros((12, 3)), W1], None, r"weights\[0\] is all zeros"),
        ([W0 * 1e300, W1], None, r"weights\[0\] is badly scaled.*overflows or underflows"),
        ([W0, W1 * 1e-300], None, r"weights\[1\] is badly scaled"),
        ([W0, np.zeros((30, 12))], None, r"weights\[1\] is all zeros"),
        ([W0, W1], [None, np.zeros(29)], r"biases\[1\] must have shape \(30,\)"),
        ([W0, W1], [None], "biases must be a sequence of 2"),
        ([W0, W1.ravel()], None, r"weights\[1\] must be a 2-D array"),
        ([W0, np.ones((0, 12))], None, "empty dimension"),
        ([], None, "at least one matrix"),
    ],
)
def test_generator_rejects_bad_layers(weights, biases, match):
    with pytest.raises(ValueError, match=match):
        ReLUGenerator(weights, biases)


@pytest.mark.parametrize(
    "weights, match",
    [
        ([W0, W1.astype(complex)], r"weights\[1\] must hold real numbers"),
        ([W0, np.full((30, 12), "a", dtype=object)], r"weights\[1\] must hold real numbers"),
        ([W0 > 0, W1], r"weights\[0\] must hold real numbers"),
        (W0, "sequence of 2-D arrays"),
    ],
)
def test_generator_rejects_bad_types(weights, match):
    with pytest.raises(TypeError, match=match):
        ReLUGenerator(weights)


def test_weights_not_modified_by_generator():
    W = W1.copy()
    W.setflags(write=False)
    g = ReLUGenerator([W0, W], output_activation="identity")
    np.testing.assert_array_equal(W, W1)
    assert g.weights[1] is not W and not g.weights[1].flags.writeable


# -- output activations and phi^-1 -----------------------------------------------------
def test_every_activation_is_invertible():
    """No activation lacks phi^-1: non-invertible parameters are refused up front."""
    xp = np
    U = np.linspace(-3, 3, 61)
    for name in ACTIVATIONS:
        act = Activation(name)
        np.testing.assert_allclose(act.inverse(act(U, xp), xp), U, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="finite slope > 0 to be invertible"):
        Activation("leaky_relu", slope=0.0)
    with pytest.raises(ValueError, match="finite slope > 0 to be invertible"):
        Activation("plu", slope=-1.0)
    with pytest.raises(ValueError, match="finite c > 0"):
        Activation("plu", c=0.0)
    with pytest.raises(ValueError, match="must be one of"):
        make_random_generator([3, 12, 30], output_activation="relu")
    with pytest.raises(TypeError, match="output_activation must be"):
        make_random_generator([3, 12, 30], output_activation=3)


def _saturated(act):
    """Signals of a tanh / sigmoid generator with saturated and out-of-range entries."""
    g = make_random_generator([3, 12, 30], output_activation=act, random_state=0)
    Z = np.random.default_rng(0).standard_normal((5, 3))
    X = g.forward(Z)
    lo, hi = (-1.0, 1.0) if act == "tanh" else (0.0, 1.0)
    Xs, Xn = X.copy(), X.copy()
    for rows, cols, v in [
        (slice(None), slice(0, 4), hi),
        (1, slice(4, 8), lo),
        (2, slice(8, 10), 7.0),
    ]:
        Xs[rows, cols] = v
        Xn[rows, cols] = np.nan
    return g, Z, X, Xs, Xn


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_saturated_outputs_are_missing_for_phi_inverse_methods(act):
    """|tanh| == 1 (sigmoid 0 or 1) and out-of-range values have no finite phi^-1:
    the methods that use phi^-1 drop them as missing entries, exactly."""
    g, Z, X, Xs, Xn = _saturated(act)
    Xs.setflags(write=False)
    warnings.simplefilter("ignore", DataRangeWarning)  # (tested below)
    for est in [
        LatentPursuitInverter(g, debias=False),
        LayeredBPInverter(g, debias=False),
    ]:
        est.fit(X)
        np.testing.assert_array_equal(est.transform(Xs), est.transform(Xn))
    S = g.supports(Z)
    oracle = OracleInverter(g, method="layerwise").fit(X)
    np.testing.assert_array_equal(
        oracle.transform(Xs, supports=S), oracle.transform(Xn, supports=S)
    )


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
@pytest.mark.parametrize(
    "make",
    [
        lambda g: GradientDescentInverter(g, transform_max_iter=50, random_state=0),
        lambda g: OracleInverter(g, transform_max_iter=5),
        lambda g: LatentPursuitInverter(g),
        lambda g: LayeredBPInverter(g),
    ],
    ids=IDS,
)
def test_saturated_outputs_give_finite_codes(make, act):
    """Every inverter returns finite codes on saturated / out-of-range entries
    (methods using phi itself keep them as observations), repeatably, without
    touching the input."""
    g, Z, X, Xs, _ = _saturated(act)
    Xs.setflags(write=False)
    Xc = Xs.copy()
    est = make(g).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(DataRangeWarning, match="outside the range.*clipped"):
            a = est.transform(Xs)
    assert a.shape == (5, 3) and np.all(np.isfinite(a))
    np.testing.assert_array_equal(est.transform(Xs), a)
    np.testing.assert_array_equal(Xs, Xc)


# -- weight files ----------------------------------------------------------------------
_UNPICKLED = []


class _Trap:
    """Unpickling this would call _spring: a loader that unpickles is caught."""

    def __reduce__(self):
        return (_spring, ())


def _spring():
    _UNPICKLED.append(True)
    return "sprung"


def test_weight_file_with_pickles_is_refused_unread(tmp_path):
    path = tmp_path / "evil.npz"
    G.save(path)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["weight_1"] = np.array([_Trap()], dtype=object)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(ValueError, match="pickled objects; skinvert never unpickles"):
        load_generator(path)
    assert _UNPICKLED == []
    # A header that is itself a pickle is refused too.
    arrays = {k: v for k, v in arrays.items() if k != "weight_1"}
    arrays["__header__"] = np.array([_Trap()], dtype=object)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(ValueError, match="pickled objects"):
        load_generator(path)
    assert _UNPICKLED == []


def test_weight_file_bad_content(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"not a readable .npz file \(not a zip archive\)"):
        load_generator(bad)
    import pickle

    bad.write_bytes(pickle.dumps(_Trap()))  # a pickle renamed .npz
    with pytest.raises(ValueError, match=r"not a readable .npz file \(a pickle\)"):
        load_generator(bad)
    assert _UNPICKLED == []
    with pytest.raises(FileNotFoundError):
        load_generator(tmp_path / "missing.npz")
    g = tmp_path / "g.npz"
    G.save(g)
    with np.load(g) as data:
        arrays = dict(data)
    arrays["weight_1"] = np.full_like(arrays["weight_1"], np.nan)
    np.savez(tmp_path / "nan.npz", **arrays)
    with pytest.raises(ValueError, match=r"weights\[1\] holds non-finite"):
        load_generator(tmp_path / "nan.npz")
    with pytest.raises(ValueError, match="suffix"):
        load_generator(tmp_path / "g.pkl")


# -- issue 17, rows 1-5: dtype casts, scale, hostile files, malformed headers, paths ----
W0_32, W1_32 = W0.astype(np.float32), W1.astype(np.float32)


def _state_with_bias(b):
    g = ReLUGenerator([W0_32, W1_32], output_activation="identity")
    state = dict(g.__getstate__())
    state["biases"] = [state["biases"][0], b]
    return state


def test_bias_beyond_float32_range_is_refused():
    """Row 1: finiteness is checked after the cast to the stored dtype."""
    big = np.full(30, 1e39)  # finite in float64, inf in float32
    with pytest.raises(ValueError, match=r"biases\[1\] holds non-finite values after the cast"):
        ReLUGenerator([W0_32, W1_32], [None, big])
    g = ReLUGenerator.__new__(ReLUGenerator)  # pickle / joblib / skops restore
    with pytest.raises(ValueError, match=r"biases\[1\] holds non-finite"):
        g.__setstate__(_state_with_bias(big))


def test_bias_beyond_float32_range_in_file_is_refused(tmp_path):
    path = tmp_path / "g.npz"
    ReLUGenerator([W0_32, W1_32]).save(path)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["bias_1"] = np.full(30, 1e39)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(ValueError, match=r"biases\[1\] holds non-finite"):
        load_generator(path)


def test_float32_weights_near_1e20_are_badly_scaled():
    """Row 2: W^T W overflows float32, so the generator is refused up front."""
    with pytest.raises(ValueError, match=r"weights\[0\] is badly scaled.*float32"):
        ReLUGenerator([W0_32 * np.float32(1e20), W1_32])


@pytest.mark.parametrize("make", ESTIMATORS, ids=IDS)
def test_float64_weights_near_1e40_on_float32_data(make):
    """Row 2: weights fine in float64 but out of float32 range for float32 X."""
    g = ReLUGenerator([W0 * 1e40, W1], output_activation="identity")
    X32 = np.random.default_rng(0).standard_normal((4, 30)).astype(np.float32)
    est = make().set_params(generator=g)
    with pytest.raises(ValueError, match="badly scaled.*float32"):
        est.fit(X32).transform(X32)
    with pytest.raises(ValueError, match="badly scaled.*float32"):
        g.forward(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="badly scaled.*float32"):
        g.as_arrays(np, dtype=np.float32)
    assert g.forward(np.zeros((2, 3))).dtype == np.float64  # float64 still works


def _zip_with(path, members):
    """An .npz whose members are raw bytes (for hand-made, hostile headers)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name + ".npy", data)


def _npy(array):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def _npy_claiming(shape, dtype="<f8", payload=b"\0" * 8):
    """A .npy member whose header declares ``shape`` but holds 8 bytes of data."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue() + payload


def _good_members(g):
    import json

    header = {
        "format": "skinvert.ReLUGenerator",
        "version": 1,
        "n_weights": len(g.layers),
        "output_activation": "tanh",
        "activation_params": {},
    }
    members = {"__header__": _npy(np.array(json.dumps(header)))}
    for i, (W, b) in enumerate(zip(g.weights, g.biases)):
        members[f"weight_{i}"], members[f"bias_{i}"] = _npy(W), _npy(b)
    return header, members


def test_npz_reads_only_the_expected_members(tmp_path):
    """Row 3: an extra (large) member is refused, never read."""
    path = tmp_path / "extra.npz"
    G.save(path)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["junk"] = np.zeros(10**6)
    np.savez_compressed(path, **arrays)
    with pytest.raises(ValueError, match=r"unexpected arrays \['junk'\]"):
        load_generator(path)


@pytest.mark.parametrize(
    "key, shape, match",
    [
        ("weight_0", (10**6, 10**6), "declares shape.*more than the limit"),
        ("weight_0", (10**12,), r"declares shape \(1000000000000,\), not a 2-D shape"),
        ("bias_1", (10**12,), r"'bias_1' declares shape.*more than the limit"),
        ("bias_1", (29,), r"bias_1 declares shape \(29,\), but weight_1 has 30 rows"),
        ("weight_1", (30, 13), r"weight_1 declares 13 columns, but weight_0 has 12 rows"),
        ("weight_0", (12, 3), r"declares shape \(12, 3\) of float64 \(288 bytes\) but stores 8"),
    ],
)
def test_npz_declared_shapes_are_checked_before_reading(tmp_path, key, shape, match):
    """Row 3: a .npy header claiming a huge shape is refused before any allocation."""
    path = tmp_path / "huge.npz"
    _, members = _good_members(G)
    members[key] = _npy_claiming(shape)
    _zip_with(path, members)
    with pytest.raises(ValueError, match=match):
        load_generator(path)


def _safetensors_file(path, entries, metadata, payload=b"\0" * 8, length=None):
    import json
    import struct

    head = json.dumps({"__metadata__": metadata, **entries}).encode()
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(head) if length is None else length) + head + payload)


def test_safetensors_header_is_checked_before_reading(tmp_path):
    pytest.importorskip("safetensors")
    import json

    header, _ = _good_members(G)
    meta = {"skinvert": json.dumps(header)}
    entries = {}
    for i, (W, b) in enumerate(zip(G.weights, G.biases)):
        entries[f"weight_{i}"] = {"dtype": "F64", "shape": list(W.shape), "data_offsets": [0, 8]}
        entries[f"bias_{i}"] = {"dtype": "F64", "shape": list(b.shape), "data_offsets": [0, 8]}
    entries["weight_0"]["shape"] = [10**6, 10**6]
    path = tmp_path / "huge.safetensors"
    _safetensors_file(path, entries, meta)
    with pytest.raises(ValueError, match="declares shape.*more than the limit"):
        load_generator(path)
    entries["weight_0"]["shape"] = [12, 3]
    _safetensors_file(path, entries, meta)
    with pytest.raises(ValueError, match=r"\(288 bytes\) but stores 8 bytes"):
        load_generator(path)
    entries["weight_0"]["data_offsets"] = [0, 10**9]
    _safetensors_file(path, entries, meta)
    with pytest.raises(ValueError, match="data_offsets .* outside the file"):
        load_generator(path)
    _safetensors_file(path, entries, meta, length=2**40)
    with pytest.raises(ValueError, match="header declares 1099511627776 bytes"):
        load_generator(path)
    entries["weight_0"] = {"dtype": "F64", "shape": [12, 3], "data_offsets": [0, 8]}
    entries["junk"] = {"dtype": "F64", "shape": [10**8], "data_offsets": [0, 8]}
    _safetensors_file(path, entries, meta)
    with pytest.raises(ValueError, match=r"unexpected arrays \['junk'\]"):
        load_generator(path)


@pytest.mark.parametrize(
    "header, match",
    [
        ("[1, 2]", "header must be a JSON object"),
        ("{not json", "header is not valid JSON"),
        (
            '{"format": "skinvert.ReLUGenerator", "version": 1, "n_weights": null, '
            '"output_activation": "tanh"}',
            "n_weights must be an integer",
        ),
        (
            '{"format": "skinvert.ReLUGenerator", "version": 1, "n_weights": "2", '
            '"output_activation": "tanh"}',
            "n_weights must be an integer",
        ),
        (
            '{"format": "skinvert.ReLUGenerator", "version": 1, "n_weights": 2}',
            "output_activation must be a string",
        ),
        (
            '{"format": "skinvert.ReLUGenerator", "version": "1", "n_weights": 2, '
            '"output_activation": "tanh"}',
            "version must be an integer",
        ),
        (
            '{"format": "skinvert.ReLUGenerator", "version": 1, "n_weights": 2, '
            '"output_activation": "tanh", "activation_params": [1]}',
            "activation_params must be a JSON object",
        ),
        (
            '{"format": "skinvert.ReLUGenerator", "version": 1, "n_weights": 1, '
            '"output_activation": "tanh"}',
            "claims fewer layers than stored",
        ),
        (
            '{"format": "skinvert.ReLUGenerator", "version": 1, "n_weights": 3, '
            '"output_activation": "tanh"}',
            "misses the array 'bias_2'",
        ),
    ],
)
def test_malformed_header_is_a_value_error(tmp_path, header, match):
    """Row 4: what is wrong with the header, as a ValueError."""
    path = tmp_path / "bad_header.npz"
    _, members = _good_members(G)
    members["__header__"] = _npy(np.array(header))
    _zip_with(path, members)
    with pytest.raises(ValueError, match=match):
        load_generator(path)


class _PathLike:
    def __init__(self, path):
        self.path = path

    def __fspath__(self):
        return self.path


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_bytes_and_pathlike_paths(tmp_path, suffix):
    """Row 5: bytes paths and any os.PathLike work like str."""
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    path = os.fsencode(str(tmp_path / ("g" + suffix)))
    G.save(path)
    assert load_generator(path) == G
    assert load_generator(_PathLike(path)) == G
    assert load_generator(_PathLike(os.fsdecode(path))) == G
    with pytest.raises(TypeError, match="path must be a str, bytes or os.PathLike"):
        load_generator(3)


# -- noise larger than the signal -------------------------------------------------------
@pytest.mark.parametrize("act", ["tanh", "identity"])
@pytest.mark.parametrize(
    "make",
    [
        lambda g: GradientDescentInverter(g, transform_max_iter=50, random_state=0),
        lambda g: OracleInverter(g, transform_max_iter=5),
        lambda g: LatentPursuitInverter(g),
        lambda g: LayeredBPInverter(g, epsilon=10.0),
    ],
    ids=IDS,
)
def test_noise_larger_than_signal(make, act):
    """Documented behaviour: finite codes, no error; at most a ConvergenceWarning
    (with tanh most noisy entries leave (-1, 1) and count as missing for phi^-1)."""
    g = make_random_generator([3, 12, 30], output_activation=act, random_state=0)
    rng = np.random.default_rng(0)
    X = g.forward(rng.standard_normal((6, 3)))
    Xnoisy = X + 10 * np.std(X) * rng.standard_normal(X.shape)
    Xnoisy.setflags(write=False)
    est = make(g).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", DataRangeWarning)  # tanh: values far out are clipped
        Z = est.transform(Xnoisy)
        assert np.isfinite(est.score(Xnoisy))
    assert Z.shape == (6, 3) and np.all(np.isfinite(Z))
    # Bounded: the old code gave |z| up to 3.7e4 here (targets beyond tanh's range).
    assert np.max(np.abs(Z)) < 1e3
    np.testing.assert_array_equal(est.transform(Xnoisy), Z)


# -- fuzzing: only ValueError / TypeError, never anything else ---------------------------
_FITTED = None


def _fitted():
    global _FITTED
    if _FITTED is None:
        X = _X(6)
        _FITTED = [make().fit(X) for make in ALL]
    return _FITTED


_VALUES = [
    np.nan,
    np.inf,
    -np.inf,
    1e300,
    -1e300,
    3e38,
    1e-300,
    -1e-300,
    0.0,
    -0.0,
    -1.0,
    1.0,
    0.5,
    -0.999,
    2.0,
    -7.0,
]
_HUGE = 1e15  # above this, squares overflow float32 (and 1e300 float64): NumPy RuntimeWarnings


def _max_abs(A):
    """Largest finite |value| of A as numbers (0 when A does not convert)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            F = np.abs(np.asarray(A, dtype=np.complex128))
    except (ValueError, TypeError):
        return 0.0
    F = F[np.isfinite(F)]
    return float(F.max()) if F.size else 0.0


@st.composite
def _arrays(draw):
    kind = draw(
        st.sampled_from(
            ["float64", "float32", "float16", "int64", "bool", "complex128", "object", "str"]
        )
    )
    ndim = draw(st.sampled_from([2, 2, 2, 1, 3, 0]))
    n_rows = draw(st.integers(0, 4))
    n_cols = draw(st.sampled_from([30, 30, 30, 29, 31, 0, 1]))
    shape = {0: (), 1: (n_cols,), 2: (n_rows, n_cols), 3: (n_rows, 2, n_cols)}[ndim]
    size = int(np.prod(shape))
    vals = draw(
        st.lists(
            st.one_of(st.sampled_from(_VALUES), st.floats(-5, 5, allow_nan=False)),
            min_size=size,
            max_size=size,
        )
    )
    A = np.array(vals, dtype=np.float64).reshape(shape)
    with np.errstate(all="ignore"):
        if kind in ("int64", "bool"):
            A = np.nan_to_num(A, posinf=9, neginf=-9).clip(-9, 9).astype(kind)
        elif kind == "str":
            A = A.astype(str)
        else:
            A = A.astype(kind)
    return A


@settings(max_examples=50)
@given(A=_arrays())
def test_fuzz_only_value_or_type_errors(A):
    """Any shape, dtype and value: a finite result of the right shape or a
    ValueError / TypeError. A call that succeeds warns with ConvergenceWarning
    or DataRangeWarning (values beyond tanh's range) only, or NumPy's overflow
    RuntimeWarning when values are so large their
    squares overflow (see docs/scaling.md); the input is never modified."""
    A.setflags(write=False)
    A_copy = A.copy()
    huge = _max_abs(A) > _HUGE
    for est in _fitted():
        for method in ("transform", "score", "inverse_transform"):
            fn = getattr(est, method, None)
            if fn is None:  # GeneratorImputer has no score / inverse_transform
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    out = fn(A)
                except (ValueError, TypeError):
                    continue  # (sklearn's check may warn on inf - inf first)
            if method == "score":
                assert isinstance(out, float) and np.isfinite(out)
            else:
                imputed = method == "inverse_transform" or isinstance(est, GeneratorImputer)
                assert out.shape == (A.shape[0], 30 if imputed else 3)
                if method == "transform" or not huge:
                    assert np.all(np.isfinite(out))
            for w in caught:
                assert issubclass(w.category, (ConvergenceWarning, DataRangeWarning)) or (
                    huge and issubclass(w.category, RuntimeWarning)
                ), f"{type(est).__name__}.{method}: unexpected {w.category.__name__}: {w.message}"
    if A.dtype != object:
        np.testing.assert_array_equal(A, A_copy)


@settings(max_examples=25)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=2, max_size=4),
    scale=st.sampled_from([0.0, 1e-300, 1e-30, 1.0, 1e20, 1e300, np.inf, np.nan]),
    bias=st.sampled_from([0.0, 1.0, 1e39]),
    act=st.sampled_from(list(ACTIVATIONS)),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_fuzz_generator_construction(sizes, scale, bias, act, dtype):
    """Generators from any weights, float32 or float64: valid ones invert without
    error, others are refused with a ValueError naming the defect."""
    rng = np.random.default_rng(0)
    with np.errstate(all="ignore"):
        weights = [
            (scale * rng.standard_normal((o, i))).astype(dtype)
            for i, o in zip(sizes[:-1], sizes[1:], strict=True)
        ]
    biases = [np.full(o, bias) for o in sizes[1:]]  # float64, cast to the weights' dtype
    valid = scale == 1.0 or (dtype == np.float64 and scale in (1e-30, 1e20))
    valid = valid and (bias != 1e39 or dtype == np.float64)
    try:
        g = ReLUGenerator(weights, biases, output_activation=act)
    except ValueError as exc:
        assert not valid, exc
        assert any(m in str(exc) for m in ("non-finite", "all zeros", "badly scaled")), exc
        return
    assert valid
    if scale != 1.0 or bias == 1e39:
        return  # valid but far from the data the inverters are for
    Z = rng.standard_normal((3, sizes[0])).astype(dtype)
    with np.errstate(over="ignore"):
        X = g.forward(Z)
    if not np.all(np.isfinite(X)):
        return  # e.g. scale 1e300: the signals themselves overflow
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for est in [LatentPursuitInverter(g), GradientDescentInverter(g, transform_max_iter=20)]:
            Zhat = est.fit(X).transform(X)
            assert Zhat.shape == Z.shape and np.all(np.isfinite(Zhat))


_BOUNDED = {}


def _bounded_fitted(act, dtype):
    key = (act, dtype)
    if key not in _BOUNDED:
        g = make_random_generator([3, 12, 30], output_activation=act, random_state=0)
        X = g.forward(np.random.default_rng(0).standard_normal((6, 3))).astype(dtype)
        _BOUNDED[key] = (
            g,
            [
                GradientDescentInverter(g, transform_max_iter=30, random_state=0).fit(X),
                OracleInverter(g, transform_max_iter=5).fit(X),
                LatentPursuitInverter(g).fit(X),
                LayeredBPInverter(g).fit(X),
            ],
        )
    return _BOUNDED[key]


@settings(max_examples=40)
@given(
    act=st.sampled_from(["tanh", "sigmoid"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    scale=st.sampled_from([0.0, 0.01, 0.5, 5.0, 100.0, 255.0]),
    missing=st.sampled_from([0.0, 0.3, 0.9]),
    seed=st.integers(0, 2**16),
)
def test_fuzz_out_of_range_data_for_bounded_outputs(act, dtype, scale, missing, seed):
    """Data beyond a tanh / sigmoid output's range (noise of any size, unscaled
    values, float32 or float64): finite, bounded codes with only the documented
    warnings (DataRangeWarning, ConvergenceWarning), or the ValueError of a row
    left with nothing to invert; never an overflow or a non-finite code."""
    g, ests = _bounded_fitted(act, dtype)
    rng = np.random.default_rng(seed)
    X = g.forward(rng.standard_normal((4, 3)))
    X = X + scale * rng.standard_normal(X.shape)
    X[rng.random(X.shape) < missing] = np.nan
    X[:, 0] = np.where(np.isnan(X[:, 0]), 0.5, X[:, 0])  # every row has an entry
    X = X.astype(dtype)
    for est in ests:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                Z = est.transform(X)
            except ValueError as exc:
                assert "no usable entry" in str(exc), exc
                continue
        assert Z.dtype == dtype and np.all(np.isfinite(Z))
        assert np.max(np.abs(Z)) < 1e3, (type(est).__name__, np.max(np.abs(Z)))
        for w in caught:
            assert issubclass(w.category, (ConvergenceWarning, DataRangeWarning)), (
                f"{type(est).__name__}: unexpected {w.category.__name__}: {w.message}"
            )


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::skinvert.inverters.DataRangeWarning")
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), n_threads=st.integers(2, 4))
def test_fuzz_concurrent_transforms(seed, n_threads):
    """One fitted estimator, transforms from several threads at once on different
    inputs (out-of-range and missing values included): each equals its serial
    result, and nothing but ValueError / TypeError is raised."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(seed)
    inputs = []
    for _ in range(n_threads):
        X = _X(5, seed=int(rng.integers(1 << 16))) + rng.choice(
            [0.0, 0.1, 3.0]
        ) * rng.standard_normal((5, 30))
        X[rng.random(X.shape) < 0.2] = np.nan
        X[:, 0] = 0.1
        inputs.append(X)
    for est in _fitted()[:4]:
        serial = [est.transform(X) for X in inputs]
        with ThreadPoolExecutor(n_threads) as pool:
            parallel = list(pool.map(est.transform, inputs))
        for a, b in zip(serial, parallel, strict=True):
            assert np.all(np.isfinite(b))
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
