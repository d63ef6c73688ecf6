"""scikit-learn estimators that invert a generator: signals X -> latent codes Z."""

from ._base import BaseInverter
from ._gradient_descent import GradientDescentInverter, gradient_descent_inversion
from ._hybrid import HybridInverter
from ._imputer import GeneratorImputer
from ._layered_bp import LayeredBPInverter
from ._oracle import OracleInverter
from ._persist import SKOPS_TRUSTED_TYPES
from ._polish import polish
from ._pursuit import LatentPursuitInverter

__all__ = [
    "BaseInverter",
    "GeneratorImputer",
    "GradientDescentInverter",
    "HybridInverter",
    "LatentPursuitInverter",
    "LayeredBPInverter",
    "OracleInverter",
    "SKOPS_TRUSTED_TYPES",
    "gradient_descent_inversion",
    "polish",
]
