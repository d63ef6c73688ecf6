"""GPU: every inverter on CuPy and torch-CUDA equals NumPy (skipped without a GPU).

Whether a GPU is usable is decided by ``cupy.cuda.is_available()`` /
``torch.cuda.is_available()``, not by a successful import.
"""

import numpy as np
import pytest
import sklearn

from skinvert import (
    GradientDescentInverter,
    LatentPursuitInverter,
    LayeredBPInverter,
    OracleInverter,
    make_random_generator,
)


def _cupy():
    cupy = pytest.importorskip("cupy")
    if not cupy.cuda.is_available():
        pytest.skip("cupy is installed but no CUDA device is available")
    return cupy.asarray, cupy.asnumpy


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    return (lambda a: torch.asarray(a, device="cuda")), (lambda a: a.cpu().numpy())


MAKERS = {
    "oracle": lambda G: OracleInverter(G),
    "latent-pursuit": lambda G: LatentPursuitInverter(G),
    "layered-bp": lambda G: LayeredBPInverter(G, lam=1e-4),
    "gd": lambda G: GradientDescentInverter(G, transform_max_iter=200, random_state=0),
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("backend", ["cupy", "torch-cuda"])
@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gpu_equals_numpy(backend, kind, dtype):
    to_dev, to_host = _cupy() if backend == "cupy" else _torch_cuda()
    G = make_random_generator([6, 40, 100, 200], random_state=0)
    Z = np.random.default_rng(0).standard_normal((32, 6))
    X = G.forward(Z).astype(dtype)
    S = G.supports(Z)
    est = MAKERS[kind](G)
    ref = est.fit(X).transform(X, supports=S) if kind == "oracle" else est.fit(X).transform(X)
    with sklearn.config_context(array_api_dispatch=True):
        Xd = to_dev(X)
        est = MAKERS[kind](G).fit(Xd)
        out = (
            est.transform(Xd, supports=[to_dev(s) for s in S])
            if kind == "oracle"
            else est.transform(Xd)
        )
        assert type(out) is type(Xd)
    rtol = 1e-8 if dtype == "float64" else 1e-3
    np.testing.assert_allclose(to_host(out), ref, rtol=rtol, atol=rtol)
