"""Batch invariance, dtype preservation and array API equality of every inverter."""

import numpy as np
import pytest
import sklearn
from hypothesis import assume, given
from hypothesis import strategies as st

from skinvert import (
    GradientDescentInverter,
    LatentPursuitInverter,
    LayeredBPInverter,
    OracleInverter,
    make_random_generator,
)

from ._helpers import corollary1_met, record_rows


def _make(kind, G):
    if kind == "gd":
        return GradientDescentInverter(G, transform_max_iter=300, random_state=0)
    if kind == "oracle":
        return OracleInverter(G)
    if kind == "latent-pursuit":
        return LatentPursuitInverter(G)
    if kind == "layered-bp":
        return LayeredBPInverter(G, lam=1e-4)
    if kind == "latent-pursuit-paper":
        return LatentPursuitInverter(G, solver="paper", transform_max_iter=300)
    return OracleInverter(G, method="layerwise")


def _transform(est, X, S, **params):
    if isinstance(est, OracleInverter):
        return est.transform(X, supports=S, **params)
    return est.transform(X)


KINDS = [
    "gd",
    "oracle",
    "oracle-layerwise",
    "latent-pursuit",
    "layered-bp",
    "latent-pursuit-paper",
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@given(
    kind=st.sampled_from(KINDS),
    n=st.integers(1, 9),
    batch_size=st.integers(1, 10),
    seed=st.integers(0, 2**31 - 1),
)
def test_batch_invariance(kind, n, batch_size, seed):
    """Whole batch == row by row == any batch_size == permuted rows."""
    G = make_random_generator([3, 18, 40], random_state=seed % 1000)
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((4 * n, 3))
    # Well-posed rows only (Corollary 1): where z is not unique, rounding-level
    # differences of the BLAS between batch shapes may pick another solution.
    Z = Z[corollary1_met(G, Z)][:n]
    assume(Z.shape[0] >= 1)
    n = Z.shape[0]
    X = G.forward(Z)
    S = G.supports(Z)
    est = _make(kind, G).fit(X)
    whole = _transform(est, X, S)
    rows = np.concatenate(
        [_transform(est, X[i : i + 1], [s[i : i + 1] for s in S]) for i in range(n)]
    )
    batched = _transform(est.set_params(batch_size=batch_size), X, S)
    perm = rng.permutation(n)
    permuted = _transform(est, X[perm], [s[perm] for s in S])
    # Rows are independent problems; only BLAS summation order may differ.
    np.testing.assert_allclose(rows, whole, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(batched, whole, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(permuted, whole[perm], rtol=1e-7, atol=1e-9)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", KINDS)
def test_float32_in_float32_out(kind, small_generator):
    G = small_generator
    Z = np.random.default_rng(0).standard_normal((12, 20))
    X = G.forward(Z).astype(np.float32)
    S = G.supports(Z)
    est = _make(kind, G).fit(X)
    Z32 = _transform(est, X, S)
    assert Z32.dtype == np.float32
    assert est.inverse_transform(Z32).dtype == np.float32
    if kind.startswith("oracle") or kind == "latent-pursuit":  # accurate in single precision
        rel = np.linalg.norm(Z32 - Z, axis=1) / np.linalg.norm(Z, axis=1)
        assert np.max(rel) < 1e-3


def _namespace(name):
    if name == "torch":
        torch = pytest.importorskip("torch")
        return torch, lambda a: torch.asarray(np.ascontiguousarray(a)), lambda a: a.numpy()
    xps = pytest.importorskip("array_api_strict")
    return xps, xps.asarray, np.asarray


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("namespace", ["array_api_strict", "torch"])
def test_array_api_equals_numpy(kind, dtype, namespace):
    """The same transform under array_api_dispatch (array-api-strict proves no
    NumPy-only call hides in a kernel; torch on the CPU) equals NumPy's."""
    xps, to_xp, to_np = _namespace(namespace)
    G = make_random_generator([4, 24, 60], random_state=0)
    Z = np.random.default_rng(1).standard_normal((9, 4))
    X = G.forward(Z).astype(dtype)
    X[0, 3] = np.nan  # a missing entry goes through the same path
    S = G.supports(Z)
    ref = _transform(_make(kind, G).fit(X), X, S)
    with sklearn.config_context(array_api_dispatch=True):
        Xs = to_xp(X)
        est = _make(kind, G).fit(Xs)
        out = _transform(est, Xs, [to_xp(s) for s in S])
        assert isinstance(out, type(Xs))
        assert out.dtype == Xs.dtype
        back = est.inverse_transform(out)
        assert isinstance(back, type(Xs))
    rtol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(to_np(out), ref, rtol=rtol, atol=rtol)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["gd", "oracle", "latent-pursuit"])
def test_n_jobs_gives_identical_results(kind):
    G = make_random_generator([4, 24, 60], random_state=0)
    Z = np.random.default_rng(2).standard_normal((13, 4))
    X = G.forward(Z)
    S = G.supports(Z)
    ref = _transform(_make(kind, G).set_params(batch_size=4).fit(X), X, S)
    par = _transform(_make(kind, G).set_params(batch_size=4, n_jobs=2).fit(X), X, S)
    np.testing.assert_array_equal(par, ref)


# -- blocks of rows inside the kernels on NumPy (skinvert._linalg.host_block_rows) --
def _map_net():
    # n * n_0 = 784 * 20: 8 MiB of float64 maps is 66 rows.
    return make_random_generator([20, 64, 784], random_state=0)


def test_oracle_blocks_give_the_one_block_result(monkeypatch):
    from skinvert.algorithms import oracle

    G = _map_net()
    Z = np.random.default_rng(0).standard_normal((150, 20))
    X = G.forward(Z) + 1e-3 * np.random.default_rng(1).standard_normal((150, 784))
    S = G.supports(Z)
    calls = record_rows(monkeypatch, oracle, "_oracle_block")
    est = OracleInverter(G).fit(X)
    Z_blocks = est.transform(X, supports=S)
    assert calls == [66, 66, 18]  # blocks of 8 MiB of (784, 20) maps
    calls.clear()
    monkeypatch.setattr(oracle, "host_block_rows", lambda xp, dtype, n, minimum=16: 10**9)
    Z_one = est.transform(X, supports=S)
    assert calls == [150]
    np.testing.assert_allclose(Z_blocks, Z_one, rtol=1e-12, atol=1e-14)


def test_hybrid_kernels_in_blocks_give_the_one_block_result(monkeypatch):
    """The polish and the boundary search block their rows (rows are
    independent): the hybrid's noisy answer is the one-block answer."""
    from skinvert import HybridInverter
    from skinvert.algorithms import neighbours, polish

    G = _map_net()
    Z = np.random.default_rng(2).standard_normal((40, 20))
    X = G.forward(Z) + 1e-2 * np.random.default_rng(3).standard_normal((40, 784))
    est = HybridInverter(G, noise_std=1e-2, random_state=0, n_restarts=2).fit(X)
    calls = record_rows(monkeypatch, polish, "_polish_block")
    for mod in (polish, neighbours):
        monkeypatch.setattr(mod, "host_block_rows", lambda xp, dtype, n, minimum=16: 16)
    Z_blocks = est.transform(X)
    assert max(calls) == 16 and len(calls) > 3
    for mod in (polish, neighbours):
        monkeypatch.setattr(mod, "host_block_rows", lambda xp, dtype, n, minimum=16: 10**9)
    np.testing.assert_allclose(est.transform(X), Z_blocks, rtol=1e-12, atol=1e-14)



@pytest.mark.parametrize("sizes, phi", [([20, 64, 784], "identity"),
                                        ([20, 64, 128, 392], "tanh")])
def test_polish_row_does_not_depend_on_the_rows_beside_it(sizes, phi):
    """OpenBLAS computes the last row of an odd-sized product with its
    one-row kernel (other last bits); the polish's forward pass keeps an
    even count, so a row's polished code is the same whatever the number of
    rows polished with it (it differed by 4e-10 before). Its maps, built per
    row and updated by low-rank terms of per-row shapes, too."""
    from skinvert._array_api import single_threaded_blas
    from skinvert.activations import get_activation
    from skinvert.algorithms.polish import polish_batch

    G = make_random_generator(sizes, output_activation=phi, random_state=0)
    W, b = list(G.weights), list(G.biases)
    act = get_activation(G.output_activation)
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((8, 20))
    Y = G.forward(Z) + 1e-2 * rng.standard_normal((8, sizes[-1]))
    Z0 = Z + 0.3 * rng.standard_normal((8, 20))
    obs = np.ones_like(Y)
    with single_threaded_blas(np):
        ref = polish_batch(Z0, Y, obs, W, b, act, np)[0]
        for n in range(1, 8):
            Zn = polish_batch(Z0[:n], Y[:n], obs[:n], W, b, act, np)[0]
            np.testing.assert_array_equal(Zn, ref[:n])
