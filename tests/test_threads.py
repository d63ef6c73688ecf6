"""Concurrent ``transform`` on one fitted estimator (issue 17, row 6).

``transform`` runs NumPy's BLAS on one thread while it works. Called from
several threads at once, the save/restore of that limit must not race: the
process keeps its BLAS thread count afterwards, and every thread gets the
serial result.
"""

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from skinvert import (
    GradientDescentInverter,
    LatentPursuitInverter,
    make_random_generator,
)
from skinvert._array_api import single_threaded_blas

N_THREADS = 4
N_CALLS = 3


def _blas_threads():
    return sorted(
        (info["filepath"], info["num_threads"])
        for info in threadpool_info()
        if info["user_api"] == "blas"
    )


def _run_concurrently(func, n_threads=N_THREADS):
    """Call ``func(i)`` in ``n_threads`` threads released together; return results."""
    barrier = threading.Barrier(n_threads)
    results = [None] * n_threads
    errors = []

    def work(i):
        try:
            barrier.wait()
            results[i] = func(i)
        except Exception as exc:  # noqa: BLE001 (re-raised in the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.fixture
def blas_threads_above_one():
    """Give BLAS at least 2 threads, so a limit left behind at 1 is visible."""
    from threadpoolctl import threadpool_limits

    before = _blas_threads()
    if not before:
        pytest.skip("no BLAS library reported by threadpoolctl")
    with threadpool_limits(limits=2, user_api="blas"):
        yield _blas_threads()
    assert _blas_threads() == before


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "make_estimator",
    [
        lambda G: LatentPursuitInverter(G),
        lambda G: GradientDescentInverter(G, transform_max_iter=20, random_state=0),
    ],
    ids=["latent_pursuit", "gradient_descent"],
)
def test_concurrent_transform_restores_blas_threads(make_estimator, blas_threads_above_one):
    G = make_random_generator([20, 80, 200, 400], random_state=0)
    Z = np.random.default_rng(0).standard_normal((24, 20))
    X = G.forward(Z)
    est = make_estimator(G).fit(X)
    serial = est.transform(X)
    assert _blas_threads() == blas_threads_above_one

    def calls(_):
        return [est.transform(X) for _ in range(N_CALLS)]

    for _ in range(2):  # several rounds: the race needs an unlucky interleaving
        for per_thread in _run_concurrently(calls):
            for Zt in per_thread:
                np.testing.assert_array_equal(Zt, serial)
        assert _blas_threads() == blas_threads_above_one


def test_single_threaded_blas_interleaved_exits(blas_threads_above_one):
    """The interleaving that left the process on one thread: A in, B in, A out, B out."""
    a, b = single_threaded_blas(np), single_threaded_blas(np)
    a.__enter__()
    b.__enter__()
    assert all(n == 1 for _, n in _blas_threads())
    a.__exit__(None, None, None)
    # B is still running: its limit holds.
    assert all(n == 1 for _, n in _blas_threads())
    b.__exit__(None, None, None)
    assert _blas_threads() == blas_threads_above_one


def test_single_threaded_blas_concurrent_enter_exit(blas_threads_above_one):
    def enter_exit(_):
        for _ in range(50):
            with single_threaded_blas(np):
                assert all(n == 1 for _, n in _blas_threads())
        return True

    assert all(_run_concurrently(enter_exit, n_threads=8))
    assert _blas_threads() == blas_threads_above_one


def test_single_threaded_blas_nested_and_non_numpy(blas_threads_above_one):
    with single_threaded_blas(np):
        with single_threaded_blas(np):
            assert all(n == 1 for _, n in _blas_threads())
        assert all(n == 1 for _, n in _blas_threads())
    assert _blas_threads() == blas_threads_above_one

    class NotNumpy:
        __name__ = "torch"

    with single_threaded_blas(NotNumpy()):
        assert _blas_threads() == blas_threads_above_one
