"""Fitted estimators round-trip through skops.io and joblib with identical transforms."""

import copy
import pickle

import joblib
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skinvert import (
    SKOPS_TRUSTED_TYPES,
    GeneratorImputer,
    GradientDescentInverter,
    LatentPursuitInverter,
    LayeredBPInverter,
    OracleInverter,
    ReLUGenerator,
    make_random_generator,
)
from skinvert.activations import Activation

sio = pytest.importorskip("skops.io")

G = make_random_generator([5, 40, 100], random_state=0)

ESTIMATORS = {
    "oracle": lambda: OracleInverter(G, transform_max_iter=5),
    "layered_bp": lambda: LayeredBPInverter(G, lam=1e-3),
    "latent_pursuit": lambda: LatentPursuitInverter(G, lam=1e-3),
    "gradient_descent": lambda: GradientDescentInverter(
        G, transform_max_iter=30, n_restarts=2, random_state=0
    ),
    "imputer": lambda: GeneratorImputer(LatentPursuitInverter(G)),
}


def _X(dtype):
    X = G.forward(np.random.default_rng(0).standard_normal((6, 5))).astype(dtype)
    X[0, :30] = np.nan
    X[3, 50:] = np.nan
    return X


def _fitted_inverters(est):
    """The estimator and every inverter it holds (support estimator, inner inverter)."""
    out = [est]
    for name in ("support_estimator_", "inverter_"):
        if hasattr(est, name):
            out += _fitted_inverters(getattr(est, name))
    return out


def _check_same(loaded, est, X):
    assert type(loaded) is type(est)
    assert loaded.get_params(deep=False).keys() == est.get_params(deep=False).keys()
    for a, b in zip(_fitted_inverters(loaded), _fitted_inverters(est)):
        assert type(a) is type(b)
        assert a.n_features_in_ == b.n_features_in_
        if hasattr(b, "generator_"):
            # Fitted arrays are host NumPy, frozen as in a new generator.
            assert a.generator_ == b.generator_
            assert a.generator_ is not b.generator_
            for W in a.generator_.weights + a.generator_.biases:
                assert type(W) is np.ndarray and not W.flags.writeable
            assert a.generator_.activation == b.generator_.activation
        if hasattr(b, "init_codes_"):
            assert type(a.init_codes_) is np.ndarray
            np.testing.assert_array_equal(a.init_codes_, b.init_codes_)
            assert a.init_codes_.dtype == b.init_codes_.dtype
        if hasattr(b, "lipschitz_"):
            assert a.lipschitz_ == b.lipschitz_
    Zl, Ze = loaded.transform(X), est.transform(X)
    assert Zl.dtype == Ze.dtype
    np.testing.assert_array_equal(Zl, Ze)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_skops_round_trip(name, dtype, tmp_path):
    X = _X(dtype)
    est = ESTIMATORS[name]().fit(X)
    path = tmp_path / f"{name}.skops"
    sio.dump(est, path)
    # The trusted list covers everything the file needs: nothing else is untrusted.
    untrusted = sio.get_untrusted_types(file=path)
    assert untrusted, "skops should ask to trust the skinvert types"
    assert set(untrusted) <= set(SKOPS_TRUSTED_TYPES)
    loaded = sio.load(path, trusted=SKOPS_TRUSTED_TYPES)
    _check_same(loaded, est, X)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_joblib_round_trip(name, tmp_path):
    X = _X(np.float64)
    est = ESTIMATORS[name]().fit(X)
    path = tmp_path / f"{name}.joblib"
    joblib.dump(est, path)
    _check_same(joblib.load(path), est, X)


def test_skops_refuses_untrusted_types(tmp_path):
    from skops.io.exceptions import UntrustedTypesFoundException

    est = LatentPursuitInverter(G).fit(_X(np.float64))
    path = tmp_path / "lp.skops"
    sio.dump(est, path)
    with pytest.raises(UntrustedTypesFoundException):
        sio.load(path)
    with pytest.raises(UntrustedTypesFoundException):
        sio.load(path, trusted=[t for t in SKOPS_TRUSTED_TYPES if "generator" not in t])


def test_trusted_types_name_real_classes():
    import importlib

    for name in SKOPS_TRUSTED_TYPES:
        module, _, cls = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), cls), type)


def test_restored_generator_is_validated():
    """A generator rebuilt from saved state is checked like a new one."""
    state = dict(G.__getstate__())
    assert set(state) == {"weights", "biases", "activation"}  # the layout of skinvert 0.1
    state["weights"] = [W.copy() for W in G.weights]
    state["weights"][1][0, 0] = np.inf
    g = ReLUGenerator.__new__(ReLUGenerator)
    with pytest.raises(ValueError, match=r"weights\[1\] holds non-finite"):
        g.__setstate__(state)
    state["weights"] = [G.weights[0], G.weights[0]]
    with pytest.raises(ValueError, match="do not chain"):
        g.__setstate__(state)
    with pytest.raises(ValueError, match="Cannot restore a ReLUGenerator"):
        g.__setstate__({"weights": G.weights})
    a = Activation.__new__(Activation)
    with pytest.raises(ValueError, match="finite slope > 0"):
        a.__setstate__({"name": "leaky_relu", "slope": 0.0, "c": 1.0})
    with pytest.raises(ValueError, match="output_activation must be one of"):
        a.__setstate__({"name": "relu", "slope": 0.1, "c": 1.0})


def test_pickle_copy_keep_generator_frozen():
    g2 = pickle.loads(pickle.dumps(G))
    g3 = copy.deepcopy(G)
    for g in (g2, g3):
        assert g == G
        assert all(not W.flags.writeable for W in g.weights + g.biases)
    plu = ("plu", {"slope": 0.2, "c": 0.5})
    g4 = pickle.loads(pickle.dumps(make_random_generator([3, 6], output_activation=plu)))
    assert g4.activation == Activation("plu", slope=0.2, c=0.5)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_skops_round_trip_in_memory():
    """dumps/loads (bytes) as well as files; the loaded estimator refits identically."""
    X = _X(np.float64)
    est = GradientDescentInverter(G, transform_max_iter=30, random_state=0).fit(X)
    data = sio.dumps(est)
    assert set(sio.get_untrusted_types(data=data)) <= set(SKOPS_TRUSTED_TYPES)
    loaded = sio.loads(data, trusted=SKOPS_TRUSTED_TYPES)
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    np.testing.assert_array_equal(loaded.fit(X).transform(X), est.transform(X))
    assert data[:2] == b"PK"  # a zip archive of JSON and .npy files, not a pickle
    with pytest.warns(ConvergenceWarning):
        loaded.transform(X)


def test_io_imports_no_estimator():
    """The skops list lives with the estimators; skinvert.io says where it went."""
    import skinvert.io

    with pytest.raises(AttributeError, match="skinvert.inverters.SKOPS_TRUSTED_TYPES"):
        skinvert.io.SKOPS_TRUSTED_TYPES  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        skinvert.io.nothing  # noqa: B018
    import ast
    import pathlib

    for path in pathlib.Path(skinvert.io.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [getattr(node, "module", None) or ""] + [a.name for a in node.names]
                assert not any("inverters" in n for n in names), (path.name, ast.unparse(node))
