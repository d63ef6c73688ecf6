import os

# scikit-learn refuses array_api_dispatch unless SciPy's array API support is
# on, and SciPy reads this variable once, at import: set it before anything
# imports scipy.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

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
