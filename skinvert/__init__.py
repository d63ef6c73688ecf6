"""skinvert: invert fully connected ReLU generators, the scikit-learn way.

Implements Aberdam, Simon & Elad, "When and How Can Deep Generative Models be
Inverted?" (2020): the Oracle (Algorithms 1 and 6), Layered Basis-Pursuit
(Algorithm 2), Latent-Pursuit (Algorithms 3-5) and gradient descent, batched
over signals and written against the array API.
"""

from ._functional import latent_pursuit, layered_basis_pursuit, oracle_inversion
from ._random_generator import make_random_generator
from .activations import Activation
from .generator import ReLUGenerator
from .inverters import (
    SKOPS_TRUSTED_TYPES,
    GeneratorImputer,
    GradientDescentInverter,
    HybridInverter,
    LatentPursuitInverter,
    LayeredBPInverter,
    OracleInverter,
    gradient_descent_inversion,
    polish,
)
from .io import load_generator

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "GeneratorImputer",
    "GradientDescentInverter",
    "HybridInverter",
    "LatentPursuitInverter",
    "LayeredBPInverter",
    "OracleInverter",
    "ReLUGenerator",
    "SKOPS_TRUSTED_TYPES",
    "gradient_descent_inversion",
    "latent_pursuit",
    "layered_basis_pursuit",
    "load_generator",
    "make_random_generator",
    "oracle_inversion",
    "polish",
]
