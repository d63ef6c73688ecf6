"""ReLUGenerator, activations and generator files."""

import math
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from skinvert import ReLUGenerator, load_generator, make_random_generator
from skinvert.activations import ACTIVATIONS, Activation

ACTS = [
    Activation("identity"),
    Activation("tanh"),
    Activation("sigmoid"),
    Activation("leaky_relu", slope=0.2),
    Activation("plu", slope=0.1, c=1.0),
]


@pytest.mark.parametrize("act", ACTS, ids=repr)
def test_activation_inverse_and_derivative(act):
    u = np.linspace(-4, 4, 401)
    y = act(u, np)
    np.testing.assert_allclose(act.inverse(y, np), u, rtol=1e-9, atol=1e-9)
    h = 1e-6
    fd = (act(u + h, np) - act(u - h, np)) / (2 * h)
    kinks = np.zeros_like(u, dtype=bool)
    if act.name in ("leaky_relu", "plu"):
        kinks = np.min(np.abs(u[:, None] - np.array([-act.c, 0.0, act.c])), axis=1) < 2 * h
    np.testing.assert_allclose(act.derivative(u, np)[~kinks], fd[~kinks], rtol=1e-5, atol=1e-7)
    assert np.all(np.diff(y) > 0)  # strictly increasing


def test_activation_plu_matches_definition():
    act = Activation("plu", slope=0.1, c=1.0)
    u = np.array([-3.0, -1.0, 0.3, 1.0, 2.0])
    np.testing.assert_allclose(act(u, np), [-1.2, -1.0, 0.3, 1.0, 1.1])


def test_saturated_tanh_inverse_is_nan():
    act = Activation("tanh")
    y = np.tanh(np.array([0.5, 25.0, -25.0]))
    assert y[1] == 1.0 and y[2] == -1.0  # saturated in float64
    inv = act.inverse(y, np)
    assert np.isfinite(inv[0]) and np.isnan(inv[1]) and np.isnan(inv[2])
    assert act.lipschitz_inverse == math.inf
    assert math.isfinite(act.lipschitz_inverse_on(y, np))


@pytest.mark.parametrize(
    "bad, match",
    [
        ("relu", "must be one of"),
        (("leaky_relu", {"slope": 0.0}), "slope > 0"),
        (("plu", {"c": -1.0}), "c > 0"),
    ],
)
def test_activation_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        make_random_generator([2, 4, 3], output_activation=bad)


def test_activation_names():
    assert set(ACTIVATIONS) == {"identity", "tanh", "sigmoid", "leaky_relu", "plu"}


def test_forward_shapes_and_supports(small_generator):
    G = small_generator
    assert G.layer_sizes == [20, 80, 200, 400]
    assert (G.n_latent, G.n_output, G.n_layers) == (20, 400, 2)
    Z = np.random.default_rng(0).standard_normal((6, 20))
    X, hidden = G.forward(Z, return_hidden=True)
    assert X.shape == (6, 400) and [h.shape for h in hidden] == [(6, 80), (6, 200)]
    # Forward pass written out by hand (eq. 3).
    x1 = np.maximum(Z @ G.weights[0].T, 0)
    x2 = np.maximum(x1 @ G.weights[1].T, 0)
    np.testing.assert_allclose(X, np.tanh(x2 @ G.weights[2].T))
    S = G.supports(Z)
    assert [s.dtype for s in S] == [bool, bool]
    np.testing.assert_array_equal(S[0], x1 > 0)
    # He scaling keeps about half of the units active.
    assert 0.3 < S[0].mean() < 0.7


def test_forward_preserves_float32(small_generator):
    Z = np.random.default_rng(0).standard_normal((3, 20)).astype(np.float32)
    assert small_generator.forward(Z).dtype == np.float32


def test_forward_rejects_bad_codes(small_generator):
    with pytest.raises(ValueError, match=r"shape \(n_samples, 20\)"):
        small_generator.forward(np.zeros(20))
    with pytest.raises(ValueError, match=r"shape \(n_samples, 20\)"):
        small_generator.forward(np.zeros((2, 19)))


def test_weights_must_chain():
    with pytest.raises(ValueError, match=r"weights\[1\] has shape \(5, 3\)"):
        ReLUGenerator([np.ones((4, 2)), np.ones((5, 3))])


@pytest.mark.parametrize(
    "weights, biases, err, match",
    [
        ([np.ones(3)], None, ValueError, r"weights\[0\] must be a 2-D"),
        (
            [np.ones((2, 2)), np.full((3, 2), np.nan)], None, ValueError,
            r"weights\[1\].*non-finite",
        ),
        ([np.ones((2, 2)), np.zeros((3, 2))], None, ValueError, r"weights\[1\] is all zeros"),
        ([np.ones((2, 2), dtype=complex)], None, TypeError, r"weights\[0\] must hold real"),
        ([np.array([["a"]])], None, TypeError, r"weights\[0\] must hold real"),
        ([np.ones((2, 2))], [np.ones(3)], ValueError, r"biases\[0\] must have shape \(2,\)"),
        ([np.ones((2, 2))], [np.ones(2), np.ones(2)], ValueError, "one per weight"),
        (np.ones((2, 2)), None, TypeError, "sequence of 2-D arrays"),
        ([], None, ValueError, "at least one"),
    ],
)
def test_generator_validation(weights, biases, err, match):
    with pytest.raises(err, match=match):
        ReLUGenerator(weights, biases)


def test_generator_copies_and_freezes_weights():
    W = np.ones((3, 2))
    G = ReLUGenerator([W])
    W[0, 0] = 5.0
    assert G.weights[0][0, 0] == 1.0
    with pytest.raises(ValueError):
        G.weights[0][0, 0] = 2.0


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize(
    "act", ["tanh", ("plu", {"slope": 0.05, "c": 0.9}), ("leaky_relu", {"slope": 0.3})]
)
def test_save_load_round_trip(tmp_path, suffix, act):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    rng = np.random.default_rng(0)
    G = ReLUGenerator(
        [rng.standard_normal((6, 3)), rng.standard_normal((5, 6)).astype(np.float64)],
        [rng.standard_normal(6), rng.standard_normal(5)],
        output_activation=act,
    )
    path = tmp_path / f"gen{suffix}"
    G.save(path)
    H = load_generator(path)
    assert H == G
    assert H.activation == G.activation
    Z = rng.standard_normal((4, 3))
    np.testing.assert_array_equal(H.forward(Z), G.forward(Z))


def test_load_refuses_pickles(tmp_path):
    obj = tmp_path / "objects.npz"
    np.savez(obj, __header__=np.array("{}"), weight_0=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="pickled objects"):
        load_generator(obj)
    raw = tmp_path / "raw.npz"
    raw.write_bytes(pickle.dumps({"weights": [np.ones((2, 2))]}))
    with pytest.raises(ValueError, match="pickled objects|not a readable"):
        load_generator(raw)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="suffix"):
        load_generator(tmp_path / "gen.pt")
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.ones(2))
    with pytest.raises(ValueError, match="not a skinvert generator"):
        load_generator(plain)


@given(
    sizes=st.lists(st.integers(1, 12), min_size=2, max_size=5),
    seed=st.integers(0, 2**31 - 1),
)
def test_random_generator_properties(sizes, seed):
    G = make_random_generator(sizes, random_state=seed)
    assert G.layer_sizes == sizes
    H = make_random_generator(sizes, random_state=seed)
    assert G == H
    Z = np.random.default_rng(seed).standard_normal((3, sizes[0]))
    X = G.forward(Z)
    assert X.shape == (3, sizes[-1]) and np.all(np.abs(X) <= 1)


def test_make_random_generator_errors():
    with pytest.raises(ValueError, match="at least two"):
        make_random_generator([3])
    with pytest.raises(ValueError, match="positive integers"):
        make_random_generator([3, 0])
    with pytest.raises(TypeError):
        make_random_generator("20,40")
