"""The dask recipes of docs/scaling.md: map_blocks transform, GridSearchCV on a cluster."""

import warnings

import joblib
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from skinvert import GradientDescentInverter, LatentPursuitInverter, make_random_generator

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

G = make_random_generator([5, 40, 100], random_state=0)


def _X(n, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    X = G.forward(rng.standard_normal((n, 5)))
    return X + noise * rng.standard_normal(X.shape)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "make",
    [
        lambda: LatentPursuitInverter(G, batch_size=8),
        lambda: GradientDescentInverter(G, transform_max_iter=50, batch_size=8, random_state=0),
    ],
)
def test_map_blocks_transform(make, dtype):
    X = _X(40).astype(dtype)
    X[3, :60] = np.nan  # missing entries travel with their rows
    est = make().fit(X[:5])
    dX = da.from_array(X, chunks=(16, -1))  # rows chunked, features in one chunk
    assert dX.numblocks == (3, 1)
    dZ = dX.map_blocks(
        est.transform, chunks=(dX.chunks[0], (est.n_components_,)), dtype=X.dtype
    )
    assert dZ.shape == (40, est.n_components_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        Z_dask = dZ.compute(scheduler="threads")
        Z = est.transform(X)
    assert Z_dask.dtype == X.dtype
    # Rows are independent and the chunks are whole batches: identical codes.
    np.testing.assert_array_equal(Z_dask, Z)


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. port-in-use notices of the local cluster
        cluster = distributed.LocalCluster(
            host="127.0.0.1",
            protocol="tcp",  # inproc (the default without processes) ignores host
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            dashboard_address=None,
        )
        c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_grid_search_on_dask_cluster(client):
    X = _X(24, noise=0.05, seed=1)
    grid = {"lam": [0.0, 1e-3, 1e-1], "rho": [1e-2, 1.0]}
    est = LatentPursuitInverter(G, solver="paper", transform_max_iter=100, debias=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with joblib.parallel_config(backend="dask"), distributed.get_task_stream(client) as ts:
            gs = GridSearchCV(est, grid, cv=2, n_jobs=-1).fit(X)
        ref = GridSearchCV(est, grid, cv=2, n_jobs=1).fit(X)
    # The cluster ran the fits: every (lam, rho) and split has a score, and
    # they equal those of the sequential search exactly.
    assert len(ts.data) > 0
    assert len(gs.cv_results_["params"]) == 6
    np.testing.assert_array_equal(
        gs.cv_results_["mean_test_score"], ref.cv_results_["mean_test_score"]
    )
    assert np.all(np.isfinite(gs.cv_results_["mean_test_score"]))
    assert np.all(gs.cv_results_["mean_test_score"] < 0)  # minus a mean squared error
    assert gs.best_params_ == ref.best_params_
    assert set(gs.best_params_) == {"lam", "rho"}
    # The search is not degenerate: lam changes the score.
    scores = gs.cv_results_["mean_test_score"]
    assert len(np.unique(scores)) > 1
    # best_estimator_ is refit on all of X and works as usual.
    Z = gs.best_estimator_.transform(X)
    assert Z.shape == (24, 5)
    assert gs.score(X) == pytest.approx(gs.best_estimator_.score(X))


def _score_on_worker(X):
    worker = distributed.get_worker()  # raises ValueError outside a dask worker
    return worker.address, LatentPursuitInverter(G).fit(X).score(X)


def test_joblib_tasks_run_on_the_workers(client):
    """joblib's dask backend really submits to the cluster (no silent local fallback)."""
    X = _X(12)
    with joblib.parallel_config(backend="dask"):
        out = joblib.Parallel(n_jobs=-1)(
            joblib.delayed(_score_on_worker)(X[i::3]) for i in range(3)
        )
    workers = set(client.scheduler_info()["workers"])
    assert len(workers) == 2
    assert {addr for addr, _ in out} <= workers
    assert all(score <= 0 and np.isfinite(score) for _, score in out)
