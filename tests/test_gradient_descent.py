"""GradientDescentInverter: the baseline of the paper."""

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skinvert import GradientDescentInverter, make_random_generator
from skinvert.algorithms.gradient_descent import loss_and_gradient

from ._helpers import snr_db


def test_gradient_matches_finite_differences(small_generator):
    G = small_generator
    rng = np.random.default_rng(0)
    Y = G.forward(rng.standard_normal((3, 20)))
    obs = (rng.random(Y.shape) > 0.2).astype(float)
    Z = rng.standard_normal((3, 20))
    Ws, bs = G.as_arrays(np, dtype=np.float64)
    loss, grad = loss_and_gradient(Z, Y, obs, Ws, bs, G.activation, np, alpha=0.3)
    h = 1e-6
    for j in range(5):
        E = np.zeros_like(Z)
        E[:, j] = h
        lp, _ = loss_and_gradient(Z + E, Y, obs, Ws, bs, G.activation, np, alpha=0.3)
        lm, _ = loss_and_gradient(Z - E, Y, obs, Ws, bs, G.activation, np, alpha=0.3)
        np.testing.assert_allclose(grad[:, j], (lp - lm) / (2 * h), rtol=1e-5, atol=1e-8)


def test_recovers_easy_generator():
    G = make_random_generator([5, 40, 100], random_state=0)
    Z = np.random.default_rng(1).standard_normal((30, 5))
    X = G.forward(Z)
    est = GradientDescentInverter(G, n_restarts=3, random_state=0).fit(X)
    Zhat = est.transform(X)
    assert np.median(snr_db(X, G.forward(Zhat))) > 60


def test_restarts_keep_the_best_loss():
    G = make_random_generator([5, 40, 100], random_state=0)
    Z = np.random.default_rng(2).standard_normal((20, 5))
    X = G.forward(Z)
    one = GradientDescentInverter(G, transform_max_iter=50, random_state=0).fit(X)
    many = GradientDescentInverter(G, transform_max_iter=50, n_restarts=4, random_state=0).fit(X)
    np.testing.assert_array_equal(many.init_codes_[0], one.init_codes_[0])
    err_one = np.sum((G.forward(one.transform(X)) - X) ** 2, axis=1)
    err_many = np.sum((G.forward(many.transform(X)) - X) ** 2, axis=1)
    assert np.all(err_many <= err_one + 1e-12)


def test_convergence_warning_names_rows():
    G = make_random_generator([5, 40, 100], random_state=0)
    X = G.forward(np.random.default_rng(3).standard_normal((7, 5)))
    est = GradientDescentInverter(G, transform_max_iter=2, random_state=0).fit(X)
    with pytest.warns(ConvergenceWarning, match=r"7 row\(s\)"):
        est.transform(X)


def test_ridge_prior_shrinks_codes():
    G = make_random_generator([5, 40, 100], random_state=0)
    X = G.forward(np.random.default_rng(4).standard_normal((10, 5)))
    plain = GradientDescentInverter(G, random_state=0).fit(X).transform(X)
    ridge = GradientDescentInverter(G, gamma=5.0, random_state=0).fit(X).transform(X)
    assert np.linalg.norm(ridge) < np.linalg.norm(plain)


def test_alpha_is_a_deprecated_alias_of_gamma():
    G = make_random_generator([5, 40, 100], random_state=0)
    X = G.forward(np.random.default_rng(4).standard_normal((6, 5)))
    new = GradientDescentInverter(G, gamma=5.0, transform_max_iter=50, random_state=0).fit(X)
    with pytest.warns(FutureWarning, match="'alpha' was renamed 'gamma'"):
        old = GradientDescentInverter(G, alpha=5.0, transform_max_iter=50, random_state=0).fit(X)
    np.testing.assert_array_equal(old.transform(X), new.transform(X))


def test_auto_step_is_scaled_to_the_generator():
    # The Lipschitz estimate follows the network's scale: doubling the last
    # layer's weights (identity output) multiplies ||J||^2 and thus L by 4.
    G = make_random_generator([5, 40, 100], output_activation="identity", random_state=0)
    G2 = type(G)(G.weights[:-1] + [2 * G.weights[-1]], output_activation="identity")
    X = G.forward(np.random.default_rng(7).standard_normal((4, 5)))
    a = GradientDescentInverter(G, learning_rate="auto").fit(X)
    b = GradientDescentInverter(G2, learning_rate="auto").fit(X)
    np.testing.assert_allclose(b.lipschitz_, 4 * a.lipschitz_, rtol=1e-10)
    assert a.learning_rate_ == pytest.approx(2 * 1.9 / a.lipschitz_)


def test_auto_step_recovers_the_shipped_generator():
    from skinvert import gradient_descent_inversion
    from skinvert.datasets import load_pretrained_generator

    G = load_pretrained_generator("fashion-mnist-fc")
    Z = np.random.default_rng(8).standard_normal((8, G.n_latent))
    X = G.forward(Z)
    fixed = GradientDescentInverter(G, transform_max_iter=300, random_state=0).fit(X)
    with pytest.warns(ConvergenceWarning):
        Zf = fixed.transform(X)
    Za = gradient_descent_inversion(X, G, transform_max_iter=300, random_state=0)
    assert np.sum((G.forward(Za) - X) ** 2) < np.sum((G.forward(Zf) - X) ** 2)


@pytest.mark.parametrize("solver", ["momentum", "adam"])
def test_solvers_with_measurement(solver):
    G = make_random_generator([5, 40, 100], random_state=0)
    rng = np.random.default_rng(9)
    X = G.forward(rng.standard_normal((10, 5)))
    A = rng.standard_normal((40, 100)) / np.sqrt(40)
    est = GradientDescentInverter(G, measurement=A, solver=solver, learning_rate="auto",
                                  n_restarts=3, random_state=0).fit(X @ A.T)
    Zh = est.transform(X @ A.T)
    assert np.median(snr_db(X, G.forward(Zh))) > 30


def test_random_state_reproducible():
    G = make_random_generator([5, 40, 100], random_state=0)
    X = G.forward(np.random.default_rng(5).standard_normal((6, 5)))
    a = GradientDescentInverter(G, random_state=3).fit(X).transform(X)
    b = GradientDescentInverter(G, random_state=3).fit(X).transform(X)
    np.testing.assert_array_equal(a, b)


def test_verbose_prints(capsys):
    G = make_random_generator([5, 40, 100], random_state=0)
    X = G.forward(np.random.default_rng(6).standard_normal((6, 5)))
    GradientDescentInverter(G, verbose=1, batch_size=4, random_state=0).fit(X).transform(X)
    out = capsys.readouterr().out
    assert "batch 1/2" in out and "batch 2/2" in out
