"""Array API helpers: the one place that imports scikit-learn's private helpers.

Every kernel in skinvert takes the namespace ``xp`` of its input arrays and
never calls NumPy on them directly. The namespace follows scikit-learn's
convention: NumPy unless ``sklearn.set_config(array_api_dispatch=True)`` is
set, in which case the namespace of the inputs (CuPy, torch, array-api-strict,
...) through ``array-api-compat``.
"""

import contextlib
import threading

import numpy as np
from sklearn.utils._array_api import _convert_to_numpy as _sk_convert_to_numpy
from sklearn.utils._array_api import device, get_namespace

__all__ = [
    "as_namespace",
    "device",
    "get_namespace",
    "namespace_of",
    "relu",
    "to_numpy",
]


def namespace_of(*arrays):
    """Return ``(xp, device)`` of ``arrays`` under scikit-learn's dispatch rule."""
    xp, _ = get_namespace(*arrays)
    return xp, device(*arrays)


def as_namespace(array, xp, *, dtype=None, device=None):
    """Convert a host (NumPy) or same-namespace array into ``xp`` on ``device``.

    Used to move the generator's weights, stored as NumPy arrays, next to the
    data. A NumPy array is copied to the target device once per call.
    """
    if dtype is not None and isinstance(array, np.ndarray):
        # Cast on the host first: cheaper than casting on the device and
        # works for namespaces without float64 on some devices.
        array = array.astype(_numpy_dtype_of(xp, dtype), copy=False)
    out = xp.asarray(array, device=device)
    if dtype is not None and out.dtype != dtype:
        out = xp.astype(out, dtype)
    return out


def _numpy_dtype_of(xp, dtype):
    """NumPy dtype with the same name as the ``xp`` floating dtype ``dtype``."""
    return np.float32 if dtype == xp.float32 else np.float64


def to_numpy(array, xp=None):
    """Return ``array`` as a host NumPy array (a no-op for NumPy input)."""
    if isinstance(array, np.ndarray):
        return array
    if xp is None:
        xp, _ = get_namespace(array)
    return _sk_convert_to_numpy(array, xp)


def floating_dtype_of(X, xp):
    """The float dtype to compute in: X's own if float32/float64, else float64."""
    if X.dtype in (xp.float32, xp.float64):
        return X.dtype
    return xp.float64


def single_threaded_blas(xp):
    """Context that runs NumPy's BLAS/LAPACK on one thread (a no-op elsewhere).

    The inverters work on stacks of small matrices and on skinny products;
    OpenBLAS spreads each of them over all cores, which on a busy 2-core
    machine was measured 10-30x slower than one thread (batched SVD of
    43 x (625, 100): 8.7 s threaded vs 0.31 s; 200 gradient-descent steps on
    32 signals of the shipped generator: 12.1 s vs 0.61 s). Every batch is
    therefore computed single-threaded; ``n_jobs`` spreads batches over the
    cores instead. Other namespaces (CuPy, torch) manage their own
    parallelism.

    The BLAS thread count is a process-wide setting, so the contexts of all
    threads share one limit, counted under a lock: the first context to enter
    sets it, the last to leave restores the count found by the first. Nested
    and concurrent contexts (``transform`` called from several threads on one
    estimator) therefore compute on one thread and leave the process as they
    found it. threadpoolctl lets only one "controlling" thread change
    OpenBLAS's (pthreads) limit and silently ignores the others; the two
    transitions take that control for their own call and give it back, so
    whichever thread enters first or leaves last can set and restore.
    """
    if not _is_numpy(xp):
        return contextlib.nullcontext()
    return _SingleThreadedBLAS()


class _SingleThreadedBLAS:
    """One user of the shared one-thread BLAS limit (see `single_threaded_blas`)."""

    _lock = threading.Lock()
    _users = 0
    _limiter = None
    _controller = None

    def __enter__(self):
        cls = type(self)
        with cls._lock:
            if cls._users == 0:
                if cls._controller is None:
                    from threadpoolctl import ThreadpoolController

                    cls._controller = ThreadpoolController()
                with _blas_control():
                    cls._limiter = cls._controller.limit(limits=1, user_api="blas")
            cls._users += 1
        return self

    def __exit__(self, *exc_info):
        cls = type(self)
        with cls._lock:
            cls._users -= 1
            if cls._users == 0:
                limiter, cls._limiter = cls._limiter, None
                with _blas_control():
                    limiter.restore_original_limits()
        return False


@contextlib.contextmanager
def _blas_control():
    """Make the calling thread the one threadpoolctl lets set OpenBLAS's limit.

    Recent threadpoolctl (3.8 here) ignores OpenBLAS (pthreads) limits set from any thread
    but the first one to set them; control is taken here for one set/restore
    and released after it, so no thread keeps it.
    """
    import threadpoolctl

    clear = getattr(
        getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None
    )
    if clear is None:  # older threadpoolctl: any thread may set the limit
        yield
        return
    clear(force=True)
    try:
        yield
    finally:
        clear()


def relu(u, xp):
    """``max(u, 0)`` elementwise, NaN kept (NumPy: ``np.maximum`` with a
    scalar, about 15x faster than the array-API-compat ``clip``)."""
    if _is_numpy(xp):
        return np.maximum(u, 0.0)
    return xp.maximum(u, xp.zeros_like(u))


def _is_numpy(xp):
    name = getattr(xp, "__name__", "")
    return name in ("numpy", "array_api_compat.numpy") or name.endswith("array_api_compat.numpy")
