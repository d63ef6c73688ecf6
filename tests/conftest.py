import os

# scikit-learn refuses array_api_dispatch unless SciPy's array API support is
# on, and SciPy reads this variable once, at import: set it before anything
# imports scipy.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Deterministic property tests: the same examples on every run and machine.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def small_generator():
    """A random tanh generator [20, 80, 200, 400] (the foundation issue's net)."""
    from skinvert import make_random_generator

    return make_random_generator([20, 80, 200, 400], random_state=0)


def snr_db(ref, est):
    ref = np.asarray(ref, dtype=np.float64)
    est = np.asarray(est, dtype=np.float64)
    num = np.sum(ref**2, axis=1)
    den = np.sum((ref - est) ** 2, axis=1)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(num / den)


def corollary1_met(generator, Z):
    """Per sample: the sparsity conditions of Corollary 1 (random weights)."""
    s = [S.sum(axis=1) for S in generator.supports(Z)]
    n, n0 = generator.n_output, generator.n_latent
    ok = s[-1] < (n + 1) / 2
    for i in range(len(s) - 1):
        ok &= s[i] < (s[i + 1] + 1) / 2
    return ok & (s[0] >= n0)
