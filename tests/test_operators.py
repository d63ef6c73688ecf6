"""Layer operators: the contract, dot (adjoint) tests, and generators built from layers."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import aslinearoperator

from skinvert import ReLUGenerator, make_random_generator
from skinvert.operators import Dense, Layer, Measurement, check_measurement, dottest

array_api_strict = pytest.importorskip("array_api_strict")

NAMESPACES = [pytest.param(np, id="numpy"), pytest.param(array_api_strict, id="strict")]
DTYPES = ["float32", "float64"]


def _dense(dtype, seed=0, shape=(7, 5)):
    rng = np.random.default_rng(seed)
    return Dense(rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape[0]))


@pytest.mark.parametrize("xp", NAMESPACES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_dottest(xp, dtype):
    layer = _dense(dtype)
    lhs, rhs = dottest(layer, xp, getattr(xp, dtype), np.random.default_rng(1), n_samples=4)
    assert lhs.shape == rhs.shape == (4,)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_contract(dtype):
    layer = _dense(dtype)
    assert layer.shape == (7, 5) and layer.in_shape == (5,) and layer.out_shape == (7,)
    assert layer.dtype == np.dtype(dtype) and layer.bias.dtype == np.dtype(dtype)
    assert not layer.weight.flags.writeable and not layer.bias.flags.writeable
    np.testing.assert_array_equal(layer.to_dense(), layer.weight)
    X = np.random.default_rng(2).standard_normal((3, 5)).astype(dtype)
    bound = layer.to_namespace(np, dtype=np.dtype(dtype))
    assert type(bound) is Dense and layer.xp is None and bound.xp is np
    np.testing.assert_array_equal(bound.matmat(X), X @ layer.weight.T)
    np.testing.assert_array_equal(bound.forward(X), X @ layer.weight.T + layer.bias)
    R = np.ones((3, 7), dtype=dtype)
    np.testing.assert_array_equal(bound.rmatmat(R), R @ layer.weight)
    assert bound.forward(X).dtype == np.dtype(dtype)
    with pytest.raises(RuntimeError, match="to_namespace"):
        layer.matmat(X)


def test_dense_validates_and_pickles():
    with pytest.raises(ValueError, match="W holds non-finite"):
        Dense(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match=r"b must have shape \(2,\)"):
        Dense(np.eye(2), np.ones(3))
    with pytest.raises(ValueError, match="b holds non-finite values after the cast to float32"):
        Dense(np.eye(2, dtype=np.float32), np.full(2, 1e39))
    layer = _dense("float64")
    assert pickle.loads(pickle.dumps(layer)) == layer
    broken = Dense.__new__(Dense)
    with pytest.raises(ValueError, match="W holds non-finite"):
        broken.__setstate__({"weight": np.full((2, 2), np.inf), "bias": np.zeros(2)})
    with pytest.raises(ValueError, match="Cannot restore a Dense layer"):
        broken.__setstate__({"weight": np.eye(2)})


def _measurements(dtype):
    A = np.random.default_rng(3).standard_normal((6, 9)).astype(dtype)
    return {
        "dense": A,
        "operator": aslinearoperator(A),
        "sparse": sp.random(6, 9, density=0.4, random_state=4, dtype=dtype),
    }


@pytest.mark.parametrize("kind", ["dense", "operator", "sparse"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_measurement_dottest(kind, dtype):
    A = _measurements(dtype)[kind]
    X = np.zeros((2, 6), dtype=dtype)
    checked = check_measurement(A, X, 9)
    meas = Measurement(checked)
    assert meas.shape == (6, 9) and meas.in_shape == (9,) and meas.out_shape == (6,)
    dottest(meas, np, np.dtype(dtype), np.random.default_rng(5))
    bound = meas.to_namespace(np, dtype=np.dtype(dtype))
    dense = meas.to_dense()
    Y = np.random.default_rng(6).standard_normal((3, 9)).astype(dtype)
    np.testing.assert_allclose(bound.forward(Y), Y @ dense.T, rtol=1e-5)
    assert bound.matmat(Y).dtype == np.dtype(dtype)
    np.testing.assert_array_equal(bound.adjoint(bound.forward(Y)), bound.rmatmat(bound.matmat(Y)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_measurement_dottest_strict(dtype):
    xp = array_api_strict
    A = xp.asarray(np.random.default_rng(3).standard_normal((6, 9)))
    X = xp.zeros((2, 6), dtype=getattr(xp, dtype))
    meas = Measurement(check_measurement(A, X, 9), xp, getattr(xp, dtype))
    dottest(meas, xp, getattr(xp, dtype), np.random.default_rng(5))


class _WrongAdjoint(Dense):
    def rmatmat(self, R):
        return R @ (self._W + 1.0)


def test_dottest_catches_a_wrong_adjoint():
    layer = _WrongAdjoint(np.random.default_rng(0).standard_normal((4, 3)))
    with pytest.raises(AssertionError, match="dot test failed"):
        dottest(layer, np, np.float64, np.random.default_rng(1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_generator_from_layers_equals_constructor(dtype):
    g = make_random_generator([4, 16, 40, 60], output_activation="tanh", random_state=0)
    Ws = [W.astype(dtype) for W in g.weights]
    rng = np.random.default_rng(1)
    bs = [rng.standard_normal(W.shape[0]).astype(dtype) for W in Ws]
    old = ReLUGenerator(Ws, bs, output_activation="tanh")
    layers = [Dense(W, b) for W, b in zip(Ws, bs, strict=True)]
    new = ReLUGenerator.from_layers(layers, output_activation="tanh")
    assert new == old and new.layer_sizes == old.layer_sizes == [4, 16, 40, 60]
    assert (new.n_latent, new.n_output, new.n_layers, new.dtype) == (4, 60, 2, np.dtype(dtype))
    Z = np.random.default_rng(9).standard_normal((5, 4)).astype(dtype)
    X_old, h_old = old.forward(Z, return_hidden=True)
    X_new, h_new = new.forward(Z, return_hidden=True)
    np.testing.assert_array_equal(X_new, X_old)
    for a, b in zip(h_new, h_old):
        np.testing.assert_array_equal(a, b)
    for W, layer in zip(new.weights, new.layers):
        assert W is layer.weight
    assert all(isinstance(layer, Dense) for layer in old.layers)
    assert pickle.loads(pickle.dumps(new)) == new


def test_from_layers_rejects():
    a, b = _dense("float64", shape=(7, 5)), _dense("float64", shape=(3, 6))
    with pytest.raises(ValueError, match=r"layers do not chain: layers\[1\]"):
        ReLUGenerator.from_layers([a, b])
    with pytest.raises(ValueError, match="different dtypes"):
        ReLUGenerator.from_layers([a, _dense("float32", shape=(3, 7))])
    with pytest.raises(TypeError, match=r"layers\[0\] must be a skinvert.operators.Layer"):
        ReLUGenerator.from_layers([np.eye(3)])
    with pytest.raises(ValueError, match="at least one layer"):
        ReLUGenerator.from_layers([])
    with pytest.raises(ValueError, match="bound to a namespace"):
        ReLUGenerator.from_layers([a.to_namespace(np, dtype=np.float64)])


class _Huge(Layer):
    """A layer whose dense matrix would not fit in memory (only its shape is real)."""

    def __init__(self, n_in, n_out):
        self._set_common((n_in,), (n_out,), None, np.float64)

    def parameters(self):
        return {"bias": self.bias}


def test_weights_of_a_too_large_layer_is_a_clear_error():
    g = ReLUGenerator.from_layers([_Huge(3, 100_000), _Huge(100_000, 1_000)])
    assert g.layer_sizes == [3, 100_000, 1_000]
    match = r"layers\[1\] \(_Huge, shape \(1000, 100000\)\) is too large for a dense"
    with pytest.raises(ValueError, match=match):
        _ = g.weights


def test_skops_trusts_every_layer_class():
    from skinvert import SKOPS_TRUSTED_TYPES

    assert "skinvert.operators._dense.Dense" in SKOPS_TRUSTED_TYPES


def test_generator_of_other_layers_pickles_through_its_layers():
    """A generator with a non-Dense layer saves its layers (each validated on restore)."""
    rng = np.random.default_rng(0)
    g = ReLUGenerator.from_layers(
        [_WrongAdjoint(rng.standard_normal((8, 3))), Dense(rng.standard_normal((5, 8)))],
        output_activation="identity",
    )
    state = g.__getstate__()
    assert set(state) == {"layers", "activation"}
    g2 = pickle.loads(pickle.dumps(g))
    assert g2 == g and type(g2.layers[0]) is _WrongAdjoint
    bad = ReLUGenerator.__new__(ReLUGenerator)
    with pytest.raises(ValueError, match="layers do not chain"):
        bad.__setstate__({"layers": state["layers"][::-1], "activation": "identity"})
    with pytest.raises(TypeError, match=r"layers\[0\] must be a skinvert.operators.Layer"):
        bad.__setstate__({"layers": [np.eye(3)], "activation": "identity"})
