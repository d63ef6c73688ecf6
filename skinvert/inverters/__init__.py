"""scikit-learn estimators that invert a generator: signals X -> latent codes Z."""

from ._base import BaseInverter
from ._gradient_descent import GradientDescentInverter, gradient_descent_inversion
from ._hybrid import HybridInverter
from ._imputer import GeneratorImputer
from ._oracle import OracleInverter
from ._polish import polish
from ._pursuit import LatentPursuitInverter, LayeredBPInverter

__all__ = [
    "BaseInverter",
    "GeneratorImputer",
    "GradientDescentInverter",
    "HybridInverter",
    "LatentPursuitInverter",
    "LayeredBPInverter",
    "OracleInverter",
    "gradient_descent_inversion",
    "polish",
]
