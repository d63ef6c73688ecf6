"""Noisy signals of a saturating tanh generator (issue 19).

``fashion-mnist-fc`` with its last layer scaled by 3 and a tanh output: about
32 % of the pixels exceed 0.999, where ``atanh`` multiplies the noise by
about 500. The rows below are those of the seeded draw (256 codes, noise at
1e-3 then 1e-2; ``benchmarks/noise_saturating.py`` with ``--n-signals 256``)
whose Latent-Pursuit estimate was worse than 3x the Oracle's on main before
the image layer's noise model (latent errors 0.3-6 against the Oracle's
0.002-0.03), plus the rows that earlier versions of the fix missed.
"""

import warnings

import numpy as np
import pytest

from skinvert import HybridInverter, LatentPursuitInverter, OracleInverter, ReLUGenerator
from skinvert.algorithms.noise import NoiseModel, NoiseRule
from skinvert.datasets import load_pretrained_generator

ROWS = {
    1e-3: [23, 31, 53, 79, 85, 139, 164, 242, 250],
    1e-2: [27, 31, 79, 103, 104, 139, 209, 222, 226],
}


def _saturating():
    G0 = load_pretrained_generator("fashion-mnist-fc")
    W, b = list(G0.weights), list(G0.biases)
    W[-1], b[-1] = W[-1] * 3.0, b[-1] * 3.0
    return ReLUGenerator(W, b, output_activation="tanh")


def _signals(G, sigma):
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((256, G.n_latent))
    X0 = G.forward(Z)
    noise = {s: rng.standard_normal(X0.shape) for s in (1e-3, 1e-2)}
    rows = ROWS[sigma]
    S = G.supports(Z[rows])
    return Z[rows], X0[rows] + sigma * noise[sigma][rows], S


def test_generator_saturates():
    G = _saturating()
    X = G.forward(np.random.default_rng(0).standard_normal((64, G.n_latent)))
    assert np.mean(np.abs(X) > 0.999) > 0.25


@pytest.mark.parametrize("sigma", [1e-3, 1e-2])
def test_no_row_worse_than_3x_the_oracle(sigma):
    G = _saturating()
    Z, X, S = _signals(G, sigma)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Zo = OracleInverter(G).fit(X).transform(X, supports=S)
        Zl = LatentPursuitInverter(G, noise_std=sigma).fit(X).transform(X)
    eo = np.linalg.norm(Zo - Z, axis=1)
    el = np.linalg.norm(Zl - Z, axis=1)
    # Measured: every row within 1.1x of the Oracle's error.
    np.testing.assert_array_less(el, 3 * eo)


def test_image_layer_weights_follow_the_noise_gain():
    """The weight of a pixel is phi'(u)^2 (the inverse variance of atanh's
    noise); a piecewise-linear phi keeps unit weights."""
    from skinvert.activations import get_activation

    rule = NoiseRule((0.0,), 1e-6, True, NoiseModel(1e-3))
    U = np.array([[0.0, 1.0, 4.0]])
    w = np.array([[1.0, 1.0, 0.0]])
    tanh = get_activation("tanh")
    np.testing.assert_allclose(
        rule.image_rows(U, w, tanh, np), [[1.0, (1 - np.tanh(1.0) ** 2) ** 2, 0.0]]
    )
    np.testing.assert_array_equal(rule.image_rows(U, w, get_activation("plu"), np), w)
    unweighted = NoiseRule((0.0,), 1e-6, True, NoiseModel(1e-3, image="unweighted"))
    np.testing.assert_array_equal(unweighted.image_rows(U, w, tanh, np), w)


def test_rows_inconsistent_with_the_noise_are_reported():
    """A row whose loss stays far above the noise level is counted in a
    ConvergenceWarning, never returned silently."""
    from sklearn.exceptions import ConvergenceWarning

    G = _saturating()
    Z = np.random.default_rng(3).standard_normal((2, G.n_latent))
    X = G.forward(Z)
    X[1] = -X[1]  # not an output of G: no code fits it at this noise level
    est = LatentPursuitInverter(G, noise_std=1e-3).fit(X)
    with pytest.warns(ConvergenceWarning, match="noise-consistency"):
        est.transform(X)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("namespace", ["array_api_strict", "torch"])
def test_weighted_noise_path_is_namespace_generic(namespace):
    """The weighted image layer, its per-entry thresholds, the retries and the
    polish run under array_api_dispatch and equal NumPy's estimate."""
    import sklearn

    from skinvert import make_random_generator

    if namespace == "torch":
        torch = pytest.importorskip("torch")
        to_xp, to_np = (lambda a: torch.asarray(np.ascontiguousarray(a))), (lambda a: a.numpy())
    else:
        xps = pytest.importorskip("array_api_strict")
        to_xp, to_np = xps.asarray, np.asarray
    G0 = make_random_generator([4, 24, 60], random_state=0)
    W, b = list(G0.weights), list(G0.biases)
    G = ReLUGenerator(W[:-1] + [4 * W[-1]], b[:-1] + [4 * b[-1]], output_activation="tanh")
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((16, 4))
    X = G.forward(Z)
    assert np.mean(np.abs(X) > 0.999) > 0.1
    X = X + 1e-2 * rng.standard_normal(X.shape)
    X[-1] = -X[-1]  # an inconsistent row: retries and polish run
    ref = LatentPursuitInverter(G, noise_std=1e-2).fit(X).transform(X)
    with sklearn.config_context(array_api_dispatch=True):
        Xs = to_xp(X)
        out = to_np(LatentPursuitInverter(G, noise_std=1e-2).fit(Xs).transform(Xs))
    np.testing.assert_allclose(out, ref, rtol=1e-7, atol=1e-9)


def _signals_512(G):
    """The draw of ``benchmarks/noise_saturating.py`` (512 signals, seed 1)."""
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((512, G.n_latent))
    X0 = G.forward(Z)
    return Z, X0, {s: X0 + s * rng.standard_normal(X0.shape) for s in (1e-3, 1e-2)}


# Rows of that draw that HybridInverter got wrong on the way to its noisy
# defaults: 226 ended in the neighbouring region (3.2x the Oracle's error,
# loss 0.55 chi-square sd above the Oracle's) without the boundary search;
# 421 (about 300 saturated pixels) stays 57-310x off after every
# gradient-descent start without the pursuit fallback; 328 and 336 stopped
# 12x and 6x off at 4.1 and 6.1 sd when the stop bound was 10 sd.
HARD = [226, 328, 336, 421]


@pytest.mark.parametrize("sigma", [1e-3, 1e-2])
@pytest.mark.parametrize("seed", [0, 1])
def test_hybrid_defaults_within_3x_the_oracle(sigma, seed):
    G = _saturating()
    Z, _, X = _signals_512(G)
    Z, X = Z[HARD], X[sigma][HARD]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Zo = OracleInverter(G).fit(X).transform(X, supports=G.supports(Z))
        Zh = HybridInverter(G, noise_std=sigma, random_state=seed).fit(X).transform(X)
    eo = np.linalg.norm(Zo - Z, axis=1)
    eh = np.linalg.norm(Zh - Z, axis=1)
    # Measured: 0.96-1.25x the Oracle's error on these rows.
    np.testing.assert_array_less(eh, 3 * eo)


@pytest.mark.parametrize(
    "sigma, seed, row, params",
    [(1e-2, 0, 226, {"boundary_sd": 0.0, "linear_start": False}),
     (1e-3, 1, 421, {"use_pursuit": False, "linear_start": False})],
)
def test_each_noisy_stage_is_needed(sigma, seed, row, params):
    # Without the boundary search / the pursuit fallback the row ends 3.2x /
    # 310x the Oracle's error (with the defaults 1.04x / 1.0x, see above).
    # Both rows need their stage where the gradient-descent starts alone
    # reach them (linear_start=False): the linear start, with its ten
    # descent iterations, fits row 421 by itself (1.0x). Row 226: the linear start on [y,
    # atanh(y)] lands it in the right region (1.04x without the search); on
    # other draws the search is still needed (no search: RMS 1.19x with a
    # row 4.4x the Oracle's at 1e-2, draw 0 of benchmarks.performance's
    # signals; 1.31x at 1e-3, draw 3).
    G = _saturating()
    Z, _, X = _signals_512(G)
    Z, X = Z[[row]], X[sigma][[row]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Zo = OracleInverter(G).fit(X).transform(X, supports=G.supports(Z))
        Zh = HybridInverter(G, noise_std=sigma, random_state=seed, **params).fit(X).transform(X)
    assert np.linalg.norm(Zh - Z) > 3 * np.linalg.norm(Zo - Z)
