"""scikit-learn's common estimator checks on every inverter.

``generator`` is required (as ``SelectFromModel``'s estimator), so every
inverter runs the checks with a fixed generator. It produces signals of one
size, ``FIXED.n_output == 3``, the size most checks use; the checks listed in
``_WRONG_SIZE`` build their own X with another number of features, which the
fixed generator rightly rejects in ``fit``.
"""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skinvert import (
    GeneratorImputer,
    GradientDescentInverter,
    LatentPursuitInverter,
    LayeredBPInverter,
    OracleInverter,
    make_random_generator,
)

FIXED = make_random_generator([1, 3, 3], output_activation="identity", random_state=0)

_WHY = (
    "the check builds its own X with a number of features other than 3; a fixed "
    "generator rejects it in fit with a ValueError naming both sizes"
)
_WRONG_SIZE = {
    "check_array_api_input": _WHY,
    "check_array_api_mixed_inputs": _WHY,
    "check_array_api_same_namespace": _WHY,
    "check_dtype_object": _WHY,
    "check_estimators_dtypes": _WHY,
    "check_estimators_fit_returns_self": _WHY,
    "check_estimators_overwrite_params": _WHY,
    "check_fit2d_1feature": _WHY,
    "check_fit2d_1sample": _WHY,
    "check_fit_check_is_fitted": _WHY,
    "check_fit_idempotent": _WHY,
    "check_n_features_in": _WHY,
    "check_n_features_in_after_fitting": _WHY,
    "check_positive_only_tag_during_fit": _WHY,
    "check_readonly_memmap_input": _WHY,
}


def _expected_failed(estimator):
    return _WRONG_SIZE


ESTIMATORS = [
    GradientDescentInverter(FIXED, transform_max_iter=200),
    OracleInverter(FIXED),
    OracleInverter(FIXED, method="layerwise"),
    LatentPursuitInverter(FIXED),
    LayeredBPInverter(FIXED),
    LatentPursuitInverter(FIXED, solver="paper", transform_max_iter=200),
    GeneratorImputer(LatentPursuitInverter(FIXED)),
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# The checks listed in _WRONG_SIZE build X of their own sizes. To run them all
# on the machinery every inverter shares (validation, batching, namespaces,
# fitted attributes), these test-only subclasses size a random identity-output
# generator to X in fit, as a user passing a matching generator would.


def _sized_to(X):
    n = X.shape[1]
    return make_random_generator([max(1, n // 4), n, n], output_activation="identity",
                                 random_state=0)


class _SizedGD(GradientDescentInverter):
    def _resolve_generator(self, X):
        return _sized_to(X)


class _SizedOracle(OracleInverter):
    def _resolve_generator(self, X):
        return _sized_to(X)


class _SizedLP(LatentPursuitInverter):
    def _resolve_generator(self, X):
        return _sized_to(X)


class _SizedLBP(LayeredBPInverter):
    def _resolve_generator(self, X):
        return _sized_to(X)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(
    [
        _SizedGD(FIXED, transform_max_iter=200),
        _SizedOracle(FIXED),
        _SizedLP(FIXED),
        _SizedLBP(FIXED),
    ]
)
def test_sklearn_compatible_any_size(estimator, check):
    check(estimator)
